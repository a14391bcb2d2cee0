"""The library (``zsvc_pl.library``) at scale, against today's ``.idx`` search index, with synthetic vectors.

    python benchmarks/library_scale.py --sizes 10000 100000 [1000000] [--dim 512] [--frames 8] [--long 1000]
        [--rows-per-partition 32768 --max-partitions 256 --nprobes 8 16 32]   # the vector index's settings

Vectors go through the library's own write path (``Store.add``, in commits of 10,000 videos), shaped like a video
library's (``vector_search.library``: clusters of scenes in a low-dimensional subspace); each video has
``--frames`` frame vectors around its embedding. No video is decoded and no model is loaded: a stand-in gives the
text side (query and label vectors). Per size it prints: bytes on disk, the time to fill the library (what a
rebuild costs) and to build its indexes, the time to add 1,000 videos to the full library (commit plus folding them
into the indexes), search latency p50/p99 exact and with the vector index and the index's recall@10 against exact
search, moments latency p50/p99 (and the videos they name against exact search), re-tagging every video against 100
labels, and the peak memory of a separate query process (20 searches and 20 moment queries) beside its memory after
imports; and the same figures for today's ``.idx`` file (``zsvc_pl.search.VideoIndex``) where it still runs (up to
``--idx-max`` videos). ``--long N`` adds N one-hour videos at one frame every 2 s (1,800 frames each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from vector_search import library as clustered  # noqa: E402

from zsvc_pl.library import Library  # noqa: E402
from zsvc_pl.library import library as library_module  # noqa: E402
from zsvc_pl.library.store import Store  # noqa: E402

CHUNK = 10_000


class TextStandIn:
    """What the library asks of a model, without one: unit vectors for texts (seeded by the text)."""

    def __init__(self, dim: int, frames: int) -> None:
        self.num_frames, self.backbone_identity = frames, "synthetic"
        self.model = SimpleNamespace(embed_dim=dim, logit_scale=torch.tensor(100.0), text_features=self.encode_labels)
        self.example_weight = 0.0
        self._reader = SimpleNamespace(sampling_key=f"synthetic,frames={frames}")

    def reader(self):
        return self._reader

    def encode_labels(self, labels):
        out = []
        for label in labels:
            v = np.random.default_rng(abs(hash(label)) % 2**32).standard_normal(self.model.embed_dim)
            out.append(v / np.linalg.norm(v))
        return torch.tensor(np.stack(out), dtype=torch.float32)


def videos_and_frames(n: int, dim: int, frames: int, rng, basis, start: int = 0):
    """``n`` videos: paths, embeddings [n, D] and frame vectors [n, T, D] (the embedding plus per-frame spread)."""
    centre = clustered(n, dim, rng, basis)
    spread = rng.standard_normal((n, frames, dim)).astype(np.float32) * 0.02
    f = centre[:, None, :] + spread
    f /= np.linalg.norm(f, axis=-1, keepdims=True)
    v = f.mean(1)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return [f"/videos/{i // 1000:04d}/v{i:07d}.mp4" for i in range(start, start + n)], v, f


def add(store: Store, paths, v, f, step: float = 1.0) -> None:
    rows = [{"path": p, "size": 1, "mtime_ns": 1, "status": "ok", "reason": ""} for p in paths]
    times = list(np.arange(f.shape[1]) * step)
    store.add(rows, v, [(p, times, fr) for p, fr in zip(paths, f)])


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"{np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f} ms"


def timed(fn, queries) -> tuple[list, list[float]]:
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return out, times


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


QUERY_PROCESS = """
import json, sys
import numpy as np
sys.path.insert(0, {bench!r})
from library_scale import TextStandIn
from zsvc_pl.library import Library
def high_water():  # VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
base = high_water()
lib = Library.open({folder!r}, TextStandIn({dim}, {frames}))
rng = np.random.default_rng(7)
for q in rng.standard_normal((20, {dim})):
    lib.search(q, 10)
    lib.moments(q, 10)
