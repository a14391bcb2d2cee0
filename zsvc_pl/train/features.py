"""Frame features of a collated batch: encoded for decoded videos (and stored in the feature cache), read for
videos the cache held. Shared by the training task, the API and ``fill_cache``."""

from __future__ import annotations

import torch

from zsvc_pl.model.video_text import VideoTextModel


def batch_features(model: VideoTextModel, batch: dict, cache=None) -> torch.Tensor:
    """Frame features ``[B, V, T, D]`` of a collated batch: encoded for decoded videos (and stored in ``cache``, a
    bound ``FeatureCache``, when given), read for videos the cache already held. When training from the cache,
    decoded videos bring all their cached positions and ``pick`` says which to train on. Used by the task and
    the API."""
    parts = {}
    if batch["video"].numel():
        feats = model.frame_features(batch["video"].to(model.device))
        if cache is not None and "cache_keys" in batch:
            for pos, f in zip(batch["video_pos"], feats):
                cache.put(batch["cache_keys"][pos], f)
        if "pick" in batch:
            feats = torch.stack([f[:, p] for f, p in zip(feats, batch["pick"].to(feats.device))])
        parts.update(zip(batch["video_pos"], feats))
    if "features" in batch:
        parts.update(zip(batch["features_pos"], batch["features"].to(model.device, torch.float32)))
    return torch.stack([parts[i] for i in range(len(batch["path"]))])
