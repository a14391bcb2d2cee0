"""Where in a video a label happens: per-frame label scores over time, and the span around each peak."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zsvc_pl.data.decoding import open_video, read_frames
from zsvc_pl.data.sampling import segment_indices
from zsvc_pl.data.transforms import square_crops


@dataclass
class Timeline:
    """Per-frame scores of one video: ``scores[t, c]`` is the softmax over labels of frame ``t`` alone."""

    path: str
    labels: list[str]
    times: np.ndarray  # seconds, [T]
    scores: np.ndarray  # [T, C]
    frames: np.ndarray  # uint8 [T, S, S, 3], the frames that were scored

    def peak(self, label: str) -> tuple[float, float]:
        """(time in seconds, score) where ``label`` scores highest."""
        c = self.labels.index(label)
        t = int(self.scores[:, c].argmax())
        return float(self.times[t]), float(self.scores[t, c])

    def span(self, label: str, threshold: float) -> tuple[float, float] | None:
        """The contiguous stretch around the peak where ``label`` scores at least ``threshold``
        (``None`` when even the peak is below it)."""
        c = self.labels.index(label)
        s = self.scores[:, c]
        t = int(s.argmax())
        if s[t] < threshold:
            return None
        lo, hi = t, t
        while lo > 0 and s[lo - 1] >= threshold:
            lo -= 1
        while hi < len(s) - 1 and s[hi + 1] >= threshold:
            hi += 1
        return float(self.times[lo]), float(self.times[hi])


@torch.inference_mode()
def video_timeline(model, path: str | Path, labels: Sequence[str], num_frames: int = 16) -> Timeline:
    """Score ``num_frames`` evenly spread frames of one video against ``labels`` with ``model``
    (a ``ZeroShotVideoClassifier``; its label features and backbone are used, no temporal pooling)."""
    path = str(path)
    video = open_video(path, short_side=model.image_size)
    idx = segment_indices(video.num_frames, num_frames)
    frames = square_crops(read_frames(video, idx, path), model.image_size)[0]  # [T, 3, S, S]
    feats = model.frame_features(frames[None, None].to(model.device))[0, 0]  # [T, D]
    text = model.encode_labels(list(labels))
    scores = (model.logit_scale * F.normalize(feats, dim=-1) @ text.T).softmax(-1)
    return Timeline(path, list(labels), np.array(idx, dtype=float) / video.fps, scores.cpu().numpy(),
                    frames.permute(0, 2, 3, 1).cpu().numpy())
