"""The data layer: video file -> frames. Sampling, decoding, the frame reader, annotations, datasets, the data
module, the feature cache and safe output writing. Nothing here knows the model."""

from zsvc_pl.data.annotations import VideoRecord, list_videos
from zsvc_pl.data.datamodule import VideoDataModule
from zsvc_pl.data.datasets import VideoClassificationDataset, collate_videos
from zsvc_pl.data.decoding import VideoDecodeError, open_video
from zsvc_pl.data.reader import FrameReader
from zsvc_pl.data.sampling import DEFAULT_NUM_FRAMES, FrameSampler

__all__ = ["VideoDataModule", "VideoClassificationDataset", "VideoRecord", "collate_videos", "list_videos",
           "VideoDecodeError", "open_video", "FrameReader", "FrameSampler", "DEFAULT_NUM_FRAMES"]
