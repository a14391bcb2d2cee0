"""zsvc_pl: zero-shot video classification with a frozen CLIP model, on PyTorch Lightning."""

from zsvc_pl.backbone import BackboneLoadError, load_clip
from zsvc_pl.data import VideoDataModule, VideoDecodeError
from zsvc_pl.demo.world import generate_dataset
from zsvc_pl.module import BackboneMismatchError, ZeroShotVideoClassifier

__version__ = "0.1.0"

__all__ = ["ZeroShotVideoClassifier", "VideoDataModule", "load_clip", "BackboneLoadError",
           "BackboneMismatchError", "VideoDecodeError", "generate_dataset", "__version__"]
