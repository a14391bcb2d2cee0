import numpy as np
import pytest

from zsvc_pl.data.sampling import FrameSampler, random_segment_indices, segment_indices


def test_segment_centres_exact():
    assert segment_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_indices(10, 5, offset=0.0) == [0, 2, 4, 6, 8]


def test_short_video_repeats_frames_in_order():
    assert segment_indices(3, 8) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert segment_indices(1, 4) == [0, 0, 0, 0]


def test_multiple_clips_interleave_inside_segments():
    clips = FrameSampler(num_frames=2, num_clips=2)(40)
    assert clips == [[5, 25], [15, 35]]


def test_random_sampling_stays_in_segments_and_is_seeded():
    a = random_segment_indices(100, 4, np.random.default_rng(3))
    b = random_segment_indices(100, 4, np.random.default_rng(3))
    assert a == b
    assert all(25 * i <= x < 25 * (i + 1) for i, x in enumerate(a))
    draws = {tuple(random_segment_indices(100, 4, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10


def test_invalid_requests_raise():
    with pytest.raises(ValueError, match="no frames"):
        segment_indices(0, 8)
    with pytest.raises(ValueError, match="positive"):
        segment_indices(10, 0)
