"""Video decoding: only the sampled frames, at a reduced size. decord first, PyAV as the fallback.

This is the only module that imports decord or PyAV.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv",
    ".ts", ".gif", ".h264", ".264", ".hevc", ".h265", ".mjpeg", ".y4m",
)


class VideoDecodeError(RuntimeError):
    """A video that cannot be read; carries the file and the reason for the run's error report."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Video(Protocol):
    """An opened video: its frame count and random access to frames as uint8 RGB ``[T, H, W, 3]``."""

    num_frames: int
    fps: float

    def get(self, indices: Sequence[int]) -> np.ndarray: ...


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Size that brings the shorter side down to ``short_side`` (never up), even, aspect kept."""
    if not short_side or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    if min(w, h) < short_side:  # rounding must not go below the requested size
        w, h = (w + 2, h) if w < h else (w, h + 2)
    return w, h


class _DecordVideo:
    def __init__(self, path: str, short_side: int | None, width: int, height: int) -> None:
        import decord

        self.short_side = short_side
        w, h = scaled_size(width, height, short_side)
        self._vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps() or 0.0) or 25.0

    def get(self, indices: Sequence[int]) -> np.ndarray:
        return self._vr.get_batch(list(indices)).asnumpy()


class _PyAVVideo:
    """Sequential PyAV decode that keeps only the requested frames (memory bounded by the request)."""

    def __init__(self, path: str, short_side: int | None) -> None:
        import av

        self.path = path
        self.short_side = short_side
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream in the file")
            stream = container.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            self.fps = float(stream.average_rate or stream.guessed_rate or 25.0)
            count = stream.frames
            if count <= 0:
                count = sum(1 for _ in container.decode(stream))
        if count <= 0:
            raise VideoDecodeError(path, "the video stream holds no frames")
        self.num_frames = count

    def get(self, indices: Sequence[int]) -> np.ndarray:
        import av

        wanted = sorted(set(indices))
        last = wanted[-1]
        kept: dict[int, np.ndarray] = {}
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    w, h = scaled_size(frame.width, frame.height, self.short_side)
                    kept[i] = frame.to_ndarray(format="rgb24", width=w, height=h)
                if i >= last:
                    break
        if not kept:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        # A container that over-reports its length: fall back to the last frame it really has.
        available = sorted(kept)
        return np.stack([kept[i] if i in kept else kept[available[-1]] for i in indices])


def _probe_size(path: str) -> tuple[int, int]:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream in the file")
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def open_video(path: str | Path, short_side: int | None = None, backend: str = "auto") -> Video:
    """Open a video for frame access, decoding at a shorter side of at most ``short_side`` pixels.

    ``backend`` is ``"auto"`` (decord, then PyAV if decord fails), ``"decord"`` or ``"pyav"``.
    Raises ``VideoDecodeError`` naming the file and the reason when no backend can read it.
    """
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise VideoDecodeError(path, "file not found")
    if p.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    reasons = []
    try:
        width, height = _probe_size(path)
    except VideoDecodeError:
        raise
    except Exception as e:  # PyAV raises many error types for garbage input
        raise VideoDecodeError(path, f"not a readable video ({type(e).__name__}: {e})") from e
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"invalid frame size {width}x{height}")
    use_decord = backend in ("auto", "decord") and _decord_available() and p.suffix.lower() != ".gif"
    if use_decord:
        try:
            video = _DecordVideo(path, short_side, width, height)
            if video.num_frames > 0:
                return video
            reasons.append("decord: no frames")
        except Exception as e:
            reasons.append(f"decord: {e}".splitlines()[0][:200])
            if backend == "decord":
                raise VideoDecodeError(path, reasons[-1]) from e
    try:
        return _PyAVVideo(path, short_side)
    except VideoDecodeError:
        raise
    except Exception as e:
        reasons.append(f"pyav: {type(e).__name__}: {e}")
        raise VideoDecodeError(path, "; ".join(reasons)) from e


def read_frames(video: Video, indices: Sequence[int], path: str = "") -> np.ndarray:
    """Decode ``indices`` from an opened video, turning backend errors into ``VideoDecodeError``.

    decord is retried through PyAV when its batch read fails (it sometimes mis-counts frames).
    """
    try:
        frames = video.get(indices)
    except VideoDecodeError:
        raise
    except Exception as e:
        if isinstance(video, _DecordVideo) and path:
            log.debug("decord failed on %s (%s); retrying with PyAV", path, e)
            fallback = _PyAVVideo(path, video.short_side)
            return read_frames(fallback, [min(i, fallback.num_frames - 1) for i in indices])
        raise VideoDecodeError(path, f"frames could not be decoded ({type(e).__name__}: {e})") from e
    if frames.ndim == 3:  # grayscale decoded as [T, H, W]
        frames = np.repeat(frames[..., None], 3, axis=-1)
    return frames
