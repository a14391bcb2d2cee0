"""The training layer: the LightningModule around the model, its metrics, checkpoints and callbacks. Names are
imported when first used."""

from __future__ import annotations

from zsvc_pl.lazy import lazy_names

_WHERE = {
    "VideoClassificationTask": "zsvc_pl.train.task",
    "BackboneMismatchError": "zsvc_pl.train.checkpoints",
    "CheckpointError": "zsvc_pl.train.checkpoints",
}
__all__ = list(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
