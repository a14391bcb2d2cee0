"""Live sources: frames from a pipe, a growing file, a URL or a camera, sampled at a fixed rate, in real time.

A thread decodes the source and keeps one frame every ``1 / rate`` seconds of stream time, as a square crop;
the consumer takes them from a bounded queue. Stream time is continuous: when a source's timestamps start
again (two streams concatenated, an encoder restart, a looping source), it continues from the last frame and
the restart is recorded (``restarts``). When the consumer falls behind a live source, the oldest waiting
frame is dropped and its time recorded (``skipped``), so memory stays bounded whatever the stream's length. A
regular file is read at its own pace (nothing dropped). A URL or camera that drops is reopened: after
``reconnects`` failures in a row (a source that delivers frames between drops is always reopened), or after
it has ended ``reconnects + 1`` times, the stream ends. Only ``-`` (stdin), local files, ``/dev/video*`` devices and
URLs written with their scheme (rtsp, rtmp, http, https, udp, srt) are opened.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from zsvc_pl.data.backends import _to_rgb
from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.data.transforms import square_crops

RESTART_S = 0.5  # timestamps going back by more than this: the source's clock restarted (concatenated streams,
# an encoder restart, a looping source); stream time continues from the last frame instead
URL_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "srt://")
_END = object()


def _open(source: str):
    import av

    if source == "-":
        return av.open(sys.stdin.buffer, mode="r")
    if source.startswith(URL_SCHEMES):
        return av.open(source, mode="r", timeout=10.0)
    if source.startswith("/dev/video"):
        return av.open(source, mode="r", format="v4l2")
    if not Path(source).is_file():
        raise VideoDecodeError(source, "no such file (a URL needs its scheme, e.g. rtsp://; stdin is '-')")
    return av.open(open(source, "rb"), mode="r")


class LiveFrames:
    """Iterate ``(seconds, uint8 frame [3, size, size])`` from ``source``, ``rate`` frames per stream second."""

    def __init__(self, source: str, rate: float, frame_size: int, buffer: int = 64, reconnects: int = 3) -> None:
        self.source, self.rate, self.frame_size = source, rate, frame_size
        self.live = source == "-" or source.startswith(URL_SCHEMES) or source.startswith("/dev/video")
        self.reconnects = reconnects if source.startswith(URL_SCHEMES + ("/dev/video",)) else 0
        self.skipped: list[float] = []
        self.restarts: list[float] = []  # stream times after which the source's timestamps started again
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"stream:{source}")
        self._thread.start()

    def _put(self, item) -> None:
        if not self.live or item is _END:
            self._queue.put(item)
            return
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                    self.skipped.append(dropped[0])
                except queue.Empty:
                    pass

    def _run(self) -> None:
        import av

        next_t, offset, failures, ends = 0.0, 0.0, 0, 0
        while True:
            first, got_frames, failed = None, False, False  # times count from the source's first frame
            try:
                with _open(self.source) as container:
                    stream = container.streams.video[0]
                    reformatter = av.video.reformatter.VideoReformatter()
                    step = 1 / float(stream.average_rate or stream.guessed_rate or 25)
                    last = None  # stream time of the previous frame
                    for frame in container.decode(stream):
                        if frame.time is None:
                            continue
                        first = float(frame.time) if first is None else first
                        t = offset + float(frame.time) - first
                        if last is not None and t < last - RESTART_S:  # the source's clock started again
                            self.restarts.append(round(last, 3))
                            offset, first = last + step, float(frame.time)
                            t = offset
                        last = t
                        got_frames = True
                        if t + 1e-6 < next_t:
                            continue
                        rgb = _to_rgb(frame, self.frame_size, reformatter, self.source)
                        self._put((t, square_crops(torch.from_numpy(rgb)[None], self.frame_size)[0, 0]))
                        next_t = t + 1 / self.rate
            except Exception as e:  # a source that cannot be opened or drops: reported, maybe reopened
                self.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                failed = True
            # a drop after frames starts the count again (a camera that drops now and then is always reopened);
            # failures in a row, and ends of the stream in all, are limited by ``reconnects``
            failures = (1 if got_frames else failures + 1) if failed else failures
            ends += 0 if failed else 1
            if failures > self.reconnects or ends > self.reconnects:
                break
            offset = next_t  # a reopened source restarts its clock: its times continue after the last frame kept
            time.sleep(min(2.0 ** max(failures, 1), 10.0))
        self._put(_END)

    def __iter__(self) -> Iterator[tuple[float, torch.Tensor]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def waiting(self) -> int:
        """Frames decoded and not yet taken."""
        return self._queue.qsize()