print(json.dumps({{"after_imports_mb": round(base), "peak_mb": round(high_water())}}))
"""


def run_size(n: int, args, out: Path, long_videos: int = 0) -> dict:
    rng, dim, frames = np.random.default_rng(0), args.dim, args.frames
    basis = np.linalg.qr(np.random.default_rng(2).standard_normal((dim, 32)))[0].T.astype(np.float32)
    folder = out / (f"lib{n}" + ("-long" if long_videos else ""))
    shutil.rmtree(folder, ignore_errors=True)
    stand_in = TextStandIn(dim, frames if not long_videos else 1800)
    lib = Library.create(folder, "synthetic", None, stand_in.num_frames, model=stand_in)
    held = []
    start = time.perf_counter()
    chunk = CHUNK if not long_videos else 100  # 100 one-hour videos: 180,000 frame vectors a commit
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        if long_videos:
            paths, v, f = videos_and_frames(m, dim, 1800, rng, basis, i)
            add(lib.store, paths, v, f, step=2.0)
        else:
            paths, v, f = videos_and_frames(m, dim, frames, rng, basis, i)
            add(lib.store, paths, v, f)
        held.append(v)
    fill_s = time.perf_counter() - start
    vectors = np.concatenate(held)
    queries = clustered(args.queries, dim, np.random.default_rng(5), basis)
    result = {"videos": n, "frames": n * stand_in.num_frames, "fill_s": round(fill_s, 1)}
    exact_found, t = timed(lambda q: lib.search(q, 10), queries)
    result["search_exact"] = percentiles(t)
    truth = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
    exact_moments, t = timed(lambda q: lib.moments(q, 10), queries[:20])
    result["moments_exact"] = percentiles(t)
    print(f"{n}: filled in {fill_s:.0f} s, queried exactly; building indexes", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result["indexes"] = lib.optimize(vector_index_from=args.vector_index_from)
    result["index_build_s"] = round(time.perf_counter() - start, 1)
    index_of = {f"/videos/{i // 1000:04d}/v{i:07d}.mp4": i for i in range(n)}
    for probes in args.nprobes or [library_module.NPROBES]:  # the last one stays for the rest
        library_module.NPROBES = probes
        found, t = timed(lambda q: lib.search(q, 10), queries)
        key = "" if not args.nprobes else f"_nprobes{probes}"
        result["search_indexed" + key] = percentiles(t)
        result["recall_at_10" + key] = round(float(np.mean([len({index_of[h.path] for h in hits} & tr) / 10
                                                            for hits, tr in zip(found, truth)])), 3)
    found, t = timed(lambda q: lib.moments(q, 10), queries[:20])
    result["moments_indexed"] = percentiles(t)
    result["moments_recall_at_10"] = round(float(np.mean([len({m.path for m in a} & {m.path for m in b}) / 10
                                                          for a, b in zip(found, exact_moments)])), 3)
    result["bytes_on_disk"] = size_of(folder)
    if not long_videos:
        paths, v, f = videos_and_frames(1000, dim, frames, rng, basis, n)
        start = time.perf_counter()
        add(lib.store, paths, v, f)
        lib.optimize(vector_index_from=args.vector_index_from)
        result["add_1000_s"] = round(time.perf_counter() - start, 2)
        _, t = timed(lambda q: lib.search(q, 10), queries)
        result["search_after_add"] = percentiles(t)
        result["add_vs_rebuild"] = f"{100 * result['add_1000_s'] / (fill_s + result['index_build_s']):.2f} %"
        labels = [f"label {i}" for i in range(100)]
        start = time.perf_counter()
        tags = lib.tag(labels, 1)
        result["retag_100_labels_s"] = round(time.perf_counter() - start, 1)
        assert len(tags) == n + 1000
    code = QUERY_PROCESS.format(bench=str(Path(__file__).parent), folder=str(folder), dim=dim,
                                frames=stand_in.num_frames)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result["query_process"] = json.loads(proc.stdout.strip().splitlines()[-1])
    if n <= args.idx_max and not long_videos:
        result["idx"] = run_idx(vectors, n, dim, frames, out)
    return result


def run_idx(vectors: np.ndarray, n: int, dim: int, frames: int, out: Path) -> dict:
    """Today's index file at the same size: save, load, a text query and a moments query."""
    from zsvc_pl.search import VideoIndex

    stand_in = SimpleNamespace(backbone_identity="synthetic",
                               encode_labels=lambda qs: torch.from_numpy(np.stack(qs).astype(np.float32)))
    emb = torch.from_numpy(vectors)
    index = VideoIndex("synthetic", [f"v{i}" for i in range(n)], [[1, 1]] * n, emb,
                       frames=[emb[i].expand(frames, dim).clone() for i in range(n)],
                       times=[list(range(frames))] * n)
    path = out / f"videos{n}.idx"
    start = time.perf_counter()
    index.save(path)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    loaded = VideoIndex.load(path)
    load_s = time.perf_counter() - start
    q = vectors[0]
    start = time.perf_counter()
    loaded.moments(stand_in, q, 10)
    moments_s = time.perf_counter() - start
    return {"bytes": path.stat().st_size, "save_s": round(save_s, 1), "load_s": round(load_s, 1),
            "moments_s": round(moments_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="none: only --long")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--long", type=int, default=0, help="one-hour videos at one frame every 2 s")
    parser.add_argument("--vector-index-from", type=int, default=100_000)
    parser.add_argument("--idx-max", type=int, default=100_000)
    parser.add_argument("--out", default="/tmp/library_scale")
    parser.add_argument("--rows-per-partition", type=int, default=library_module.ROWS_PER_PARTITION,
                        help="IVF partitions: rows // this, at most --max-partitions")
    parser.add_argument("--max-partitions", type=int, default=library_module.MAX_PARTITIONS)
    parser.add_argument("--nprobes", type=int, nargs="*", default=[], help="search latency and recall per value")
    args = parser.parse_args()
    library_module.ROWS_PER_PARTITION, library_module.MAX_PARTITIONS = args.rows_per_partition, args.max_partitions
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        print(json.dumps(run_size(n, args, out)), flush=True)
    if args.long:
        print(json.dumps(run_size(args.long, args, out, long_videos=args.long)), flush=True)


if __name__ == "__main__":
    main()
