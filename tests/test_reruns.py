"""Reruns over a library or a run folder that changed since: nothing stale kept, nothing earlier overwritten."""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, lock_held_elsewhere
from tests.test_integrity import predict_args, rows
from zsvc_pl.cli import main


@pytest.fixture
def library(video_root, tmp_path) -> Path:
    lib = tmp_path / "lib"
    shutil.copytree(Path(video_root, "test"), lib)
    return lib


def replace_content(target: Path, source: Path) -> None:
    """Give ``target`` the bytes of ``source``, with a modification time of its own."""
    shutil.copy(source, target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_video_replaced_since_it_was_tagged_is_tagged_again(tiny_ckpt, library, tmp_path, caplog):
    out = tmp_path / "tags.csv"
    main(predict_args(tiny_ckpt, library, out))
    before = {r["path"]: r for r in rows(out)}
    videos = sorted(before)
    changed, source = Path(videos[0]), Path(videos[-1])
    assert before[str(changed)]["scores"] != before[str(source)]["scores"]
    replace_content(changed, source)
    caplog.clear()
    cli = main(predict_args(tiny_ckpt, library, out))
    assert [r.path for r in cli.datamodule.predict_set.records] == [str(changed)]  # only that one is read again
    assert "7 video(s) already in" in caplog.text and "1 changed since their rows were written" in caplog.text
    after = {r["path"]: r for r in rows(out)}
    assert after[str(changed)]["scores"] == before[str(source)]["scores"]  # the tags of what the file holds now
    assert {p: r for p, r in after.items() if p != str(changed)} == {
        p: r for p, r in before.items() if p != str(changed)}
    changed.write_bytes(b"\x00" * 512)  # now unreadable: its old row must not stand for it
    main(predict_args(tiny_ckpt, library, out))
    assert str(changed) not in {r["path"] for r in rows(out)} and len(rows(out)) == 7
    assert [r["path"] for r in rows(tmp_path / "run" / "errors.csv")] == [str(changed)]


@pytest.mark.parametrize("flag, value, named", [("token_merging", "1", "image_tower"),
                                                 ("attention_temperature", "0.5", "model")])
def test_a_rerun_that_would_score_differently_is_refused(tiny_ckpt, library, tmp_path, capsys, flag, value, named):
    out = tmp_path / "tags.csv"
    main(predict_args(tiny_ckpt, library, out))
    before = out.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # before: "8 already in tags.csv, 0 to go", rows of the old setting kept
        main(predict_args(tiny_ckpt, library, out, '["jump", "run"]', f"--model.{flag}", value))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and f"other settings: {named} (null -> " in err[0]
    assert out.read_bytes() == before
    main(predict_args(tiny_ckpt, library, out))  # the settings of the rows still resume
    assert len(rows(out)) == 8


def fit_args(tiny_ckpt, video_root, folder, *extra):
    return ["fit", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--model.n_ctx", "2",
            "--data.root", str(video_root), "--data.frame_size", "32", "--data.num_frames", "2",
            "--data.num_workers", "0", "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(folder), *extra]


def test_a_second_fit_never_lands_beside_an_earlier_ones_checkpoint(tiny_ckpt, video_root, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    main(fit_args(tiny_ckpt, video_root, run))
    (ckpt,) = (run / "checkpoints").iterdir()
    first = ckpt.read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # before: a -v1 file beside it, and the named one still the first model
        main(fit_args(tiny_ckpt, video_root, run, "--model.lr", "0.01"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert f"already holds the checkpoints of an earlier fit ({ckpt.name}): resume with --ckpt_path {ckpt}" in err[0]
    assert sorted(p.name for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")) == [
        ckpt.name, "fit-config.yaml"]  # nothing of the refused run, not even its config
    assert ckpt.read_bytes() == first
    main(fit_args(tiny_ckpt, video_root, run, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt)))
    files = sorted((run / "checkpoints").iterdir())  # resuming continues in the same folder
    assert not any("-v" in p.name for p in files)
    assert max(torch.load(p, weights_only=True, map_location="cpu")["epoch"] for p in files) == 1


def test_a_fit_into_a_folder_another_fit_is_writing_is_refused(tiny_ckpt, video_root, tmp_path, capsys):
    run = tmp_path / "run"
    with lock_held_elsewhere(run / "checkpoints"):
        with pytest.raises(SystemExit) as e:
            main(fit_args(tiny_ckpt, video_root, run))
        assert e.value.code == 2 and "is being written by another fit" in capsys.readouterr().err
        assert not list((run / "checkpoints").glob("*.ckpt"))
    main(fit_args(tiny_ckpt, video_root, run))  # the lock died with its process
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 1


def test_the_demo_runner_refuses_an_out_with_an_earlier_runs_checkpoints(tmp_path, capsys):
    from zsvc_pl.demo import base2novel

    earlier = tmp_path / "temporal" / "checkpoints"
    earlier.mkdir(parents=True)
    (earlier / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit) as e:  # before any data is generated, not at the first fit
        base2novel.main(["--out", str(tmp_path), "--variants", "zeroshot", "temporal"])
    assert e.value.code == 2 and f"{earlier.parent} holds an earlier run's checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
