"""Answering "none of these": an open-set score per video, a threshold fitted on known videos, its AUROC.

The score is the highest similarity between the video and a label (the cosine with the label's text, plus
the example term when labels come with example clips): a video outside the list is far from every label.
On the demo world it separates held-out classes better than the highest softmax probability (AUROC in the
README, ``benchmarks/labels_by_example.py``). The threshold is fitted on a small labelled sample of videos
whose label is in the list: the score below which only ``1 - recall`` of them fall. Below it, the answer is
``none``.
"""

from __future__ import annotations

import torch

NONE_LABEL = "none"


def open_set_score(similarities: torch.Tensor) -> torch.Tensor:
    """Video-label similarities ``[N, C]`` -> the open-set score ``[N]`` (higher: more likely in the list)."""
    return similarities.max(dim=-1).values


def fit_threshold(known_scores: torch.Tensor, recall: float = 0.95) -> float:
    """The score that keeps ``recall`` of videos whose label is in the list (their scores ``[N]``)."""
    if not 0 < recall <= 1:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    if len(known_scores) == 0:
        raise ValueError("fitting an abstention threshold needs at least one labelled video")
    return float(torch.quantile(known_scores.double(), 1 - recall, interpolation="lower"))


def auroc(known_scores: torch.Tensor, unknown_scores: torch.Tensor) -> float:
    """Probability that a known video outscores an unknown one (ties count half): 0.5 is chance."""
    k, u = known_scores.double()[:, None], unknown_scores.double()[None, :]
    return float(((k > u).double() + 0.5 * (k == u).double()).mean())
