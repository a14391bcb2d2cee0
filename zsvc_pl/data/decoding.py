"""Video decoding: only the sampled frames and what they depend on, at a reduced size.

This module and ``backends`` are the only ones that import decord or PyAV. ``open_video`` decides which reader
reads which file; every reader returns the same frames for the same indices. Frame sizes are bounded (pixels and
aspect ratio) before anything is decoded, and paths are opened as local files only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from zsvc_pl.data.backends import (
    MAX_ASPECT,
    MAX_PIXELS,
    VideoDecodeError,
    _DecordVideo,
    _NoTimestamps,
    _open_av,
    _PyAVVideo,
    _SparseVideo,
    check_frame_size,
    scaled_size,
    utf8_name,
)

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv",
    ".ts", ".gif", ".h264", ".264", ".hevc", ".h265", ".mjpeg", ".y4m",
)

__all__ = ["VIDEO_EXTENSIONS", "MAX_ASPECT", "MAX_PIXELS", "VideoDecodeError", "Video", "open_video", "read_frames",
           "scaled_size"]


class Video(Protocol):
    """An opened video: its frame count, its keyframes (frames that decode alone; empty where a reader decodes
    from the start anyway) and random access to frames as uint8 RGB ``[T, H, W, 3]``."""

    num_frames: int
    fps: float
    keyframes: list[int]

    def get(self, indices: Sequence[int]) -> np.ndarray: ...


BACKENDS = ("auto", "sparse", "decord", "pyav")
_NO_DECORD_FORMATS = ("mpegts",)  # read by sequential PyAV instead (see open_video)


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def open_video(path: str | Path, short_side: int | None = None, backend: str = "auto") -> Video:
    """Open a video for frame access, decoding at a shorter side of at most ``short_side`` pixels.

    ``backend`` names the first reader to try: ``"sparse"`` (PyAV decoding only what the requested frames
    depend on; MP4/MOV/MKV/WebM with presentation timestamps), ``"decord"``, or ``"pyav"`` (sequential PyAV
    decode, reads whatever FFmpeg reads and is the last resort of the others). ``"auto"``: sparse where it
    applies, decord for the rest (AVI, elementary streams) except MPEG-TS, which sequential PyAV reads. Raises
    ``VideoDecodeError`` naming the file and the reason when no reader can read it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = str(path)
    p = Path(path)
    if p.is_dir():
        raise VideoDecodeError(path, "a folder, not a video file (pass the videos in it)")
    if not p.is_file():
        raise VideoDecodeError(path, "file not found")
    if p.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    reasons = []
    container = None
    try:
        container = _open_av(path)
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream in the file")
        ctx = container.streams.video[0].codec_context
        width, height, container_format = ctx.width, ctx.height, container.format.name
        check_frame_size(path, width, height)
        if backend in ("auto", "sparse") and container.format.name in _SparseVideo.FORMATS:
            try:
                video, container = _SparseVideo(container, path, short_side), None  # it owns the container now
                return video
            except _NoTimestamps:
                reasons.append("sparse: the stream's timestamps do not index its frames")
            except Exception as e:  # e.g. a truncated file: the other readers may still get frames from it
                reasons.append(f"sparse: {type(e).__name__}: {e}")
    except VideoDecodeError:
        raise
    except Exception as e:  # PyAV raises many error types for garbage input
        raise VideoDecodeError(path, f"not a readable video ({type(e).__name__}: {e})") from e
    finally:
        if container is not None:
            container.close()
    # decord returned frames 8-12 positions late from MPEG-TS (H.264, 8 fps), index 0 included: never seek there
    use_decord = (backend in ("auto", "decord") and _decord_available() and p.suffix.lower() != ".gif"
                  and utf8_name(path) and container_format not in _NO_DECORD_FORMATS)
    if use_decord:
        try:
            video = _DecordVideo(path, short_side, width, height)
            if video.num_frames > 0:
                return video
            reasons.append("decord: no frames")
        except Exception as e:
            reasons.append(f"decord: {e}".splitlines()[0][:200])
    try:
        return _PyAVVideo(path, short_side)
    except VideoDecodeError:
        raise
    except Exception as e:
        reasons.append(f"pyav: {type(e).__name__}: {e}")
        raise VideoDecodeError(path, "; ".join(reasons)) from e


def read_frames(video: Video, indices: Sequence[int], path: str = "") -> np.ndarray:
    """Decode ``indices`` from an opened video, turning backend errors into ``VideoDecodeError``.

    When the sparse or decord reader fails (decord sometimes mis-counts frames; some streams carry
    inconsistent timestamps) the frames are read again by the sequential PyAV decoder.
    """
    try:
        frames = video.get(indices)
    except Exception as e:
        if not isinstance(video, _PyAVVideo) and path:
            log.debug("%s failed on %s (%s); retrying with sequential PyAV", type(video).__name__, path, e)
            fallback = _PyAVVideo(path, video.short_side)
            return read_frames(fallback, [min(i, fallback.num_frames - 1) for i in indices], path)
        if isinstance(e, VideoDecodeError):
            raise
        raise VideoDecodeError(path, f"frames could not be decoded ({type(e).__name__}: {e})") from e
    if frames.ndim == 3:  # grayscale decoded as [T, H, W]
        frames = np.repeat(frames[..., None], 3, axis=-1)
    return frames
