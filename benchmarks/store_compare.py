"""The library's store (LanceDB) against the simplest alternative: SQLite for the rows and a memory-mapped
float16 matrix for the vectors (rclip keeps its vectors in SQLite; the matrix beside it reads faster).

    python benchmarks/store_compare.py --videos 100000 [--frames 8] [--dim 512] [--queries 50]

The same synthetic videos (``library_scale``'s vectors) go into both: per video its embedding, per frame its
time and feature. Prints per store: filling time and bytes on disk, adding 1,000 videos to the full store, text
search p50/p99 (exact: every video vector read; LanceDB also with its vector index, built by
``Library.optimize``), moments p50/p99 (the nearest frames, then the best span per video, as ``Library.moments``
does), and peak memory of a query process. Each store is queried from a fresh process, so the page cache is
warm for both and the process's own memory is what differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from library_scale import CHUNK, TextStandIn, add, size_of, videos_and_frames  # noqa: E402

from zsvc_pl.library import Library  # noqa: E402
from zsvc_pl.library.library import best_span  # noqa: E402


class SqliteStore:
    """Rows in SQLite (``videos``: path, row; ``segments``: path, t, row), vectors in two raw float16 files."""

    def __init__(self, folder: Path, dim: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.dim = folder, dim
        self.db = sqlite3.connect(folder / "rows.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS videos (row INTEGER PRIMARY KEY, path TEXT UNIQUE, size INTEGER,"
                        " mtime_ns INTEGER, status TEXT, reason TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS segments (row INTEGER PRIMARY KEY, path TEXT, t REAL)")
        self.db.execute("CREATE INDEX IF NOT EXISTS segments_path ON segments (path)")

    def add(self, paths: list[str], v: np.ndarray, f: np.ndarray) -> None:
        """One transaction: vectors appended to the files (fsynced), then the rows that point at them."""
        start = self.db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
        seg_start = self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
        for name, x in (("videos.f16", v), ("segments.f16", f.reshape(-1, self.dim))):
            with open(self.folder / name, "ab") as out:
                out.write(np.ascontiguousarray(x, np.float16).tobytes())
                out.flush()
        frames = f.shape[1]
        with self.db:
            self.db.executemany("INSERT INTO videos VALUES (?, ?, 1, 1, 'ok', '')",
                                [(start + i, p) for i, p in enumerate(paths)])
            self.db.executemany("INSERT INTO segments VALUES (?, ?, ?)",
                                [(seg_start + i * frames + j, p, float(j)) for i, p in enumerate(paths)
                                 for j in range(frames)])

    def _scores(self, name: str, q: np.ndarray) -> np.ndarray:
        """Cosine of every stored vector with ``q``, read from the memory map in blocks (NumPy has no float16
        matrix product: each block is widened to float32)."""
        matrix = np.memmap(self.folder / name, np.float16, "r").reshape(-1, self.dim)
        q = q.astype(np.float32)
        return np.concatenate([matrix[i:i + 65536].astype(np.float32) @ q for i in range(0, len(matrix), 65536)])

    def search(self, q: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        scores = self._scores("videos.f16", q)
        best = np.argpartition(-scores, k)[:k]
        best = best[np.argsort(-scores[best])]
        rows = dict(self.db.execute(f"SELECT row, path FROM videos WHERE row IN ({','.join(map(str, best))})"))
        return [(rows[int(i)], float(scores[i])) for i in best]

    def moments(self, q: np.ndarray, k: int = 10) -> list[tuple[str, float, float, float]]:
        scores = self._scores("segments.f16", q)
        order = np.argpartition(-scores, k * 64)[: k * 64]
        order = order[np.argsort(-scores[order])]
        paths = dict(self.db.execute(f"SELECT row, path FROM segments WHERE row IN ({','.join(map(str, order))})"))
        best = list(dict.fromkeys(paths[int(i)] for i in order))[:k]
        out = []
        for path in best:
            rows = self.db.execute("SELECT row, t FROM segments WHERE path = ? ORDER BY t", (path,)).fetchall()
            idx, t = np.array([r for r, _ in rows]), np.array([x for _, x in rows])
            out.append((path, *best_span(t, scores[idx])))
        return out


QUERY = """
import json, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
from store_compare import SqliteStore, TextStandIn
from library_scale import clustered
def high_water():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
base = high_water()
basis = np.linalg.qr(np.random.default_rng(2).standard_normal(({dim}, 32)))[0].T.astype(np.float32)
queries = clustered({queries}, {dim}, np.random.default_rng(5), basis)
if {kind!r} == "sqlite":
    store = SqliteStore(__import__("pathlib").Path({folder!r}), {dim})
    search, moments = store.search, store.moments
else:
    from zsvc_pl.library import Library
    lib = Library.open({folder!r}, TextStandIn({dim}, {frames}))
    search, moments = lib.search, lib.moments
out = {{}}
for name, fn in (("search", search), ("moments", moments)):
    fn(queries[0], 10)
    times = []
    for q in queries:
        t = time.perf_counter(); fn(q, 10); times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    out[name] = f"{{np.percentile(ms, 50):.1f}} / {{np.percentile(ms, 99):.1f}} ms"
out["memory_mb"] = f"{{base:.0f}} after imports, {{high_water():.0f}} peak"
print(json.dumps(out))
"""


def query_process(kind: str, folder: Path, args) -> dict:
    code = QUERY.format(bench=str(Path(__file__).parent), kind=kind, folder=str(folder), dim=args.dim,
                        frames=args.frames, queries=args.queries)
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default="/tmp/store_compare")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    basis = np.linalg.qr(np.random.default_rng(2).standard_normal((args.dim, 32)))[0].T.astype(np.float32)
    stand_in = TextStandIn(args.dim, args.frames)
    lib = Library.create(out / "lance", "synthetic", None, args.frames, model=stand_in)
    sqlite = SqliteStore(out / "sqlite", args.dim)
    results = {"lancedb": {}, "sqlite+memmap": {}}
    fill = {"lancedb": 0.0, "sqlite+memmap": 0.0}
    rng = np.random.default_rng(0)
    for i in range(0, args.videos + 1000, CHUNK):
        n = min(CHUNK, args.videos - i) if i < args.videos else 1000
        paths, v, f = videos_and_frames(n, args.dim, args.frames, rng, basis, i)
        for name, write in (("lancedb", lambda: add(lib.store, paths, v, f)),
                            ("sqlite+memmap", lambda: sqlite.add(paths, v, f))):
            start = time.perf_counter()
            write()
            if i >= args.videos:
                results[name]["add_1000_s"] = round(time.perf_counter() - start, 3)
            else:
                fill[name] += time.perf_counter() - start
        if i + n == args.videos:  # full: measure exact queries before the last 1,000 are added
            for name, folder in (("lancedb", out / "lance"), ("sqlite+memmap", out / "sqlite")):
                results[name]["fill_s"] = round(fill[name], 1)
                results[name]["bytes_on_disk"] = size_of(folder)
                results[name]["exact"] = query_process("lance" if name == "lancedb" else "sqlite", folder, args)
    start = time.perf_counter()
    lib.optimize()
    results["lancedb"]["index_build_s"] = round(time.perf_counter() - start, 1)
    results["lancedb"]["indexed"] = query_process("lance", out / "lance", args)
    print(json.dumps({"videos": args.videos, "frames": args.frames, **results}, indent=1))


if __name__ == "__main__":
    main()
