"""Frame index samplers: which frames of a video to decode. Pure functions, no I/O."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_NUM_FRAMES = 8  # frames per video at every entry point (API, CLI, timelines, moderation)


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


def snap_to_keyframes(indices: Sequence[int], keyframes: Sequence[int], radius: float) -> list[int]:
    """Each index moved to the nearest keyframe within ``radius`` frames (its own segment: half the spacing of
    the samples), which decodes alone, without the frames before it; an index with no keyframe that near, or
    whose nearest one an earlier index took, stays where it is and is decoded exactly. Never beyond the video:
    keyframes are frames of it."""
    keys = sorted(keyframes)
    out: list[int] = []
    taken: set[int] = set()
    for i in indices:
        at = bisect.bisect_left(keys, i)
        near = [k for k in keys[max(at - 1, 0) : at + 1] if abs(k - i) <= radius and k not in taken]
        pick = min(near, key=lambda k: (abs(k - i), k)) if near else i
        taken.add(pick)
        out.append(pick)
    return out


def random_segment_indices(num_total: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """One random frame inside each of ``num_frames`` equal segments (the TSN training rule)."""
    seg = num_total / num_frames
    if seg < 1:
        return segment_indices(num_total, num_frames)
    starts = np.arange(num_frames) * seg
    picks = np.floor(starts + rng.random(num_frames) * seg).astype(int)
    return np.minimum(picks, num_total - 1).tolist()


def change_scores(probe: np.ndarray, top_fraction: float = 0.02) -> np.ndarray:
    """How much each probe frame differs from its neighbours: the mean of the largest ``top_fraction`` of
    absolute grey-level differences, so a small moving object counts and pixel noise does not.
    ``probe`` is uint8 ``[P, H, W, 3]`` (a low-resolution pass over the video)."""
    grey = probe.astype(np.float32).mean(-1).reshape(len(probe), -1)
    if len(grey) < 2:
        return np.zeros(len(grey))
    diff = np.abs(np.diff(grey, axis=0))
    k = max(1, int(diff.shape[1] * top_fraction))
    step = np.sort(diff, axis=1)[:, -k:].mean(1)  # change between probe i and i + 1
    padded = np.concatenate([[step[0]], step, [step[-1]]])
    return (padded[:-1] + padded[1:]) / 2


def adaptive_indices(positions: Sequence[int], change: Sequence[float], num_frames: int, num_total: int,
                     uniform_weight: float = 0.2) -> list[int]:
    """Frames at equal steps of cumulative content change, from probe frames at ``positions``.

    Each probe frame stands for the stretch of video around it; its share of the frames is
    ``(1 - uniform_weight) * change / sum(change) + uniform_weight / P``, so stretches where the picture
    changes get most frames and static ones still get some. Inside a stretch frames are spread evenly (the
    cumulative share is inverted piecewise-linearly). Without any change this is uniform sampling.
    """
    positions = np.asarray(positions, dtype=float)
    change = np.clip(np.asarray(change, dtype=float), 0, None)
    p = len(positions)
    share = np.full(p, 1.0 / p)
    if change.sum() > 0:
        share = (1 - uniform_weight) * change / change.sum() + uniform_weight / p
    mids = (positions[:-1] + positions[1:]) / 2
    half = (positions[1] - positions[0]) / 2 if p > 1 else 0.5
    edges = np.concatenate([[positions[0] - half], mids, [positions[-1] + half]])
    cdf = np.concatenate([[0.0], np.cumsum(share)])
    targets = (np.arange(num_frames) + 0.5) / num_frames
    x = np.interp(targets, cdf, edges)
    return np.clip(np.floor(x + 0.5), 0, num_total - 1).astype(int).tolist()


@dataclass(frozen=True)
class FrameSampler:
    """Chooses the frame indices of each temporal view of a video.

    Args:
        num_frames: frames per view.
        num_clips: temporal views; view ``v`` takes the frame at offset ``(v + 0.5) / num_clips``
            inside every segment, so views interleave and together cover the video.
        random: draw a random frame per segment (training) instead of fixed offsets.
        adaptive: place frames where the content changes (see ``adaptive_indices``); the dataset makes a
            low-resolution probe pass of ``probe_frames`` frames first. One clip only.
    """

    num_frames: int = DEFAULT_NUM_FRAMES
    num_clips: int = 1
    random: bool = False
    adaptive: bool = False
    probe_frames: int = 48

    def __post_init__(self) -> None:
        for name in ("num_frames", "num_clips", "probe_frames"):  # a setting, not a video, is wrong: say so now
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def __call__(self, num_total: int, rng: np.random.Generator | None = None) -> list[list[int]]:
        """Return ``num_clips`` lists of ``num_frames`` indices into a video of ``num_total`` frames."""
        if self.random:
            rng = rng if rng is not None else np.random.default_rng()
            return [random_segment_indices(num_total, self.num_frames, rng) for _ in range(self.num_clips)]
        return [
            segment_indices(num_total, self.num_frames, (v + 0.5) / self.num_clips) for v in range(self.num_clips)
        ]
