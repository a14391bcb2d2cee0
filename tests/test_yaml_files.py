"""Every YAML a user hands over (configs, label sets, rules) is read one way: no aliases, typed fields, one line
for any file that is not YAML text."""

import subprocess
import sys

import pytest

from tests.conftest import TINY_CONFIG
from zsvc_pl.cli import main
from zsvc_pl.labels import LabelError, read_label_file
from zsvc_pl.moderation import load_rules
from zsvc_pl.yaml_files import YamlFileError, read_yaml

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")) + "label: *i\n"  # 9^9 = 387 M strings from under 400 bytes


def test_nested_aliases_are_refused_before_they_expand(tmp_path):
    bomb = tmp_path / "labels.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 400
    code = ("import resource\n"
            "from zsvc_pl.data.label_sets import read_label_set\n"
            "size = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))  # 1 GB more than after imports\n"
            f"read_label_set({str(bomb)!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "aliases (*name) are not accepted" in res.stderr  # before: MemoryError
    assert "MemoryError" not in res.stderr


def test_a_label_set_config_or_rules_file_that_is_not_yaml_text_gets_one_line(tiny_ckpt, video_root, tmp_path,
                                                                              capsys):
    files = {"syntax.yaml": "a red circle: [one\n", "python.yaml": "a: !!python/object/apply:os.system [ls]\n",
             "binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00", "bomb.yaml": BOMB}
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(YamlFileError, match=str(path)):
            read_yaml(path)
        argv = ["predict", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
                "--data.predict_root", str(video_root / "test"), "--data.label_file", str(path),
                "--data.num_workers", "0", "--trainer.default_root_dir", str(tmp_path / "run"),
                "--trainer.logger", "false"]
        for args in (argv, ["test", "--config", str(path), "--data.root", str(video_root)]):
            with pytest.raises(SystemExit) as e:
                main(args)
            err = capsys.readouterr().err.strip().splitlines()
            assert e.value.code == 2 and len(err) == 1 and str(path) in err[0], (name, args[0], err)
        rules = tmp_path / "rules" / name
        rules.parent.mkdir(exist_ok=True)
        rules.write_bytes(path.read_bytes())
        with pytest.raises(ValueError, match=str(rules)):
            load_rules(rules)


def test_rules_take_numbers_where_numbers_are_meant(tmp_path):
    rules = tmp_path / "rules.yaml"
    cases = {
        "flags: {a fight: 0.5}\nabstain: yes\n": "'abstain' .*True is not a number",  # before: 1.0, nothing flagged
        "flags: {a fight: 0.5}\nabstain: .inf\n": "'abstain' .*inf is not a number",
        "flags: {a fight: on}\n": "threshold: True is not a number",  # before: a threshold of 1.0
        "flags: {a fight: '0.5'}\n": "threshold: '0.5' is not a number",
        "flags: {a fight: 1.5}\n": "outside",
        "flags: {yes: 0.5}\n": "flag label True is not text",  # before: the label 'True'
        "flags: {a fight: 0.5}\nothers: [a talk, 12]\n": "'others' must be a list of labels",
    }
    for text, message in cases.items():
        rules.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_rules(rules)
    rules.write_text("flags: {a fight: 0.5, '1': 0.7}\nothers: [a talk]\nabstain: 0.2\n")
    assert load_rules(rules) == ({"a fight": 0.5, "1": 0.7}, ["a talk"], 0.2)


def test_a_gap_in_label_ids_is_refused_whatever_the_file_looks_like(tmp_path):
    for text in ("1 a\n2 b\n4 c\n", "id,name\n1,a\n2,b\n4,c\n", "1,a\n2,b\n4,c\n"):
        path = tmp_path / "labels.txt"
        path.write_text(text)
        with pytest.raises(LabelError, match="ids 1..4 without 3"):  # before: labels '1 a', '2 b', '4 c'
            read_label_file(path)
    path.write_text("1 a\n2 b\n3 c\n")
    assert read_label_file(path) == ["a", "b", "c"]
