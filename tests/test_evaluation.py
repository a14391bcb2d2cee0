"""Numbers you can trust: every test video counted, the peers' files read right, mean class over present classes,
each run's config kept, checkpoints in one place."""

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import TINY_CONFIG
from zsvc_pl import VideoDataModule
from zsvc_pl.cli import main
from zsvc_pl.labels import LabelError, read_label_file
from zsvc_pl.train.metrics import MeanClassAccuracy, classification_metrics

ROOT = Path(__file__).parents[1]


def tiny(stage, *extra, config=None):
    return [stage, *(["--config", str(config)] if config else []), "--model.model_name", str(TINY_CONFIG),
            "--data.frame_size", "32", "--data.num_frames", "4",
            "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", *extra]


@pytest.fixture
def base_only_train(video_root, tmp_path) -> Path:
    """The natural base-to-novel layout: train/ holds 2 base classes only, val/ and test/ hold all 4."""
    root = tmp_path / "b2n"
    shutil.copytree(video_root, root)
    for c in sorted((root / "train").iterdir())[2:]:
        shutil.rmtree(c)
    return root


def test_folder_base_to_novel_counts_every_test_video(tiny_ckpt, base_only_train, tmp_path, caplog):
    dm = VideoDataModule(root=str(base_only_train), base_novel="train")
    assert len(dm.class_names) == 4 and dm.base_classes == [0, 1]
    cli = main(tiny("test", "--model.pretrained", tiny_ckpt, "--data.root", str(base_only_train),
                    "--data.base_novel", "train", "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path / "run")))
    m = cli.trainer.callback_metrics
    assert float(m["test/videos"]) == 8 and float(m["test/skipped"]) == 0
    assert "no video skipped" in caplog.text


def test_a_video_of_an_unknown_class_is_an_error_that_is_counted(tiny_ckpt, video_root, tmp_path, caplog):
    names = sorted(p.name for p in (video_root / "test").iterdir())
    cli = main(tiny("test", "--model.pretrained", tiny_ckpt, "--data.root", str(video_root / "test"),
                    "--data.class_names", str(names[:3]), "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path)))
    m = cli.trainer.callback_metrics
    assert float(m["test/videos"]) == 6 and float(m["test/skipped"]) == 2
    errors = list(csv.DictReader(open(tmp_path / "errors.csv")))
    assert len(errors) == 2 and all("is not in the class list" in e["reason"] for e in errors)
    assert "no video skipped" not in caplog.text


def test_vifi_clip_base_to_novel_files_are_read_in_their_own_id_spaces(video_root, tmp_path):
    names = sorted(p.name for p in (video_root / "test").iterdir())
    base, novel = names[:2], names[2:]
    (tmp_path / "hmdb_51_base_labels.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(base)))
    (tmp_path / "hmdb_51_novel_labels.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(novel)))
    def lst(split, classes):
        return "".join(f"{p.relative_to(video_root)} {i}\n" for i, c in enumerate(classes)
                       for p in sorted((video_root / split / c).glob("*.mp4")))
    (tmp_path / "fs_base_s1_train.txt").write_text(lst("train", base))
    (tmp_path / "base_val.txt").write_text(lst("test", base))
    (tmp_path / "novel_val.txt").write_text(lst("test", novel))
    kw = dict(root=str(video_root), format="list", label_file=str(tmp_path / "hmdb_51_base_labels.csv"),
              novel_label_file=str(tmp_path / "hmdb_51_novel_labels.csv"),
              train_list=str(tmp_path / "fs_base_s1_train.txt"), test_list=str(tmp_path / "base_val.txt"),
              novel_test_list=str(tmp_path / "novel_val.txt"), num_workers=0)
    dm = VideoDataModule(**kw)
    assert dm.class_names == base + novel and dm.base_classes == [0, 1]
    dm.setup("test")
    truth = {str(p): names.index(p.parent.name) for p in (video_root / "test").rglob("*.mp4")}
    assert {r.path: r.label for r in dm.test_set.records} == truth  # a novel video is never read as a base class
    dm.setup("fit")
    assert {r.label for r in dm.train_set.records} == {0, 1}
    (tmp_path / "novel_val.txt").write_text(lst("test", novel) + "x.avi 2\n")  # only 2 novel classes: 0..1
    with pytest.raises(ValueError, match=r"novel_val.txt:5: label id 2 is outside the label file's 2 classes"):
        VideoDataModule(**kw).setup("test")


def test_out_of_range_ids_fail_at_once_naming_file_and_line(tmp_path):
    (tmp_path / "labels.csv").write_text("id,name\n0,jump\n1,run\n")
    (tmp_path / "test.txt").write_text("a.mp4 0\nb.mp4 1\nc.mp4 101\n")
    dm = VideoDataModule(format="list", test_list=str(tmp_path / "test.txt"),
                         label_file=str(tmp_path / "labels.csv"))
    with pytest.raises(ValueError, match=r"test.txt:3: label id 101 is outside"):
        dm.setup("test")


@pytest.mark.parametrize("text,names", [
    ("id,name\n0,abseiling\n1,air drumming\n2,answering questions\n",  # Kinetics (X-CLIP / ViFi-CLIP labels)
     ["abseiling", "air drumming", "answering questions"]),
    ("1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n", ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]),  # UCF101
    ("id,name\n0,brush_hair\n1,cartwheel\n", ["brush_hair", "cartwheel"]),  # HMDB51
    ('id,name\n0,"Approaching something with your camera"\n1,"Putting something, something and something on the '
     'table"\n', ["Approaching something with your camera",
                  "Putting something, something and something on the table"]),  # SSv2, quoted, commas inside
    ("\ufeffid,name\n0,jump\n1,run\n", ["jump", "run"]),  # a byte-order mark
    ("red circle\n1 green circle\nblue square\n", ["red circle", "1 green circle", "blue square"]),  # names only
    ("3 little pigs\n7 dwarfs\n", ["3 little pigs", "7 dwarfs"]),  # numbers that are not ids
])
def test_label_files_of_the_field_are_read_right(tmp_path, text, names):
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    assert read_label_file(tmp_path / "labels.csv") == names


def test_labels_that_mean_the_same_words_are_refused_naming_both_lines(tmp_path):
    (tmp_path / "l.txt").write_text("red circle\nBlue_Circle\ngreen square\nblue circle\n")
    with pytest.raises(LabelError, match=r"'Blue_Circle' \(line 2\) and 'blue circle' \(line 4\)"):
        read_label_file(tmp_path / "l.txt")


def test_mean_class_is_over_the_classes_present():
    """4 classes in the label list, 2 of them with test videos; class 2 is predicted once but has none."""
    scores = torch.eye(4)[[0, 2, 1, 1]]
    target = torch.tensor([0, 0, 1, 1])
    m = MeanClassAccuracy(4)
    m.update(scores, target)
    assert float(m.compute()) == pytest.approx(0.75)  # (1/2 + 2/2) / 2; torchmetrics' macro average says 0.50
    metrics = classification_metrics(4, "test/")
    metrics.update(scores, target)
    assert float(metrics.compute()["test/mean_class"]) == pytest.approx(0.75)


def test_fit_folder_config_keeps_each_runs_config_and_last_ckpt_in_one_place(tiny_ckpt, base_only_train, tmp_path,
                                                                           caplog):
    cfg = ROOT / "configs" / "fit_folder.yaml"
    for logger in ("TensorBoardLogger", "false"):  # each run its own folder: a second fit there is refused
        out = tmp_path / f"mine-{logger}"
        common = ["--model.pretrained", tiny_ckpt, "--data.root", str(base_only_train), "--data.batch_size", "4",
                  "--trainer.default_root_dir", str(out)]
        fit = tiny("fit", *common, "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
                   "--trainer.logger", logger, config=cfg)
        if logger != "false":
            fit += ["--trainer.logger.save_dir", str(out)]
        main(fit)
        assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.ckpt"], logger
    assert "zsvc_pl fit: epoch 1 validation:" in caplog.text and "hm" in caplog.text
    main(tiny("test", *common, "--trainer.logger", "false", "--ckpt_path", str(out / "checkpoints" / "last.ckpt"),
              config=cfg))
    fit_cfg = yaml.safe_load(open(out / "fit-config.yaml"))
    assert fit_cfg["trainer"]["max_epochs"] == 2 and (out / "test-config.yaml").is_file()
    with pytest.raises(SystemExit):  # a flag that contradicts the checkpoint
        main(tiny("test", *common, "--trainer.logger", "false", "--model.temporal", "mean",
                  "--ckpt_path", str(out / "checkpoints" / "last.ckpt"), config=cfg))
