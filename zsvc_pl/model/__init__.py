"""The model layer: tensors in, tensors out. Backbone loading, prompts, text features, temporal aggregation,
and the video-text model that joins them. Nothing here reads files or knows Lightning."""

from zsvc_pl.model.backbone import Backbone, BackboneLoadError, load_clip
from zsvc_pl.model.video_text import VideoTextModel, create_model

__all__ = ["Backbone", "BackboneLoadError", "load_clip", "VideoTextModel", "create_model"]
