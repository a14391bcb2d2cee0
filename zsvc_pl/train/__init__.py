"""The training layer: the LightningModule around the model, its metrics, checkpoints and callbacks."""

from zsvc_pl.train.checkpoints import BackboneMismatchError, CheckpointError
from zsvc_pl.train.task import VideoClassificationTask

__all__ = ["VideoClassificationTask", "BackboneMismatchError", "CheckpointError"]
