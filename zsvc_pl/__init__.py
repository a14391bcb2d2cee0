"""zsvc_pl: zero-shot video classification with a frozen CLIP model, on PyTorch Lightning.

Layers, lowest first: ``labels`` (pure Python), ``model`` (tensors only) and ``data`` (files -> frames),
``train`` (the LightningModule, metrics, callbacks), then the uses: ``api``, ``timeline``, ``search``,
``moderation``, ``library``, ``web``, ``cli``, ``protocols``, ``convert``. No module imports from a layer above
its own. The names below are imported when first used.
"""

from __future__ import annotations

from zsvc_pl.lazy import lazy_names

__version__ = "0.2.0"

_WHERE = {
    "ZeroShotVideoClassifier": "zsvc_pl.api",
    "VideoClassificationTask": "zsvc_pl.train.task",
    "VideoTextModel": "zsvc_pl.model.video_text",
    "VideoDataModule": "zsvc_pl.data.datamodule",
    "create_model": "zsvc_pl.model.video_text",
    "load_clip": "zsvc_pl.model.backbone",
    "BackboneLoadError": "zsvc_pl.model.backbone",
    "BackboneMismatchError": "zsvc_pl.train.checkpoints",
    "VideoDecodeError": "zsvc_pl.data.decoding",
    "generate_dataset": "zsvc_pl.demo.world",
}
__all__ = [*_WHERE, "__version__"]

__getattr__ = lazy_names(__name__, _WHERE)
