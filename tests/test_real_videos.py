"""The zero-shot path over every real clip in $ZSVC_REAL_VIDEOS/manifest.csv (skipped when unset)."""

import csv
import os
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG
from zsvc_pl import VideoDataModule
from zsvc_pl.cli import main
from zsvc_pl.labels import LabelError, label_key


def distinct_labels(labels) -> list[str]:
    """The clips come from several datasets; UCF101's PlayingGuitar and Kinetics' playing_guitar are one label."""
    seen = {}
    for label in sorted(labels):
        seen.setdefault(label_key(label), label)
    return sorted(seen.values())

ROOT = os.environ.get("ZSVC_REAL_VIDEOS")
ROOT = str(Path(ROOT).resolve()) if ROOT else None  # outputs name videos by absolute path
pytestmark = pytest.mark.skipif(not ROOT or not Path(ROOT, "manifest.csv").is_file(),
                                reason="set ZSVC_REAL_VIDEOS to the real clips folder")


def test_every_clip_gets_a_result_or_a_named_error(tiny_ckpt, tmp_path):
    rows = list(csv.DictReader(open(Path(ROOT, "manifest.csv"))))
    labelled = [r for r in rows if r["label"] != "_robustness"]
    robustness = [r for r in rows if r["label"] == "_robustness"]
    out = tmp_path / "pred.csv"
    main(["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
          "--model.top_k", "3", "--data.predict_root", ROOT, "--data.class_names",
          str(distinct_labels({r["label"] for r in labelled})), "--data.frame_size", "32", "--data.num_frames", "4",
          "--data.batch_size", "8", "--data.num_workers", "2", "--predictions.output", str(out),
          "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar",
          "false"])
    predicted = {r["path"]: r for r in csv.DictReader(open(out))}
    errors = {r["path"]: r["reason"] for r in csv.DictReader(open(tmp_path / "errors.csv"))} \
        if (tmp_path / "errors.csv").exists() else {}
    for r in labelled:
        path = str(Path(ROOT, r["path"]))
        assert path in predicted, f"labelled clip without a result: {r['path']} ({errors.get(path)})"
        assert len(predicted[path]["labels"].split("|")) == 3
    for r in robustness:
        path = str(Path(ROOT, r["path"]))
        assert (path in predicted) != (path in errors), r["path"]
        if path in errors:
            assert errors[path].strip()
    assert len(predicted) + len(errors) == len(rows)


def test_labelled_clips_flow_through_zero_shot_test(tiny_ckpt, tmp_path):
    with pytest.raises(LabelError, match="'PlayingGuitar' .* and 'playing_guitar'"):
        VideoDataModule(root=ROOT, num_workers=0)  # two datasets' spellings of one class: refused, both named
    rows = [r for r in csv.DictReader(open(Path(ROOT, "manifest.csv"))) if r["label"] != "_robustness"]
    labels = distinct_labels({r["label"] for r in rows})
    assert len(labels) == 52
    cli = main(["test", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                "--data.root", ROOT, "--data.class_names", str(labels), "--data.frame_size", "32",
                "--data.num_frames", "2", "--data.batch_size", "8", "--data.num_workers", "2", "--trainer.logger",
                "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    metrics = cli.trainer.callback_metrics
    assert 0 <= float(metrics["test/top1"]) <= float(metrics["test/top5"]) <= 1
    unlisted = sum(r["label"] not in labels for r in rows)  # the playing_guitar clips: reported, not dropped
    assert float(metrics["test/videos"]) + float(metrics["test/skipped"]) == len(rows) and unlisted > 0


def test_sparse_decoding_matches_a_full_decode_on_every_real_clip():
    """Seeking and dropping unneeded frames must not change a single pixel of the frames a model sees."""
    import numpy as np

    from zsvc_pl.data import decoding
    from zsvc_pl.data.sampling import segment_indices

    compared = 0
    for r in csv.DictReader(open(Path(ROOT, "manifest.csv"))):
        path = str(Path(ROOT, r["path"]))
        try:
            video = decoding.open_video(path, short_side=224)
            if not isinstance(video, decoding._SparseVideo):
                continue
            indices = segment_indices(video.num_frames, 8)
            decoding.read_frames(video, indices, path)
        except decoding.VideoDecodeError:
            continue  # the unreadable clips are the first test's business
        sparse = video.get(indices)  # no fallback: these frames come from sparse decoding itself
        full = decoding._PyAVVideo(path, short_side=224)
        assert full.num_frames == video.num_frames, r["path"]
        assert np.array_equal(sparse, decoding.read_frames(full, indices, path)), r["path"]
        compared += 1
    assert compared >= 40  # most real clips are MP4/MOV/MKV


def test_the_rotated_phone_clip_comes_out_portrait():
    """decord_video_90.mov stores 568x320 with a -90 degree display matrix: players show it 320x568."""
    from zsvc_pl.data.decoding import open_video, read_frames

    path = str(Path(ROOT, "_robustness", "decord_video_90.mov"))
    frames = read_frames(open_video(path), [0], path)
    assert frames.shape == (1, 568, 320, 3)


def test_a_library_of_real_clips_keeps_long_ones_every_two_seconds(tiny_model, tiny_ckpt, tmp_path):
    import numpy as np

    from zsvc_pl.library import Library
    from zsvc_pl.library.library import _matrix
    from zsvc_pl.library.store import quote

    rows = sorted(csv.DictReader(open(Path(ROOT, "manifest.csv"))), key=lambda r: -float(r["duration_s"] or 0))
    rows = [r for r in rows if r["duration_s"] and r["codec"] != "cinepak"]  # tree.avi decodes 68 of its 444 frames
    chosen = rows[:3] + rows[-2:]  # the longest and the shortest
    paths = [str(Path(ROOT, r["path"])) for r in chosen]
    lib = Library.create(tmp_path / "lib", str(TINY_CONFIG), tiny_ckpt, 4, model=tiny_model)
    counts = lib.index(paths, log=None)
    assert counts["added"] + counts["unreadable"] == len(paths) and counts["added"] >= 4
    expected = dict(zip(paths, tiny_model.encode_videos(paths, errors=[]).numpy()))
    for path, row in zip(paths, chosen):
        video = lib.video(lib.store.video_id(path))
        if video["status"] != "ok":
            continue
        times, _ = lib.frames(path)
        duration = float(row["duration_s"])
        assert abs(video["duration"] - duration) < 1.0, path
        assert len(times) >= min(600, int(duration / 2)), path  # one every 2 s at least (the sampled 4 among them)
        assert np.all(np.diff(times) >= 0) and times[-1] <= video["duration"]
        vector = _matrix(lib.store.scan("videos", ["vector"], f"path = {quote(path)}")["vector"])[0]
        assert np.abs(vector - expected[path]).max() < 2e-3, path  # classification's embedding, unchanged
        assert (lib.store.folder / "thumbs" / f"{video['id']}-{video['mtime_ns']}.jpg").is_file()
