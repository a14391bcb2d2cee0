"""Exact against approximate nearest-neighbour search over video embeddings, at 10^5 and 10^6 vectors.

    python benchmarks/vector_search.py [--sizes 100000 1000000] [--dim 512] [--queries 200]

Synthetic unit vectors shaped like a video library's embeddings (2,000 clusters of scenes, each spread in
a 32-dimensional subspace, plus a little noise, in ViT-B-32's 512 dimensions; embeddings of real videos have
a low intrinsic dimension, and uniform random vectors would make every method look worse than it is),
queries drawn the same way. For each size: exact search (one matrix product, what ``zsvc_pl.search`` does),
FAISS IVF-Flat (1,024 lists, trained on 50,000 vectors), FAISS HNSW and usearch HNSW (f32, up to
``--hnsw-max`` vectors: their builds take minutes per 10^5 on 2 cores), each with its build time, query
latency (one query at a time, median and 95th percentile, 2 threads) and recall@10 against the exact answer.
Needs ``pip install -e ".[ann]"``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def library(n: int, dim: int, rng: np.random.Generator, basis: np.ndarray, clusters: int = 2000) -> np.ndarray:
    """Unit vectors: a cluster centre, a spread inside a 32-dimensional subspace (what varies between the shots
    of one kind of scene), and a little isotropic noise."""
    centre_rng = np.random.default_rng(1)  # the same clusters for the library and the queries
    centres = centre_rng.standard_normal((clusters, basis.shape[0])).astype(np.float32) @ basis
    latent = rng.standard_normal((n, basis.shape[0])).astype(np.float32) * 0.5
    x = centres[rng.integers(0, clusters, n)] + latent @ basis + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed_queries(search, queries: np.ndarray) -> tuple[list[np.ndarray], dict]:
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return found, {"median_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def recall(found: list[np.ndarray], truth: list[np.ndarray], k: int) -> float:
    return round(float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)])), 4)


def run(n: int, dim: int, queries: int, hnsw_max: int, k: int = 10, seed: int = 0) -> list[dict]:
    import faiss
    from usearch.index import Index

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(2).standard_normal((dim, 32)))[0].T.astype(np.float32)
    x, q = library(n, dim, rng, basis), library(queries, dim, rng, basis)
    xt = torch.from_numpy(x)
    rows = []
    truth, lat = timed_queries(lambda v: torch.topk(xt @ torch.from_numpy(v), k).indices.numpy(), q)
    rows.append({"n": n, "method": "exact (torch matmul)", "build_s": 0.0, **lat, "recall@10": 1.0})
    start = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[rng.choice(n, min(n, 50_000), replace=False)])
    ivf.add(x)
    build = time.perf_counter() - start
    for nprobe in (8, 32):
        ivf.nprobe = nprobe
        found, lat = timed_queries(lambda v: ivf.search(v[None], k)[1][0], q)
        rows.append({"n": n, "method": f"faiss IVF-Flat nprobe={nprobe}", "build_s": round(build, 1), **lat,
                     "recall@10": recall(found, truth, k)})
    if n > hnsw_max:
        for row in rows:
            print(json.dumps(row), flush=True)
        return rows
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(x)
    build = time.perf_counter() - start
    for ef in (32, 128):
        hnsw.hnsw.efSearch = ef
        found, lat = timed_queries(lambda v: hnsw.search(v[None], k)[1][0], q)
        rows.append({"n": n, "method": f"faiss HNSW M=32 ef={ef}", "build_s": round(build, 1), **lat,
                     "recall@10": recall(found, truth, k)})
    start = time.perf_counter()
    index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=32, expansion_add=64)
    index.add(np.arange(n), x, threads=2)
    build = time.perf_counter() - start
    for ef in (32, 128):
        index.expansion_search = ef
        found, lat = timed_queries(lambda v: index.search(v, k).keys, q)
        rows.append({"n": n, "method": f"usearch HNSW M=32 ef={ef}", "build_s": round(build, 1), **lat,
                     "recall@10": recall(found, truth, k)})
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size the HNSW indexes are built for")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import faiss

    faiss.omp_set_num_threads(2)
    for n in args.sizes:
        run(n, args.dim, args.queries, args.hnsw_max)


if __name__ == "__main__":
    main()
