"""On-disk cache of per-video frame features, so re-classifying videos against new labels costs only the text.

Key: the file's absolute path, size and modification time, the backbone identity, and the sampling settings.
Writes are atomic (temporary file + rename), so several processes, or nodes on shared storage, can fill one
cache; a changed file gets a new key, and stale entries are simply never read again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch


class FeatureCache:
    """Frame features ``[V, T, D]`` per video, stored as ``<folder>/<2 hex>/<sha1>.pt``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(path: str | Path, backbone: str, sampling: str) -> str:
        """Cache key of one video file under one backbone and sampling setting."""
        st = os.stat(path)
        raw = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{backbone}|{sampling}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.pt"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached features, or ``None`` (also for an unreadable entry)."""
        f = self._file(key)
        if not f.is_file():
            return None
        try:
            return torch.load(f, weights_only=True)
        except Exception:
            return None

    def put(self, key: str, features: torch.Tensor) -> None:
        """Store features atomically."""
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, suffix=".tmp")
        os.close(fd)
        torch.save(features.detach().to("cpu", torch.float32).clone(), tmp)
        os.replace(tmp, f)
