"""Decoder backends: sparse PyAV (only what the wanted frames depend on), decord, and sequential PyAV.

Each opens paths as local files only (FFmpeg's ``file:`` protocol, no other protocol allowed, also for files a
container refers to), so a file named like a URL never reaches the network. ``open_video`` in
``zsvc_pl.data.decoding`` chooses between them.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_PIXELS = 8192 * 8192  # per frame, as stored: beyond 8K x 8K a file is refused before decoding
MAX_ASPECT = 16.0  # longer side / shorter side; e.g. a 16000x2 stream would make a useless, huge crop


class VideoDecodeError(RuntimeError):
    """A video that cannot be read; carries the file and the reason for the run's error report."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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


def _local(path: str) -> str:
    """The FFmpeg URL that can only mean this local file."""
    return "file:" + str(Path(path).resolve())


def utf8_name(path: str) -> bool:
    """False for a file name that is not valid UTF-8 (kept by Python as surrogate escapes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _open_av(path: str):
    """Open a local file with PyAV, the file protocol only (a playlist inside it cannot reach the network). A
    name FFmpeg cannot take as UTF-8 is read through a Python file object."""
    import av

    options = {"protocol_whitelist": "file"}
    if not utf8_name(path):
        return av.open(open(path, "rb"), options=options)
    return av.open(_local(path), options=options)


def check_frame_size(path: str, width: int, height: int) -> None:
    """Refuse frame sizes that would cost unbounded memory, before decoding."""
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"invalid frame size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise VideoDecodeError(path, f"frame size {width}x{height} exceeds the limit of {MAX_PIXELS:,} pixels")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise VideoDecodeError(path, f"frame size {width}x{height}: aspect ratio beyond {MAX_ASPECT:g}:1 "
                                     "(not a video this tool can crop meaningfully)")


def _to_rgb(frame, short_side: int | None, reformatter, path: str) -> np.ndarray:
    """A PyAV frame as RGB at the reduced size, turned upright as its display matrix says (phone videos).

    The frame's own size is checked against the limits first: a container may declare one size and carry
    frames of another (an MKV declaring 64x64 with 16000x16000 MJPEG frames), so the declared size alone
    bounds nothing. ``reformatter`` is one ``VideoReformatter`` per video: FFmpeg's scaler is set up once, not
    for every frame (which ``frame.to_ndarray(width=...)`` does; same pixels, 3-7x slower on small frames).
    """
    check_frame_size(path, frame.width, frame.height)
    w, h = scaled_size(frame.width, frame.height, short_side)
    rgb = reformatter.reformat(frame, format="rgb24", width=w, height=h).to_ndarray()
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 turns
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


class _DecordVideo:
    def __init__(self, path: str, short_side: int | None, width: int, height: int) -> None:
        import decord

        self.short_side = short_side
        w, h = scaled_size(width, height, short_side)
        self._vr = decord.VideoReader(_local(path), ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps() or 0.0) or 25.0

    @property
    def keyframes(self) -> list[int]:
        """Indices of the frames that decode alone (the container's keyframes)."""
        return [int(i) for i in self._vr.get_key_indices()]

    def get(self, indices: Sequence[int]) -> np.ndarray:
        return self._vr.get_batch(list(indices)).asnumpy()


class _SparseVideo:
    """PyAV decode of only what the requested frames depend on, for containers with presentation timestamps.

    Opening demuxes the stream once (no decoding) to index every frame's timestamp and the keyframes. A
    request then seeks to the keyframe before each wanted frame when that skips decoding, and tells the
    decoder to drop non-reference frames that are not wanted (``skip_frame``): nothing depends on them, so the
    wanted frames come out bit-identical to a full decode while about half of a typical H.264 stream is never
    decoded. Only the wanted frames are converted to RGB, at the reduced size. The first request reuses the
    container the index was read from (one open per video read; later requests open the file again), and
    closes it.
    """

    FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")

    def __init__(self, container, path: str, short_side: int | None) -> None:
        from av.video.reformatter import VideoReformatter

        self.path = path
        self.short_side = short_side
        self._reformatter = VideoReformatter()
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
        self._container = container  # for the first request
        self.num_frames = len(self._pts)
        self.frames_decoded = 0  # frames the decoder produced so far: what sparse decoding saves

    @property
    def keyframes(self) -> list[int]:
        """Indices of the frames that decode alone (the stream's keyframes)."""
        return [bisect.bisect_left(self._pts, k) for k in self._keys]

    def _key_before(self, pts: int) -> int:
        return self._keys[max(bisect.bisect_right(self._keys, pts) - 1, 0)]

    def get(self, indices: Sequence[int]) -> np.ndarray:
        wanted = sorted({self._pts[i] for i in indices})
        wanted_set = set(wanted)
        known = set(self._pts)
        kept: dict[int, np.ndarray] = {}
        container, self._container = self._container or _open_av(self.path), None
        with container:
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
                            kept[frame.pts] = _to_rgb(frame, self.short_side, self._reformatter, self.path)
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
        from av.video.reformatter import VideoReformatter

        self.path = path
        self.short_side = short_side
        self._reformatter = VideoReformatter()
        with _open_av(path) as container:
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
        self.keyframes: list[int] = []  # decoded from the start every time: no frame is cheaper than another

    def get(self, indices: Sequence[int]) -> np.ndarray:
        wanted = set(indices)
        last = max(wanted)
        kept: dict[int, np.ndarray] = {}
        with _open_av(self.path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    kept[i] = _to_rgb(frame, self.short_side, self._reformatter, self.path)
                if i >= last:
                    break
        if not kept:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        # A container that over-reports its length: fall back to the last frame it really has.
        available = sorted(kept)
        return np.stack([kept[i] if i in kept else kept[available[-1]] for i in indices])
