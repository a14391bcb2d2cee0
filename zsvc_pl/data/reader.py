"""FrameReader: the one way a video file becomes model-ready frames (open -> sample -> read -> crop).

Datasets, the Python API, timelines and the benchmarks all read through it, so the decode time limit, the
backend fallbacks and the size bounds hold everywhere.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from zsvc_pl.data.decoding import Video, VideoDecodeError, open_video, read_frames
from zsvc_pl.data.sampling import FrameSampler, adaptive_indices, change_scores, segment_indices, snap_to_keyframes
from zsvc_pl.data.transforms import square_crops


@dataclass
class Clip:
    """Frames of one video: uint8 ``[V, T, 3, S, S]`` (V = clips x crops), their indices and the video's fps."""

    frames: torch.Tensor
    indices: list[list[int]]
    fps: float


@dataclass
class Segments:
    """The frames of one video a library keeps: uint8 crops ``[N, 3, S, S]`` at ``times`` (seconds, sorted);
    ``uniform`` the positions among them of the frames classification samples (in its order), whose uncropped
    pictures ``[T, H, W, 3]`` (short side ``frame_size``) are in ``pictures``; the video's ``duration``."""

    frames: torch.Tensor
    times: list[float]
    uniform: list[int]
    pictures: np.ndarray
    duration: float


T = TypeVar("T")
SEEKS = ("exact", "keyframe")


