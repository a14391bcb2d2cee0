"""Evaluation under DDP (2 CPU processes, gloo) counts every video exactly once and matches one process."""

import shutil
from pathlib import Path

import pytest
from lightning import Trainer

from tests.conftest import TINY_CONFIG
from zsvc_pl import VideoDataModule, ZeroShotVideoClassifier


@pytest.fixture(scope="module")
def odd_root(video_root, tmp_path_factory):
    """7 test videos: not divisible by 2 ranks, so a padding sampler would count one twice."""
    root = tmp_path_factory.mktemp("odd")
    videos = sorted(Path(video_root, "test").rglob("*.mp4"))[:7]
    for p in videos:
        dst = root / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    return root


def evaluate(root, ckpt, tmp_path, **trainer_kw):
    dm = VideoDataModule(root=str(root), num_frames=4, frame_size=32, batch_size=2, num_workers=0)
    model = ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=ckpt, num_frames=4,
                                    class_names=dm.class_names)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                      enable_model_summary=False, **trainer_kw)
    return trainer.test(model, dm, verbose=False)[0]


def test_ddp_test_counts_each_video_once(odd_root, tiny_ckpt, tmp_path):
    single = evaluate(odd_root, tiny_ckpt, tmp_path / "one", devices=1)
    ddp = evaluate(odd_root, tiny_ckpt, tmp_path / "two", devices=2, strategy="ddp_spawn")
    assert single["test/videos"] == 7 and ddp["test/videos"] == 7
    for k in ("test/top1", "test/top5", "test/mean_class"):
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), k
