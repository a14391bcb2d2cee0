"""Frame index samplers: which frames of a video to decode. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def segment_indices(num_total: int, num_frames: int, offset: float = 0.5) -> list[int]:
    """One frame per segment: split ``num_total`` frames into ``num_frames`` equal segments.

    ``offset`` in [0, 1) says where inside each segment to take the frame (0.5 is the centre,
    the TSN evaluation rule). A video shorter than ``num_frames`` repeats frames in order.
    """
    if num_total <= 0:
        raise ValueError("cannot sample frames from a video with no frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    seg = num_total / num_frames
    return [min(int((i + offset) * seg), num_total - 1) for i in range(num_frames)]


def random_segment_indices(num_total: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """One random frame inside each of ``num_frames`` equal segments (the TSN training rule)."""
    seg = num_total / num_frames
    if seg < 1:
        return segment_indices(num_total, num_frames)
    starts = np.arange(num_frames) * seg
    picks = np.floor(starts + rng.random(num_frames) * seg).astype(int)
    return np.minimum(picks, num_total - 1).tolist()


@dataclass(frozen=True)
class FrameSampler:
    """Chooses the frame indices of each temporal view of a video.

    Args:
        num_frames: frames per view.
        num_clips: temporal views; view ``v`` takes the frame at offset ``(v + 0.5) / num_clips``
            inside every segment, so views interleave and together cover the video.
        random: draw a random frame per segment (training) instead of fixed offsets.
    """

    num_frames: int = 8
    num_clips: int = 1
    random: bool = False

    def __call__(self, num_total: int, rng: np.random.Generator | None = None) -> list[list[int]]:
        """Return ``num_clips`` lists of ``num_frames`` indices into a video of ``num_total`` frames."""
        if self.random:
            rng = rng if rng is not None else np.random.default_rng()
            return [random_segment_indices(num_total, self.num_frames, rng) for _ in range(self.num_clips)]
        return [
            segment_indices(num_total, self.num_frames, (v + 0.5) / self.num_clips) for v in range(self.num_clips)
        ]
