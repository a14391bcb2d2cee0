"""Every test and predict run leaves a run card; compare says what differs between two runs."""

import csv
import importlib.metadata
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG
from tests.test_cli import args
from zsvc_pl.cli import main
from zsvc_pl.compare import main as compare_main
from zsvc_pl.model.backbone import load_clip, weights_digest


def test_run_cards_record_the_run_and_compare_names_what_changed(tiny_ckpt, video_root, tmp_path, capsys):
    test_videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))
    cli = main(args("test", tiny_ckpt, video_root, tmp_path / "a"))
    card = json.loads((tmp_path / "a" / "run.json").read_text())
    assert card["stage"] == "test" and card["data"]["num_frames"] == 4 and card["data"]["num_clips"] == 1
    assert card["backbone"]["weights_sha256"] == weights_digest(load_clip(str(TINY_CONFIG), tiny_ckpt).model)
    assert card["backbone"]["learned_sha256"] is None  # zero-shot: nothing learned
    assert card["model"]["templates_resolved"] and card["versions"]["torch"] == importlib.metadata.version("torch")
    assert card["versions"]["ffmpeg"]["libavcodec"] and card["versions"]["av"]
    assert sorted(card["predictions"]) == test_videos and card["inputs"]["videos"] == len(test_videos)
    assert card["metrics"]["test/top1"] == float(cli.trainer.callback_metrics["test/top1"])
    assert set(card["predictions"].values()) <= set(card["labels"])

    main(args("test", tiny_ckpt, video_root, tmp_path / "a"))  # a second run into the same folder
    assert (tmp_path / "a" / "run-2.json").is_file()
    main(args("test", tiny_ckpt, video_root, tmp_path / "b", "--model.templates", "a photo of {}."))
    b = json.loads((tmp_path / "b" / "run.json").read_text())
    changed = {p for p in b["predictions"] if b["predictions"][p] != card["predictions"][p]}
    capsys.readouterr()
    assert compare_main([str(tmp_path / "a" / "run.json"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    differing = [line.split(":")[0].strip() for line in out.split("metrics:")[0].splitlines()[1:]]
    assert differing == ["model.templates", "model.templates_resolved"]  # only the templates differ
    assert 'model.templates_resolved: ["a video of {}."] -> ["a photo of {}."]' in out
    assert "backbone.weights_sha256" not in out and "versions." not in out  # same backbone, same machine
    assert f"videos in both runs: {len(test_videos)}; prediction changed: {len(changed)}" in out
    assert all(f"{p}: " in out for p in changed)


def test_predict_leaves_a_run_card_matching_its_predictions(tiny_ckpt, video_root, tmp_path):
    out = tmp_path / "p.csv"
    main(args("predict", tiny_ckpt, video_root, tmp_path / "run", "--data.predict_root", str(video_root / "test"),
              "--predictions.output", str(out)))
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    rows = {r["path"]: r["labels"].split("|")[0] for r in csv.DictReader(out.open())}
    assert card["stage"] == "predict" and card["predictions"] == rows


def test_compare_refuses_what_is_not_a_run(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{")
    for target in (tmp_path / "bad.json", tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            compare_main([str(target), str(target)])
        assert exit_info.value.code == 2 and "zsvc_pl.compare: error:" in capsys.readouterr().err
