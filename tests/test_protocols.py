"""The field's protocols end to end on generated data laid out as the real datasets are, with a tiny model; and
the annotation readers they rest on (Kinetics CSV, Something-Something v2 JSON, ViFi-CLIP's bare-name lists)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import TINY_CONFIG
from zsvc_pl.data.annotations import VideoRecord, kinetics_records, resolve_paths, ssv2_records
from zsvc_pl.labels import read_label_file
from zsvc_pl.protocols import ASSETS, PROTOCOLS, main, table

CODECS = {".avi": "mpeg4", ".mp4": "libx264", ".webm": "libvpx-vp9"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """One 8-frame 32 px clip per container the datasets use: AVI (UCF101, HMDB51), MP4 (Kinetics), WebM (SSv2)."""
    out = {}
    for ext, codec in CODECS.items():
        path = tmp_path_factory.mktemp("clip") / f"clip{ext}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=8)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for i in range(8):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 25 * i, np.uint8), format="rgb24")
                for packet in stream.encode(frame.reformat(format="yuv420p")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out[ext] = path.read_bytes()
    return out


def _put(clips: dict[str, bytes], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clips[path.suffix])


def _run(protocol: str, tiny_ckpt: str, out: Path, *options: str) -> dict:
    tiny = ["--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt, "--data.frame_size", "32",
            "--data.num_frames", "2", "--data.num_clips", "1", "--data.num_workers", "0", "--data.batch_size", "4",
            "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"]
    assert main(["run", protocol, "--out", str(out), *options, "--", *tiny]) == 0
    return json.loads((out / protocol / "results.json").read_text())


def test_ucf101_and_hmdb51_zero_shot_over_the_official_split_files(clips, tiny_ckpt, tmp_path, capsys):
    ucf = tmp_path / "UCF-101"
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    names = read_label_file(ASSETS / "ucf101_classes.csv")
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(names, 1)))
    videos = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in ("ApplyEyeMakeup", "Archery", "YoYo") for g in (1, 2)]
    for v in videos:
        _put(clips, ucf / v)
    for fold, n in ((1, 3), (2, 2), (3, 1)):  # a different test list per fold
        (lists / f"testlist0{fold}.txt").write_text("".join(v + "\n" for v in videos[:n]))
        (lists / f"trainlist0{fold}.txt").write_text("".join(f"{v} 1\n" for v in videos[n:]))
    results = _run("ucf101-zeroshot", tiny_ckpt, tmp_path / "runs", "--root", str(ucf), "--split-dir", str(lists))
    assert [r["videos"] for r in results.values()] == [3, 2, 1]
    printed = capsys.readouterr().out
    assert "| frozen CLIP ViT-B/16, 8 frames x 3 views [Huang et al." in printed and "| 73.8 |" in printed
    assert "zsvc_pl mean +- sd over 3" in printed

    hmdb, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in [n.replace(" ", "_") for n in read_label_file(ASSETS / "hmdb51_classes.csv")]:
        rows = [f"{c}_video_{k}.avi {k}" for k in (0, 1, 2)] if c in ("brush_hair", "wave") else []
        for row in rows:
            _put(clips, hmdb / c / row.split()[0])
        (splits / f"{c}_test_split2.txt").write_text("".join(r + "\n" for r in rows))
    results = _run("hmdb51-zeroshot", tiny_ckpt, tmp_path / "runs", "--root", str(hmdb), "--split-dir",
                   str(splits), "--only", "2")
    assert list(results) == ["split2"] and results["split2"]["videos"] == 2  # the videos marked 2 (test)


def test_k600_zero_shot_keeps_each_splits_160_classes(clips, tiny_ckpt, tmp_path):
    root = tmp_path / "k600" / "test"  # the official tarballs: flat <youtube_id>_<start>_<end>.mp4
    rows = [("arguing", "aaaaaaaaaaa"), ("acting in play", "bbbbbbbbbbb"), ("yarn spinning", "ccccccccccc"),
            ("abseiling", "ddddddddddd"), ("adjusting glasses", "eeeeeeeeeee")]  # abseiling: a K400 class
    for label, ytid in rows[:4]:  # the last video was never downloaded
        _put(clips, root / f"{ytid}_000010_000020.mp4")
    csv_file = tmp_path / "k600" / "test.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\n"
                        + "".join(f"{label},{ytid},10,20,test\n" for label, ytid in rows))
    results = _run("k600-zeroshot", tiny_ckpt, tmp_path / "runs", "--root", str(root), "--annotations",
                   str(csv_file))
    # split 1 holds arguing, acting in play, yarn spinning, adjusting glasses; split 2 the first two; split 3 arguing
    # and adjusting glasses. The missing video is reported, not dropped.
    assert [r["videos"] for r in results.values()] == [3, 2, 1]
    for split in ("split1", "split3"):
        errors = list(csv.DictReader(open(tmp_path / "runs" / "k600-zeroshot" / split / "errors.csv")))
        assert [Path(e["path"]).name for e in errors] == ["eeeeeeeeeee_000010_000020.mp4"]
    assert not (tmp_path / "runs" / "k600-zeroshot" / "split2" / "errors.csv").exists()  # written when any


def test_hmdb51_base_to_novel_reads_vifi_clip_lists_of_bare_file_names(clips, tiny_ckpt, tmp_path, capsys):
    hmdb = tmp_path / "hmdb51"
    lists = tmp_path / "datasets_splits" / "base2novel_splits" / "hmdb_splits"
    lists.mkdir(parents=True)
    files = {c: [f"{c}_clip_{k}.avi" for k in range(3)] for c in ("pour", "wave", "brush_hair", "pick")}
    for c, names in files.items():
        for n in names:
            _put(clips, hmdb / c / n)
    (lists / "fs_base_s1_train.txt").write_text(f"{files['pour'][0]} 0\n{files['wave'][0]} 25\n")
    (lists / "base_val.txt").write_text(f"{files['pour'][1]} 0\n{files['wave'][1]} 25\n{files['wave'][2]} 25\n")
    (lists / "novel_val.txt").write_text(f"{files['brush_hair'][1]} 0\n{files['pick'][1]} 24\n")
    results = _run("hmdb51-base2novel", tiny_ckpt, tmp_path / "runs", "--root", str(hmdb), "--splits",
                   str(tmp_path / "datasets_splits"), "--only", "1")
    assert results["s1"]["videos"] == 5 and {"base_top1", "novel_top1", "hm"} <= set(results["s1"])
    assert not (tmp_path / "runs" / "hmdb51-base2novel" / "s1" / "errors.csv").exists()  # every list entry found
    assert (tmp_path / "runs" / "hmdb51-base2novel" / "s1" / "run.json").is_file()
    with pytest.raises(SystemExit) as e:  # a rerun into the same --out: refused before any run, nothing lost
        _run("hmdb51-base2novel", tiny_ckpt, tmp_path / "runs", "--root", str(hmdb), "--splits",
             str(tmp_path / "datasets_splits"), "--only", "1")
    assert e.value.code == 2 and "s1 holds an earlier run's checkpoints: pass another --out" in capsys.readouterr().err


def test_ssv2_few_shot_with_its_webm_files(clips, tiny_ckpt, tmp_path):
    root = tmp_path / "20bn-something-something-v2"
    lists = tmp_path / "datasets_splits" / "ssv2_splits"
    lists.mkdir(parents=True)
    for vid in (154139, 30641, 220164, 168151, 3515):
        _put(clips, root / f"{vid}.webm")
    (lists / "train1_few_shot_2.txt").write_text("154139.webm 19\n30641.webm 19\n220164.webm 0\n168151.webm 0\n")
    (lists / "validation.txt").write_text("3515.webm 14\n220164.webm 0\n")
    results = _run("ssv2-fewshot", tiny_ckpt, tmp_path / "runs", "--root", str(root), "--splits",
                   str(tmp_path / "datasets_splits"), "--shots", "2")
    assert list(results) == ["K2"] and results["K2"]["videos"] == 2


def test_a_protocol_says_what_it_needs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "ucf101-base2novel", "--root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "protocol ucf101-base2novel needs --splits" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "k600-zeroshot: Kinetics-600 classes outside K400" in capsys.readouterr().out


def test_the_table_shows_runs_spread_and_references():
    results = {"s1": {"base_top1": 0.5, "novel_top1": 0.25, "hm": 1 / 3},
               "s2": {"base_top1": 0.7, "novel_top1": 0.35, "hm": 0.7 / 1.5}}
    text = table("ssv2-base2novel", results)
    assert "| zsvc_pl s1 | 50.0 | 25.0 | 33.3 |" in text
    assert "| zsvc_pl mean +- sd over 2 | 60.0 +- 14.1 | 30.0 +- 7.1 | 40.0 +- 9.4 |" in text
    assert "| ViFi-CLIP, 32 frames [Rasheed et al." in text and "| 16.2 | 12.1 | 13.9 |" in text


def test_shipped_class_lists_are_the_protocols():
    for ds, n in (("k400", 400), ("hmdb51", 51), ("ucf101", 101), ("ssv2", 174)):
        base, novel = read_label_file(ASSETS / f"{ds}_base.csv"), read_label_file(ASSETS / f"{ds}_novel.csv")
        assert len(base) + len(novel) == len(set(base) | set(novel)) == n
    splits = [set(read_label_file(ASSETS / f"k600_zeroshot_split{k}.csv")) for k in (1, 2, 3)]
    k400 = set(read_label_file(ASSETS / "k400_base.csv")) | set(read_label_file(ASSETS / "k400_novel.csv"))
    assert [len(s) for s in splits] == [160, 160, 160] and not (splits[0] | splits[1] | splits[2]) & k400
    assert read_label_file(ASSETS / "ucf101_classes.csv")[34:37] == ["Hammering", "HammerThrow", "HandstandPushups"]
    assert set(PROTOCOLS) >= {"ucf101-zeroshot", "hmdb51-zeroshot", "k600-zeroshot", "k400-base2novel",
                              "ssv2-fewshot"}


def test_kinetics_csv_reader(tmp_path, clips):
    for name in ("abc_000001_000011.mp4", "air_drumming/xyz_000005_000015.mp4", "only_id/qqq.mp4"):
        _put(clips, tmp_path / "k400" / name)
    csv_file = tmp_path / "val.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split,is_cc\nabseiling,abc,1,11,val,0\n"
                        "air drumming,xyz,5.0,15.0,val,0\nabseiling,qqq,3,13,val,0\nabseiling,gone,1,2,val,0\n"
                        "zumba,zzz,1,11,val,0\n")
    records = kinetics_records(csv_file, tmp_path / "k400", ["abseiling", "air_drumming"])
    assert [(Path(r.path).name, r.label, r.error is None) for r in records] == [
        ("abc_000001_000011.mp4", 0, True), ("xyz_000005_000015.mp4", 1, True), ("qqq.mp4", 0, True),
        ("gone_000001_000002.mp4", 0, False), ("zzz_000001_000011.mp4", -1, False)]
    assert "class 'zumba' is not in the class list" in records[-1].error
    assert len(kinetics_records(csv_file, tmp_path / "k400", ["abseiling", "air drumming"], "skip")) == 4


def test_ssv2_json_reader_and_labels_json(tmp_path):
    labels = {"Holding something": "1", "Approaching something with your camera": "0",
              "Putting number of something onto something": "2"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    names = read_label_file(tmp_path / "labels.json")
    assert names == ["Approaching something with your camera", "Holding something",
                     "Putting number of something onto something"]
    (tmp_path / "validation.json").write_text(json.dumps([
        {"id": "74225", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
        {"id": "1", "label": "putting 3 coins onto a book", "template": "Putting [number of] [something] onto "
                                                                        "[something]", "placeholders": []},
        {"id": "2", "template": "Dancing [something]"}, {"id": "3"}]))
    records = ssv2_records(tmp_path / "validation.json", tmp_path / "videos", names)
    assert [(Path(r.path).name, r.label, r.error is None) for r in records] == [
        ("74225.webm", 1, True), ("1.webm", 2, True), ("2.webm", -1, False), ("3.webm", -1, True)]


def test_bare_names_resolve_once_and_ambiguity_is_an_error(tmp_path, clips):
    for name in ("a/v_x.avi", "b/v_dup.avi", "c/v_dup.avi"):
        _put(clips, tmp_path / name)
    records = resolve_paths([VideoRecord(str(tmp_path / "v_x.avi"), 0), VideoRecord(str(tmp_path / "v_dup.avi"), 1),
                             VideoRecord(str(tmp_path / "v_none.avi"), 2)], tmp_path)
    assert records[0] == VideoRecord(str(tmp_path / "a" / "v_x.avi"), 0)
    assert records[1].error == f"2 files under {tmp_path} have this name"
    assert records[2].error == f"not found under {tmp_path}"


@pytest.mark.parametrize("protocol,folder,video,line", [
    ("k400-base2novel", "base2novel_splits/k400_splits", "abseiling/-3B32lodo2M_000059_000069.mp4",
     "abseiling/-3B32lodo2M_000059_000069.mp4 169"),
    ("ucf101-base2novel", "base2novel_splits/ucf_splits", "Typing/v_Typing_g01_c01.avi", "v_Typing_g01_c01.avi 0"),
    ("ssv2-base2novel", "base2novel_splits/ssv2_splits", "74225.webm", "74225.webm 0"),
    ("hmdb51-fewshot", "hmdb_splits", "wave/RATRACE_wave_u_nm_np1_fr_med_27.avi",
     "RATRACE_wave_u_nm_np1_fr_med_27.avi 50"),
    ("ucf101-fewshot", "ucf_splits", "YoYo/v_YoYo_g22_c03.avi", "v_YoYo_g22_c03.avi 100"),
])
def test_every_other_list_protocol_finds_its_files(protocol, folder, video, line, clips, tiny_ckpt, tmp_path):
    """Frozen CLIP (--zero-shot) over each remaining protocol's lists: the lists' names, ids and layout."""
    _put(clips, tmp_path / "data" / video)
    lists = tmp_path / "datasets_splits" / folder
    lists.mkdir(parents=True)
    test_list = "base_val.txt" if "base2novel" in protocol else "val1.txt"
    (lists / test_list).write_text(line + "\n")
    (lists / "novel_val.txt").write_text("")
    results = _run(protocol, tiny_ckpt, tmp_path / "runs", "--root", str(tmp_path / "data"), "--splits",
                   str(tmp_path / "datasets_splits"), "--zero-shot")
    assert list(results) == ["zeroshot"] and results["zeroshot"]["videos"] == 1
    assert not (tmp_path / "runs" / protocol / "zeroshot" / "errors.csv").exists()
