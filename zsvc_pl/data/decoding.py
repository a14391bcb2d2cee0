"""Video decoding: only the sampled frames and what they depend on, at a reduced size.

This is the only module that imports decord or PyAV. Which reader reads which file is decided in
``open_video``; every reader returns the same frames for the same indices.
"""

from __future__ import annotations

import bisect
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


def _to_rgb(frame, short_side: int | None) -> np.ndarray:
    """A PyAV frame as RGB at the reduced size, turned upright as its display matrix says (phone videos)."""
    w, h = scaled_size(frame.width, frame.height, short_side)
    rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


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


class _SparseVideo:
    """PyAV decode of only what the requested frames depend on, for containers with presentation timestamps.

    Opening demuxes the stream once (no decoding) to index every frame's timestamp and the keyframes. A
    request then seeks to the keyframe before each wanted frame when that skips decoding, and tells the
    decoder to drop non-reference frames that are not wanted (``skip_frame``): nothing depends on them, so the
    wanted frames come out bit-identical to a full decode while about half of a typical H.264 stream is never
    decoded. Only the wanted frames are converted to RGB, at the reduced size.
    """

    FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")

    def __init__(self, container, path: str, short_side: int | None) -> None:
        self.path = path
        self.short_side = short_side
        stream = container.streams.video[0]
        self.fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        pts, keys = set(), []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                raise _NoTimestamps()
            pts.add(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        if not pts or not keys:
            raise _NoTimestamps()
        self._pts = sorted(pts)
        self._keys = sorted(keys)
        self.num_frames = len(self._pts)
        self.frames_decoded = 0  # frames the decoder produced so far: what sparse decoding saves

    def _key_before(self, pts: int) -> int:
        return self._keys[max(bisect.bisect_right(self._keys, pts) - 1, 0)]

    def get(self, indices: Sequence[int]) -> np.ndarray:
        import av

        wanted = sorted({self._pts[i] for i in indices})
        wanted_set = set(wanted)
        known = set(self._pts)
        kept: dict[int, np.ndarray] = {}
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context
            codec.thread_count = 1  # parallelism comes from DataLoader workers
            position = sought = -(2**63)  # last frame out of the decoder; last keyframe sought to
            k = 0
            while k < len(wanted):
                key = self._key_before(wanted[k])
                if key > max(position, sought):  # each seek goes strictly forward, so this ends
                    container.seek(key, stream=stream, backward=True)
                    codec.flush_buffers()
                    sought = key
                jumped = False
                for packet in container.demux(stream):
                    codec.skip_frame = "DEFAULT" if packet.pts in wanted_set else "NONREF"
                    for frame in codec.decode(packet):
                        if frame.pts not in known:
                            raise _NoTimestamps()
                        position = frame.pts
                        self.frames_decoded += 1
                        if frame.pts in wanted_set and frame.pts not in kept:
                            kept[frame.pts] = _to_rgb(frame, self.short_side)
                    while k < len(wanted) and wanted[k] in kept:
                        k += 1
                    if k == len(wanted):
                        break
                    if self._key_before(wanted[k]) > max(position, sought):  # seek rather than decode
                        jumped = True
                        break
                if not jumped:
                    break
        if len(kept) < len(wanted):
            raise VideoDecodeError(self.path, f"{len(wanted) - len(kept)} of the requested frames did not decode")
        return np.stack([kept[self._pts[i]] for i in indices])


class _NoTimestamps(Exception):
    """The stream's timestamps cannot index its frames; another reader must be used."""


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
            self.fps = float(stream.average_rate or stream.guessed_rate or 25.0)
            count = stream.frames
            if count <= 0:  # elementary streams and GIFs carry no count: one packet per frame
                count = sum(1 for p in container.demux(stream) if p.size > 0)
        if count <= 0:
            raise VideoDecodeError(path, "the video stream holds no frames")
        self.num_frames = count

    def get(self, indices: Sequence[int]) -> np.ndarray:
        import av

        wanted = set(indices)
        last = max(wanted)
        kept: dict[int, np.ndarray] = {}
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    kept[i] = _to_rgb(frame, self.short_side)
                if i >= last:
                    break
        if not kept:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        # A container that over-reports its length: fall back to the last frame it really has.
        available = sorted(kept)
        return np.stack([kept[i] if i in kept else kept[available[-1]] for i in indices])


BACKENDS = ("auto", "sparse", "decord", "pyav")


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
    applies, decord for the rest (AVI, elementary streams). Raises ``VideoDecodeError`` naming the file and the
    reason when no reader can read it.
    """
    import av

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise VideoDecodeError(path, "file not found")
    if p.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    reasons = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no video stream in the file")
            ctx = container.streams.video[0].codec_context
            width, height = ctx.width, ctx.height
            if width <= 0 or height <= 0:
                raise VideoDecodeError(path, f"invalid frame size {width}x{height}")
            if backend in ("auto", "sparse") and container.format.name in _SparseVideo.FORMATS:
                try:
                    return _SparseVideo(container, path, short_side)
                except _NoTimestamps:
                    reasons.append("sparse: the stream's timestamps do not index its frames")
                except Exception as e:  # e.g. a truncated file: the other readers may still get frames from it
                    reasons.append(f"sparse: {type(e).__name__}: {e}")
    except VideoDecodeError:
        raise
    except Exception as e:  # PyAV raises many error types for garbage input
        raise VideoDecodeError(path, f"not a readable video ({type(e).__name__}: {e})") from e
    use_decord = backend in ("auto", "decord") and _decord_available() and p.suffix.lower() != ".gif"
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
