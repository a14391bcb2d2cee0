"""zsvc_pl: zero-shot video classification with a frozen CLIP model, on PyTorch Lightning.

Layers, lowest first: ``labels`` (pure Python), ``model`` (tensors only) and ``data`` (files -> frames),
``train`` (the LightningModule, metrics, callbacks), then the uses: ``api``, ``timeline``, ``search``,
``moderation``, ``cli``, ``protocols``, ``convert``. No module imports from a layer above its own.
"""

from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.data import VideoDataModule, VideoDecodeError
from zsvc_pl.demo.world import generate_dataset
from zsvc_pl.model import BackboneLoadError, VideoTextModel, create_model, load_clip
from zsvc_pl.train import BackboneMismatchError, VideoClassificationTask

__version__ = "0.2.0"

__all__ = ["ZeroShotVideoClassifier", "VideoClassificationTask", "VideoTextModel", "VideoDataModule",
           "create_model", "load_clip", "BackboneLoadError", "BackboneMismatchError", "VideoDecodeError",
           "generate_dataset", "__version__"]
