"""Search and moderation on demo videos whose content is known, with the shipped demo backbone."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from zsvc_pl.demo.world import background, draw, generate_dataset, static_label, write_video
from zsvc_pl.moderation import flag_videos, load_rules
from zsvc_pl.moderation import main as moderation_main
from zsvc_pl.search import VideoIndex
from zsvc_pl.search import main as search_main

OBJECTS = [("red", "circle", "left"), ("blue", "square", "top"), ("green", "triangle", "right"),
           ("yellow", "cross", "bottom")]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    generate_dataset(root, {"lib": 1}, OBJECTS, seed=4, labels="static")
    return root / "lib"


def video_of(root: Path, colour: str, shape: str) -> str:
    return str(next((root / static_label(colour, shape)).glob("*.mp4")))


def test_search_finds_the_described_video_and_updates_incrementally(demo_model, library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    videos = sorted(str(p) for p in lib.rglob("*.mp4"))
    index = VideoIndex(demo_model.backbone_identity)
    assert index.update(demo_model, videos[:3]) == {"kept": 0, "added": 3, "failed": 0, "resampled": 0}
    assert index.update(demo_model, videos) == {"kept": 3, "added": 1, "failed": 0, "resampled": 0}
    for colour, shape, _ in OBJECTS:
        best, score = index.search(demo_model, f"a photo of a {colour} {shape}.", top_k=4)[0]
        assert best == video_of(lib, colour, shape)
    index.save(tmp_path / "i.idx")
    again = VideoIndex.load(tmp_path / "i.idx")
    assert again.update(demo_model, videos[1:]) == {"kept": 3, "added": 0, "failed": 0, "resampled": 0}
    assert len(again.paths) == 3


def test_search_command(demo_model, library, tmp_path, capsys):
    args = ["--index", str(tmp_path / "v.idx"), "--model-name", "demo", "--pretrained", "demo"]
    search_main(["index", str(library), *args])
    assert "indexed 4 videos (4 encoded" in capsys.readouterr().out
    search_main(["query", "a blue square", *args, "--top-k", "1"])
    assert static_label("blue", "square") in capsys.readouterr().out
    # without --model-name the index's own backbone is used (no attempt to fetch ViT-B-32)
    search_main(["query", "a blue square", "--index", str(tmp_path / "v.idx"), "--top-k", "1"])
    assert static_label("blue", "square") in capsys.readouterr().out


def test_an_index_never_mixes_two_samplings(library, tmp_path, capsys):
    args = ["--index", str(tmp_path / "v.idx"), "--model-name", "demo", "--pretrained", "demo"]
    search_main(["index", str(library), *args, "--num-frames", "4"])
    capsys.readouterr()
    search_main(["index", str(library), *args])  # the index's own 4 frames: nothing to encode
    assert "indexed 4 videos (0 encoded, 4 unchanged, 0 unreadable) ->" in capsys.readouterr().out
    search_main(["index", str(library), *args, "--num-frames", "8"])  # before: the 4 videos kept at 4 frames
    assert "(4 encoded, 0 unchanged, 0 unreadable; every video encoded again" in capsys.readouterr().out
    index = VideoIndex.load(tmp_path / "v.idx")
    assert index.num_frames == 8 and [len(f) for f in index.frames] == [8] * 4


def test_a_video_changed_while_it_is_indexed_is_encoded_again_next_time(demo_model, library, tmp_path,
                                                                        monkeypatch):
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    videos = sorted(str(p) for p in lib.rglob("*.mp4"))
    real = type(demo_model).encode_videos_and_frames

    def encode_then_edit(self, paths, **kwargs):
        out = real(self, paths, **kwargs)
        st = os.stat(videos[0])  # the file changes after it was read, before the index is saved
        os.utime(videos[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return out

    monkeypatch.setattr(type(demo_model), "encode_videos_and_frames", encode_then_edit)
    index = VideoIndex(demo_model.backbone_identity)
    index.update(demo_model, videos)
    monkeypatch.undo()
    assert index.update(demo_model, videos)["added"] == 1  # before: its stamp was taken after the read: kept


def test_search_refuses_another_backbone_a_missing_or_damaged_index(demo_model, library, tmp_path, capsys,
                                                                    tiny_ckpt, monkeypatch):
    from tests.conftest import TINY_CONFIG
    from zsvc_pl.data import outputs

    idx = tmp_path / "v.idx"
    search_main(["index", str(library), "--index", str(idx), "--model-name", "demo", "--pretrained", "demo"])
    good = idx.read_bytes()
    cases = {
        "the model is tiny-clip": ["query", "x", "--index", str(idx), "--model-name", str(TINY_CONFIG),
                                   "--pretrained", tiny_ckpt],
        "index not found": ["query", "x", "--index", str(tmp_path / "missing.idx")],
    }
    for words, argv in cases.items():
        with pytest.raises(SystemExit) as e:
            search_main(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err
    real_replace = os.replace

    def killed(src, dst):
        raise KeyboardInterrupt  # a kill between writing the new index and renaming it

    (library / "extra").mkdir()
    shutil.copy(next(library.rglob("*.mp4")), library / "extra" / "copy.mp4")
    monkeypatch.setattr(outputs.os, "replace", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            search_main(["index", str(library), "--index", str(idx)])
    finally:
        monkeypatch.setattr(outputs.os, "replace", real_replace)
        shutil.rmtree(library / "extra")
    assert idx.read_bytes() == good and not list(tmp_path.glob(".v.idx.*.tmp"))
    idx.write_bytes(good[: len(good) // 2])
    with pytest.raises(SystemExit):
        search_main(["query", "x", "--index", str(idx)])
    assert f"{idx} is not a readable zsvc_pl index" in capsys.readouterr().err


def test_settings_out_of_range_are_refused_before_any_video_is_read(demo_model, library, tmp_path, capsys):
    from zsvc_pl import ZeroShotVideoClassifier

    for kwargs, words in [({"num_frames": 0}, "num_frames must be at least 1, got 0"),
                          ({"frame_size": 0}, "frame_size must be at least 1"),
                          ({"num_workers": -1}, "num_workers must be 0 .* or more, got -1"),
                          ({"example_weight": -0.5}, "example_weight must be 0 .* or more, got -0.5")]:
        with pytest.raises(ValueError, match=words):  # before: -1 workers and frame size 0 ran, 0 frames failed
            ZeroShotVideoClassifier(model_name="demo", pretrained="demo", **kwargs)  # every video on its own
    video = str(next(library.rglob("*.mp4")))
    for kwargs, words in [({"top_k": 0}, "top_k must be at least 1"), ({"top_k": -1}, "top_k must be at least 1"),
                          ({"num_crops": 2}, "num_crops must be 1 or 3, got 2"),
                          ({"num_clips": 0}, "num_clips must be at least 1, got 0")]:
        with pytest.raises(ValueError, match=words):  # not a VideoDecodeError blaming the file
            demo_model.classify(video, ["a red circle", "a blue square"], **kwargs)
    assert len(demo_model.classify(video, ["a red circle", "a blue square"], top_k=None)) == 2
    args = ["--index", str(tmp_path / "v.idx"), "--model-name", "demo", "--pretrained", "demo"]
    assert search_main(["index", str(library), *args]) == 0
    capsys.readouterr()
    for extra in ([], ["--moments"]):
        with pytest.raises(SystemExit) as e:
            search_main(["query", "a blue square", *args, "--top-k", "0", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and err == ["zsvc_pl.search: error: top_k (videos to return) must be at least 1, "
                                             "got 0"]
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags:\n  a red circle: 0.5\nothers:\n  - a blue square\n")
    for run, argv in ((search_main, ["query", "a blue square", *args, "--num-frames", "0"]),
                      (moderation_main, ["--rules", str(rules), "--videos", str(library), "--out",
                                         str(tmp_path / "flags.csv"), "--model-name", "demo", "--pretrained", "demo",
                                         "--num-frames", "0"])):
        with pytest.raises(SystemExit) as e:  # before: 0 frames meant the default 8, without a word
            run(argv)
        assert e.value.code == 2 and "num_frames must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "flags.csv").exists()


def test_moderation_flags_with_time_span(demo_model, library, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags:\n  a red circle: 0.6\nothers: [a blue square, a green triangle, a yellow cross]\n")
    flags, others, abstain = load_rules(rules)
    assert abstain is None
    videos = sorted(str(p) for p in library.rglob("*.mp4"))
    found, errors = flag_videos(demo_model, videos, flags, others, num_frames=8)
    assert not errors
    assert [f.path for f in found] == [video_of(library, "red", "circle")]
    f = found[0]
    assert f.score >= 0.6 and f.start_s <= f.peak_s <= f.end_s
    out = tmp_path / "flags.csv"
    moderation_main(["--rules", str(rules), "--videos", str(library), "--out", str(out), "--model-name", "demo",
                     "--pretrained", "demo", "--num-frames", "8"])
    assert [r["label"] for r in csv.DictReader(open(out))] == ["a red circle"]


def test_moderation_abstains_on_videos_that_show_none_of_its_labels(demo_model, library, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags:\n  a purple triangle: 0.5\nothers: [a purple cross]\n")  # none of the library's objects
    videos = sorted(str(p) for p in library.rglob("*.mp4"))
    flags, others, _ = load_rules(rules)
    loose, _ = flag_videos(demo_model, videos, flags, others, num_frames=8)
    assert loose  # a softmax over two labels always puts one of them above 0.5
    rules.write_text("flags:\n  a purple triangle: 0.5\nothers: [a purple cross]\nabstain: 0.6\n")
    flags, others, abstain = load_rules(rules)
    assert abstain == 0.6 and flag_videos(demo_model, videos, flags, others, 8, abstain)[0] == []
    rules.write_text("flags:\n  a red circle: 0.5\nothers: [a purple cross]\nabstain: 0.6\n")
    found, _ = flag_videos(demo_model, videos, *load_rules(rules)[:2], 8, 0.6)
    assert [f.path for f in found] == [video_of(library, "red", "circle")]  # what is there is still flagged


def test_rules_are_validated(tmp_path):
    bad = tmp_path / "r.yaml"
    for text, words in [("flags:\n  a gun: high\n", "flag 'a gun': threshold: 'high' is not a number"),
                        ("flags: [a gun]\n", "no 'flags'"), ("flags:\n  x: 0.5\nothers: a cat\n", "must be a list"),
                        ("flags: {x: 0.5\n", "not valid YAML"),
                        ("flags:\n  x: 0.5\nabstian: 0.6\n", "unknown key\\(s\\) 'abstian'")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=words):
            load_rules(bad)


def test_rules_thresholds_and_flags(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("flags:\n  x: 1.5\n")
    with pytest.raises(ValueError, match=r"flag 'x': threshold: 1.5 is outside \[0, 1\]"):
        load_rules(bad)
    bad.write_text("others: [a]\n")
    with pytest.raises(ValueError, match="no 'flags'"):
        load_rules(bad)


def event_video(path: Path, colour: str, shape: str, first: int, length: int, seed: int) -> str:
    """32 frames at 8 fps of a textured background; the object shows in frames ``first .. first+length-1``."""
    rng = np.random.default_rng(seed)
    bg = background(rng, 64)
    frames = [draw(bg, shape, colour, 32, 32, 12, rng, 3) if first <= i < first + length
              else np.clip(bg + rng.normal(0, 3, bg.shape), 0, 255).astype(np.uint8) for i in range(32)]
    write_video(path, np.stack(frames), fps=8)
    return str(path)


def test_moments_within_one_frame_step_and_videos_like_a_video(tmp_path, capsys):
    (tmp_path / "v").mkdir()
    red = event_video(tmp_path / "v" / "red.mp4", "red", "circle", 16, 8, 1)  # 2.0 s to 3.0 s
    blue = event_video(tmp_path / "v" / "blue.mp4", "blue", "square", 4, 8, 2)  # 0.5 s to 1.5 s
    red2 = event_video(tmp_path / "v" / "red2.mp4", "red", "circle", 0, 32, 3)  # throughout
    event_video(tmp_path / "v" / "red3.mp4", "red", "circle", 0, 32, 4)
    event_video(tmp_path / "v" / "blue2.mp4", "blue", "square", 0, 32, 5)
    idx = str(tmp_path / "v.idx")
    common = ["--index", idx, "--model-name", "demo", "--pretrained", "demo", "--num-frames", "16"]
    assert search_main(["index", str(tmp_path / "v"), *common]) == 0
    capsys.readouterr()
    step = 0.25  # 16 frames sampled from 32 at 8 fps
    for query, path, start, end, n in (("a photo of a red circle", red, 2.0, 3.0, 3),
                                       ("a photo of a blue square", blue, 0.5, 1.5, 2)):
        assert search_main(["query", query, *common, "--moments", "--top-k", str(n)]) == 0
        rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
        colour = Path(path).stem
        assert len(rows) == n and all(Path(r["path"]).stem.startswith(colour) for r in rows)  # the n with it
        row = next(r for r in rows if r["path"].endswith("/" + Path(path).name))
        assert abs(float(row["start"]) - start) <= step and abs(float(row["end"]) - end) <= step
    index = VideoIndex.load(idx)
    assert len(index.frames[0]) == 16 and index.times[0][0] == pytest.approx(1 / 8)
    assert search_main(["like", red2, *common, "--top-k", "5"]) == 0
    ranked = capsys.readouterr().out.splitlines()
    assert ranked[0].endswith("red3.mp4") and len(ranked) == 4  # itself left out
    # like a moment: the red circle's stretch of red.mp4 finds the red videos, its empty stretch does not
    assert search_main(["like", red, *common, "--start", "2.0", "--end", "3.0", "--top-k", "2"]) == 0
    assert all("red" in line for line in capsys.readouterr().out.splitlines())
    assert search_main(["like", red, *common, "--start", "0", "--end", "1.5", "--top-k", "1"]) == 0
    assert "red" not in capsys.readouterr().out.splitlines()[0].rsplit("/", 1)[1]
    with pytest.raises(SystemExit):
        search_main(["like", red, *common, "--start", "9", "--end", "10"])
    assert "no indexed frame between 9.0 s and 10.0 s" in capsys.readouterr().err


def test_approximate_index_recalls_the_exact_neighbours():
    pytest.importorskip("faiss")
    from zsvc_pl.vector_index import ApproximateIndex, nearest

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(50, 64, generator=g)
    x = torch.nn.functional.normalize(centres[torch.randint(0, 50, (5000,), generator=g)]
                                      + 0.3 * torch.randn(5000, 64, generator=g), dim=-1)
    ann = ApproximateIndex.build(x)
    hits = 0
    for q in x[:50]:
        exact, approx = nearest(x, q, 10)[1], nearest(x, q, 10, ann)[1]
        assert approx[0] == exact[0]  # a stored vector finds itself first
        hits += len(set(exact.tolist()) & set(approx.tolist()))
    assert hits / 500 >= 0.95


def test_large_indexes_get_an_approximate_index_beside_them(demo_model, library, tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    from zsvc_pl import vector_index

    monkeypatch.setattr(vector_index, "ANN_MIN", 3)  # "large" from 3 videos, to test the plumbing
    idx = tmp_path / "v.idx"
    index = VideoIndex(demo_model.backbone_identity)
    index.update(demo_model, sorted(str(p) for p in library.rglob("*.mp4")))
    exact = index.search(demo_model, "a blue square", top_k=4)
    index.save(idx)
    assert Path(str(idx) + ".ann").is_file()
    loaded = VideoIndex.load(idx)
    assert loaded.ann is not None and len(loaded.ann) == 4
    approx = loaded.search(demo_model, "a blue square", top_k=4)
    assert [p for p, _ in approx] == [p for p, _ in exact]
    assert approx[0][1] == pytest.approx(exact[0][1], abs=1e-5)
    loaded.update(demo_model, [p for p, _ in exact[:2]])  # below the size: back to exact, no stale file
    loaded.save(idx)
    assert not Path(str(idx) + ".ann").exists() and VideoIndex.load(idx).ann is None


def test_moderation_never_reports_unread_videos_as_clean(demo_model, library, tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags:\n  a red circle: 0.6\nothers: [a blue square, a green triangle, a yellow cross]\n")
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    broken = lib / "broken.mp4"
    broken.write_bytes(b"\x00" * 512)
    out, unreadable = tmp_path / "flags.csv", tmp_path / "flags.unreadable.csv"
    argv = ["--rules", str(rules), "--videos", str(lib), "--out", str(out), "--model-name", "demo",
            "--pretrained", "demo", "--num-frames", "8"]
    assert moderation_main(argv) == 1  # before: 0, and the broken video only in a printed line
    assert [r["label"] for r in csv.DictReader(open(out))] == ["a red circle"]
    assert [r["path"] for r in csv.DictReader(open(unreadable))] == [str(broken)]
    broken.unlink()
    assert moderation_main(argv) == 0 and not unreadable.exists()  # it described the flags this run replaced
    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "x.mp4").write_bytes(b"\x00" * 512)
    out.unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # before: exit 0 and an empty flags.csv, which reads as "nothing found"
        moderation_main([*argv[:2], "--videos", str(only_broken), *argv[4:]])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [f"zsvc_pl.moderation: error: no video could be read (1 skipped, each with its "
                                         f"reason in {unreadable}); nothing was checked, so no flags were written"]
    assert not out.exists()
