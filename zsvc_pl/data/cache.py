"""On-disk cache of per-video frame features, so re-classifying videos against new labels costs only the text.

Key: the file's absolute path, size and modification time, the backbone identity, and the sampling settings.
Writes are atomic (temporary file, fsync, rename), so several processes, or nodes on shared storage, can fill
one cache; a changed file gets a new key, and stale entries are simply never read again. An entry that does not
load as finite float features of the expected shape is treated as missing and recomputed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from zsvc_pl.data.outputs import atomic_write


class FeatureCache:
    """Frame features ``[V, T, D]`` per video, stored as ``<folder>/<2 hex>/<sha1>.pt``.

    ``bind(backbone, dim)`` says which model the features belong to; it is called once, by whoever owns the
    model (the training task or the Python API), before any key is made.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.backbone: str | None = None
        self.dim: int | None = None

    def bind(self, backbone: str, dim: int) -> "FeatureCache":
        self.backbone, self.dim = backbone, dim
        return self

    def key(self, path: str | Path, sampling: str) -> str:
        """Cache key of one video file under the bound backbone and one sampling setting."""
        if self.backbone is None:
            raise RuntimeError("FeatureCache.bind(backbone, dim) must be called before the cache is used")
        st = os.stat(path)
        raw = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.backbone}|{sampling}"
        return hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.pt"

    def __contains__(self, key: str) -> bool:
        """Whether an entry exists for ``key`` (not yet validated: ``get`` does that)."""
        return self._file(key).is_file()

    def get(self, key: str, views: int, frames: int) -> torch.Tensor | None:
        """The cached features ``[views, frames, dim]``, or ``None`` when absent, unreadable or invalid."""
        f = self._file(key)
        if not f.is_file():
            return None
        try:
            x = torch.load(f, weights_only=True)
        except Exception:
            return None
        ok = (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (views, frames, self.dim)
              and bool(torch.isfinite(x).all()))
        return x if ok else None

    def put(self, key: str, features: torch.Tensor) -> None:
        """Store features atomically."""
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        data = features.detach().to("cpu", torch.float32).clone()
        atomic_write(f, lambda tmp: torch.save(data, tmp))
