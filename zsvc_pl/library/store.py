"""The library's store: one folder holding an embedded LanceDB database and the settings it was filled with.

Tables (Lance format: columnar, versioned; every ``add`` or ``delete`` is one commit, and a reader sees the
last committed version, so a query while ``index`` writes never sees half a batch):

- ``videos``: ``id`` (what the web page names a video by: a digest of the library's ``uid`` and the path, so an
  id never names a file of another library), ``path``, ``size``, ``mtime_ns`` (the file stamp taken before the
  read), ``duration`` (seconds; null when unknown), ``status`` (``ok`` or ``unreadable``), ``reason``,
  ``vector`` (the video embedding classification uses: the mean of the sampled frames' features,
  L2-normalised; zeros for an unreadable file).
- ``segments``: ``path``, ``t`` (seconds), ``vector`` (one frame's L2-normalised feature: the frames
  classification samples, and one every ``every_s`` seconds of a long video, at most ``max_segments``).
- ``results``: what ``tag`` and ``moderate`` found, for a person to review: ``run`` (a digest of the settings
  that made it: the labels, thresholds and top-k, the backbone), ``kind``, ``path``, ``label``, ``score``,
  ``start_s``/``end_s`` (a flag's span); ``runs``: each run's settings as JSON. A run with other settings has
  another id, so its rows never mix with an earlier run's; the same run again replaces its rows.
- ``reviews``: what a person decided about a result (``confirm``, ``dismiss``, ``relabel`` to ``new_label``),
  who and when; appended, never rewritten, and the latest decision on a result is the one that holds. Saving a
  run again keeps its reviews (they name the run, the path, the label and the span).

Vectors are stored as float16 (half the bytes; top-1 agreement with float32 is measured by
``benchmarks/library_scale.py``). ``library.json`` records the backbone, its weights, the frame sampling and
the segment spacing:
a library is filled by one model, and opening it with another is refused. One writer at a time
(``.library.lock``); readers never wait. A library of format 1 (no ids, no durations) is brought to format 2
when it is first opened, without reading a video.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from zsvc_pl.data.outputs import OutputError, atomic_write_text, output_lock

SETTINGS = "library.json"
FORMAT = 2
DECISIONS = ("confirm", "dismiss", "relabel")


class LibraryError(ValueError):
    """A library that cannot be used as asked; the message names it and says what to do."""


def vector_column(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x, np.float16).ravel()), x.shape[1])


def video_schema(dim: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                      ("duration", pa.float32()), ("status", pa.string()), ("reason", pa.string()),
                      ("vector", pa.list_(pa.float16(), dim))])


def segment_schema(dim: int) -> pa.Schema:
    return pa.schema([("path", pa.string()), ("t", pa.float32()), ("vector", pa.list_(pa.float16(), dim))])


RESULT_SCHEMA = pa.schema([("run", pa.string()), ("kind", pa.string()), ("path", pa.string()),
                           ("label", pa.string()), ("rank", pa.int32()), ("score", pa.float32()),
                           ("start_s", pa.float32()), ("end_s", pa.float32())])
RUN_SCHEMA = pa.schema([("run", pa.string()), ("kind", pa.string()), ("settings", pa.string()),
                        ("created", pa.string())])
REVIEW_SCHEMA = pa.schema([("run", pa.string()), ("path", pa.string()), ("label", pa.string()),
                           ("start_s", pa.float32()), ("decision", pa.string()), ("new_label", pa.string()),
                           ("reviewer", pa.string()), ("at", pa.string())])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """The database of one library folder (``Store.create`` or ``Store.open``)."""

    def __init__(self, folder: Path, settings: dict) -> None:
        import lancedb

        self.folder = folder
        self.settings = settings
        self.db = lancedb.connect(str(folder / "db"))

    @classmethod
    def create(cls, folder: str | Path, settings: dict) -> "Store":
        """A new library, or the existing one when its settings are these; refuses other settings."""
        folder = Path(folder)
        if (folder / SETTINGS).exists():
            store = cls.open(folder)
            changed = {k: (store.settings.get(k), v) for k, v in settings.items()
                       if store.settings.get(k) != v and k != "uid"}
            if changed:
                what = "; ".join(f"{k}: library {a!r}, given {b!r}" for k, (a, b) in changed.items())
                raise LibraryError(f"{folder} was filled with other settings ({what}): a library holds one "
                                   "model's vectors; use its settings or another library folder")
            return store
        if folder.exists() and any(folder.iterdir()):
            raise LibraryError(f"{folder} exists and is not a zsvc_pl library: choose an empty or new folder")
        settings = {"format": FORMAT, "uid": secrets.token_hex(8), **settings}
        atomic_write_text(folder / SETTINGS, json.dumps(settings, indent=1))
        store = cls(folder, settings)
        store.db.create_table("videos", schema=video_schema(settings["dim"]), exist_ok=True)
        store.db.create_table("segments", schema=segment_schema(settings["dim"]), exist_ok=True)
        store._results_tables()
        return store

    def _results_tables(self) -> None:
        self.db.create_table("results", schema=RESULT_SCHEMA, exist_ok=True)
        self.db.create_table("runs", schema=RUN_SCHEMA, exist_ok=True)
        self.db.create_table("reviews", schema=REVIEW_SCHEMA, exist_ok=True)

    def video_id(self, path: str) -> str:
        """The id a video of this library is named by outside it (the web page's links)."""
        return hashlib.sha256(f"{self.settings['uid']}\0{path}".encode()).hexdigest()[:16]

    def review(self, run: str, path: str, label: str, decision: str, reviewer: str, start_s: float | None = None,
               new_label: str | None = None) -> dict:
        """Record a person's decision on one result of a saved run; refuses unknown decisions, runs and results."""
        if decision not in DECISIONS:
            raise LibraryError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if decision == "relabel" and not (new_label or "").strip():
            raise LibraryError("relabel needs the new label")
        if not reviewer.strip():
            raise LibraryError("a review needs the reviewer's name")
        where = f"run = {quote(run)} AND path = {quote(path)} AND label = {quote(label)}"
        if self.table("results").count_rows(where) == 0:
            raise LibraryError(f"run {run} has no result {label!r} for {path}")
        row = {"run": run, "path": path, "label": label, "start_s": start_s, "decision": decision,
               "new_label": new_label.strip() if decision == "relabel" else None, "reviewer": reviewer.strip(),
               "at": now()}
        self._write("reviews", pa.Table.from_pylist([row], schema=REVIEW_SCHEMA))
        return row

    def reviews(self, run: str) -> dict[tuple, dict]:
        """The latest decision on each reviewed result of a run, by (path, label, start_s)."""
        rows = self.scan("reviews", REVIEW_SCHEMA.names, f"run = {quote(run)}").to_pylist()
        latest: dict[tuple, dict] = {}
        for r in sorted(rows, key=lambda r: r["at"]):  # appended in order; equal times keep their order
            latest[(r["path"], r["label"], span_key(r["start_s"]))] = r
        return latest

    def save_run(self, kind: str, settings: dict, rows: list[dict]) -> str:
        """Store the results of one run (``rows``: path, label, rank, score, start_s, end_s), replacing an earlier
        run with the same settings; returns the run's id."""
        text = json.dumps({"kind": kind, **settings}, sort_keys=True)
        run = f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
        self._results_tables()
        self.table("results").delete(f"run = {quote(run)}")
        self.table("runs").delete(f"run = {quote(run)}")
        if rows:
            self._write("results", pa.table({"run": [run] * len(rows), "kind": [kind] * len(rows),
                                             **{k: [r.get(k) for r in rows] for k in RESULT_SCHEMA.names[2:]}},
                                            schema=RESULT_SCHEMA))
        self._write("runs", pa.table({"run": [run], "kind": [kind], "settings": [text], "created": [now()]},
                                     schema=RUN_SCHEMA))
        return run

    @classmethod
    def open(cls, folder: str | Path) -> "Store":
        """An existing library; one line naming it when it is missing or damaged."""
        folder = Path(folder)
        try:
            settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LibraryError(f"{folder} is not a zsvc_pl library (no {SETTINGS}): fill one with "
                               f"`zsvc index {folder} --videos DIR`") from None
        except (ValueError, UnicodeDecodeError):
            raise LibraryError(f"{folder / SETTINGS} is damaged: it is not JSON") from None
        if not isinstance(settings, dict) or settings.get("format") not in (1, FORMAT) or "dim" not in settings:
            raise LibraryError(f"{folder / SETTINGS} is not a library settings file of this zsvc_pl (format {FORMAT})")
        store = cls(folder, settings)
        try:
            store.table("videos"), store.table("segments")
        except Exception as e:
            raise LibraryError(f"{folder / 'db'} is damaged or missing ({type(e).__name__}): the library cannot be "
                               "read; index again into a new folder") from None
        if settings["format"] == 1:
            store._upgrade()
        return store

    def _upgrade(self) -> None:
        """Format 1 to 2: a uid, and the ``id`` and ``duration`` columns (durations unknown until reindexed)."""
        with output_lock(self.folder / "library"):
            videos = self.table("videos")
            if "id" not in videos.schema.names:
                videos.add_columns([pa.field("id", pa.string()), pa.field("duration", pa.float32())])
            self.settings = {**self.settings, "format": FORMAT, "uid": self.settings.get("uid") or secrets.token_hex(8)}
            for batch in videos.search().select(["path"]).limit(None).to_batches(65536):
                paths = batch["path"].to_pylist()
                ids = pa.table({"path": paths, "id": [self.video_id(p) for p in paths]})
                videos.merge_insert("path").when_matched_update_all().execute(ids)
            self._results_tables()
            atomic_write_text(self.folder / SETTINGS, json.dumps(self.settings, indent=1))

    def table(self, name: str):
        """A table at its last committed version."""
        return self.db.open_table(name)

    def scan(self, name: str, columns: list[str], where: str | None = None) -> pa.Table:
        """Columns of the rows of a table (all rows, or those ``where`` selects), without its other columns."""
        query = self.table(name).search().select(columns)
        if where:
            query = query.where(where)
        return query.limit(None).to_arrow()

    def stamps(self) -> dict[str, tuple[int, int]]:
        """Every video row's file stamp, by path."""
        t = self.scan("videos", ["path", "size", "mtime_ns"])
        return dict(zip(t["path"].to_pylist(), zip(t["size"].to_pylist(), t["mtime_ns"].to_pylist())))

    def delete(self, paths: list[str]) -> None:
        """Remove these videos and their segments (segments first: a video row marks a finished video)."""
        for i in range(0, len(paths), 500):
            where = "path IN (" + ", ".join(quote(p) for p in paths[i:i + 500]) + ")"
            self.table("segments").delete(where)
            self.table("videos").delete(where)

    def add(self, videos: list[dict], vectors: np.ndarray, segments: list[tuple[str, list[float], np.ndarray]]) -> None:
        """Add finished videos: their segments first, then their rows (two commits: ``Library.index`` notes the
        chunk's paths before and removes a killed chunk's rows before encoding those videos again)."""
        for name, table in self._tables(videos, vectors, segments).items():
            self._write(name, table)

    def _tables(self, videos: list[dict], vectors: np.ndarray,
                segments: list[tuple[str, list[float], np.ndarray]]) -> dict[str, pa.Table]:
        """The segment rows and the video rows of finished videos, in the order they are committed."""
        dim, tables = self.settings["dim"], {}
        if segments:
            paths = [p for p, times, _ in segments for _ in times]
            t = np.concatenate([np.asarray(times, np.float32) for _, times, _ in segments])
            frames = np.concatenate([f for _, _, f in segments])
            tables["segments"] = pa.table({"path": paths, "t": t, "vector": vector_column(frames)},
                                          schema=segment_schema(dim))
        if videos:
            columns = {k: [v.get(k) for v in videos] for k in ("path", "size", "mtime_ns", "duration", "status",
                                                               "reason")}
            ids = [self.video_id(p) for p in columns["path"]]
            tables["videos"] = pa.table({"id": ids, **columns, "vector": vector_column(vectors)},
                                        schema=video_schema(dim))
        return tables

    def stage(self, videos: list[dict], vectors: np.ndarray,
              segments: list[tuple[str, list[float], np.ndarray]]) -> dict[str, list[str]]:
        """Write what ``add`` would as data files no reader sees yet (Lance fragments), and return their
        descriptions (JSON) for ``add_staged``: each rank of a distributed fill stages its own rows, and one
        process commits them all."""
        from lance.fragment import write_fragments

        staged = {}
        for name, table in self._tables(videos, vectors, segments).items():
            dataset = self.table(name).to_lance()
            staged[name] = [json.dumps(f.to_json()) for f in write_fragments(table, dataset, schema=table.schema)]
        return staged

    def add_staged(self, staged: list[dict[str, list[str]]]) -> None:
        """Commit the rows that ``stage`` wrote, on any rank: the segments in one commit, then the video rows in
        another, as ``add`` does."""
        import lance
        from lance.fragment import FragmentMetadata

        for name in ("segments", "videos"):
            fragments = [FragmentMetadata.from_json(f) for s in staged for f in s.get(name, [])]
            if fragments:
                dataset = self.table(name).to_lance()
                lance.LanceDataset.commit(dataset.uri, lance.LanceOperation.Append(fragments),
                                          read_version=dataset.version)

    def _write(self, name: str, table: pa.Table) -> None:
        try:
            self.table(name).add(table)
        except OSError as e:
            raise OutputError(f"cannot write the library {self.folder} ({e}): free space or make it writable") from None


def span_key(start_s: float | None) -> float | None:
    """A flag's start as reviews and results are matched on (to the millisecond; ``None`` for a tag)."""
    return None if start_s is None else round(float(start_s), 3)


def quote(text: str) -> str:
    """A string literal for a table filter."""
    return "'" + text.replace("'", "''") + "'"
