"""Thumbnail strips: a video's stored frame times decoded small and laid side by side in one JPEG, made when the
web page first asks for them and kept in the library folder (``thumbs/ID-MTIME.jpg``: a file indexed again after
a change gets a new strip)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from zsvc_pl.data.decoding import VideoDecodeError, open_video, read_frames
from zsvc_pl.data.outputs import atomic_write

HEIGHT = 72  # pixels: a strip of 8 frames of a 16:9 video is about 1000 x 72


def strip(path: str | Path, times: Sequence[float], height: int = HEIGHT) -> bytes:
    """The frames of ``path`` at ``times`` (seconds), each ``height`` pixels high, side by side, as JPEG."""
    from PIL import Image

    video = open_video(path, short_side=height)
    indices = [min(max(0, round(t * video.fps)), video.num_frames - 1) for t in times]
    frames = read_frames(video, indices, str(path))
    if frames.shape[1] != height:  # the short side may be the width: scale to the height instead
        frames = np.stack([np.asarray(Image.fromarray(f).resize(
            (max(1, round(f.shape[1] * height / f.shape[0])), height))) for f in frames])
    out = io.BytesIO()
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(out, "JPEG", quality=80)
    return out.getvalue()


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
    target.parent.mkdir(exist_ok=True)
    atomic_write(target, lambda f: f.write(data), durable=False)
    return data
