"""Encoding videos for a library: each file decoded once, in DataLoader workers, into its segments (the frames
classification samples, plus one every ``every_s`` seconds of a long video), its video embedding (from the
sampled frames alone, as classification computes it) and its thumbnail strip."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.data.reader import FrameReader
from zsvc_pl.library.thumbnails import strip_jpeg

EVERY_S = 2.0  # a new library's segment spacing in long videos (seconds); 0 keeps the sampled frames only
MAX_SEGMENTS = 600  # segments per video at most: a 20-minute video at 2 s; a longer one spreads them


@dataclass
class Encoded:
    """One video as the library stores it."""

    index: int  # position in the paths given
    vector: np.ndarray  # [D] the video embedding
    times: list[float]  # seconds of its segments, sorted
    features: np.ndarray  # [N, D] the segments' image features
    duration: float
    strip: bytes  # JPEG


class SegmentDataset(Dataset):
    """Per path: its segments' crops, times, duration and thumbnail strip, or ``{"error": reason}``."""

    def __init__(self, paths: Sequence[str], reader: FrameReader, every_s: float, max_segments: int) -> None:
        self.paths, self.reader, self.every_s, self.max_segments = list(paths), reader, every_s, max_segments

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            s = self.reader.read_segments(path, self.every_s, self.max_segments)
        except VideoDecodeError as e:
            return {"index": index, "path": path, "error": e.reason}
        except Exception as e:  # a damaged file may fail anywhere in a decoder: it is reported, not raised
            return {"index": index, "path": path, "error": f"{type(e).__name__}: {e}"}
        return {"index": index, "path": path, "frames": s.frames, "times": s.times, "uniform": s.uniform,
                "duration": s.duration, "strip": strip_jpeg(s.pictures)}


def encode_segments(model: ZeroShotVideoClassifier, paths: Sequence[str], every_s: float, max_segments: int,
                    batch_frames: int = 64, errors: list | None = None) -> Iterator[Encoded]:
    """The videos of ``paths`` encoded in order, ``batch_frames`` frames through the image tower at a time;
    unreadable ones are appended to ``errors`` as ``(path, reason)``. Decoding workers start by forkserver:
    the caller holds a database's threads, which a forked child would inherit mid-state."""
    ds = SegmentDataset(paths, model.reader(), every_s, max_segments)
    workers = min(model.num_workers, len(ds)) if len(ds) > 1 else 0
    context = ("forkserver" if "forkserver" in mp.get_all_start_methods() else None) if workers else None
    loader = DataLoader(ds, batch_size=None, num_workers=workers, multiprocessing_context=context)
    waiting: list[dict] = []
    for item in loader:
        if "error" in item:
            if errors is None:
                raise VideoDecodeError(item["path"], item["error"])
            errors.append((item["path"], item["error"]))
            continue
        waiting.append(item)
        if sum(len(w["times"]) for w in waiting) >= batch_frames:
            yield from _encode(model, waiting, batch_frames)
            waiting = []
    yield from _encode(model, waiting, batch_frames)


@torch.inference_mode()
def _encode(model: ZeroShotVideoClassifier, items: list[dict], batch_frames: int) -> Iterator[Encoded]:
    if not items:
        return
    frames = torch.cat([w["frames"] for w in items])
    tower = model.model
    features = torch.cat([tower.frame_features(frames[i : i + batch_frames][None, None].to(model.device))[0, 0]
                          for i in range(0, len(frames), batch_frames)]).float()
    at = 0
    for w in items:
        f = features[at : at + len(w["times"])]
        at += len(w["times"])
        vector = tower.video_features(f[w["uniform"]][None, None]).float().cpu().numpy()[0]
        yield Encoded(w["index"], vector, w["times"], f.cpu().numpy(), w["duration"], w["strip"])
