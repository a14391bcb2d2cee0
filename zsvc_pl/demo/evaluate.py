"""Attribute-level accuracy on the demo world: is the predicted class right in colour+shape, in direction?"""

from __future__ import annotations

from pathlib import Path

from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.demo.world import DIRECTIONS


def _split(label: str) -> tuple[str, str | None]:
    """``a red circle moving to the left`` -> (``a red circle``, ``left``)."""
    head, sep, direction = label.partition(" moving to the ")
    return head, (direction if sep else None)


def attribute_accuracy(model: ZeroShotVideoClassifier, root: str | Path, labels: list[str],
                       batch_size: int = 16) -> dict[str, float]:
    """Top-1 over ``labels`` for every video under ``root/<label>/``, and how often the prediction gets
    colour+shape right and (for motion labels) the direction right. Chance for direction is 1/4."""
    paths, truth = [], []
    for label in labels:
        for p in sorted(Path(root, label).glob("*.mp4")):
            paths.append(str(p))
            truth.append(label)
    preds = [r[0][0] for r in model.classify(paths, labels, top_k=1, batch_size=batch_size)]
    n = len(paths)
    out = {"videos": n, "top1": sum(p == t for p, t in zip(preds, truth)) / n,
           "colour_shape": sum(_split(p)[0] == _split(t)[0] for p, t in zip(preds, truth)) / n}
    if _split(labels[0])[1] in DIRECTIONS:
        out["direction"] = sum(_split(p)[1] == _split(t)[1] for p, t in zip(preds, truth)) / n
    return out