class FrameReader:
    """Reads the sampled frames of a video as square crops.

    Args:
        sampler: which frames to take (and how many views).
        frame_size: side of the square crops handed to the model.
        num_crops: spatial views per temporal clip (1 or 3).
        backend: first reader to try (``auto``, ``sparse``, ``decord``, ``pyav``; see ``open_video``).
        timeout_s: per-video decode time limit; a decode that hangs (decord can) is abandoned and reported.
        seek: ``exact`` (the sampled frames themselves) or ``keyframe``: each sampled frame moved to the nearest
            keyframe inside its own segment, which decodes alone (``snap_to_keyframes``); faster where keyframes
            are dense, the same frames otherwise. Approximate: for libraries and tagging, not for protocols.
    """

    def __init__(self, sampler: FrameSampler, frame_size: int = 224, num_crops: int = 1, backend: str = "auto",
                 timeout_s: float | None = 60.0, seek: str = "exact") -> None:
        if frame_size < 1:
            raise ValueError(f"frame_size must be at least 1, got {frame_size}")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if seek not in SEEKS:
            raise ValueError(f"seek must be one of {', '.join(SEEKS)}, got {seek!r}")
        self.sampler = sampler
        self.frame_size = frame_size
        self.num_crops = num_crops
        self.backend = backend
        self.timeout_s = timeout_s
        self.seek = seek

    @property
    def sampling_key(self) -> str:
        """What decides which pixels reach the model; part of the feature-cache key and of a run's signature. A
        first reader other than ``auto`` is part of it (decord converts colours otherwise than PyAV); ``auto``
        adds nothing, so keys made before the reader was recorded stay valid."""
        s = self.sampler
        mode = "adaptive" if s.adaptive else "uniform"
        key = f"{mode},frames={s.num_frames},clips={s.num_clips},crops={self.num_crops},size={self.frame_size}"
        return key + (f",backend={self.backend}" if self.backend != "auto" else "") + (
            f",seek={self.seek}" if self.seek != "exact" else "")

    def _snap(self, video: Video, indices: list[int], spacing: float) -> list[int]:
        """``indices`` as ``seek`` places them: exact, or at keyframes within half ``spacing`` frames."""
        keys = getattr(video, "keyframes", None)
        if self.seek == "exact" or not keys:
            return indices
        return snap_to_keyframes(indices, keys, spacing / 2)

    def _sampled(self, path: str, video: Video, rng: np.random.Generator | None = None) -> list[list[int]]:
        """The frame indices of each clip this reader samples from ``video``."""
        if self.sampler.adaptive:
            clips = [self._adaptive(path, video.num_frames)]
        else:
            clips = self.sampler(video.num_frames, rng)
        spacing = video.num_frames / self.sampler.num_frames
        return [self._snap(video, clip, spacing) for clip in clips]

    def read(self, path: str, rng: np.random.Generator | None = None) -> Clip:
        """The sampled frames of ``path``, within the time limit; raises ``VideoDecodeError``."""
        return self._limited(path, lambda: self._read(path, rng))

    def read_segments(self, path: str, every_s: float, max_segments: int) -> Segments:
        """The sampled frames of ``path`` (one clip, one crop) and, when the video is longer than ``num_frames``
        times ``every_s`` seconds, frames spread one per ``every_s`` seconds (at most ``max_segments``), read in
        one decode within the time limit. A library stores them all as segments (moments in long videos) and
        embeds the video from the sampled ones alone, as classification does."""
        return self._limited(path, lambda: self._read_segments(path, every_s, max_segments))

    def _limited(self, path: str, read: Callable[[], T]) -> T:
        """``read()`` within the per-video time limit."""
        if not self.timeout_s:
            return read()
        box: dict = {}

        def work() -> None:
            try:
                box["clip"] = read()
            except BaseException as e:  # handed to the caller below
                box["error"] = e

        thread = threading.Thread(target=work, daemon=True, name=f"decode:{Path(path).name}")
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():  # a hung C call cannot be interrupted: abandon the thread
            raise VideoDecodeError(path, f"decoding timed out after {self.timeout_s:g} s (abandoned)")
        if "error" in box:
            raise box["error"]
        return box["clip"]

    def _read(self, path: str, rng: np.random.Generator | None) -> Clip:
        video = open_video(path, short_side=self.frame_size, backend=self.backend)
        clips = self._sampled(path, video, rng)
        flat = [i for clip in clips for i in clip]
        frames = read_frames(video, flat, path)
        if frames.shape[0] != len(flat) or frames.shape[-1] != 3:
            raise VideoDecodeError(path, f"decoder returned frames of shape {tuple(frames.shape)}")
        t = self.sampler.num_frames
        views = [square_crops(frames[c * t : (c + 1) * t], self.frame_size, self.num_crops)
                 for c in range(len(clips))]
        return Clip(torch.cat(views), clips, video.fps)

    def _read_segments(self, path: str, every_s: float, max_segments: int) -> Segments:
        if self.sampler.num_clips != 1 or self.num_crops != 1:
            raise ValueError("segments are read with one clip and one crop")
        video = open_video(path, short_side=self.frame_size, backend=self.backend)
        uniform = self._sampled(path, video)[0]
        duration = video.num_frames / video.fps
        spread = min(max_segments, math.ceil(duration / every_s)) if every_s > 0 else 0
        if spread <= len(uniform):  # a short video: its sampled frames are its segments, as they are
            indices, positions = list(uniform), list(range(len(uniform)))
        else:
            more = self._snap(video, segment_indices(video.num_frames, spread), video.num_frames / spread)
            indices = sorted(set(uniform) | set(more))
            positions = [indices.index(i) for i in uniform]
        frames = read_frames(video, indices, path)
        if frames.shape[0] != len(indices) or frames.shape[-1] != 3:
            raise VideoDecodeError(path, f"decoder returned frames of shape {tuple(frames.shape)}")
        return Segments(square_crops(frames, self.frame_size, 1)[0], [i / video.fps for i in indices], positions,
                        frames[positions], duration)

    def times(self, path: str) -> list[float]:
        """Seconds of the frames ``read`` samples from the first clip of ``path``, from the container's metadata
        (no decode; adaptive sampling runs its cheap probe pass)."""
        video = open_video(path, short_side=self.frame_size, backend=self.backend)
        return [i / video.fps for i in self._sampled(path, video)[0]]

    def _adaptive(self, path: str, num_total: int) -> list[int]:
        """Frame indices from a cheap low-resolution probe pass (32 px) over the video."""
        positions = sorted(set(segment_indices(num_total, min(self.sampler.probe_frames, num_total))))
        probe = read_frames(open_video(path, short_side=32, backend=self.backend), positions, path)
        return adaptive_indices(positions, change_scores(probe), self.sampler.num_frames, num_total)
