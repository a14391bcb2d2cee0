"""Evaluation under DDP (2 CPU processes, gloo) counts every video exactly once and matches one process."""

import shutil
from pathlib import Path

import pytest
from lightning import Trainer

from tests.conftest import TINY_CONFIG
from zsvc_pl import VideoClassificationTask, VideoDataModule


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
    model = VideoClassificationTask(model_name=str(TINY_CONFIG), pretrained=ckpt, class_names=dm.class_names)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                      enable_model_summary=False, **trainer_kw)
    return trainer.test(model, dm, verbose=False)[0]


def ddp_args(stage, ckpt, tmp_path, *extra):
    return [stage, "--model.model_name", str(TINY_CONFIG), "--model.pretrained", ckpt, "--data.frame_size", "32",
            "--data.num_frames", "4", "--data.num_workers", "0", "--data.batch_size", "2",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path), *extra]


def test_ddp_test_counts_each_video_once_with_figures_and_errors_every_time(odd_root, tiny_ckpt, tmp_path):
    """Each of 7 videos counted once over 2 ranks (a padding sampler would count one twice), the same metrics as
    one process; figures and the error report run on rank 0 only, and nothing there may wait for the other rank
    (two runs in a row in one process)."""
    from zsvc_pl.cli import main

    root = tmp_path / "data"
    shutil.copytree(odd_root, root)
    (next(root.iterdir()) / "broken.mp4").write_bytes(b"\x00" * 100)
    single = evaluate(root, tiny_ckpt, tmp_path / "one", devices=1)
    for run in range(2):
        cli = main(ddp_args("test", tiny_ckpt, tmp_path / f"r{run}", "--data.root", str(root)))
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        assert metrics["test/videos"] == single["test/videos"] == 7
        for k in ("test/top1", "test/top5", "test/mean_class"):
            assert metrics[k] == pytest.approx(single[k], abs=1e-6), k
        (figure,) = (tmp_path / f"r{run}").rglob("confusion.png")  # the logger's folder, as rank 0 made it
        (errors,) = (tmp_path / f"r{run}").rglob("errors.csv")
        assert figure.parent.parent == errors.parent
        assert len(errors.read_text().splitlines()) == 2  # header + the broken file, once


def test_ddp_predict_writes_the_one_output_each_video_once_and_resumes(odd_root, tiny_ckpt, tmp_path):
    import csv

    from zsvc_pl.cli import main

    out = tmp_path / "tags.csv"
    argv = ddp_args("predict", tiny_ckpt, tmp_path / "run", "--data.predict_root", str(odd_root),
                    "--data.class_names", '["jump", "run"]', "--predictions.output", str(out))
    main(argv)
    paths = [r["path"] for r in csv.DictReader(open(out))]
    assert sorted(paths) == sorted(str(p) for p in odd_root.rglob("*.mp4")) and len(paths) == 7
    assert not list(tmp_path.glob("*rank*")) and not list(tmp_path.glob(".tags.csv.journal.rank*"))
    main(argv)  # all done: resume under DDP finds every video
    assert [r["path"] for r in csv.DictReader(open(out))] == paths
