"""Nothing lost, nothing stale, nothing silent: repeated, interrupted and concurrent runs, hostile names."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, lock_held_elsewhere
from zsvc_pl.cli import main
from zsvc_pl.data import outputs


def predict_args(tiny_ckpt, root, out, labels='["jump", "run"]', *extra):
    return ["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
            "--data.predict_root", str(root), "--data.class_names", labels, "--data.frame_size", "32",
            "--data.num_frames", "4", "--data.num_workers", "0", "--data.batch_size", "2",
            "--predictions.output", str(out), "--trainer.logger", "false",
            "--trainer.default_root_dir", str(Path(out).parent / "run"), "--trainer.enable_progress_bar", "false",
            *extra]


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def library(video_root, tmp_path) -> Path:
    lib = tmp_path / "lib"
    for i, p in enumerate(sorted(Path(video_root, "test").rglob("*.mp4"))):
        (lib / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, lib / f"d{i % 2}" / f"v{i}.mp4")
    return lib


def test_a_rerun_with_other_labels_is_refused_and_overwrite_replaces(tiny_ckpt, library, tmp_path, capsys):
    out = tmp_path / "tags.csv"
    main(predict_args(tiny_ckpt, library, out))
    before = out.read_bytes()
    with pytest.raises(SystemExit) as e:
        main(predict_args(tiny_ckpt, library, out, '["jump", "swim"]'))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings: labels" in err[0] and "--predictions.overwrite" in err[0]
    assert out.read_bytes() == before  # untouched
    main(predict_args(tiny_ckpt, library, out, '["jump", "swim"]', "--predictions.overwrite", "true"))
    got = rows(out)
    assert len(got) == 8 and all(set(r["labels"].split("|")) == {"jump", "swim"} for r in got)


def test_a_grown_library_interrupted_ends_with_each_video_once(tiny_ckpt, library, tmp_path, monkeypatch):
    out = tmp_path / "tags.csv"
    extra = library / "d2"
    extra.mkdir()
    moved = sorted(library.rglob("*.mp4"))[:4]
    for p in moved:  # the library starts with 4 videos, then grows to 8
        p.rename(tmp_path / p.name)
    main(predict_args(tiny_ckpt, library, out))
    assert len(rows(out)) == 4
    for p in moved:
        (tmp_path / p.name).rename(extra / p.name)
    real_append, calls = outputs.Journal.append, []

    def append_then_die(self, new_rows):
        calls.append(1)
        if len(calls) == 2:  # 1: the first batch; 2: the second batch (the carried-over journal is one atomic write)
            raise RuntimeError("killed")
        real_append(self, new_rows)

    monkeypatch.setattr(outputs.Journal, "append", append_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        main(predict_args(tiny_ckpt, library, out))
    monkeypatch.undo()
    assert len(rows(out)) == 4  # the finished output is untouched by the interrupted run
    cli = main(predict_args(tiny_ckpt, library, out))
    assert len(cli.datamodule.predict_set) == 2  # 4 old + 2 from the interrupted run are kept
    paths = [r["path"] for r in rows(out)]
    assert len(paths) == len(set(paths)) == 8


def test_a_kill_at_the_final_rename_loses_nothing(tiny_ckpt, library, tmp_path, monkeypatch):
    out = tmp_path / "tags.csv"
    real_replace = os.replace

    class Killed(BaseException):
        """Stands in for SIGKILL between writing the output and renaming it into place."""

    def replace(src, dst):
        if Path(dst) == out:
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(Killed):
        main(predict_args(tiny_ckpt, library, out))
    monkeypatch.undo()
    assert not out.exists() and not list(tmp_path.glob(".tags.csv.*.tmp"))
    cli = main(predict_args(tiny_ckpt, library, out))
    assert len(cli.datamodule.predict_set) == 0  # all 8 were in the journal
    assert len(rows(out)) == 8


def test_paths_with_line_breaks_and_undecodable_bytes_round_trip(tiny_ckpt, video_root, tmp_path):
    lib = tmp_path / "odd"
    lib.mkdir()
    src = sorted(Path(video_root, "test").rglob("*.mp4"))
    names = [b"form\x0cfeed.mp4", "nel\x85line.mp4".encode(), "line\u2028sep.mp4".encode(), b"latin1-\xe9t\xe9.mp4",
             b"a,b \"quoted\".mp4"]
    for s, name in zip(src, names):
        shutil.copy(s, os.fsdecode(bytes(lib) + b"/" + name))
    expected = sorted(str(p) for p in lib.iterdir())
    for out in (tmp_path / "t.csv", tmp_path / "t.jsonl"):
        main(predict_args(tiny_ckpt, lib, out))
        if out.suffix == ".csv":
            got = [r["path"] for r in rows(out)]
        else:
            got = [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()]
        assert sorted(got) == expected
        again = main(predict_args(tiny_ckpt, lib, out))
        assert len(again.datamodule.predict_set) == 0  # resume read every odd path back right


def test_a_second_concurrent_run_is_refused(tiny_ckpt, library, tmp_path, capsys):
    out = tmp_path / "tags.csv"
    with lock_held_elsewhere(out):
        with pytest.raises(SystemExit) as e:
            main(predict_args(tiny_ckpt, library, out))
        assert e.value.code == 2 and "being written by another run" in capsys.readouterr().err
    main(predict_args(tiny_ckpt, library, out))  # the lock died with its process
    assert len(rows(out)) == 8


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def test_file_names_never_reach_the_network(ramp_video, tmp_path, monkeypatch):
    from zsvc_pl.data.decoding import VideoDecodeError, open_video, read_frames

    listener = Listener()
    try:
        monkeypatch.chdir(tmp_path)
        url_name = f"http:127.0.0.1:{listener.port}?x.mp4"
        shutil.copy(ramp_video, url_name)
        shutil.copy(ramp_video, "a.mp4")
        shutil.copy(ramp_video, "concat:a.mp4|a.mp4")
        Path("playlist.mp4").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                                        f"http://127.0.0.1:{listener.port}/seg.ts\n#EXT-X-ENDLIST\n")
        for backend in ("auto", "sparse", "decord", "pyav"):
            for name in (url_name, "concat:a.mp4|a.mp4"):
                assert read_frames(open_video(name, 32, backend), [0, 5], name).shape[0] == 2  # the local file
            with pytest.raises(VideoDecodeError):
                read_frames(open_video("playlist.mp4", 32, backend), [0], "playlist.mp4")
    finally:
        listener.close()
    assert listener.connections == 0


def test_extreme_aspect_ratios_are_refused_before_decoding(tmp_path):
    import numpy as np

    from zsvc_pl.data.decoding import VideoDecodeError, open_video
    from zsvc_pl.data.transforms import square_crops
    from zsvc_pl.demo.world import write_video

    path = tmp_path / "strip.mp4"
    write_video(path, np.zeros((4, 16, 400, 3), dtype=np.uint8))
    with pytest.raises(VideoDecodeError, match="aspect ratio beyond 16:1"):
        open_video(path, 224)
    wide = np.zeros((2, 10, 150, 3), dtype=np.uint8)  # within the bound: crops cost size x size only
    assert square_crops(wide, 224, 3).shape == (3, 2, 3, 224, 224)


def test_user_mistakes_end_with_one_line_and_a_nonzero_exit(tiny_ckpt, video_root, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        predict_args(tiny_ckpt, empty, tmp_path / "p.csv"),
        ["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
         "--data.root", str(tmp_path / "nowhere")],
        ["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
         "--data.predict_root", str(empty), "--data.label_file", str(tmp_path / "missing.txt")],
        ["test", "--model.num_frames", "8"],
        ["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
         "--data.root", str(tmp_path / "nowhere"), "--data.num_frames", "0"],
        ["fit", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--model.n_ctx", "2",
         "--data.root", str(tmp_path / "nowhere"), "--data.cache_positions", "4"],
    ]
    expected = ["no video files under", "dataset folder not found", "label file not found",
                "model.num_frames has moved to data.num_frames", "data.num_frames must be at least 1, got 0",
                "data.cache_positions (4) must be at least data.num_frames (8)"]
    settings = {  # model settings out of range: before, each ran (exit 0) or crashed after reading every video
        ("top_k", "0"): "model.top_k (labels written per video) must be at least 1, got 0",
        ("zs_mix", "1.5"): "zs_mix (the zero-shot logits' share in evaluation) must be between 0 and 1, got 1.5",
        ("n_ctx", "-1"): "n_ctx must be a whole number from 0 to 64, got -1",
        ("temporal_heads", "0"): "temporal_heads must be a whole number from 1 to 64, got 0",
        ("lr", "0"): "model.lr must be above 0, got 0.0",
        ("text_reg_weight", "-1"): "model.text_reg_weight must be 0 or more, got -1.0",
        ("example_weight", "-1"): "example_weight must be 0 (ignore example clips) or more, got -1.0",
    }
    for (key, value), words in settings.items():
        cases.append(["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                      "--data.root", str(video_root), f"--model.{key}", value])
        expected.append(words)
    cases.append(["test", "--data.root", str(tmp_path / "nowhere"), "--data.num_crops", "2"])
    expected.append("data.num_crops must be 1 or 3 (spatial views per clip), got 2")
    for argv, words in zip(cases, expected):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and words in err[0], (argv, err)


def test_a_stage_that_reads_no_video_fails_after_listing_every_skipped_one(tiny_ckpt, video_root, tmp_path,
                                                                           capsys):
    broken = tmp_path / "broken"
    for split in ("train", "val", "test"):
        for cls in Path(video_root, split).iterdir():
            for video in cls.iterdir():
                dst = broken / split / cls.name / video.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if split == "train":  # training videos stay readable until the last run below
                    shutil.copy(video, dst)
                else:
                    dst.write_bytes(b"\x00" * 512)
    common = ["--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--data.root", str(broken),
              "--data.frame_size", "32", "--data.num_frames", "2", "--data.num_workers", "0",
              "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    n_test = len(list((broken / "test").rglob("*.mp4")))
    runs = {"test": ["test", *common, "--trainer.default_root_dir", str(tmp_path / "t")],
            "validate": ["validate", *common, "--trainer.default_root_dir", str(tmp_path / "v")],
            "predict": predict_args(tiny_ckpt, broken / "test", tmp_path / "p" / "tags.csv"),
            "fit": ["fit", *common, "--model.n_ctx", "2", "--trainer.max_epochs", "1",
                    "--trainer.num_sanity_val_steps", "0", "--trainer.default_root_dir", str(tmp_path / "f")]}
    for stage, argv in runs.items():
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and err[-1].startswith("zsvc_pl: error: ") and "no video could be read" in err[-1]
        folder = Path(argv[argv.index("--trainer.default_root_dir") + 1])
        skipped = rows(folder / "errors.csv")
        assert len(skipped) == (len(list((broken / "val").rglob("*.mp4"))) if stage in ("fit", "validate")
                                else n_test)
        assert f"{len(skipped)} skipped, each with its reason in {folder / 'errors.csv'}" in err[-1]
        assert not (folder / "run.json").exists()  # no card for a run without results
    shutil.rmtree(broken / "train")  # training reads nothing, validation is readable: the training epoch says so
    shutil.copytree(broken / "val", broken / "train")
    shutil.rmtree(broken / "val")
    shutil.copytree(Path(video_root, "val"), broken / "val")
    with pytest.raises(SystemExit) as e:
        main(runs["fit"][:-1] + [str(tmp_path / "f2")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    n_train = len(list((broken / "train").rglob("*.mp4")))
    assert e.value.code == 2 and err.startswith("zsvc_pl: error: fit epoch 0, training: no video could be read "
                                                f"({n_train} skipped")


def test_a_resumed_predict_whose_only_new_file_is_unreadable_still_succeeds(tiny_ckpt, video_root, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(Path(video_root, "test"), lib)
    out = tmp_path / "tags.csv"
    main(predict_args(tiny_ckpt, lib, out))
    (lib / "new.mp4").write_bytes(b"\x00" * 512)  # the library grows by one broken file
    main(predict_args(tiny_ckpt, lib, out))  # the earlier rows stand: nothing to fail on
    assert len(rows(out)) == 8
    assert [r["path"] for r in rows(tmp_path / "run" / "errors.csv")] == [str(lib / "new.mp4")]


def test_the_console_entry_point_exits_0_quietly_and_2_on_a_mistake(tiny_ckpt, video_root, tmp_path):
    script = Path(sys.executable).parent / "zsvc"  # the installed console script, else python -m zsvc_pl
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "zsvc_pl"]
    ok = subprocess.run([*command, "test", "--model.model_name", str(TINY_CONFIG),
                         "--model.pretrained", tiny_ckpt, "--data.root", str(video_root / "test"),
                         "--data.frame_size", "32", "--data.num_frames", "2", "--data.num_workers", "0",
                         "--trainer.enable_progress_bar", "false"], capture_output=True, text=True, cwd=tmp_path,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    printed = ok.stdout + ok.stderr
    assert "zsvc_pl test:" in printed and "test/top1" in printed
    for noise in ("GPU available", "TPU available", "litlogger", "litmodels", "Tip:", "DeprecationWarning"):
        assert noise not in printed, noise
    runs = list((tmp_path / "runs").iterdir())  # outputs in the run's own folder, not the current one
    assert len(runs) == 1 and runs[0].name.startswith("test-") and len(list(runs[0].rglob("test-config.yaml"))) == 1
    assert {p.name for p in tmp_path.iterdir()} == {"runs"}
    bad = subprocess.run([sys.executable, "-m", "zsvc_pl", "test", "--data.root", str(tmp_path / "nowhere"),
                          "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("zsvc_pl: error: dataset folder not found")


def test_a_label_with_a_bar_is_refused_for_csv(tiny_ckpt, library, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(predict_args(tiny_ckpt, library, tmp_path / "t.csv", '["rock|pop", "jazz"]'))
    assert "write JSON Lines instead" in capsys.readouterr().err
    main(predict_args(tiny_ckpt, library, tmp_path / "t.jsonl", '["rock|pop", "jazz"]'))
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 8


def test_nan_weights_are_never_reported_as_results(tiny_ckpt, video_root, tmp_path, capsys):
    import torch

    sd = torch.load(tiny_ckpt, weights_only=True)
    sd["visual.proj"] = torch.full_like(sd["visual.proj"], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(sd, bad)
    with pytest.raises(SystemExit) as e:
        main(["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", str(bad), "--data.root",
              str(video_root / "test"), "--data.frame_size", "32", "--data.num_frames", "2", "--data.num_workers", "0",
              "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run")])
    assert e.value.code == 2 and "non-finite scores" in capsys.readouterr().err


def test_one_label_is_a_question_for_predict_and_a_mistake_for_evaluation(tiny_ckpt, video_root, tmp_path, capsys):
    one = tmp_path / "one"
    shutil.copytree(next(Path(video_root, "test").iterdir()), one / "only class")
    out = tmp_path / "p.jsonl"
    main(predict_args(tiny_ckpt, one, out, '["a red circle"]', "--model.abstain", "0.99"))  # before: a
    got = [json.loads(line) for line in out.read_text().splitlines()]  # torchmetrics error about num_classes
    assert len(got) == 2 and all(r["labels"] == ["none", "a red circle"] for r in got)  # random weights: far
    with pytest.raises(SystemExit) as e:
        main(["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--data.root", str(one),
              "--data.frame_size", "32", "--data.num_frames", "2", "--data.num_workers", "0",
              "--trainer.default_root_dir", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == ["zsvc_pl: error: test needs at least 2 classes to tell apart, got 1 "
                                         "('only class'): accuracy over one class is always 100 %"]


def lying_mkv(path, width: int, height: int, frames: int = 4):
    """A Matroska file whose first MJPEG frame is 64x64 (the size FFmpeg then reports for the stream) and whose
    later frames are ``width`` x ``height``."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=8)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuvj420p"
        for i in range(frames):
            w, h = (64, 64) if i == 0 else (width, height)
            encoder = av.CodecContext.create("mjpeg", "w")
            encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuvj420p"
            encoder.time_base = Fraction(1, 8)
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, 8)
            for packet in [*encoder.encode(frame), *encoder.encode(None)]:
                packet.stream, packet.pts, packet.dts = stream, i, i
                packet.time_base = Fraction(1, 8)
                container.mux(packet)
    return path


def test_frame_limits_hold_for_every_decoded_frame_not_only_the_declared_size(tmp_path, monkeypatch):
    from zsvc_pl.data import backends
    from zsvc_pl.data.decoding import VideoDecodeError, open_video, read_frames

    monkeypatch.setattr(backends, "MAX_PIXELS", 200 * 200)  # the 8192 x 8192 limit, scaled down for a test
    for backend in ("auto", "pyav"):
        with pytest.raises(VideoDecodeError, match="frame size 320x320 exceeds the limit"):
            big = lying_mkv(tmp_path / "big.mkv", 320, 320)
            read_frames(open_video(big, 32, backend), [0, 2], str(big))
        with pytest.raises(VideoDecodeError, match="frame size 400x24: aspect ratio beyond 16:1"):
            strip = lying_mkv(tmp_path / "strip.mkv", 400, 24)
            read_frames(open_video(strip, 32, backend), [0, 2], str(strip))
    honest = lying_mkv(tmp_path / "ok.mkv", 64, 64)
    assert read_frames(open_video(honest, 32), [0, 2], str(honest)).shape == (2, 32, 32, 3)
