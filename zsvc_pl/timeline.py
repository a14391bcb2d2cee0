"""Where in a video a label happens: per-frame label scores over time, the span around each peak, a picture."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zsvc_pl.data.reader import FrameReader
from zsvc_pl.model.video_text import VideoTextModel


@dataclass
class Flag:
    """One label that passed its threshold in one video, and when."""

    path: str
    label: str
    score: float
    peak_s: float
    start_s: float
    end_s: float


@dataclass
class Timeline:
    """Per-frame scores of one video: ``scores[t, c]`` is the softmax over labels of frame ``t`` alone."""

    path: str
    labels: list[str]
    times: np.ndarray  # seconds, [T]
    scores: np.ndarray  # [T, C]
    frames: np.ndarray  # uint8 [T, S, S, 3], the frames that were scored
    similarity: np.ndarray | None = None  # [T, C] cosine of each frame with each label's text

    def abstaining(self, threshold: float) -> "Timeline":
        """The same timeline with every label's score set to 0 on frames whose best similarity to any label is
        below ``threshold``: frames that show none of the labels (``zsvc_pl.model.abstention``)."""
        if self.similarity is None:
            raise ValueError("this timeline carries no similarities")
        scores = np.where(self.similarity.max(1, keepdims=True) < threshold, 0.0, self.scores)
        return Timeline(self.path, self.labels, self.times, scores, self.frames, self.similarity)

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

    def flags(self, thresholds: dict[str, float], abstain: float | None = None) -> list[Flag]:
        """The labels whose score passes their threshold, each with its peak and the span around it; with
        ``abstain``, frames far from every label flag nothing."""
        tl = self.abstaining(abstain) if abstain is not None else self
        found = []
        for label, threshold in thresholds.items():
            span = tl.span(label, threshold)
            if span:
                peak_s, score = tl.peak(label)
                found.append(Flag(self.path, label, round(score, 4), round(peak_s, 2), round(span[0], 2),
                                  round(span[1], 2)))
        return found


@torch.inference_mode()
def video_timeline(model: VideoTextModel, reader: FrameReader, path: str | Path, labels: Sequence[str]) -> Timeline:
    """Score the frames ``reader`` samples from one video against ``labels``, each frame on its own (the model's
    label features and backbone; no temporal pooling). The reader's time limit and size bounds apply."""
    path = str(path)
    clip = reader.read(path)
    frames = clip.frames[0]  # [T, 3, S, S]
    feats = model.frame_features(frames[None, None].to(model.device))[0, 0]  # [T, D]
    text = model.text_features(list(labels))
    similarity = F.normalize(feats, dim=-1) @ text.T
    scores = (model.logit_scale * similarity).softmax(-1)
    return Timeline(path, list(labels), np.array(clip.indices[0], dtype=float) / clip.fps, scores.cpu().numpy(),
                    frames.permute(0, 2, 3, 1).cpu().numpy(), similarity.cpu().numpy())


def _wrap(label: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def explain_figure(tl: Timeline, top_k: int = 3, max_frames: int = 8):
    """A strip of sampled frames over a plot of the top labels' per-frame scores against time."""
    import matplotlib
    from matplotlib.figure import Figure

    mean = tl.scores.mean(0)
    top = np.argsort(-mean)[:top_k]
    show = np.linspace(0, len(tl.times) - 1, min(max_frames, len(tl.times))).round().astype(int)
    fig = Figure(figsize=(1.6 * len(show), 5.2), layout="constrained")
    grid = fig.add_gridspec(2, len(show), height_ratios=[1, 1.6])
    for col, t in enumerate(show):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(tl.frames[t])
        ax.set_title(f"{tl.times[t]:.1f} s", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    colours = matplotlib.colormaps["tab10"]
    for rank, c in enumerate(top):
        ax.plot(tl.times, tl.scores[:, c], marker="o", ms=3, color=colours(rank),
                label=f"{tl.labels[c]} (mean {mean[c]:.2f})")
    ax.set_xlabel("time in the video (s)")
    ax.set_ylabel("per-frame probability")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.suptitle(_wrap(str(Path(*Path(tl.path).parts[-2:])), 90), fontsize=10)
    return fig
