"""The data layer: video file -> frames. Sampling, decoding, the frame reader, annotations, datasets, the data
module, the feature cache and safe output writing. Nothing here knows the model. Names are imported when first
used (the data module needs Lightning; reading frames does not)."""

from __future__ import annotations

from zsvc_pl.lazy import lazy_names

_WHERE = {
    "VideoDataModule": "zsvc_pl.data.datamodule",
    "VideoClassificationDataset": "zsvc_pl.data.datasets",
    "VideoRecord": "zsvc_pl.data.annotations",
    "collate_videos": "zsvc_pl.data.datasets",
    "list_videos": "zsvc_pl.data.annotations",
    "VideoDecodeError": "zsvc_pl.data.decoding",
    "open_video": "zsvc_pl.data.decoding",
    "FrameReader": "zsvc_pl.data.reader",
    "FrameSampler": "zsvc_pl.data.sampling",
    "DEFAULT_NUM_FRAMES": "zsvc_pl.data.sampling",
}
__all__ = list(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
