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


def test_adaptive_indices_follow_the_change():
    from zsvc_pl.data.sampling import adaptive_indices

    positions = list(range(0, 100, 10))  # 10 probe frames
    change = [0, 0, 0, 0, 0, 0, 5, 5, 0, 0]  # all the change happens around frames 60 and 70
    # all frames land in the stretch the two changing probes stand for (55..75), spread evenly
    assert adaptive_indices(positions, change, 4, 100, uniform_weight=0.0) == [58, 63, 68, 73]
    mixed = adaptive_indices(positions, change, 10, 100, uniform_weight=0.2)
    assert sum(55 <= p < 75 for p in mixed) >= 7 and min(mixed) < 55
    assert adaptive_indices(positions, [0] * 10, 5, 100) == [5, 25, 45, 65, 85]  # no change: uniform
    assert adaptive_indices([0, 1, 2], [1, 1, 1], 6, 3) == [0, 0, 1, 1, 2, 2]  # short video: repeats


def test_change_scores_see_a_small_object_through_noise():
    from zsvc_pl.data.sampling import change_scores

    rng = np.random.default_rng(0)
    probe = rng.normal(100, 8, (6, 32, 32, 3)).clip(0, 255).astype(np.uint8)
    probe[3, 10:14, 10:14] = 250  # a small object in frame 3 only
    scores = change_scores(probe)
    assert scores.argmax() == 3 and scores[3] > 2 * np.median(scores)


def test_adaptive_dataset_sampling_finds_a_short_event(tmp_path):
    from zsvc_pl.data import FrameReader, VideoClassificationDataset, VideoRecord
    from zsvc_pl.demo.world import render_video, write_video

    frames = render_video("red", "circle", "left", np.random.default_rng(3), 64, 40, event=0.2)
    red = (frames[..., 0] > 180) & (frames[..., 1] < 90)
    visible = {i for i in range(40) if red[i].sum() > 20}
    write_video(tmp_path / "v.mp4", frames)
    reader = FrameReader(FrameSampler(8, adaptive=True), frame_size=64)
    ds = VideoClassificationDataset([VideoRecord(str(tmp_path / "v.mp4"))], reader)
    picked = reader._adaptive(str(tmp_path / "v.mp4"), 40)
    uniform = FrameSampler(8)(40)[0]
    assert sum(i in visible for i in picked) > sum(i in visible for i in uniform)
    assert ds[0]["video"].shape == (1, 8, 3, 64, 64)


def test_snap_to_keyframes_moves_only_within_the_radius_and_never_repeats():
    from zsvc_pl.data.sampling import snap_to_keyframes

    assert snap_to_keyframes([8, 24, 40], [0, 16, 32, 48], 8) == [0, 16, 32]  # ties: the earlier keyframe
    assert snap_to_keyframes([10, 12, 30], [11], 3) == [11, 12, 30]  # 12 would repeat 11; 30 has none near
    assert snap_to_keyframes([5, 50], [], 10) == [5, 50]
    assert snap_to_keyframes([99], [0, 100], 2) == [100]
