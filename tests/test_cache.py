"""Frame-feature cache: the second pass reads features instead of decoding, with identical results."""

import os
from pathlib import Path

import torch

from tests.conftest import TINY_CONFIG
from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.cache import FeatureCache

LABELS = ["a red circle", "a blue square", "a green triangle"]


def test_second_pass_uses_the_cache_and_agrees(tiny_ckpt, video_root, tmp_path, monkeypatch):
    clf = ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, num_frames=4,
                                  feature_cache=str(tmp_path / "cache"))
    videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))
    first = clf.classify(videos, LABELS)
    emb = clf.encode_videos(videos)
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == len(videos)

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("zsvc_pl.data.datasets.VideoClassificationDataset.load", no_decoding)
    assert clf.classify(videos, LABELS) == first
    assert torch.equal(clf.encode_videos(videos), emb)
    new_labels = clf.classify(videos, ["a yellow cross", "a purple circle"])  # only the text is new
    assert len(new_labels) == len(videos)


def test_key_changes_with_file_backbone_and_sampling(tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    k = FeatureCache.key(f, "m:1", "frames=8")
    assert k != FeatureCache.key(f, "m:2", "frames=8") and k != FeatureCache.key(f, "m:1", "frames=16")
    os.utime(f, ns=(1, 1))
    assert FeatureCache.key(f, "m:1", "frames=8") != k
    cache = FeatureCache(tmp_path / "c")
    assert cache.get(k) is None
    cache.put(k, torch.ones(1, 2, 3))
    assert torch.equal(cache.get(k), torch.ones(1, 2, 3))
    next((tmp_path / "c").rglob("*.pt")).write_bytes(b"corrupt")
    assert cache.get(k) is None
