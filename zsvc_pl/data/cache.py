"""On-disk cache of per-video frame features, so re-classifying videos against new labels costs only the text.

Key: the file's absolute path, size and modification time, the backbone identity, and the sampling settings.
Entries are plain ``.npy`` arrays (float32; ``numpy.load`` reads one in a tenth of a millisecond, a quarter of
``torch.load``'s time, which is what an epoch trained from the cache spends per video). Writes are atomic
(temporary file, rename), so several processes, or nodes on shared storage, can fill one cache; a changed file
gets a new key, and stale entries are simply never read again. An entry that does not load as finite float
features of the expected shape is treated as missing and recomputed, which is also why writes skip fsync: an
entry cut short by a power loss fails that check and is made again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from zsvc_pl.data.outputs import OutputError, atomic_write, remove_stale_temporaries

STALE_S = 3600  # a temporary entry this old belongs to a killed writer (a write takes milliseconds)


class FeatureCache:
    """Frame features ``[V, T, D]`` per video, stored as ``<folder>/<2 hex>/<sha1>.npy``.

    ``bind(backbone, dim)`` says which model the features belong to; it is called once, by whoever owns the
    model (the training task or the Python API), before any key is made.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for sub in self.folder.iterdir():  # entries that killed writers left half-written
                remove_stale_temporaries(sub, min_age_s=STALE_S)
        except OSError as e:
            raise OutputError(f"cannot use {self.folder} as a feature cache ({e.strerror}): give a writable "
                              "folder") from None
        self.backbone: str | None = None
        self.dim: int | None = None
        self._resolved: dict[str, str] = {}  # path as given -> absolute path (resolving costs more than the read)

    def bind(self, backbone: str, dim: int) -> "FeatureCache":
        self.backbone, self.dim = backbone, dim
        return self

    def key(self, path: str | Path, sampling: str) -> str:
        """Cache key of one video file under the bound backbone and one sampling setting."""
        if self.backbone is None:
            raise RuntimeError("FeatureCache.bind(backbone, dim) must be called before the cache is used")
        st = os.stat(path)
        name = os.fspath(path)
        if name not in self._resolved:
            self._resolved[name] = str(Path(name).resolve())
        raw = f"{self._resolved[name]}|{st.st_size}|{st.st_mtime_ns}|{self.backbone}|{sampling}"
        return hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def __contains__(self, key: str) -> bool:
        """Whether an entry exists for ``key`` (not yet validated: ``get`` does that)."""
        return self._file(key).is_file()

    def get(self, key: str, views: int, frames: int) -> torch.Tensor | None:
        """The cached features ``[views, frames, dim]``, or ``None`` when absent, unreadable or invalid."""
        f = self._file(key)
        if not f.is_file():
            return None
        try:
            x = torch.from_numpy(np.load(f, allow_pickle=False))
        except Exception:
            return None
        ok = x.dtype == torch.float32 and tuple(x.shape) == (views, frames, self.dim) and bool(torch.isfinite(x).all())
        return x if ok else None

    def put(self, key: str, features: torch.Tensor) -> None:
        """Store features atomically (not durably: see the module's docstring)."""
        data = features.detach().to("cpu", torch.float32).contiguous().numpy()

        atomic_write(self._file(key), lambda f: np.save(f, data, allow_pickle=False), durable=False)
