"""Pictures of a test run: confusion matrix, per-class accuracy, base/novel bars; the callback that saves them.

Plain matplotlib ``Figure`` objects (no pyplot): they save without a screen and show inline in notebooks, and the
user's matplotlib backend is left alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from zsvc_pl.data.outputs import atomic_write
from zsvc_pl.train.callbacks import run_dir


def _wrap(label: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


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
    bars = ax.barh(range(n), acc[order], color=colours)
    ax.bar_label(bars, labels=[f"{100 * a:.0f} %" for a in acc[order]], fontsize=7, padding=2)  # 0 % stays visible
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
    """Write a figure as PNG, atomically."""
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    return path


class ResultPlots(Callback):
    """After ``test``: confusion matrix, per-class accuracy and (base-to-novel) base/novel bars as PNG files in
    the run folder, also logged to TensorBoard when that logger is on."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = run_dir(trainer) / "figures"  # every rank: the logger's folder is a collective under DDP
        res = getattr(pl_module, "last_results", {}).get("test")
        if res is None or not trainer.is_global_zero:
            return
        labels = pl_module.class_names
        conf = res["confusion"].numpy()
        figures = {"confusion": confusion_figure(conf, labels),
                   "per_class_accuracy": per_class_figure(conf, labels, pl_module.base_classes)}
        if "test/hm" in res["metrics"]:
            figures["base_novel"] = base_novel_figure({k.split("/")[-1]: v for k, v in res["metrics"].items()})
        for name, fig in figures.items():
            for logger in trainer.loggers:
                if hasattr(logger.experiment, "add_figure"):
                    logger.experiment.add_figure(f"test/{name}", fig, global_step=trainer.global_step)
            save(fig, folder / f"{name}.png")
        rank_zero_info(f"zsvc_pl test: figures written to {folder}")
