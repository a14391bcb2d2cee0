"""Data: frame sampling, decoding, transforms, datasets and the DataModule."""

from zsvc_pl.data.datamodule import VideoDataModule
from zsvc_pl.data.datasets import VideoClassificationDataset, VideoRecord, collate_videos
from zsvc_pl.data.decoding import VideoDecodeError, open_video
from zsvc_pl.data.sampling import FrameSampler

__all__ = ["VideoDataModule", "VideoClassificationDataset", "VideoRecord", "collate_videos",
           "VideoDecodeError", "open_video", "FrameSampler"]
