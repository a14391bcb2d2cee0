"""Checkpoints never lie and are never lost: a killed fit resumes, a killed save keeps the previous file, and a
checkpoint that does not fit the model (missing, extra, backbone or reshaped tensors; damaged files) is refused
in one line."""

import errno
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import TINY_CONFIG
from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.cli import main
from zsvc_pl.train.checkpoints import CheckpointError
from zsvc_pl.train.task import VideoClassificationTask

ROOT = Path(__file__).parent.parent


def fit_args(tiny_ckpt, root, out, *extra):
    """A CoOp + temporal fit with the shipped fit config's checkpoint callback."""
    shipped = yaml.safe_load((ROOT / "configs" / "fit_folder.yaml").read_text())["trainer"]["callbacks"]
    config = Path(out).parent / f"{Path(out).name}-callbacks.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": shipped}}))
    return ["fit", "--config", str(config), "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
            "--model.temporal", "transformer", "--model.n_ctx", "2", "--data.root", str(root),
            "--data.frame_size", "32", "--data.num_frames", "4", "--data.num_workers", "0", "--data.batch_size", "4",
            "--trainer.default_root_dir", str(out), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.check_val_every_n_epoch", "2", *extra]


def test_a_fit_killed_before_its_end_resumes_from_its_last_epoch(tiny_ckpt, video_root, tmp_path, monkeypatch):
    out = tmp_path / "fit"
    real = VideoClassificationTask.on_train_epoch_start

    def killed_at_epoch_3(self):
        if self.current_epoch == 3:
            raise RuntimeError("killed")
        real(self)

    monkeypatch.setattr(VideoClassificationTask, "on_train_epoch_start", killed_at_epoch_3)
    with pytest.raises(RuntimeError, match="killed"):
        main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "5"))
    monkeypatch.undo()
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file(), "a fit killed after 3 of 5 epochs left nothing to resume from"
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] == 2 and saved["global_step"] == 6  # epochs 0, 1, 2 finished, two steps each
    resumed = main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "5", "--ckpt_path", str(last)))
    assert resumed.trainer.current_epoch == 5 and resumed.trainer.global_step == 10
    assert torch.load(last, weights_only=True)["epoch"] == 4


def test_a_kill_while_a_checkpoint_is_saved_leaves_the_previous_one_whole(tiny_ckpt, video_root, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "fit"
    main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "1"))
    last = out / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_rename, real_replace = os.rename, os.replace

    def other_file_system(src, dst, *a, **k):  # TMPDIR on another file system: a rename cannot cross it
        if str(dst).endswith(".ckpt"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *a, **k)

    def copy_killed_halfway(src, dst, *a, **k):
        data = Path(src).read_bytes()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    def replace_killed(src, dst, *a, **k):
        if str(dst).endswith(".ckpt"):
            raise KeyboardInterrupt
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", other_file_system)
    monkeypatch.setattr(shutil, "copyfile", copy_killed_halfway)
    monkeypatch.setattr(os, "replace", replace_killed)
    with pytest.raises(BaseException):
        main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "2", "--ckpt_path", str(last)))
    monkeypatch.undo()
    assert last.read_bytes() == before  # the epoch-0 checkpoint, whole
    assert not list(last.parent.glob(".*.tmp"))
    resumed = main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "2", "--ckpt_path", str(last)))
    assert resumed.trainer.current_epoch == 2


@pytest.fixture(scope="module")
def trained(tiny_ckpt, video_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("trained") / "fit"
    main(fit_args(tiny_ckpt, video_root, out, "--trainer.max_epochs", "1"))
    path = out / "checkpoints" / "last.ckpt"
    return path, torch.load(path, weights_only=True)


def edited(trained, tmp_path, edit) -> Path:
    ckpt = {**trained[1], "state_dict": dict(trained[1]["state_dict"]),
            "hyper_parameters": dict(trained[1]["hyper_parameters"])}
    edit(ckpt)
    path = tmp_path / "edited.ckpt"
    torch.save(ckpt, path)
    return path


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(trained, tiny_ckpt, tmp_path):
    sd = trained[1]["state_dict"]
    cases = {
        "learned tensors are missing .*model.temporal": lambda c: c.update(state_dict={}),
        "learned tensors are missing .*model.temporal.blocks.layers.1": lambda c: c["hyper_parameters"].update(
            temporal_depth=2),
        r"frozen-backbone tensors.*model\.backbone\.visual\.proj": lambda c: c["state_dict"].update(
            {"model.backbone.visual.proj": -torch.ones(8, 8)}),
        "tensors this model does not have .*model.temporal.extra": lambda c: c["state_dict"].update(
            {"model.temporal.extra": torch.ones(2)}),
        "another shape .*model.prompt_learner.ctx": lambda c: c["state_dict"].update(
            {"model.prompt_learner.ctx": torch.zeros(3, sd["model.prompt_learner.ctx"].shape[-1])}),
    }
    for message, edit in cases.items():
        path = edited(trained, tmp_path, edit)
        with pytest.raises(CheckpointError, match=message):
            VideoClassificationTask.load_from_checkpoint(path, weights_only=True)
        with pytest.raises(CheckpointError, match=message):
            ZeroShotVideoClassifier.from_checkpoint(path)


def test_a_damaged_or_foreign_checkpoint_gets_one_line(trained, tiny_ckpt, video_root, tmp_path, capsys):
    good = trained[0].read_bytes()
    files = {
        "truncated.ckpt": good[: len(good) // 2],
        "garbage.ckpt": os.urandom(4096),
        "empty.ckpt": b"",
        "pickled.ckpt": pickle.dumps({"state_dict": {"x": Path("/etc/passwd")}}),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save([1, 2, 3], tmp_path / "a-list.ckpt")
    torch.save({"state_dict": [1, 2]}, tmp_path / "wrongly-typed.ckpt")
    edited(trained, tmp_path, lambda c: c["state_dict"].update({"model.temporal.pos": "text"}))
    shutil.move(tmp_path / "edited.ckpt", tmp_path / "not-a-tensor.ckpt")
    edited(trained, tmp_path, lambda c: c["hyper_parameters"].update(max_frames=10 ** 9))
    shutil.move(tmp_path / "edited.ckpt", tmp_path / "huge.ckpt")
    edited(trained, tmp_path, lambda c: c["state_dict"].update(
        {"model.temporal.pos": torch.zeros(1, 7, 7)}))
    shutil.move(tmp_path / "edited.ckpt", tmp_path / "wrong-shape.ckpt")
    for path in sorted(tmp_path.glob("*.ckpt")):
        argv = ["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                "--data.root", str(video_root), "--data.frame_size", "32", "--data.num_frames", "4",
                "--data.num_workers", "0", "--trainer.default_root_dir", str(tmp_path / "run"),
                "--trainer.logger", "false", "--ckpt_path", str(path)]
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1, (path.name, err)
        assert str(path) in err[0] or path.name == "huge.ckpt", (path.name, err)
        with pytest.raises(CheckpointError):
            ZeroShotVideoClassifier.from_checkpoint(path)
