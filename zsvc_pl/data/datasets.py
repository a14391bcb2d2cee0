"""A video dataset that never dies on a bad file, and the collate function that keeps bad files visible."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from zsvc_pl.data.annotations import VideoRecord
from zsvc_pl.data.cache import FeatureCache
from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.data.outputs import file_stamp
from zsvc_pl.data.reader import FrameReader
from zsvc_pl.data.sampling import FrameSampler, random_segment_indices


class VideoClassificationDataset(Dataset):
    """Reads the sampled frames of each video as uint8 ``[V, T, 3, S, S]`` (V = clips x crops).

    A video that cannot be read yields ``{"error": reason}`` instead of raising (unless ``on_error="raise"``);
    ``collate_videos`` drops it from the batch and passes the error on. Each item carries the file's ``stamp``
    (size, modification time in ns) taken before it is read, so that outputs kept across runs can tell a file
    changed since (a resumed ``predict`` tags it again). With a feature cache, videos whose frame
    features are cached are served as ``features`` without decoding. For evaluation the cache holds the frames
    the sampler takes; for training (random sampling) it holds ``cache_positions`` evenly spread frames, from
    which every epoch draws one random position per segment, so sampling stays random across epochs; a video
    not cached yet comes as all those frames (``video``) plus the positions drawn (``pick``).

    Args:
        records: the videos and their labels.
        reader: how a file becomes frames (sampling, size, crops, backend, time limit).
        on_error: ``skip`` (default) or ``raise``.
        feature_cache: a bound ``FeatureCache``, or ``None``.
        cache_positions: frames cached per video for training from the cache (random sampling only).
    """

    def __init__(self, records: list[VideoRecord], reader: FrameReader, on_error: str = "skip",
                 feature_cache: FeatureCache | None = None, cache_positions: int | None = None) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.records = records
        self.reader = reader
        self.on_error = on_error
        training = reader.sampler.random
        self.feature_cache = feature_cache if not training or cache_positions else None
        self.dense = None  # training from the cache: the reader of the cached positions
        if training and self.feature_cache is not None:
            self.dense = FrameReader(FrameSampler(cache_positions), reader.frame_size, 1, reader.backend,
                                     reader.timeout_s)

    def __len__(self) -> int:
        return len(self.records)

    def _fail(self, item: dict, error: VideoDecodeError) -> dict:
        if self.on_error == "raise":
            raise error
        return {**item, "error": error.reason}

    def _cached(self, item: dict, reader: FrameReader, views: int) -> torch.Tensor | None:
        """Set the item's cache key for ``reader``'s frames; their cached features ``[views, T, D]`` or ``None``.
        Raises ``VideoDecodeError`` when the file is missing."""
        try:
            item["cache_key"] = self.feature_cache.key(item["path"], reader.sampling_key)
        except OSError as e:
            raise VideoDecodeError(item["path"], f"file not found ({e.strerror})") from e
        return self.feature_cache.get(item["cache_key"], views, reader.sampler.num_frames)

    def _evaluation(self, item: dict) -> dict:
        """The sampled frames' features from the cache, else the decoded frames (to be cached)."""
        features = self._cached(item, self.reader, self.reader.sampler.num_clips * self.reader.num_crops)
        if features is not None:
            return {**item, "features": features}
        return {**item, "video": self.reader.read(item["path"]).frames}

    def _training(self, item: dict, rng: np.random.Generator) -> dict:
        """Training from the cache: random positions among the cached ones, or all those frames to cache."""
        pick = random_segment_indices(self.dense.sampler.num_frames, self.reader.sampler.num_frames, rng)
        features = self._cached(item, self.dense, 1)
        if features is not None:
            return {**item, "features": features[:, pick]}
        return {**item, "video": self.dense.read(item["path"]).frames, "pick": pick}

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        item = {"path": rec.path, "label": rec.label, "index": index}
        if rec.error:
            return self._fail(item, VideoDecodeError(rec.path, rec.error))
        item["stamp"] = file_stamp(rec.path)
        if item["stamp"] is None:
            return self._fail(item, VideoDecodeError(rec.path, "file not found"))
        rng = None
        if self.reader.sampler.random:  # torch's RNG is seeded per worker and epoch by Lightning's seed_everything
            rng = np.random.default_rng([int(torch.randint(2**31, (1,))), index])
        try:
            if self.dense is not None:
                return self._training(item, rng)
            if self.feature_cache is not None:
                return self._evaluation(item)
            return {**item, "video": self.reader.read(rec.path, rng).frames}
        except VideoDecodeError as e:
            return self._fail(item, e)
        except Exception as e:
            return self._fail(item, VideoDecodeError(rec.path, f"{type(e).__name__}: {e}"))


def collate_videos(samples: list[dict]) -> dict:
    """Stack the good samples; the bad ones travel as ``errors: [(path, reason)]``.

    Decoded videos go in ``video`` (their batch positions in ``video_pos``); videos served from the feature
    cache go in ``features`` (positions in ``features_pos``); ``cache_keys`` lists every sample's key when
    the cache is on; ``pick`` (training from the cache) the frame positions to train on for each decoded video;
    ``stamps`` each good sample's file stamp.
    """
    good = [s for s in samples if "error" not in s]
    errors = [(s["path"], s["error"]) for s in samples if "error" in s]
    decoded = [i for i, s in enumerate(good) if "video" in s]
    cached = [i for i, s in enumerate(good) if "features" in s]
    batch = {
        "video": torch.stack([good[i]["video"] for i in decoded]) if decoded else torch.empty(0, dtype=torch.uint8),
        "video_pos": decoded,
        "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "stamps": [s["stamp"] for s in good],
        "errors": errors,
    }
    if cached:
        batch["features"] = torch.stack([good[i]["features"] for i in cached])
        batch["features_pos"] = cached
    if good and "cache_key" in good[0]:
        batch["cache_keys"] = [s["cache_key"] for s in good]
    if decoded and "pick" in good[decoded[0]]:
        batch["pick"] = torch.tensor([good[i]["pick"] for i in decoded], dtype=torch.long)
    return batch
