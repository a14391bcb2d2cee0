"""Evaluation metrics: micro top-1/top-5 (as papers report), mean class accuracy, base/novel/HM, the open-set
threshold, and ``StageMetrics``, which holds all of them for one evaluation stage."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.aggregation import CatMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from zsvc_pl.model.abstention import fit_threshold, open_set_score


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """top1 and top5 are micro averages (fraction of videos right); mean_class is the mean of per-class
    accuracy over the classes present in the evaluated set."""
    metrics = {
        "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
        "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        "mean_class": MeanClassAccuracy(num_classes),
    }
    return MetricCollection(metrics, prefix=prefix)


class MeanClassAccuracy(Metric):
    """Mean over the classes that have test videos of each class's top-1 accuracy (as papers define it).

    torchmetrics' macro average also counts classes that were only predicted, at 0 %, which lowers the mean
    whenever the label list is larger than the set of classes present.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("correct", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        hit = (scores.argmax(-1) == target).long()
        self.total.index_add_(0, target, torch.ones_like(target))
        self.correct.index_add_(0, target, hit)

    def compute(self) -> torch.Tensor:
        present = self.total > 0
        if not present.any():
            return torch.tensor(0.0)
        return (self.correct[present].float() / self.total[present]).mean()


class BaseNovelAccuracy(Metric):
    """Base-to-novel accuracy (ViFi-CLIP protocol): a base video is classified among the base classes only,
    a novel video among the novel classes only; HM is the harmonic mean of the two top-1 accuracies."""

    full_state_update = False

    def __init__(self, num_classes: int, base_classes: list[int]) -> None:
        super().__init__()
        is_base = torch.zeros(num_classes, dtype=torch.bool)
        is_base[torch.tensor(base_classes, dtype=torch.long)] = True
        self.register_buffer("is_base", is_base, persistent=False)
        for name in ("base_correct", "base_total", "novel_correct", "novel_total"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        is_base = self.is_base.to(logits.device)
        for base, prefix in ((True, "base"), (False, "novel")):
            cols = is_base if base else ~is_base
            rows = is_base[target] if base else ~is_base[target]
            if rows.any() and cols.any():
                masked = logits[rows].masked_fill(~cols, float("-inf"))
                correct = (masked.argmax(-1) == target[rows]).sum()
                setattr(self, f"{prefix}_correct", getattr(self, f"{prefix}_correct") + correct)
                setattr(self, f"{prefix}_total", getattr(self, f"{prefix}_total") + rows.sum())

    def compute(self) -> dict[str, torch.Tensor]:
        base = self.base_correct.float() / self.base_total.clamp(min=1)
        novel = self.novel_correct.float() / self.novel_total.clamp(min=1)
        hm = 2 * base * novel / (base + novel).clamp(min=1e-12)
        return {"base_top1": base, "novel_top1": novel, "hm": hm}


class StageMetrics(nn.Module):
    """What one evaluation stage (``val`` or ``test``) measures over its videos, summed over ranks: top-1/top-5,
    mean class accuracy, videos read, the open-set threshold for 95 % recall, the confusion matrix and, with base
    classes, base/novel/HM. ``compute`` also resets, ready for the next epoch."""

    def __init__(self, num_classes: int, stage: str, base_classes: list[int] | None = None) -> None:
        super().__init__()
        self.stage = stage
        self.accuracy = classification_metrics(num_classes, f"{stage}/")
        self.videos = SumMetric()
        self.open_scores = CatMetric()
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.base_novel = BaseNovelAccuracy(num_classes, base_classes) if base_classes is not None else None

    def count(self, videos: int) -> None:
        """Videos read in a batch; also 0 for a batch of only unreadable videos, so that every rank syncs."""
        self.videos.update(videos)

    def update(self, logits: torch.Tensor, target: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, V, C]`` of a batch against its labels ``[B]``; returns the probabilities ``[B, C]``
        (softmax averaged over views) that the accuracies count."""
        probs = logits.softmax(-1).mean(1)
        self.accuracy.update(probs, target)
        self.open_scores.update(open_set_score(logits.mean(1) / logit_scale))
        self.confusion.update(probs, target)
        if self.base_novel is not None:
            self.base_novel.update(logits.mean(1), target)
        return probs

    def compute(self) -> dict | None:
        """``{"metrics": {name: value}, "confusion": [C, C]}``, or ``None`` when no rank read a video (every rank
        takes the same branch: the count is summed first)."""
        videos = float(self.videos.compute())
        result = None
        if videos > 0:
            stage = self.stage
            metrics = {k: float(v) for k, v in self.accuracy.compute().items()}
            metrics[f"{stage}/videos"] = videos
            metrics[f"{stage}/abstain_at_95"] = fit_threshold(self.open_scores.compute().flatten().cpu(), 0.95)
            if self.base_novel is not None:
                metrics.update({f"{stage}/{k}": float(v) for k, v in self.base_novel.compute().items()})
            result = {"metrics": metrics, "confusion": self.confusion.compute().cpu()}
        for m in (self.accuracy, self.videos, self.open_scores, self.confusion,
                  *([self.base_novel] if self.base_novel is not None else [])):
            m.reset()
        return result
