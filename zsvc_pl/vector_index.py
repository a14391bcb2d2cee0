"""Nearest neighbours among video embeddings: exact below ``ANN_MIN`` videos, FAISS IVF-Flat from there.

``benchmarks/vector_search.py`` on this project's 2-core machine (512-d unit vectors, one query at a time):
exact search costs 39 ms per query at 10^5 vectors and 422 ms at 10^6 (it reads every vector); FAISS
IVF-Flat with 1,024 lists and 32 probed costs 0.9 ms and 8.5 ms with recall@10 of 0.9985 and 1.0, and builds
in 6 s and 17 s. HNSW (FAISS, usearch) queried as fast at 10^5 but took 34 s and 68 s to build there. So
indexes from 10^5 videos get an IVF-Flat beside them when ``faiss`` is installed (``pip install -e
".[ann]"``); without it, search stays exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zsvc_pl.data.outputs import atomic_write

ANN_MIN = 100_000
NPROBE = 32


def ann_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class ApproximateIndex:
    """FAISS IVF-Flat over inner products of unit vectors ``[N, D]``."""

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def build(cls, embeddings: torch.Tensor, seed: int = 0) -> "ApproximateIndex":
        import faiss

        x = np.ascontiguousarray(embeddings.float().numpy())
        lists = max(1, min(1024, len(x) // 39))  # FAISS wants 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(len(x), min(len(x), 50_000), replace=False)
        index.train(x[sample])
        index.add(x)
        index.nprobe = min(NPROBE, lists)
        return cls(index)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and row indices of the ``k`` nearest rows to ``query [D]``, best first."""
        scores, ids = self.index.search(np.ascontiguousarray(query.float().numpy()[None]), k)
        keep = ids[0] >= 0
        return torch.from_numpy(scores[0][keep]), torch.from_numpy(ids[0][keep])

    def save(self, path: str | Path) -> None:
        import faiss

        atomic_write(path, lambda f: f.write(faiss.serialize_index(self.index).tobytes()))

    @classmethod
    def load(cls, path: str | Path) -> "ApproximateIndex":
        import faiss

        index = faiss.read_index(str(path))
        index.nprobe = min(NPROBE, index.nlist)
        return cls(index)


def nearest(embeddings: torch.Tensor, query: torch.Tensor, k: int,
            ann: ApproximateIndex | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and rows of the ``k`` rows of ``embeddings`` most similar to ``query``: approximate when given."""
    k = min(k, len(embeddings))
    if ann is not None and len(ann) == len(embeddings):
        return ann.search(query, k)
    best = (embeddings @ query.to(embeddings)).topk(k)
    return best.values, best.indices
