"""Reruns over a library or a run folder that changed since: nothing stale kept, nothing earlier overwritten."""

import csv
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG
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
