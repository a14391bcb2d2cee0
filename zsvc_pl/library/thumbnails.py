"""Thumbnail strips: a few of a video's frames, small and side by side in one JPEG, kept in the library folder
(``thumbs/ID-MTIME.jpg``: a file indexed again after a change gets a new strip). ``index`` makes them from the
frames it decodes anyway; a library filled before that makes them when the web page first asks."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from zsvc_pl.data.decoding import VideoDecodeError, open_video, read_frames
from zsvc_pl.data.outputs import atomic_write

HEIGHT = 72  # pixels: a strip of 8 frames of a 16:9 video is about 1000 x 72
WIDTH = 8  # frames in a strip at most: a long video's are spread over it


def spread(items: Sequence, count: int = WIDTH) -> list:
    """At most ``count`` of ``items``, evenly spread, first and last included."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def strip_jpeg(frames: np.ndarray, height: int = HEIGHT) -> bytes:
    """uint8 frames ``[T, H, W, 3]`` (at most ``WIDTH`` of them, spread) scaled to ``height`` pixels high and
    laid side by side, as JPEG."""
    from PIL import Image

    frames = np.stack(spread(list(frames)))
    if frames.shape[1] != height:
        frames = np.stack([np.asarray(Image.fromarray(f).resize(
            (max(1, round(f.shape[1] * height / f.shape[0])), height))) for f in frames])
    out = io.BytesIO()
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(out, "JPEG", quality=80)
    return out.getvalue()


def strip(path: str | Path, times: Sequence[float], height: int = HEIGHT) -> bytes:
    """The frames of ``path`` at ``times`` (seconds; at most ``WIDTH`` of them, spread) as a strip."""
    video = open_video(path, short_side=height)
    indices = [min(max(0, round(t * video.fps)), video.num_frames - 1) for t in spread(times)]
    return strip_jpeg(read_frames(video, indices, str(path)), height)


def keep_strip(folder: Path, name: str, data: bytes) -> None:
    """Store a strip made elsewhere (by ``index``) as ``folder/thumbs/NAME.jpg``."""
    target = folder / "thumbs" / f"{name}.jpg"
    target.parent.mkdir(exist_ok=True)
    atomic_write(target, lambda f: f.write(data), durable=False)


def cached_strip(folder: Path, name: str, path: str, times: Sequence[float]) -> bytes | None:
    """The strip of one library video, from ``folder/thumbs`` or made and kept there; ``None`` when the file
    cannot be decoded (moved, changed or damaged since it was indexed)."""
    target = folder / "thumbs" / f"{name}.jpg"
    try:
        return target.read_bytes()
    except OSError:
        pass
    try:
        data = strip(path, times)
    except VideoDecodeError:
        return None
    keep_strip(folder, name, data)
    return data


class Gallery:
    """Thumbnail strips with captions; a notebook shows it as HTML (``_repr_html_``)."""

    def __init__(self, items: Sequence[tuple[str, bytes | None]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def _repr_html_(self) -> str:
        cells = []
        for caption, jpeg in self.items:
            picture = (f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" alt="">' if jpeg
                       else "<em>(no picture: the file cannot be read)</em>")
            cells.append(f'<figure style="margin:4px 0">{picture}<figcaption style="font:12px monospace">'
                         f"{html.escape(caption)}</figcaption></figure>")
        return "<div>" + "".join(cells) + "</div>"
