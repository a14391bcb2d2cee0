"""LightningCLI end to end, in process (main(args)) and as `python -m zsvc_pl`."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_CONFIG
from zsvc_pl.cli import main


def args(stage, tiny_ckpt, root, out, *extra):
    return [stage, "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
            "--data.root", str(root), "--data.frame_size", "32", "--data.num_frames", "4",
            "--data.num_workers", "0", "--trainer.default_root_dir", str(out), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", *extra]


def test_zero_shot_test_reports_metrics_and_errors_file(tiny_ckpt, video_root, tmp_path):
    root = tmp_path / "data"
    for p in Path(video_root, "test").rglob("*.mp4"):
        dst = root / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    bad = root / "a red circle moving to the left" / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    cli = main(args("test", tiny_ckpt, root, tmp_path / "run"))
    metrics = cli.trainer.callback_metrics
    assert {"test/top1", "test/top5", "test/mean_class"} <= set(metrics)
    assert 0.0 <= float(metrics["test/top1"]) <= 1.0 and float(metrics["test/top5"]) == 1.0  # 4 classes
    rows = list(csv.DictReader(open(tmp_path / "run" / "errors.csv")))
    assert [r["path"] for r in rows] == [str(bad)]
    assert "not a readable video" in rows[0]["reason"]


def test_fit_then_test_from_checkpoint_and_resume(tiny_ckpt, video_root, tmp_path):
    out = tmp_path / "fit"
    extra = ["--model.temporal", "transformer", "--model.n_ctx", "2", "--trainer.max_epochs", "1",
             "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_last=true"]
    main(args("fit", tiny_ckpt, video_root, out, *extra))
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and last.stat().st_size < 200_000
    cfg = yaml.safe_load(open(out / "fit-config.yaml"))
    assert cfg["model"]["temporal"] == "transformer"
    cli = main(args("test", tiny_ckpt, video_root, out / "t", "--model.temporal", "transformer",
                    "--model.n_ctx", "2", "--ckpt_path", str(last)))
    assert "test/top1" in cli.trainer.callback_metrics
    resumed = main(args("fit", tiny_ckpt, video_root, out / "r", *extra[:4], "--trainer.max_epochs", "2",
                        "--ckpt_path", str(last)))
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2  # 1 step per epoch, resumed at 1


def test_predict_writes_one_row_per_video(tiny_ckpt, video_root, tmp_path):
    out = tmp_path / "pred.jsonl"
    main(["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
          "--model.top_k", "2", "--data.predict_root", str(video_root / "test"), "--data.class_names",
          '["jump", "run", "swim"]', "--data.frame_size", "32", "--data.num_frames", "4", "--data.num_workers", "0",
          "--predictions.output", str(out), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and all(len(r["labels"]) == 2 for r in rows)
    assert all(set(r["labels"]) <= {"jump", "run", "swim"} and r["scores"][0] >= r["scores"][1] for r in rows)


def test_python_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "zsvc_pl", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    verbs = [line.split()[0] for line in res.stdout.splitlines() if line.startswith("  ")]
    assert verbs == ["fit", "validate", "test", "predict", "index", "import", "search", "like", "tag", "moderate",
                     "export", "status", "watch", "serve"]  # every verb, one line each
    res = subprocess.run([sys.executable, "-m", "zsvc_pl"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "usage: zsvc VERB" in res.stderr  # no verb: a mistake
    res = subprocess.run([sys.executable, "-m", "zsvc_pl", "fit", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--trainer" in res.stdout  # the Lightning verbs keep their full help


def test_help_starts_nothing_heavy():
    code = ("import contextlib, io, sys\nsys.argv = ['zsvc', '--help']\nfrom zsvc_pl.commands import console\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    console()\n"
            "print(sorted(m for m in ('torch', 'lightning', 'lancedb') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_the_library_and_its_web_page_start_without_lightning_or_matplotlib():
    """They are imported by the verbs that need them (fit, test, pictures), not by ``import zsvc_pl``."""
    code = ("import sys, zsvc_pl, zsvc_pl.library, zsvc_pl.web.serve, zsvc_pl.api\n"
            "print(sorted(m for m in ('lightning', 'matplotlib', 'open_clip') if m in sys.modules))\n"
            "print(zsvc_pl.ZeroShotVideoClassifier.__module__, zsvc_pl.VideoDataModule.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["[]", "zsvc_pl.api zsvc_pl.data.datamodule"]


def test_predict_resumes_after_an_interruption(tiny_ckpt, video_root, tmp_path):
    out = tmp_path / "tags.csv"
    argv = ["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
            "--data.predict_root", str(video_root / "test"), "--data.class_names", '["jump", "run"]',
            "--data.frame_size", "32", "--data.num_frames", "4", "--data.num_workers", "0", "--data.batch_size", "2",
            "--predictions.output", str(out), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    main(argv)
    full = list(csv.DictReader(open(out)))
    assert len(full) == 8
    # an interruption after 3 videos: no output yet, a journal with 3 rows and a 4th cut mid-line
    journal = tmp_path / ".tags.csv.journal"
    lines = journal.read_text().split("\n")
    out.unlink()
    journal.write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])
    cli = main(argv)
    assert len(cli.datamodule.predict_set) == 5  # the cut row is done again
    rows = list(csv.DictReader(open(out)))
    assert [r["path"] for r in rows] == [r["path"] for r in full]  # each video once, in folder order


def test_test_figures_go_to_the_run_folder_and_tensorboard(tiny_ckpt, video_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli = main(["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                "--data.root", str(video_root / "test"), "--data.frame_size", "32", "--data.num_frames", "4",
                "--data.num_workers", "0", "--trainer.logger", "TensorBoardLogger",
                "--trainer.logger.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    run = Path(cli.trainer.log_dir)
    assert {p.name for p in (run / "figures").glob("*.png")} == {"confusion.png", "per_class_accuracy.png"}
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"test/confusion", "test/per_class_accuracy"} <= set(events.Tags()["images"])


def test_the_shipped_predict_config_writes_into_the_run_folder_only(tiny_ckpt, video_root, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    main(["predict", "--config", str(Path(__file__).parents[1] / "configs" / "predict_folder.yaml"),
          "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--model.top_k", "2",
          "--data.predict_root", str(video_root / "test"), "--data.class_names", '["jump", "run", "swim"]',
          "--data.frame_size", "32", "--data.num_frames", "4", "--data.num_workers", "0",
          "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"])
    assert list(cwd.iterdir()) == []
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8


@pytest.mark.parametrize("argv, hint", [
    (["test", "--data.numframes", "4"], "--data.numframes: did you mean --data.num_frames"),
    (["test", "--data.num_frame", "4"], "--data.num_frame: did you mean --data.num_frames"),  # no abbreviations
    (["predict", "--model.towr", "auto"], "--model.towr: did you mean --model.tower"),
    (["search", "lib", "a dog", "--top", "2"], "--top: did you mean --top-k"),
    (["serve", "lib", "--prot", "1"], "--prot: did you mean --port"),
])
def test_a_mistyped_flag_is_one_line_naming_the_closest_flags(argv, hint, tmp_path, monkeypatch, capsys):
    from zsvc_pl.commands import console

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zsvc", *argv])
    with pytest.raises(SystemExit) as stop:
        console()
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: unrecognized arguments" in lines[0] and hint in lines[0], lines


def test_ctrl_c_ends_in_one_line_saying_how_to_go_on_and_exit_130(tiny_ckpt, video_root, tmp_path, monkeypatch,
                                                                   capsys):
    from zsvc_pl.train.task import VideoClassificationTask

    out = tmp_path / "pred.jsonl"
    argv = ["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
            "--data.predict_root", str(video_root / "test"), "--data.class_names", '["jump", "run", "swim"]',
            "--data.frame_size", "32", "--data.num_frames", "4", "--data.num_workers", "0", "--data.batch_size", "2",
            "--predictions.output", str(out), "--trainer.logger", "false", "--trainer.default_root_dir",
            str(tmp_path)]
    real, calls = VideoClassificationTask.predict_step, []

    def ctrl_c_on_the_third_batch(self, batch, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch, *a, **k)

    monkeypatch.setattr(VideoClassificationTask, "predict_step", ctrl_c_on_the_third_batch)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1] == "zsvc predict: interrupted; rerun the same command to resume (finished videos are kept)"
    assert not any("Detected KeyboardInterrupt" in line for line in err)
    monkeypatch.setattr(VideoClassificationTask, "predict_step", real)
    main(argv)  # the rerun resumes
    assert len(out.read_text().splitlines()) == 8
    monkeypatch.setattr(VideoClassificationTask, "training_step", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    with pytest.raises(SystemExit) as stop:
        main(args("fit", tiny_ckpt, video_root, tmp_path / "fit", "--model.n_ctx", "2"))
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "zsvc fit: interrupted; no checkpoint was written yet: rerun to start again")
