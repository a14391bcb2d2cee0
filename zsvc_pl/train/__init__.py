"""The training layer: the LightningModule around the model, its metrics, checkpoints and callbacks. Names are
imported when first used."""

from __future__ import annotations

import importlib

_WHERE = {
    "VideoClassificationTask": "zsvc_pl.train.task",
    "BackboneMismatchError": "zsvc_pl.train.checkpoints",
    "CheckpointError": "zsvc_pl.train.checkpoints",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    """Import a name's module when it is first used: a command that needs neither Lightning nor matplotlib
    does not pay for them at start-up."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
