"""The library: filled once, every use answered from the store without opening a video, resumable, never mixed."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import lock_held_elsewhere
from zsvc_pl.data import reader as reader_module
from zsvc_pl.library import Library, LibraryError
from zsvc_pl.library import library as library_module
from zsvc_pl.library import thumbnails
from zsvc_pl.library.store import Store
from zsvc_pl.moderation import flag_videos

CLASSES = [("red", "circle", "left"), ("blue", "square", "top"), ("green", "triangle", "bottom"),
           ("yellow", "cross", "right")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from zsvc_pl.demo.world import generate_dataset

    root = tmp_path_factory.mktemp("libvideos")
    generate_dataset(root / "v", {"lib": 3}, classes=CLASSES, size=64, num_frames=8, labels="static")
    (root / "v" / "broken.mp4").write_bytes(b"\x00" * 600)
    return root / "v"


@pytest.fixture(scope="module")
def demo_inline(demo_model):
    """The demo classifier decoding in this process (the command-line test starts decoding workers)."""
    from zsvc_pl import ZeroShotVideoClassifier

    return ZeroShotVideoClassifier(model=demo_model.model, num_frames=8, num_workers=0)


@pytest.fixture(scope="module")
def filled(demo_inline, videos, tmp_path_factory) -> Library:
    lib = Library.create(tmp_path_factory.mktemp("lib") / "lib", "demo", "demo", 8, model=demo_inline)
    lib.index(videos, log=None)
    return lib


def no_decoding(monkeypatch):
    """Any attempt to open or read a video fails the test."""
    def refuse(*a, **k):
        raise AssertionError("a query opened a video")

    monkeypatch.setattr(reader_module, "open_video", refuse)
    monkeypatch.setattr(reader_module.FrameReader, "read", refuse)
    monkeypatch.setattr(reader_module.FrameReader, "times", refuse)
    monkeypatch.setattr(reader_module.FrameReader, "read_segments", refuse)
    monkeypatch.setattr(thumbnails, "open_video", refuse)  # thumbnail strips are made while indexing


def test_every_use_answers_from_the_store_without_opening_a_video(filled, demo_model, videos, monkeypatch):
    paths = sorted(str(p) for p in videos.rglob("*.mp4") if p.name != "broken.mp4")
    labels = [" ".join(c[:2]) for c in CLASSES]
    labels = [f"a {x}" for x in labels]
    expected = {p: r[0][0] for p, r in zip(paths, demo_model.classify(paths, labels))}
    no_decoding(monkeypatch)
    status = filled.status()
    assert status["videos"] == 12 and status["unreadable"] == 1 and status["segments"] == 12 * 8
    assert [p for p, _ in filled.unreadable()] == [str(videos / "broken.mp4")]
    tags = filled.tag(labels, top_k=2)
    assert [t["path"] for t in tags] == paths
    assert {t["path"]: t["labels"][0] for t in tags} == expected  # the same top label as classifying the files
    hits = filled.search("a photo of a yellow cross", top_k=3)
    assert all("yellow cross" in h.path for h in hits) and hits[0].score >= hits[-1].score
    shown = filled.gallery(hits)._repr_html_()  # a notebook cell: each hit with its strip
    assert shown.count('src="data:image/jpeg;base64,') == 3 and hits[0].path in shown
    moments = filled.moments("a photo of a green triangle", top_k=3)
    assert len(moments) == 3 and all("green triangle" in m.path for m in moments)
    assert all(0 <= m.start < m.end <= 2.2 for m in moments)
    like = filled.like(hits[0].path, top_k=2)
    assert hits[0].path not in [h.path for h in like] and all("yellow cross" in h.path for h in like)
    assert filled.like(hits[0].path, top_k=2, start=0.0, end=1.0)
    exported = filled.export()
    assert exported.num_rows == 13 and "vector" not in exported.column_names


def test_moderation_from_the_store_matches_moderation_from_the_files(filled, demo_model, videos):
    thresholds, others = {"a red circle": 0.5}, ["a blue square", "a green triangle", "a yellow cross"]
    stored, unreadable = filled.flags(thresholds, others)
    paths = sorted(str(p) for p in videos.rglob("*.mp4"))
    decoded, errors = flag_videos(demo_model, paths, thresholds, others)
    assert {(f.path, f.label, f.start_s, f.end_s) for f in stored} == {
        (f.path, f.label, f.start_s, f.end_s) for f in decoded}
    assert max(abs(a.score - b.score) for a, b in zip(sorted(stored, key=lambda f: f.path),
                                                    sorted(decoded, key=lambda f: f.path))) < 2e-3  # float16
    assert [p for p, _ in unreadable] == [p for p, _ in errors]  # never reported as clean


def test_a_killed_index_resumes_with_every_video_exactly_once(demo_inline, videos, tmp_path, monkeypatch):
    monkeypatch.setattr(library_module, "INDEX_CHUNK", 4)
    real_add = Store.add
    for kill_at in ("segments", "videos", "second commit"):
        folder = tmp_path / kill_at.replace(" ", "_")
        calls = []

        def add(self, rows, vectors, segments, kill_at=kill_at):
            calls.append(1)
            if kill_at == "second commit" and len(calls) == 2:
                raise KeyboardInterrupt
            if kill_at == "videos" and len(calls) == 1:  # segments written, the video rows not
                real_add(self, [], vectors[:0], segments)
                raise KeyboardInterrupt
            if kill_at == "segments" and len(calls) == 1:
                raise KeyboardInterrupt
            real_add(self, rows, vectors, segments)

        monkeypatch.setattr(Store, "add", add)
        lib = Library.create(folder, "demo", "demo", 8, model=demo_inline)
        with pytest.raises(KeyboardInterrupt):
            lib.index(videos, batch_size=4, log=None)
        monkeypatch.setattr(Store, "add", real_add)
        counts = lib.index(videos, batch_size=4, log=None)
        assert counts["kept"] == (4 if kill_at == "second commit" else 0)
        paths = lib.store.scan("videos", ["path"])["path"].to_pylist()
        segments = lib.store.scan("segments", ["path"])["path"].to_pylist()
        assert len(paths) == len(set(paths)) == 13, kill_at
        assert sorted(set(segments)) == sorted(p for p in paths if not p.endswith("broken.mp4"))
        assert all(segments.count(p) == 8 for p in set(segments)), kill_at


def test_changed_deleted_and_new_files_and_a_query_during_index(demo_inline, videos, tmp_path, monkeypatch):
    root = tmp_path / "v"
    shutil.copytree(videos, root)
    lib = Library.create(tmp_path / "lib", "demo", "demo", 8, model=demo_inline)
    lib.index(root, log=None)
    clips = sorted(p for p in root.rglob("*.mp4") if p.name != "broken.mp4")
    shutil.copy(clips[1], clips[0])  # replaced by another video
    clips[2].unlink()
    (root / "broken.mp4").unlink()
    shutil.copy(clips[3], root / "new.mp4")
    seen = []
    real_add = Store.add

    def add_then_query(self, rows, vectors, segments):
        real_add(self, rows, vectors, segments)
        seen.append(Library.open(lib.store.folder, demo_inline).status()["videos"])  # another reader

    monkeypatch.setattr(Store, "add", add_then_query)
    monkeypatch.setattr(library_module, "INDEX_CHUNK", 1)
    counts = lib.index(root, batch_size=1, log=None)
    assert counts == {"kept": 10, "added": 2, "unreadable": 0, "dropped": 2}
    assert seen == [11, 12]  # each commit visible to another reader at once
    rows = lib.store.scan("videos", ["path", "size"])
    assert sorted(rows["path"].to_pylist()) == sorted(str(p) for p in root.rglob("*.mp4"))
    assert lib.unreadable() == []
    vec = lib.store.scan("videos", ["path", "vector"], f"path = '{clips[0]}'")
    other = lib.store.scan("videos", ["path", "vector"], f"path = '{clips[1]}'")
    assert np.allclose(library_module._matrix(vec["vector"]), library_module._matrix(other["vector"]))


def test_a_library_never_mixes_two_models_and_one_writer_at_a_time(demo_model, tiny_model, videos, tmp_path):
    folder = tmp_path / "lib"
    Library.create(folder, "demo", "demo", 8, model=demo_model)
    with pytest.raises(LibraryError, match="other settings"):
        Library.create(folder, "tiny", "tiny", 4, model=tiny_model)
    with pytest.raises(LibraryError, match="a library never mixes two"):
        Library.open(folder, tiny_model)
    with lock_held_elsewhere(folder / "library"):
        with pytest.raises(RuntimeError, match="being written by another run"):
            Library.open(folder, demo_model).index(videos, log=None)
    (tmp_path / "notlib").mkdir()
    (tmp_path / "notlib" / "x.txt").write_text("mine")
    with pytest.raises(LibraryError, match="not a zsvc_pl library"):
        Library.create(tmp_path / "notlib", "demo", "demo", 8, model=demo_model)


def test_the_command_line_fills_queries_and_reports_damage_in_one_line(videos, tmp_path, monkeypatch, capsys):
    from zsvc_pl.library.cli import main as zsvc_main

    monkeypatch.chdir(tmp_path)
    lib = tmp_path / "lib"
    res = subprocess.run([sys.executable, "-m", "zsvc_pl", "index", str(lib), "--videos", str(videos),
                          "--model.model_name", "demo", "--model.pretrained", "demo", "--model.tower", "fp32"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "12 added, 0 unchanged, 0 dropped, 1 unreadable" in res.stdout
    assert f"unreadable {videos / 'broken.mp4'}:" in res.stderr

    def zsvc(*args):
        try:
            code = zsvc_main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = zsvc("search", lib, "a photo of a red circle", "--top-k", "2", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(hits) == 2 and all("red circle" in h["path"] for h in hits)
    rules = tmp_path / "rules.yaml"
    rules.write_text("flags: {a red circle: 0.5}\nothers: [a blue square]\n")
    code, _, err = zsvc("moderate", lib, "--rules", rules, "--out", tmp_path / "flags.csv")
    assert code == 1 and "1 unreadable video(s) not checked" in err  # never "clean"
    code, _, _ = zsvc("export", lib, "--out", tmp_path / "videos.parquet")
    assert code == 0 and (tmp_path / "videos.parquet").is_file()
    (lib / "library.json").write_text("{broken")
    code, _, err = zsvc("search", lib, "a red circle")
    assert code == 2 and err.strip().splitlines() == [
        f"zsvc search: error: {lib / 'library.json'} is damaged: it is not JSON"]
    code, _, err = zsvc("search", tmp_path / "nowhere", "x")
    assert code == 2 and "is not a zsvc_pl library" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.csv", "lib", "rules.yaml", "videos.parquet"]


def test_an_index_file_is_imported_once_without_decoding(demo_inline, videos, tmp_path, monkeypatch):
    from zsvc_pl.search import VideoIndex

    index = VideoIndex(demo_inline.backbone_identity, model_name="demo", pretrained="demo")
    index.update(demo_inline, sorted(str(p) for p in videos.rglob("*.mp4")))
    index.save(tmp_path / "v.idx")
    no_decoding(monkeypatch)
    lib = Library.import_index(tmp_path / "lib", tmp_path / "v.idx")
    assert lib.status()["videos"] == 12 and lib.status()["segments"] == 96
    got = [h.path for h in Library.open(tmp_path / "lib", demo_inline).search("a photo of a blue square", 3)]
    assert got == [p for p, _ in index.search(demo_inline, "a photo of a blue square", 3)]
    assert lib.media(lib.video_id(got[0])) == Path(got[0]).resolve()  # its videos can be served
    with pytest.raises(LibraryError, match="already holds videos"):
        Library.import_index(tmp_path / "lib", tmp_path / "v.idx")


def test_tags_and_flags_are_kept_per_run_and_never_mix(filled):
    labels = ["a red circle", "a blue square", "a green triangle", "a yellow cross"]
    first = filled.tag(labels, top_k=2, save=True)
    filled.tag(labels[:2], top_k=1, save=True)  # another label list: another run
    filled.tag(labels, top_k=2, save=True)  # the same settings again: replaces its run, adds none
    flags, _ = filled.flags({"a red circle": 0.5}, labels[1:], save=True)
    runs = filled.runs()
    assert [r["kind"] for r in runs] == ["tag", "tag", "moderate"]
    tag_run = next(r for r in runs if r["settings"].get("labels") == labels)
    rows = filled.results(tag_run["run"])
    assert len(rows) == 2 * len(first)
    assert [(r["path"], r["label"]) for r in rows if r["rank"] == 0] == [(t["path"], t["labels"][0]) for t in first]
    other = next(r for r in runs if r["settings"].get("labels") == labels[:2])
    assert {r["label"] for r in filled.results(other["run"])} <= set(labels[:2])
    flag_rows = filled.results(runs[-1]["run"])
    assert sorted((r["path"], r["start_s"], r["end_s"]) for r in flag_rows) == sorted(
        (f.path, pytest.approx(f.start_s), pytest.approx(f.end_s)) for f in flags)


def test_reviews_are_kept_with_their_run_shown_in_results_and_exported(filled):
    labels = ["a red circle", "a blue square", "a green triangle", "a yellow cross"]
    filled.flags({"a red circle": 0.5}, labels[1:], save=True)
    run = next(r["run"] for r in filled.runs() if r["kind"] == "moderate")
    first, second = filled.results(run)[:2]
    filled.review(run, first["path"], first["label"], "confirm", "ana", first["start_s"])
    filled.review(run, second["path"], second["label"], "dismiss", "ana", second["start_s"])
    filled.review(run, second["path"], second["label"], "relabel", "ben", second["start_s"], "a red disc")
    with pytest.raises(LibraryError, match="decision must be"):
        filled.review(run, first["path"], first["label"], "approve", "ana", first["start_s"])
    with pytest.raises(LibraryError, match="has no result"):
        filled.review(run, first["path"], "a label it never gave", "confirm", "ana")
    filled.flags({"a red circle": 0.5}, labels[1:], save=True)  # the same run saved again keeps its reviews
    rows = {(r["path"], r["start_s"]): r for r in filled.results(run)}
    assert rows[first["path"], first["start_s"]]["decision"] == "confirm"
    latest = rows[second["path"], second["start_s"]]
    assert (latest["decision"], latest["new_label"], latest["reviewer"]) == ("relabel", "a red disc", "ben")
    exported = filled.export(run).to_pylist()
    assert sum(r["decision"] is not None for r in exported) == 2 and len(exported) == len(rows)
    with pytest.raises(LibraryError, match="no saved run"):
        filled.export("tag-000000000000")


def test_ids_durations_and_progress_and_a_format_1_library_is_upgraded(filled, tmp_path):
    import lancedb
    import pyarrow as pa

    rows = filled.store.scan("videos", ["id", "path", "duration", "status"], "status = 'ok'").to_pylist()
    assert all(filled.video(r["id"])["path"] == r["path"] for r in rows)
    assert all(r["duration"] == pytest.approx(1.0) for r in rows)  # 8 frames at 8 fps
    assert filled.video("0" * 16) is None and filled.video("../../etc") is None
    progress = filled.progress()
    assert progress["done"] == progress["total"] == 13 and progress["finished"]
    # a library written by format 1: no uid, no id or duration columns
    old = tmp_path / "old"
    table = filled.store.table("videos").to_arrow().drop_columns(["id", "duration"])
    db = lancedb.connect(str(old / "db"))
    db.create_table("videos", table)
    db.create_table("segments", filled.store.table("segments").to_arrow())
    settings = {k: v for k, v in filled.store.settings.items() if k != "uid"}
    (old / "library.json").write_text(json.dumps({**settings, "format": 1}))
    upgraded = Library.open(old, model=filled.model)
    assert json.loads((old / "library.json").read_text())["format"] == 2
    hits = upgraded.search("a photo of a yellow cross", top_k=3)
    assert all(upgraded.video(h.id)["path"] == h.path for h in hits) and all(h.duration is None for h in hits)
    assert [h.path for h in hits] == [h.path for h in filled.search("a photo of a yellow cross", top_k=3)]
    assert pa.types.is_string(upgraded.store.table("videos").schema.field("id").type)
    assert upgraded.sources() == [] and upgraded.media(hits[0].id) is None  # folders unknown: nothing is served


def test_a_label_set_with_example_clips_of_the_library_tags_without_decoding(filled, monkeypatch):
    paths = sorted(filled.store.scan("videos", ["path"], "status = 'ok'")["path"].to_pylist())
    circles, crosses = ([p for p in paths if kind in p] for kind in ("red circle", "yellow cross"))
    no_decoding(monkeypatch)
    words = ["a blicket", "a wug", "a blue square", "a green triangle"]  # two invented names
    plain = {t["path"]: t["labels"][0] for t in filled.tag(words, top_k=1)}
    assert {plain[p] for p in circles + crosses} <= {"a blicket", "a wug"}
    assert not any(plain[p] == "a blicket" for p in circles)  # by words alone, the circles go the other way
    shown = {t["path"]: t["labels"][0] for t in filled.tag(
        {"a blicket": [circles[0]], "a wug": [crosses[0]], "a blue square": None, "a green triangle": None},
        top_k=1, save=True)}
    assert [shown[p] for p in circles + crosses] == ["a blicket"] * 3 + ["a wug"] * 3  # one clip each teaches it
    assert all(shown[p] == plain[p] for p in paths if p not in circles + crosses)
    run = next(r for r in filled.runs() if r["settings"].get("examples"))
    assert run["settings"]["examples"][:2] == [[circles[0]], [crosses[0]]]
    outside = str(Path(crosses[0]).parent.parent.parent / "broken.mp4")
    with pytest.raises(LibraryError, match="not a readable video of this library"):
        filled.tag({"a blicket": [outside], "a wug": None}, library_examples_only=True)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """20 s at 2 frames/s: a red circle throughout, but a yellow cross at 15-16 s, which the 4 frames
    classification samples (2.5, 7.5, 12.5, 17.5 s) all miss."""
    from zsvc_pl.demo.world import render_still, write_video

    rng = np.random.default_rng(0)
    frames = np.stack([render_still(*(("yellow", "cross", "right") if i in (30, 31) else ("red", "circle", "left")),
                                    rng) for i in range(40)])
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, frames, fps=2)
    return path


def test_a_long_video_keeps_a_segment_every_few_seconds_and_classifies_as_before(demo_model, long_video, tmp_path,
                                                                                   monkeypatch):
    from zsvc_pl import ZeroShotVideoClassifier

    model = ZeroShotVideoClassifier(model=demo_model.model, num_frames=4, num_workers=0)
    spread = Library.create(tmp_path / "spread", "demo", "demo", 4, model=model, every_s=1.0)
    sampled = Library.create(tmp_path / "sampled", "demo", "demo", 4, model=model, every_s=0)
    for lib in (spread, sampled):
        lib.index([str(long_video)], log=None)
    expected = model.encode_videos([long_video])[0].numpy()
    no_decoding(monkeypatch)
    times, _ = spread.frames(str(long_video))
    assert times.tolist() == [i + 0.5 for i in range(20)]  # one a second, the sampled ones among them
    assert sampled.frames(str(long_video))[0].tolist() == [2.5, 7.5, 12.5, 17.5]
    for lib in (spread, sampled):  # the video embedding is classification's, whatever is kept for moments
        vector = library_module._matrix(lib.store.scan("videos", ["vector"])["vector"])[0]
        assert np.abs(vector - expected).max() < 2e-3
    found = spread.moments("a photo of a yellow cross", top_k=1)[0]
    assert found.start <= 15.5 <= found.end and found.end - found.start <= 2
    missed = sampled.moments("a photo of a yellow cross", top_k=1)[0]
    assert missed.score < found.score - 0.1 and missed.end - missed.start >= 5  # 4 frames cannot place it
    strip = spread.strip(spread.store.video_id(str(long_video)))
    assert Image.open(io.BytesIO(strip)).size == (4 * 72, 72)  # the 4 sampled frames, made while indexing
    with pytest.raises(ValueError, match="every_s"):
        Library.create(tmp_path / "bad", "demo", "demo", 4, model=model, every_s=-1)
    with pytest.raises(LibraryError, match="every_s"):  # settings of a library are its own
        Library.create(tmp_path / "spread", "demo", "demo", 4, model=model, every_s=2.0)
    assert Library.create(tmp_path / "spread", "demo", "demo", 4, model=model).store.settings["every_s"] == 1.0


def test_two_ranks_under_torchrun_fill_one_library_with_each_video_once(filled, videos, tmp_path):
    """DDP through Lightning Fabric (2 CPU processes, gloo): each rank encodes its share and stages its rows,
    rank 0 commits them; the library equals one filled by a single process."""
    folder = tmp_path / "lib"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "zsvc_pl",
                          "index", str(folder), "--videos", str(videos), "--model.model_name", "demo",
                          "--model.pretrained", "demo", "--model.tower", "fp32"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "12 added, 0 unchanged, 0 dropped, 1 unreadable this run (1 in all) by 2 ranks" in run.stdout
    lib = Library.open(folder)
    rows = lib.store.scan("videos", ["path", "status", "vector"])
    paths = rows["path"].to_pylist()
    assert sorted(paths) == sorted(set(paths)) == sorted(filled.store.stamps())
    segments = lib.store.scan("segments", ["path"])["path"].to_pylist()
    assert len(segments) == 12 * 8 and all(segments.count(p) == 8 for p in set(segments))
    one = filled.store.scan("videos", ["path", "vector"])
    expected = dict(zip(one["path"].to_pylist(), library_module._matrix(one["vector"])))
    assert all(np.abs(v - expected[p]).max() < 2e-3 for p, v in zip(paths, library_module._matrix(rows["vector"])))
    assert lib.unreadable() == filled.unreadable() and not (folder / library_module.PENDING).exists()
    assert len(list((folder / "thumbs").glob("*.jpg"))) == 12  # each rank made its videos' strips
    assert json.loads((folder / library_module.PROGRESS).read_text())["done"] == 13


def test_a_library_reopened_rebuilds_the_model_with_its_sampling(demo_model, videos, tmp_path):
    from zsvc_pl import ZeroShotVideoClassifier

    model = ZeroShotVideoClassifier(model=demo_model.model, num_frames=4, num_workers=0, seek="keyframe",
                                    sampling="adaptive")
    lib = Library.create(tmp_path / "lib", "demo", "demo", 4, model=model)
    lib.index([str(p) for p in sorted(videos.rglob("*.mp4"))[:2]], log=None)
    again = Library.open(tmp_path / "lib")
    assert again.model.reader().sampling_key == model.reader().sampling_key  # was refused as another sampling
    assert "seek=keyframe" in again.status()["sampling"] and again.search("a photo of a red circle", top_k=1)


def test_ctrl_c_during_index_says_how_to_resume_and_the_rerun_keeps_what_was_committed(videos, tmp_path, monkeypatch,
                                                                                       capsys):
    from zsvc_pl.library.cli import main as zsvc_main

    monkeypatch.setattr(library_module, "INDEX_CHUNK", 4)
    real_add, calls = Store.add, []

    def add_then_ctrl_c(self, rows, vectors, segments):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_add(self, rows, vectors, segments)

    monkeypatch.setattr(Store, "add", add_then_ctrl_c)
    argv = ["index", str(tmp_path / "lib"), "--videos", str(videos), "--model.model_name", "demo",
            "--model.pretrained", "demo", "--model.tower", "fp32", "--data.batch_size", "4"]
    assert zsvc_main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "zsvc index: interrupted; rerun the same command to resume (the videos committed so far are kept)"
    monkeypatch.setattr(Store, "add", real_add)
    assert zsvc_main(argv) == 0
    assert "9 added, 4 unchanged, 0 dropped, 0 unreadable this run (1 in all)" in capsys.readouterr().out


def test_index_shows_a_progress_bar_on_a_terminal_and_lines_elsewhere(demo_inline, videos, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    paths = [str(p) for p in sorted(videos.rglob("*.mp4")) if p.name != "broken.mp4"][:3]
    terminal, file = Terminal(), io.StringIO()
    Library.create(tmp_path / "a", "demo", "demo", 8, model=demo_inline).index(paths, log=terminal)
    Library.create(tmp_path / "b", "demo", "demo", 8, model=demo_inline).index(paths, log=file)
    assert "index: 100%" in terminal.getvalue() and "3/3" in terminal.getvalue() and "frames/s" in terminal.getvalue()
    assert file.getvalue().startswith("index: 3/3 videos,") and "\r" not in file.getvalue()
