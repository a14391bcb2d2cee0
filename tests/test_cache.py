"""Frame-feature cache: the second pass reads features instead of decoding, with identical results."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CONFIG
from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.data.cache import FeatureCache

LABELS = ["a red circle", "a blue square", "a green triangle"]


def test_second_pass_uses_the_cache_and_agrees(tiny_ckpt, video_root, tmp_path, monkeypatch):
    clf = ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, num_frames=4,
                                  feature_cache=str(tmp_path / "cache"))
    videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))
    first = clf.classify(videos, LABELS)
    emb = clf.encode_videos(videos)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(videos)

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("zsvc_pl.data.reader.FrameReader.read", no_decoding)
    import zsvc_pl.api

    workers: list[int] = []
    real_loader = zsvc_pl.api.DataLoader

    def recording_loader(*args, **kwargs):
        workers.append(kwargs["num_workers"])
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(zsvc_pl.api, "DataLoader", recording_loader)
    assert clf.classify(videos, LABELS) == first
    assert torch.equal(clf.encode_videos(videos), emb)
    assert workers == [0, 0]  # everything cached: no worker processes started
    new_labels = clf.classify(videos, ["a yellow cross", "a purple circle"])  # only the text is new
    assert len(new_labels) == len(videos)


def test_vision_prompt_states_and_the_plain_tower_never_share_cache_entries(tiny_ckpt, video_root, tmp_path):
    from zsvc_pl.model import create_model

    videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))[:3]
    cache = str(tmp_path / "cache")

    def embeddings(model, cached: bool) -> torch.Tensor:
        return ZeroShotVideoClassifier(model=model, num_frames=4, num_workers=0, device="cpu",
                                       feature_cache=cache if cached else None).encode_videos(videos)

    plain = create_model(str(TINY_CONFIG), tiny_ckpt)
    torch.manual_seed(0)
    prompted = create_model(str(TINY_CONFIG), tiny_ckpt, vision_prompts=2)
    assert not torch.allclose(embeddings(prompted, False), embeddings(plain, False))
    embeddings(plain, True)  # the plain tower's features fill the cache first
    assert torch.allclose(embeddings(prompted, True), embeddings(prompted, False), atol=1e-6)
    assert len(list(Path(cache).rglob("*.npy"))) == 2 * len(videos)
    with torch.no_grad():  # trained further: another prompt state, other entries
        prompted.vision_prompts.tokens.add_(0.5)
    assert torch.allclose(embeddings(prompted, True), embeddings(prompted, False), atol=1e-6)
    assert len(list(Path(cache).rglob("*.npy"))) == 3 * len(videos)


SPRUNG: list[bool] = []


def _spring() -> None:
    SPRUNG.append(True)


class _Trap:
    """Unpickling it calls ``_spring``: what a hostile cache entry on shared storage would do."""

    def __reduce__(self):
        return _spring, ()


def test_key_changes_with_file_backbone_and_sampling(tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    cache = FeatureCache(tmp_path / "c")
    other = FeatureCache(tmp_path / "c").bind("m:2", 3)
    k = cache.bind("m:1", 3).key(f, "frames=8")
    assert k != other.key(f, "frames=8") and k != cache.key(f, "frames=16")
    os.utime(f, ns=(1, 1))
    assert cache.key(f, "frames=8") != k
    assert cache.get(k, 1, 2) is None
    cache.put(k, torch.ones(1, 2, 3))
    assert torch.equal(cache.get(k, 1, 2), torch.ones(1, 2, 3))
    entry = next((tmp_path / "c").rglob("*.npy"))
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) - 4])  # cut short, as a power loss after the rename can leave it
    assert cache.get(k, 1, 2) is None
    entry.write_bytes(b"corrupt")
    assert cache.get(k, 1, 2) is None
    np.save(entry, np.array([_Trap()], dtype=object), allow_pickle=True)  # a pickle is never loaded
    assert cache.get(k, 1, 2) is None and not SPRUNG


def test_the_first_reader_is_part_of_the_sampling_key():
    from zsvc_pl.data.reader import FrameReader
    from zsvc_pl.data.sampling import FrameSampler

    keys = {b: FrameReader(FrameSampler(8), 224, 1, b).sampling_key for b in ("auto", "sparse", "decord", "pyav")}
    assert keys["auto"] == "uniform,frames=8,clips=1,crops=1,size=224"  # keys made before it was recorded hold
    assert len(set(keys.values())) == 4  # decord's pixels never stand in for PyAV's in the cache or a journal


@pytest.mark.parametrize("bad", [torch.full((1, 2, 3), float("nan")), torch.ones(1, 2, 5), torch.ones(2, 2, 3),
                                 torch.ones(1, 2, 3, dtype=torch.float64)])
def test_invalid_entries_count_as_missing(tmp_path, bad):
    cache = FeatureCache(tmp_path).bind("m", 3)
    (tmp_path / "ab").mkdir()
    np.save(tmp_path / "ab" / "ab12.npy", bad.numpy())
    assert cache.get("ab12", 1, 2) is None


def test_garbled_cache_entries_are_recomputed_not_reported(tiny_ckpt, video_root, tmp_path):
    """A cache entry of the wrong shape or with NaN is recomputed: same results as a fresh run."""
    videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))[:3]
    clf = ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, num_frames=4,
                                  feature_cache=str(tmp_path / "cache"), num_workers=0)
    first = clf.classify(videos, LABELS)
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    np.save(entries[0], np.full((1, 4, 32), np.nan, dtype=np.float32))
    np.save(entries[1], np.ones((1, 7, 32), dtype=np.float32))
    again = clf.classify(videos, LABELS)
    assert [[label for label, _ in r] for r in again] == [[label for label, _ in r] for r in first]
    assert all(abs(a[1] - b[1]) < 1e-5 for ra, rb in zip(again, first) for a, b in zip(ra, rb))


def test_cli_test_and_predict_reuse_the_feature_cache(tiny_ckpt, video_root, tmp_path, monkeypatch):
    from zsvc_pl.cli import main

    def run(stage, *extra):
        return main([stage, "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                     "--data.root", str(video_root / "test"), "--data.frame_size", "32", "--data.num_frames", "4",
                     "--data.num_workers", "0", "--data.batch_size", "3", "--data.feature_cache",
                     str(tmp_path / "cache"), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                     "--trainer.default_root_dir", str(tmp_path / stage), *extra])

    first = {k: float(v) for k, v in run("test").trainer.callback_metrics.items() if k.startswith("test/")
             and k not in ("test/seconds", "test/skipped")}
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 8

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr("zsvc_pl.data.reader.FrameReader.read", no_decoding)
    second = {k: float(v) for k, v in run("test").trainer.callback_metrics.items() if k.startswith("test/")
              and k not in ("test/seconds", "test/skipped")}
    assert second == first
    run("predict", "--data.predict_root", str(video_root / "test"), "--predictions.output", str(tmp_path / "p.csv"))
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 9


def test_fit_from_the_cache_decodes_each_video_once_and_keeps_sampling_random(tiny_ckpt, video_root, tmp_path,
                                                                              monkeypatch):
    from lightning import Trainer

    from zsvc_pl import VideoClassificationTask, VideoDataModule
    from zsvc_pl.data.reader import FrameReader

    reads = []
    real_read = FrameReader._read

    def counting_read(self, path, rng=None):
        reads.append(path)
        return real_read(self, path, rng)

    monkeypatch.setattr(FrameReader, "_read", counting_read)
    dm = VideoDataModule(root=str(video_root), num_frames=2, frame_size=32, batch_size=4, num_workers=0,
                         feature_cache=str(tmp_path / "cache"))  # 8 frames per video: 4 cached positions
    model = VideoClassificationTask(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, class_names=dm.class_names,
                                    temporal="transformer")
    before = model.model.temporal.proj.weight.detach().clone()
    trainer = Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                      default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert len(reads) == 8 + 4  # 8 training and 4 validation videos, each decoded in the first epoch only
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 12
    assert not torch.equal(model.model.temporal.proj.weight, before)  # it trained on the cached features
    ds = dm.train_set
    eval_key = ds.feature_cache.key(ds.records[0].path, ds.reader.sampling_key)  # an evaluation entry of the
    ds.feature_cache.put(eval_key, torch.zeros(1, 2, 32))  # same frame count must not stand in for training
    torch.manual_seed(1)
    draws = {tuple(ds[0]["features"][0, :, 0].tolist()) for _ in range(20)}
    assert len(draws) > 1  # each epoch draws other positions among the cached ones
    assert all(len(d) == 2 for d in draws) and (0.0, 0.0) not in draws


def test_fit_from_the_cache_is_refused_when_the_image_tower_trains(tiny_ckpt, video_root, tmp_path):
    from lightning import Trainer

    from zsvc_pl import VideoClassificationTask, VideoDataModule

    dm = VideoDataModule(root=str(video_root), num_frames=2, frame_size=32, num_workers=0,
                         feature_cache=str(tmp_path / "cache"))
    model = VideoClassificationTask(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, class_names=dm.class_names,
                                    temporal="transformer")
    model.model.backbone.visual.proj.requires_grad_(True)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                      default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="acts on the pixels"):
        trainer.fit(model, dm)


def test_fill_cache_command_fills_once_resumes_and_fit_then_decodes_nothing(tiny_ckpt, video_root, tmp_path,
                                                                             monkeypatch, capsys):
    from lightning import Trainer

    from zsvc_pl import VideoClassificationTask, VideoDataModule
    from zsvc_pl.fill_cache import main as fill_main

    cache = tmp_path / "cache"
    args = ["--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--model.temporal", "transformer",
            "--data.root", str(video_root), "--data.num_frames", "2", "--data.frame_size", "32",
            "--data.num_workers", "0", "--data.batch_size", "4", "--data.feature_cache", str(cache)]
    first = fill_main([*args, "--stages", "fit", "test"])
    assert (first["train"]["encoded"], first["val"]["encoded"], first["test"]["encoded"]) == (8, 4, 8)
    assert "train: 8 encoded, 0 already cached, 0 unreadable" in capsys.readouterr().out
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 20
    entries[0].unlink()  # as if the fill had been interrupted before this entry
    again = fill_main([*args, "--stages", "fit", "test"])
    assert sum(c["encoded"] for c in again.values()) == 1
    assert sum(c["already cached"] for c in again.values()) == 19

    def no_decoding(*a, **k):
        raise AssertionError("decoded although the cache was filled")

    monkeypatch.setattr("zsvc_pl.data.reader.FrameReader.read", no_decoding)
    dm = VideoDataModule(root=str(video_root), num_frames=2, frame_size=32, batch_size=4, num_workers=0,
                         feature_cache=str(cache))
    model = VideoClassificationTask(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, class_names=dm.class_names,
                                    temporal="transformer")
    Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
            enable_model_summary=False, default_root_dir=tmp_path).fit(model, dm)


def test_fill_cache_needs_a_cache_folder(tiny_ckpt, video_root, capsys):
    from zsvc_pl.fill_cache import main as fill_main

    with pytest.raises(SystemExit) as exit_info:
        fill_main(["--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                   "--data.root", str(video_root), "--data.num_workers", "0"])
    assert exit_info.value.code == 2
    assert "give --data.feature_cache DIR" in capsys.readouterr().err
