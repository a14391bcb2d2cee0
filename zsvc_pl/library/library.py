"""A video library: filled once per video, answering every use from its store without decoding again.

    lib = Library.open("mylib")                   # or Library.create("mylib", model_name=..., pretrained=...)
    lib.index("/videos")                          # new and changed files; deleted ones dropped; resumable
    lib.search("a person riding a horse")         # videos, best first
    lib.moments("a dog jumps")                    # (path, start, end, score) per video
    lib.like("/videos/horse.mp4", start=12, end=15)
    lib.tag(["cooking", "sport", "music"])        # every video against any label list, from stored vectors
    lib.flags({"a fight": 0.6}, others=["a talk"])  # moderation with spans; unreadable files are listed apart

Only ``index`` reads video files (``zsvc_pl.library.filling``; under ``torchrun`` its ranks share them,
``zsvc_pl.library.ranks``). Queries read the store (``zsvc_pl.library.store``) and the text tower; the video
embedding is the one classification uses (its aggregation of the sampled frames' features), and each sampled
frame, with one every ``every_s`` seconds of a long video, is a segment with its time, so moments, "like this
moment" and moderation spans come from the same rows.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch

from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.data.annotations import list_videos
from zsvc_pl.data.label_sets import LabelSet, LabelsLike, read_label_set
from zsvc_pl.data.outputs import atomic_write_text, file_stamp, output_lock
from zsvc_pl.library.filling import EVERY_S, MAX_SEGMENTS, Encoded, encode_segments
from zsvc_pl.library.ranks import Ranks
from zsvc_pl.library.store import SETTINGS, LibraryError, Store, now, quote, span_key, vector_column
from zsvc_pl.library.thumbnails import Gallery, keep_strip
from zsvc_pl.model.examples import ExampleMemory
from zsvc_pl.timeline import Flag, Timeline

INDEX_CHUNK = 64  # videos encoded between two commits: a kill loses at most this many
PENDING = ".pending.json"  # the paths of the chunk being written (segments, then video rows: two commits)
PROGRESS = "progress.json"  # the last or running index: videos done of those to encode, and when
SOURCES = "sources.json"  # the folders (or files) the library was filled from: the only files it may serve
SCAN_BATCH = 65536  # rows read at a time by whole-library passes (tag, moderation): memory stays bounded
VECTOR_INDEX_MIN = 100_000  # rows from which ``optimize`` builds an approximate vector index
NPROBES, REFINE = 16, 20  # approximate search: partitions probed, and candidates re-ranked exactly per result
# IVF partitions: one per 4,096 rows, at most 256. At 10^6 rows (244 partitions, 16 probed) a search takes 41 ms
# p50 at recall@10 0.994, against 305 ms with one per 32,768 rows (30, all probed); building the two tables'
# indexes takes 892 s instead of 273 s on 2 cores (training grows with partitions squared, so not sqrt(rows))
ROWS_PER_PARTITION, MAX_PARTITIONS = 4096, 256
FOLD_MIN = 20_000  # rows added since the indexes were built that are searched exactly before they are folded in


def _bar(total: int, log: IO[str] | None):
    """A progress bar (videos, rate, ETA, frames/s) on ``log`` when it is a terminal; ``None`` otherwise, where
    ``index`` prints a line per commit instead."""
    if log is None or not getattr(log, "isatty", lambda: False)():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="index", file=log, dynamic_ncols=True, leave=True)


@dataclass
class Hit:
    path: str
    score: float
    id: str = ""
    duration: float | None = None


@dataclass
class Moment:
    path: str
    start: float
    end: float
    score: float
    id: str = ""
    duration: float | None = None


class Library:
    """One library folder and the model that filled it (built when a query first needs its text tower)."""

    def __init__(self, store: Store, model: ZeroShotVideoClassifier | None = None) -> None:
        self.store = store
        self._model = model
        if model is not None:
            self._check(model)

    @classmethod
    def create(cls, folder: str | Path, model_name: str = "ViT-B-32", pretrained: str | None = "openai",
               num_frames: int = 8, model: ZeroShotVideoClassifier | None = None, every_s: float | None = None,
               max_segments: int | None = None) -> "Library":
        """A new library filled by this backbone and frame count (or the existing one with the same settings).
        Long videos keep a segment every ``every_s`` seconds (default 2; 0: the sampled frames only), at most
        ``max_segments`` (default 600); left out for an existing library, its own values hold."""
        model = model or ZeroShotVideoClassifier(model_name, pretrained, num_frames=num_frames)
        settings = {"model_name": model_name, "pretrained": pretrained, "backbone": model.backbone_identity,
                    "sampling": model.reader().sampling_key, "num_frames": model.num_frames,
                    "dim": model.model.embed_dim}
        if every_s is not None and not every_s >= 0:
            raise ValueError(f"every_s must be 0 (the sampled frames only) or more seconds, got {every_s}")
        if max_segments is not None and max_segments < 1:
            raise ValueError(f"max_segments must be at least 1, got {max_segments}")
        new = not (Path(folder) / SETTINGS).exists()
        for key, given, default in (("every_s", every_s, EVERY_S), ("max_segments", max_segments, MAX_SEGMENTS)):
            if given is not None or new:
                settings[key] = default if given is None else given
        return cls(Store.create(folder, settings), model)

    @classmethod
    def open(cls, folder: str | Path, model: ZeroShotVideoClassifier | None = None) -> "Library":
        return cls(Store.open(folder), model)

    @classmethod
    def import_index(cls, folder: str | Path, index_file: str | Path) -> "Library":
        """A new library holding what a ``zsvc_pl.search`` index file holds (videos, frame features and times,
        file stamps, backbone and sampling), without decoding; refused for indexes of versions that kept no
        frame features or sampling."""
        from zsvc_pl.search import VideoIndex

        index = VideoIndex.load(index_file)
        if len(index.frames) != len(index.paths) or index.sampling is None or index.num_frames is None:
            raise LibraryError(f"{index_file} was made by an older version (no frame features or sampling): build "
                               f"the library from the videos with `zsvc index {folder} --videos DIR`")
        settings = {"model_name": index.model_name, "pretrained": index.pretrained, "backbone": index.backbone,
                    "sampling": index.sampling, "num_frames": index.num_frames,
                    "dim": int(index.embeddings.shape[1]) if index.paths else 0, "every_s": 0, "max_segments": 0}
        store = Store.create(folder, settings)
        with output_lock(store.folder / "library"):
            if store.stamps():
                raise LibraryError(f"{folder} already holds videos: import into a new library folder")
            roots = sorted({str(Path(p).resolve().parent) for p in index.paths})
            atomic_write_text(store.folder / SOURCES, json.dumps(roots, indent=1))
            for i in range(0, len(index.paths), INDEX_CHUNK):
                part = range(i, min(i + INDEX_CHUNK, len(index.paths)))
                rows = [{"path": index.paths[j], "size": index.stamps[j][0], "mtime_ns": index.stamps[j][1],
                         "status": "ok", "reason": ""} for j in part]
                store.add(rows, index.embeddings[list(part)].float().numpy(),
                          [(index.paths[j], index.times[j], index.frames[j].float().numpy()) for j in part])
        library = cls(store)
        library.optimize()
        return library

    @property
    def model(self) -> ZeroShotVideoClassifier:
        """The model that filled the library, with its sampling (read back from the sampling key it recorded)."""
        if self._model is None:
            s = self.store.settings
            key = dict(part.split("=", 1) for part in s["sampling"].split(",")[1:] if "=" in part)
            size = int(key["size"]) if "size" in key else None
            self._model = ZeroShotVideoClassifier(s["model_name"], s["pretrained"], num_frames=s["num_frames"],
                                                  sampling=s["sampling"].split(",")[0], frame_size=size,
                                                  backend=key.get("backend", "auto"), seek=key.get("seek", "exact"))
            self._check(self._model)
        return self._model

    def _check(self, model: ZeroShotVideoClassifier) -> None:
        s = self.store.settings
        if model.backbone_identity != s["backbone"] or model.reader().sampling_key != s["sampling"]:
            raise LibraryError(f"{self.store.folder} was filled with backbone {s['backbone']} and sampling "
                               f"{s['sampling']}; the model given is {model.backbone_identity} with "
                               f"{model.reader().sampling_key}: a library never mixes two")

    # --- filling --------------------------------------------------------------------------------------
    def index(self, source: str | Path | Sequence[str], batch_size: int = 8, log: IO[str] | None = sys.stderr,
              ranks: Ranks | None = None) -> dict:
        """Make the library hold exactly the videos under ``source``: encode new and changed files, drop deleted
        ones, record unreadable ones with their reason. Commits every ``INDEX_CHUNK`` videos, so a killed run
        resumes where it stopped; a second ``index`` while one runs is refused. Returns counts.

        ``ranks`` (``Ranks.from_environment()`` under ``torchrun``): each rank encodes its share of the videos and
        stages its rows; rank 0 holds the writer's lock and commits every rank's chunk in one commit."""
        ranks = ranks or Ranks()
        with ExitStack() as held:
            todo, stamps, counts, progress = ranks.first(lambda: self._plan(source, held))
            share = todo[ranks.rank::ranks.world]
            s = self.store.settings
            errors: list[tuple[str, str]] = []
            encoded = encode_segments(self.model, share, s.get("every_s", 0), s.get("max_segments", 0),
                                      batch_size * s["num_frames"], errors)
            start, done, frames, finished = time.perf_counter(), 0, 0, False
            marker = self.store.folder / PENDING
            bar = _bar(len(todo), log) if ranks.rank == 0 else None
            while True:
                chunk: list[Encoded] = []
                while not finished and len(chunk) + len(errors) < INDEX_CHUNK:
                    item = next(encoded, None)
                    finished = item is None
                    chunk += [] if item is None else [item]
                rows, vectors, segments = self._rows(share, stamps, chunk, errors)
                for e in chunk:  # thumbnails first: a strip without its row is harmless, named by the file stamp
                    keep_strip(self.store.folder, f"{self.store.video_id(share[e.index])}-{stamps[share[e.index]][1]}",
                               e.strip)
                mine = {"paths": [r["path"] for r in rows], "added": len(chunk), "unreadable": len(errors),
                        "frames": sum(len(e.times) for e in chunk), "finished": finished}
                errors.clear()
                if ranks.world > 1:
                    mine["staged"] = self.store.stage(rows, vectors, segments) if rows else {}
                parts = ranks.gather(mine)
                paths = [p for part in parts for p in part["paths"]]
                if ranks.rank == 0 and paths:
                    atomic_write_text(marker, json.dumps(paths))
                    if ranks.world == 1:
                        self.store.add(rows, vectors, segments)
                    else:
                        self.store.add_staged([part["staged"] for part in parts])
                    marker.unlink()
                for key in ("added", "unreadable"):
                    counts[key] += sum(part[key] for part in parts)
                done, frames = done + len(paths), frames + sum(part["frames"] for part in parts)
                if ranks.rank == 0 and paths:
                    self._progress({**progress, "done": done}, frames, start, None if bar else log)
                if bar is not None:
                    bar.update(len(paths))
                    bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.0f} frames/s")
                if all(part["finished"] for part in parts):
                    break
            if bar is not None:
                bar.close()
            if ranks.rank == 0:
                self.optimize()
                atomic_write_text(self.store.folder / PROGRESS,
                                  json.dumps({**progress, "done": done, "finished": now()}))
            ranks.barrier()
        return counts

    def _plan(self, source: str | Path | Sequence[str], held: ExitStack) -> tuple[list[str], dict, dict, dict]:
        """Take the writer's lock (held until ``held`` closes), note the sources, drop deleted and changed files
        and a killed run's half-written chunk; the files to encode, their stamps, the counts so far and the
        progress record (written to ``progress.json``)."""
        videos = list_videos(source) if isinstance(source, (str, Path)) else [str(v) for v in source]
        if not videos:
            raise LibraryError(f"no video files under {source}: nothing to index")
        roots = [str(Path(source).resolve())] if isinstance(source, (str, Path)) else sorted(
            {str(Path(v).resolve().parent) for v in videos})
        held.enter_context(output_lock(self.store.folder / "library"))
        atomic_write_text(self.store.folder / SOURCES, json.dumps(roots, indent=1))
        stored = self.store.stamps()
        stamps = {p: file_stamp(p) for p in videos}  # taken before reading: a change during the read shows next
        listed = set(videos)
        todo = [p for p in videos if p not in stored or list(stored[p]) != stamps[p]]
        again = set(todo)
        marker = self.store.folder / PENDING  # the chunk a killed run was writing: its rows may be half there
        if marker.exists():
            self.store.delete(json.loads(marker.read_text(encoding="utf-8")))
            marker.unlink()
        self.store.delete([p for p in stored if p not in listed or p in again])
        counts = {"kept": len(videos) - len(todo), "added": 0, "unreadable": 0,
                  "dropped": len([p for p in stored if p not in listed])}
        todo = [p for p in todo if stamps[p] is not None]  # gone since it was listed
        progress = {"total": len(todo), "started": now(), "finished": None, "done": 0}
        atomic_write_text(self.store.folder / PROGRESS, json.dumps(progress))
        return todo, {p: stamps[p] for p in todo}, counts, progress

    def _rows(self, share: list[str], stamps: dict, chunk: list[Encoded],
              errors: list[tuple[str, str]]) -> tuple[list[dict], np.ndarray, list]:
        """A chunk's video rows (encoded, then unreadable), their vectors and their segments, as ``Store.add``
        takes them."""
        rows = [{"path": share[e.index], "size": stamps[share[e.index]][0], "mtime_ns": stamps[share[e.index]][1],
                 "duration": e.duration, "status": "ok", "reason": ""} for e in chunk]
        rows += [{"path": p, "size": stamps[p][0], "mtime_ns": stamps[p][1], "status": "unreadable", "reason": r}
                 for p, r in errors]
        dim = self.store.settings["dim"]
        vectors = np.stack([e.vector for e in chunk] + [np.zeros(dim)] * len(errors)) if rows else np.zeros((0, dim))
        return rows, vectors, [(share[e.index], e.times, e.features) for e in chunk]

    def _progress(self, progress: dict, frames: int, start: float, log: IO[str] | None) -> None:
        """Record a commit in ``progress.json`` (for the web page's status) and, on ``log``, one line."""
        atomic_write_text(self.store.folder / PROGRESS, json.dumps(progress))
        total, done = progress["total"], progress["done"]
        if log is not None:
            took = max(time.perf_counter() - start, 1e-9)
            print(f"index: {done}/{total} videos, {frames / took:.1f} frames/s, about "
                  f"{(total - done) * took / max(done, 1):.0f} s left", file=log, flush=True)

    def optimize(self, vector_index_from: int = VECTOR_INDEX_MIN, fold_from: int = FOLD_MIN) -> dict[str, list[str]]:
        """Index ``path`` (the filters queries use) and, from ``vector_index_from`` rows, build an approximate
        vector index (IVF-PQ, re-ranked exactly at query time). Rows added later are searched exactly beside the
        index until ``fold_from`` of them wait, when the table is compacted and they are folded in (that rewrites
        files, so it is not done for every small addition). ``index`` calls this at its end. Returns the indexes
        each table has."""
        from lancedb.index import Bitmap, BTree, IvfPq

        built = {}
        for name in ("videos", "segments"):
            table = self.store.table(name)
            indexes = table.list_indices()
            if any(ix.num_unindexed_rows >= fold_from for ix in indexes):
                table.optimize()
            have = {tuple(ix.columns) for ix in indexes}
            if ("path",) not in have:
                table.create_index("path", config=BTree())
            if name == "videos" and ("status",) not in have:  # every video query filters on it: a scan at 10^6
                table.create_index("status", config=Bitmap())
            rows = table.count_rows()
            if ("vector",) not in have and rows >= vector_index_from:
                partitions = min(MAX_PARTITIONS, max(1, rows // ROWS_PER_PARTITION))
                table.create_index("vector", config=IvfPq(distance_type="dot", num_partitions=partitions,
                                                          num_sub_vectors=self.store.settings["dim"] // 8))
            built[name] = sorted(ix.index_type for ix in table.list_indices())
        return built

    # --- reading ----------------------------------------------------------------------------------------
    def unreadable(self) -> list[tuple[str, str]]:
        """The files ``index`` could not read, with their reasons."""
        t = self.store.scan("videos", ["path", "reason"], "status = 'unreadable'")
        return sorted(zip(t["path"].to_pylist(), t["reason"].to_pylist()))

    def status(self) -> dict:
        """How many videos, segments and unreadable files the library holds, and what filled it."""
        videos = self.store.table("videos")
        return {"videos": videos.count_rows("status = 'ok'"), "unreadable": videos.count_rows("status = 'unreadable'"),
                "segments": self.store.table("segments").count_rows(), **self.store.settings}

    def _text(self, query: str | np.ndarray) -> np.ndarray:
        """A query's unit vector: a text through the text tower, or a vector as given (normalised)."""
        if isinstance(query, str):
            return self.model.encode_labels([query])[0].float().cpu().numpy()
        vector = np.asarray(query, np.float32)
        return vector / np.linalg.norm(vector)

    def _nearest(self, name: str, vector: np.ndarray, limit: int, where: str | None, offset: int = 0) -> pa.Table:
        table = self.store.table(name)
        query = table.search(vector.astype(np.float32)).metric("dot").limit(limit)
        if offset:
            query = query.offset(offset)
        if any(ix.columns == ["vector"] for ix in table.list_indices()):  # approximate: probe
            query = query.nprobes(NPROBES).refine_factor(REFINE)  # widely, then re-rank the candidates exactly
        query = query.where(where, prefilter=True) if where else query
        columns = [c for c in ("id", "path", "t", "duration") if c in table.schema.names]
        return query.select(columns + ["_distance"]).to_arrow()

    def search(self, query: str | np.ndarray, top_k: int = 10, offset: int = 0, folder: str | None = None,
               min_s: float | None = None, max_s: float | None = None, paths: Sequence[str] | None = None) -> list[Hit]:
        """The ``top_k`` videos most similar to a text (or a query vector ``[D]``), by cosine, best first, after
        skipping ``offset`` (paging). Filters, applied before the nearest are taken: paths under ``folder``,
        durations from ``min_s`` to ``max_s`` seconds, only ``paths``."""
        return self._videos_near(self._text(query), top_k, offset=offset,
                                 where=_filters(folder, min_s, max_s, paths))

    def _videos_near(self, vector: np.ndarray, top_k: int, exclude: str | None = None, offset: int = 0,
                     where: str | None = None) -> list[Hit]:
        _check_k(top_k)
        where = "status = 'ok'" + (f" AND path != {quote(exclude)}" if exclude else "") + (where or "")
        found = self._nearest("videos", vector, top_k, where, offset)
        return [Hit(p, round(1.0 - d, 6), i, None if s is None else round(s, 3))
                for i, p, s, d in zip(found["id"].to_pylist(), found["path"].to_pylist(),
                                      found["duration"].to_pylist(), found["_distance"].to_pylist())]

    def video(self, video_id: str) -> dict | None:
        """One video's row (id, path, size, mtime_ns, duration, status, reason) by its id, or ``None``."""
        if not isinstance(video_id, str) or len(video_id) != 16 or not video_id.isalnum():
            return None
        rows = self.store.scan("videos", ["id", "path", "size", "mtime_ns", "duration", "status", "reason"],
                               f"id = {quote(video_id)}").to_pylist()
        return rows[0] if rows else None

    def video_id(self, path: str) -> str:
        return self.store.video_id(str(path))

    def media(self, video_id: str) -> Path | None:
        """The file of a readable video of this library, by id, or ``None``: never a file outside the folders
        the library was filled from (a link pointing out of them, or one that changed since, gives ``None``)."""
        return self._served(self.video(video_id))

    def _served(self, row: dict | None) -> Path | None:
        if row is None or row["status"] != "ok":
            return None
        try:
            real = Path(row["path"]).resolve(strict=True)
        except (OSError, ValueError):
            return None
        roots = self.sources()
        inside = any(real == Path(r) or real.is_relative_to(r) for r in roots)
        return real if inside and real.is_file() else None

    def strip(self, video_id: str) -> bytes | None:
        """A JPEG of the video's frames at its stored times, side by side (the web page's thumbnails); ``None``
        when the file is not one ``media`` serves or cannot be decoded."""
        from zsvc_pl.library.thumbnails import cached_strip

        row = self.video(video_id)
        real = self._served(row)
        if real is None:
            return None
        name = f"{video_id}-{row['mtime_ns']}"
        return cached_strip(self.store.folder, name, str(real), self.frames(row["path"])[0].tolist())

    def gallery(self, found: Sequence[Hit | Moment]) -> Gallery:
        """Results of ``search``, ``moments`` or ``like`` with their thumbnail strips, for a notebook cell."""
        def caption(h: Hit | Moment) -> str:
            span = f" {h.start:.1f}-{h.end:.1f} s" if isinstance(h, Moment) else ""
            return f"{h.score:.3f}{span}  {h.path}"

        return Gallery([(caption(h), self.strip(h.id or self.video_id(h.path))) for h in found])

    def sources(self) -> list[str]:
        """The folders (resolved) the library was last filled from; empty for a library filled before they were
        recorded (``index`` again records them, encoding nothing that is unchanged)."""
        try:
            return json.loads((self.store.folder / SOURCES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []

    def progress(self) -> dict | None:
        """The last or running ``index``: ``total`` videos to encode, ``done``, ``started``, ``finished`` (null
        while it runs or after it was killed)."""
        try:
            return json.loads((self.store.folder / PROGRESS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def frames(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        """One video's stored frame times ``[T]`` (sorted) and features ``[T, D]``."""
        rows = self.store.scan("segments", ["t", "vector"], f"path = {quote(str(path))}")
        t, order = rows["t"].to_numpy(), np.argsort(rows["t"].to_numpy(), kind="stable")
        return t[order], _matrix(rows["vector"])[order]

    def timeline(self, path: str, labels: Sequence[str]) -> Timeline:
        """Per-frame label scores of one video from its stored frames (the curves ``explain`` draws)."""
        t, frames = self.frames(path)
        if not len(t):
            raise LibraryError(f"{path} has no stored frames in {self.store.folder}")
        text = self.model.encode_labels(list(labels)).float().cpu().numpy()
        return next(self._timelines(pa.table({"path": [str(path)] * len(t), "t": t, "vector": vector_column(frames)}),
                                    labels, text, float(self.model.model.logit_scale)))

    def moments(self, query: str | np.ndarray, top_k: int = 10) -> list[Moment]:
        """The best moment of each of the ``top_k`` videos where ``query`` holds best: the stretch of frames
        around the video's best frame scoring at least halfway between its lowest frame and that peak, padded by
        half a frame step (as ``zsvc_pl.search`` defines it)."""
        _check_k(top_k)
        text = self._text(query)
        best: list[str] = []
        while len(best) < top_k:  # the nearest segments of videos not named yet, until top_k videos are named
            limit = (top_k - len(best)) * 16  # a long video has hundreds of segments near each other: a wider
            where = ("path NOT IN (" + ", ".join(map(quote, best)) + ")") if best else None  # net would be slow
            found = self._nearest("segments", text, limit, where)
            best += list(dict.fromkeys(found["path"].to_pylist()))[: top_k - len(best)]
            if found.num_rows < limit:
                break
        if not best:
            return []
        among = "path IN (" + ", ".join(map(quote, best)) + ")"
        rows = self.store.scan("segments", ["path", "t", "vector"], among)
        about = self.store.scan("videos", ["path", "id", "duration"], among).to_pylist()
        about = {r["path"]: r for r in about}
        vectors = _matrix(rows["vector"])
        scores = vectors @ text
        paths, times = np.array(rows["path"].to_pylist()), rows["t"].to_numpy()
        out = []
        for path in best:
            mask = paths == path
            order = np.argsort(times[mask])
            start, end, peak = best_span(times[mask][order], scores[mask][order])
            row = about.get(path, {})
            out.append(Moment(path, round(start, 3), round(end, 3), round(peak, 6), row.get("id", ""),
                              row.get("duration")))
        return sorted(out, key=lambda m: -m.score)

    def like(self, video: str, top_k: int = 10, start: float | None = None, end: float | None = None) -> list[Hit]:
        """The ``top_k`` videos most like a library video (itself left out), or like its moment between
        ``start`` and ``end`` seconds (the mean of its frames there). A video outside the library is encoded."""
        video = str(video)
        where = f"path = {quote(video)}"
        if start is None and end is None:
            row = self.store.scan("videos", ["vector"], where + " AND status = 'ok'")
            vector = _matrix(row["vector"])[0] if row.num_rows else self.model.encode_videos([video])[0].numpy()
        else:
            rows = self.store.scan("segments", ["t", "vector"], where)
            if rows.num_rows:
                t, frames = rows["t"].to_numpy(), _matrix(rows["vector"])
            else:
                frames = self.model.encode_videos_and_frames([video])[1][0].numpy()
                t = np.array(self.model.reader().times(video))
            inside = (t >= (start or 0.0)) & (t <= (end if end is not None else np.inf))
            if not inside.any():
                raise LibraryError(f"{video}: no indexed frame between {start} s and {end} s (frames at "
                                   f"{', '.join(f'{x:.2f}' for x in sorted(t)[:8])} s ...)")
            vector = frames[inside].mean(0)
            vector = vector / np.linalg.norm(vector)
        return self._videos_near(vector, top_k, exclude=video)

    def tag(self, labels: LabelsLike | str | Path, top_k: int = 3, save: bool = False,
            library_examples_only: bool = False) -> list[dict]:
        """Every readable video's ``top_k`` labels with their probabilities (softmax over the labels of the
        stored embeddings, as zero-shot classification scores them), in path order. ``labels``: names, or a label
        set with texts and example clips (``zsvc_pl.data.label_sets``: a mapping, a YAML file, a folder); an
        example that is a video of the library is taken from the store, any other is encoded, unless
        ``library_examples_only`` (then it is refused). ``save``: keep them in the library as a run of their own
        (``runs()``, ``results(run)``) for review."""
        _check_k(top_k)
        label_set = read_label_set(labels)
        names = label_set.names
        text = self.model.model.text_features(label_set.prompts).float().cpu()
        memory = self._examples(label_set, library_examples_only)
        scale, out = float(self.model.model.logit_scale), []
        for batch in self._batches("videos", ["path", "vector"], "status = 'ok'"):  # never the whole library at once
            videos = torch.from_numpy(_matrix(batch["vector"]))
            logits = scale * videos @ text.T
            if memory is not None:
                logits = logits + scale * memory.logits(videos)
            scores, idx = logits.softmax(-1).topk(min(top_k, len(names)), dim=-1)
            out += [{"path": p, "labels": [names[j] for j in i], "scores": [round(x, 6) for x in s]}
                    for p, i, s in zip(batch["path"].to_pylist(), idx.tolist(), scores.tolist())]
        out.sort(key=lambda r: r["path"])
        if save:
            described = label_set.has_examples or any(t != [n] for n, t in zip(names, label_set.texts))
            extra = {"texts": label_set.texts, "examples": label_set.clips} if described else {}
            self.store.save_run("tag", {"labels": names, "top_k": top_k, **extra, **self._made_by()},
                                [{"path": r["path"], "label": label, "rank": k, "score": score} for r in out
                                 for k, (label, score) in enumerate(zip(r["labels"], r["scores"]))])
        return out

    def _examples(self, label_set: LabelSet, library_only: bool) -> ExampleMemory | None:
        """The label set's example clips as a cache model: stored embeddings for the library's own videos."""
        clips, owner = label_set.example_clips()
        if not clips:
            return None
        rows = self.store.scan("videos", ["path", "vector"],
                               "status = 'ok' AND path IN (" + ", ".join(map(quote, clips)) + ")")
        stored = dict(zip(rows["path"].to_pylist(), _matrix(rows["vector"]))) if rows.num_rows else {}
        missing = [c for c in clips if c not in stored]
        if missing and library_only:
            raise LibraryError(f"example clip {missing[0]} is not a readable video of this library")
        encoded = dict(zip(missing, self.model.encode_videos(missing).numpy())) if missing else {}
        features = torch.from_numpy(np.stack([stored.get(c, encoded.get(c)) for c in clips]).astype(np.float32))
        return ExampleMemory(torch.nn.functional.normalize(features, dim=-1), owner, len(label_set.names),
                             weight=self.model.example_weight)

    def _made_by(self) -> dict:
        return {k: self.store.settings[k] for k in ("backbone", "sampling")}

    def runs(self) -> list[dict]:
        """The saved runs (tagging, moderation): id, kind, settings and when."""
        rows = self.store.table("runs").to_arrow().to_pylist()
        return sorted(({**r, "settings": json.loads(r["settings"])} for r in rows), key=lambda r: r["created"])

    def results(self, run: str, path: str | None = None) -> list[dict]:
        """The rows one saved run found (of one video, or all), in path and rank order, each with the latest
        review of it: ``decision``, ``new_label``, ``reviewer``, ``at`` (``None`` when nobody reviewed it)."""
        where = f"run = {quote(run)}" + (f" AND path = {quote(str(path))}" if path is not None else "")
        rows = self.store.scan("results", ["path", "label", "rank", "score", "start_s", "end_s"], where).to_pylist()
        reviews = self.store.reviews(run)
        for r in rows:
            seen = reviews.get((r["path"], r["label"], span_key(r["start_s"])), {})
            r.update({k: seen.get(k) for k in ("decision", "new_label", "reviewer", "at")})
        return sorted(rows, key=lambda r: (r["path"], r["rank"], r["start_s"] or 0.0))

    def review(self, run: str, path: str, label: str, decision: str, reviewer: str, start_s: float | None = None,
               new_label: str | None = None) -> dict:
        """Record a person's decision on one result of a saved run (``confirm``, ``dismiss``, or ``relabel``
        with ``new_label``); kept in the library, and shown by ``results`` and ``export``."""
        return self.store.review(run, str(path), label, decision, reviewer, start_s, new_label)

    def _batches(self, table: str, columns: list[str], where: str | None = None) -> Iterator[pa.RecordBatch]:
        query = self.store.table(table).search().select(columns)
        query = query.where(where) if where else query
        yield from query.limit(None).to_batches(SCAN_BATCH)

    def timelines(self, labels: Sequence[str]) -> Iterator[Timeline]:
        """Per-frame label scores of every readable video, from its stored frames (what ``explain`` and
        moderation read, without decoding), one video at a time: the segments are read in batches, in the order
        they were written, where each video's frames lie together."""
        text = self.model.encode_labels(list(labels)).float().cpu().numpy()
        scale = float(self.model.model.logit_scale)
        carry: list[pa.RecordBatch] = []
        for batch in self._batches("segments", ["path", "t", "vector"]):
            paths = np.array(batch["path"].to_pylist())
            cut = np.flatnonzero(paths != paths[-1])
            rest = int(cut[-1]) + 1 if len(cut) else 0  # where the batch's last video starts
            if rest:
                yield from self._timelines(pa.Table.from_batches(carry + [batch.slice(0, rest)]), labels, text, scale)
                carry = []
            carry.append(batch.slice(rest))
        if carry:
            yield from self._timelines(pa.Table.from_batches(carry), labels, text, scale)

    @staticmethod
    def _timelines(rows: pa.Table, labels: Sequence[str], text: np.ndarray, scale: float) -> Iterator[Timeline]:
        similarity = _matrix(rows["vector"]) @ text.T
        scores = torch.from_numpy(scale * similarity).softmax(-1).numpy()
        paths, times = np.array(rows["path"].to_pylist()), rows["t"].to_numpy()
        order = np.lexsort((times, paths))
        paths, times, scores, similarity = paths[order], times[order], scores[order], similarity[order]
        bounds = np.flatnonzero(np.r_[True, paths[1:] != paths[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield Timeline(str(paths[a]), list(labels), times[a:b].astype(float), scores[a:b], np.empty(0),
                           similarity[a:b])

    def flags(self, thresholds: dict[str, float], others: Sequence[str] = (), abstain: float | None = None,
              save: bool = False) -> tuple[list[Flag], list[tuple[str, str]]]:
        """Moderation from the store: the flags of every readable video (with spans), and the unreadable files,
        which were not checked and are never reported as clean. ``save``: keep the flags as a run (see ``tag``)."""
        labels = list(thresholds) + [o for o in others if o not in thresholds]
        found = [f for tl in self.timelines(labels) for f in tl.flags(thresholds, abstain)]
        if save:
            self.store.save_run("moderate", {"thresholds": thresholds, "others": list(others), "abstain": abstain,
                                             **self._made_by()},
                                [{"path": f.path, "label": f.label, "rank": 0, "score": f.score,
                                  "start_s": f.start_s, "end_s": f.end_s} for f in found])
        return found, self.unreadable()

    def export(self, run: str | None = None) -> pa.Table:
        """The videos table without vectors (path, size, mtime_ns, duration, status, reason), or a saved run's
        results with their reviews (see ``results``), for CSV, Parquet or JSON."""
        if run is not None:
            if run not in {r["run"] for r in self.runs()}:
                raise LibraryError(f"{self.store.folder} has no saved run {run!r}: `zsvc status` lists the runs")
            return pa.Table.from_pylist(self.results(run))
        return self.store.scan("videos", ["path", "size", "mtime_ns", "duration", "status", "reason"]).sort_by("path")


def best_span(t: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    """One video's moment from its frame times ``t`` (sorted) and scores ``s``: the stretch of frames around the
    best one scoring at least halfway between the lowest and that peak, padded by half a frame step; returns
    (start, end, peak score)."""
    peak = int(s.argmax())
    level, lo, hi = s.min() + (s[peak] - s.min()) / 2, peak, peak
    while lo > 0 and s[lo - 1] >= level:
        lo -= 1
    while hi < len(s) - 1 and s[hi + 1] >= level:
        hi += 1
    half = float(t[1] - t[0]) / 2 if len(t) > 1 else 0.0
    return max(0.0, float(t[lo]) - half), float(t[hi]) + half, float(s[peak])


def _filters(folder: str | None, min_s: float | None, max_s: float | None, paths: Sequence[str] | None) -> str:
    """The ``AND ...`` clauses of the search filters."""
    where = ""
    if folder:
        where += f" AND starts_with(path, {quote(str(folder).rstrip('/') + '/')})"
    for op, value in ((">=", min_s), ("<=", max_s)):
        if value is not None:
            if not math.isfinite(float(value)):
                raise ValueError(f"a duration bound must be a number of seconds, got {value!r}")
            where += f" AND duration {op} {float(value)!r}"
    if paths is not None:
        where += " AND path IN (" + (", ".join(map(quote, paths)) or "''") + ")"
    return where


def _matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list column of vectors as a float32 matrix ``[N, D]``."""
    flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return flat.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(flat), flat.type.list_size)


def _check_k(top_k: int) -> None:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
