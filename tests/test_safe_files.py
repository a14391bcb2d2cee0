"""Writers that never follow a planted link, never lose rows to a kill between two steps, say a full or read-only
disk in one line before the work, and API calls that keep every good result when some videos fail."""

import csv
import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_CONFIG
from tests.test_integrity import predict_args, rows
from zsvc_pl.cli import main
from zsvc_pl.data import outputs
from zsvc_pl.data.cache import FeatureCache
from zsvc_pl.search import VideoIndex
from zsvc_pl.train.task import VideoClassificationTask


def test_a_link_planted_where_the_writer_puts_its_temporary_file_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "tags.csv"
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the names the old writer used, for the pids to come
        (tmp_path / f".tags.csv.{pid}.tmp").symlink_to(victim)
    outputs.atomic_write_text(target, "path,labels\n")
    assert victim.read_text() == "precious"
    assert target.read_text() == "path,labels\n" and not target.is_symlink()
    link = tmp_path / "linked.csv"  # a link at the target's own name is replaced, not written through
    link.symlink_to(victim)
    outputs.atomic_write_text(link, "new")
    assert victim.read_text() == "precious" and not link.is_symlink() and link.read_text() == "new"
    journal = outputs.Journal(tmp_path / ".tags.csv.journal")
    journal.path.symlink_to(victim)
    with pytest.raises(outputs.OutputError, match="link"):
        journal.append([{"path": "x"}])
    assert victim.read_text() == "precious"


def test_a_dead_writers_temporary_cache_entries_are_cleaned(tmp_path):
    cache = tmp_path / "cache"
    sub = cache / "ab"
    sub.mkdir(parents=True)
    old, young = sub / ".abc.npy.999999.x1.tmp", sub / ".abd.npy.999999.x2.tmp"
    old.write_bytes(b"half")
    young.write_bytes(b"half")
    os.utime(old, (1, 1))
    FeatureCache(cache)
    assert not old.exists() and young.exists()  # a live writer's file (written seconds ago) is left alone


