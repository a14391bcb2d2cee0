"""Pictures of results: one video's frames and label scores over time; confusion, per-class and base/novel
bars after a test. Plain matplotlib ``Figure`` objects (no pyplot): they save without a screen and show inline
in notebooks, and the user's matplotlib backend is left alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from zsvc_pl.timeline import Timeline


def _wrap(label: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def explain_figure(tl: Timeline, top_k: int = 3, max_frames: int = 8):
    """A strip of sampled frames over a plot of the top labels' per-frame scores against time."""
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


def confusion_figure(confusion: np.ndarray, labels: list[str], max_classes: int = 30, top_pairs: int = 20):
    """Row-normalised confusion matrix; beyond ``max_classes`` classes, the most frequent confusions
    (true -> predicted pairs) as bars instead, which stay readable for any label set."""
    conf = np.asarray(confusion, dtype=float)
    if len(labels) > max_classes:
        return _confused_pairs_figure(conf, labels, top_pairs)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n = len(labels)
    size = max(5.0, 0.42 * n + 3)
    fig = Figure(figsize=(size, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [_wrap(x, 24) for x in labels], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [_wrap(x, 24) for x in labels], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.6, label="fraction of the true class")
    ax.set_title("confusion matrix")
    return fig


def _confused_pairs_figure(conf: np.ndarray, labels: list[str], top: int):
    off = conf.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None)[:top]
    pairs = [(int(i // off.shape[1]), int(i % off.shape[1])) for i in flat if off.flat[i] > 0]
    fig = Figure(figsize=(9, max(2.5, 0.32 * len(pairs) + 1.2)), layout="constrained")
    ax = fig.subplots()
    if not pairs:
        ax.text(0.5, 0.5, "no confusions: every video classified correctly", ha="center", va="center")
        ax.axis("off")
        return fig
    counts = [off[i, j] for i, j in pairs][::-1]
    names = [f"{labels[i]}  \u2192  {labels[j]}" for i, j in pairs][::-1]
    ax.barh(range(len(pairs)), counts, color="tab:red")
    ax.set_yticks(range(len(pairs)), names, fontsize=8)
    ax.set_xlabel("videos (true \u2192 predicted)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"the {len(pairs)} most frequent confusions\n{len(labels)} classes, "
                 f"{int(off.sum())} errors in {int(conf.sum())} videos", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def per_class_figure(confusion: np.ndarray, labels: list[str], base: list[int] | None = None,
                     max_classes: int = 40):
    """Accuracy of each class, sorted, coloured by base/novel when a split is given; with more than
    ``max_classes`` classes, the weakest ``max_classes``."""
    conf = np.asarray(confusion, dtype=float)
    acc = np.diag(conf) / np.maximum(conf.sum(1), 1)
    order = np.argsort(acc, kind="stable")[:max_classes]
    n = len(order)
    fig = Figure(figsize=(7, max(3.0, 0.22 * n + 1)), layout="constrained")
    ax = fig.subplots()
    base_set = set(base or [])
    colours = ["tab:blue" if (not base or i in base_set) else "tab:orange" for i in order]
    ax.barh(range(n), acc[order], color=colours)
    ax.set_yticks(range(n), [labels[i] for i in order], fontsize=7 if n > 30 else 9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 accuracy among all classes")
    title = "per-class accuracy" if n == len(labels) else f"the {n} weakest of {len(labels)} classes"
    ax.set_title(title + ("\n(blue: base, orange: novel)" if base else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def base_novel_figure(metrics: dict[str, float]):
    """Base, novel and harmonic-mean top-1 as bars."""
    names = ["base_top1", "novel_top1", "hm"]
    values = [100 * metrics[k] for k in names]
    fig = Figure(figsize=(4.5, 3.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(["base", "novel", "HM"], values, color=["tab:blue", "tab:orange", "tab:green"])
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylim(0, 105)
    ax.set_ylabel("top-1 (%)")
    ax.set_title("base-to-novel")
    return fig


def save(fig, path: str | Path) -> Path:
    """Write a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