def test_a_kill_while_the_journal_is_compacted_loses_no_row(tiny_ckpt, video_root, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    shutil.copytree(Path(video_root, "test"), lib)
    out = tmp_path / "tags.csv"
    main(predict_args(tiny_ckpt, lib, out))
    assert len(rows(out)) == 8
    extra = sorted(lib.rglob("*.mp4"))[0]
    shutil.copy(extra, extra.with_name("new.mp4"))  # the library grows: the rerun compacts, then tags one video
    real_append = outputs.Journal.append

    def killed(self, new_rows):
        raise KeyboardInterrupt  # the first write after the journal was started anew

    monkeypatch.setattr(outputs.Journal, "append", killed)
    with pytest.raises(BaseException):
        main(predict_args(tiny_ckpt, lib, out))
    monkeypatch.setattr(outputs.Journal, "append", real_append)
    tagged = []
    real_step = VideoClassificationTask.predict_step

    def counting(self, batch, batch_idx):
        tagged.extend(batch["path"])
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(VideoClassificationTask, "predict_step", counting)
    main(predict_args(tiny_ckpt, lib, out))
    assert tagged == [str(extra.with_name("new.mp4"))]  # before: all 9 tagged again, the 8 journaled rows lost
    assert len(rows(out)) == 9


def test_a_read_only_or_full_output_is_one_line_before_the_work(tiny_ckpt, video_root, tmp_path, monkeypatch,
                                                                capsys):
    from zsvc_pl import moderation

    real_mkstemp = tempfile.mkstemp
    failure = {"errno": errno.EROFS}

    def refused(*a, dir=None, **k):
        if dir is not None and Path(dir).is_relative_to(tmp_path / "out"):
            raise OSError(failure["errno"], os.strerror(failure["errno"]))
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    classified = []
    monkeypatch.setattr(moderation, "flag_videos", lambda *a, **k: classified.append(1) or ([], []))
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags:\n  a red circle: 0.6\nothers: [a blue square]\n")
    for code in (errno.EROFS, errno.ENOSPC):
        failure["errno"] = code
        with pytest.raises(SystemExit) as e:
            moderation.main(["--rules", str(rules), "--videos", str(video_root / "test"), "--out",
                             str(tmp_path / "out" / "flags.csv"), "--model-name", "demo", "--pretrained", "demo"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and f"cannot write {tmp_path / 'out'}" in err[0], err
        assert os.strerror(code) in err[0] and not classified  # refused before any video was classified
        with pytest.raises(SystemExit) as e:
            main(predict_args(tiny_ckpt, video_root / "test", tmp_path / "out" / "tags.csv"))
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and os.strerror(code) in err[0], err
        from zsvc_pl.search import main as search_main

        encoded = []
        monkeypatch.setattr(VideoIndex, "update", lambda *a, **k: encoded.append(1))
        with pytest.raises(SystemExit) as e:
            search_main(["index", str(video_root / "test"), "--index", str(tmp_path / "out" / "v.idx"),
                         "--model-name", str(TINY_CONFIG), "--pretrained", tiny_ckpt])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and os.strerror(code) in err[0] and not encoded, err
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(SystemExit) as e:  # before: the whole library tagged, then IsADirectoryError
        main(predict_args(tiny_ckpt, video_root / "test", tmp_path / "folder.csv", '["a", "b"]',
                          "--predictions.overwrite", "true"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [f"zsvc_pl: error: {tmp_path / 'folder.csv'} is a folder: name a file to write"]


def test_the_api_keeps_every_good_result_when_some_videos_fail(tiny_model, video_root, tmp_path):
    videos = [str(p) for p in sorted(Path(video_root, "test").rglob("*.mp4"))[:4]]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 800)
    paths = videos[:2] + [str(broken)] + videos[2:]
    labels = ["a red circle", "a blue square"]
    alone = tiny_model.classify(videos, labels)
    errors = []
    got = tiny_model.classify(paths, labels, errors=errors)  # before: raised at the broken clip, nothing returned
    assert got[:2] + got[3:] == alone and got[2] is None
    assert [p for p, _ in errors] == [str(broken)]
    errors = []
    emb = tiny_model.encode_videos(paths, errors=errors)
    assert emb.shape[0] == 5  # before: 4 rows for 5 paths, no longer lined up
    assert emb[2].isnan().all() and not emb[[0, 1, 3, 4]].isnan().any()
    assert torch.allclose(emb[[0, 1, 3, 4]], tiny_model.encode_videos(videos), atol=1e-6)
    assert [p for p, _ in errors] == [str(broken)]


def test_search_index_lists_unreadable_files_and_refuses_an_empty_folder(tiny_ckpt, video_root, tmp_path, capsys):
    from zsvc_pl.search import main as search_main

    lib = tmp_path / "lib"
    shutil.copytree(Path(video_root, "test"), lib)
    (lib / "broken.mp4").write_bytes(b"\x00" * 800)
    idx = tmp_path / "v.idx"
    argv = ["--index", str(idx), "--model-name", str(TINY_CONFIG), "--pretrained", tiny_ckpt, "--num-frames", "4"]
    assert search_main(["index", str(lib), *argv]) == 0
    out = capsys.readouterr()
    assert f"1 unreadable, listed with their reasons in {idx}.unreadable.csv" in out.out
    assert f"skipped {lib / 'broken.mp4'}:" in out.err
    listed = list(csv.DictReader(open(f"{idx}.unreadable.csv")))
    assert [r["path"] for r in listed] == [str(lib / "broken.mp4")] and listed[0]["reason"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:  # before: "indexed 0 videos", exit 0
        search_main(["index", str(tmp_path / "empty"), *argv])
    assert e.value.code == 2 and "no video files under" in capsys.readouterr().err


def test_runs_writing_one_folder_at_once_never_take_the_same_card(tmp_path):
    import threading

    barrier = threading.Barrier(8)

    def write(i):
        barrier.wait()
        outputs.write_new(tmp_path, "run", ".json", f'{{"run": {i}}}')

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cards = sorted(p.name for p in tmp_path.glob("run*.json"))
    assert len(cards) == 8 and "run.json" in cards  # before: some runs took the same name, one card lost
    assert sorted(p.read_text() for p in tmp_path.glob("run*.json")) == sorted(f'{{"run": {i}}}' for i in range(8))
    assert not list(tmp_path.glob(".*"))


def test_a_reused_run_folder_keeps_no_stale_errors_and_skips_are_not_one_line_each(tiny_ckpt, video_root,
                                                                                   tmp_path, caplog):
    from tests.test_cli import args

    root = tmp_path / "data"
    shutil.copytree(Path(video_root, "test"), root)
    folder = next(p for p in root.iterdir() if p.is_dir())
    for i in range(25):
        (folder / f"broken{i}.mp4").write_bytes(b"\x00" * 100)
    run = tmp_path / "run"
    main(args("test", tiny_ckpt, root, run))
    assert len(rows(run / "errors.csv")) == 25
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skipped) == 20 and any("more videos skipped" in r.getMessage() for r in caplog.records)
    for i in range(25):
        (folder / f"broken{i}.mp4").unlink()
    main(args("test", tiny_ckpt, root, run))
    assert not (run / "errors.csv").exists()  # before: the first run's 25 errors stood beside the second's card
    assert (run / "run.json").is_file() and (run / "run-2.json").is_file()


def test_watch_and_compare_mistakes_are_one_line(tmp_path, capsys):
    import json

    from zsvc_pl.compare import main as compare_main
    from zsvc_pl.watch import main as watch_main

    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(SystemExit) as e:  # before: a traceback (IsADirectoryError) after loading the model
        watch_main([str(tmp_path / "labels.txt"), "--labels", str(tmp_path / "labels.txt"), "--events",
                    str(tmp_path), "--threshold", "0.5", "--model-name", "demo", "--pretrained", "demo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [f"zsvc_pl watch: error: --events {tmp_path} is a folder: name a JSON Lines "
                                         "file to append events to"]
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(SystemExit) as e:  # before: AttributeError: 'list' object has no attribute 'items'
        compare_main([str(tmp_path / "list.json"), str(tmp_path / "list.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "is not a run card (a JSON object): it holds a list" in err[0]
