"""Video datasets: the annotation formats users have, and a dataset that never dies on a bad file."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zsvc_pl.cache import FeatureCache
from zsvc_pl.data.decoding import VIDEO_EXTENSIONS, VideoDecodeError, open_video, read_frames
from zsvc_pl.data.sampling import FrameSampler, adaptive_indices, change_scores, segment_indices
from zsvc_pl.data.transforms import square_crops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRecord:
    """One video: its path and class index (-1 when unlabelled)."""

    path: str
    label: int = -1


def list_videos(root: str | Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[str]:
    """Every video file under ``root`` (recursive), sorted; hidden files skipped."""
    root = Path(root)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    return sorted(str(p) for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."))


def folder_records(root: str | Path, class_names: list[str] | None = None) -> tuple[list[VideoRecord], list[str]]:
    """A folder per class: ``root/<class>/<video>`` (videos may sit in nested folders)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    class_names = list(class_names) if class_names else found
    index = {c: i for i, c in enumerate(class_names)}
    records = [VideoRecord(p, index[c]) for c in found if c in index for p in list_videos(root / c)]
    if not records:
        raise ValueError(f"no videos found in class folders under {root}")
    return records, class_names


def read_label_file(path: str | Path) -> list[str]:
    """Class names from a label file: ``id,name`` CSV (X-CLIP/ViFi-CLIP), ``id name`` lines, or one name per line."""
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if lines and lines[0].lower().replace(" ", "") in ("id,name", "id,label"):
        lines = lines[1:]
    names: dict[int, str] = {}
    for n, line in enumerate(lines):
        for sep in (",", " ", "\t"):
            head, _, tail = line.partition(sep)
            if tail and head.strip().isdigit():
                names[int(head)] = tail.strip()
                break
        else:
            names[n] = line
    return [names[i] for i in sorted(names)]


def list_records(list_file: str | Path, root: str | Path = "") -> list[VideoRecord]:
    """An annotation list: ``relative/path.mp4 label_id`` per line (space, tab or comma separated)."""
    records = []
    for n, line in enumerate(Path(list_file).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, _, label = line.replace(",", " ").replace("\t", " ").rpartition(" ")
        if not path or not label.strip().lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{n}: expected '<path> <label_id>', got {line!r}")
        records.append(VideoRecord(str(Path(root) / path.strip()), int(label)))
    return records


def ucf101_records(root: str | Path, split_dir: str | Path, split: str = "test", fold: int = 1
                   ) -> tuple[list[VideoRecord], list[str]]:
    """UCF101 official splits: ``classInd.txt`` (1-based ids) and ``{train,test}list0N.txt``."""
    split_dir = Path(split_dir)
    class_names = read_label_file(split_dir / "classInd.txt")
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for line in (split_dir / f"{split}list0{fold}.txt").read_text().splitlines():
        if not line.strip():
            continue
        rel = line.split()[0]
        records.append(VideoRecord(str(Path(root) / rel), index[rel.split("/")[0]]))
    return records, class_names


def hmdb51_records(root: str | Path, split_dir: str | Path, split: str = "test", fold: int = 1
                   ) -> tuple[list[VideoRecord], list[str]]:
    """HMDB51 splits: ``<class>_test_split<N>.txt`` with ``video.avi 1|2|0`` (1 train, 2 test)."""
    split_dir = Path(split_dir)
    files = sorted(split_dir.glob(f"*_test_split{fold}.txt"))
    if not files:
        raise FileNotFoundError(f"no HMDB51 split files *_test_split{fold}.txt in {split_dir}")
    class_names = [f.name[: -len(f"_test_split{fold}.txt")] for f in files]
    want = {"train": "1", "test": "2"}[split]
    records = []
    for label, f in enumerate(files):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == want:
                records.append(VideoRecord(str(Path(root) / class_names[label] / parts[0]), label))
    return records, class_names


class VideoClassificationDataset(Dataset):
    """Decodes the sampled frames of each video into uint8 ``[V, T, 3, S, S]`` (V = clips x crops).

    A video that cannot be read yields ``{"error": reason}`` instead of raising (unless
    ``on_error="raise"``); ``collate_videos`` drops it from the batch and passes the error on.

    Args:
        records: the videos and their labels.
        sampler: which frames to take.
        frame_size: side of the square crops handed to the model (it resizes to its own input size).
        num_crops: spatial views per temporal clip (1 or 3).
        on_error: ``skip`` (default) or ``raise``.
        timeout_s: per-video decode time limit; a decode that hangs (decord can) is reported and abandoned.
    """

    def __init__(self, records: list[VideoRecord], sampler: FrameSampler, frame_size: int = 224,
                 num_crops: int = 1, on_error: str = "skip", backend: str = "auto",
                 timeout_s: float | None = 60.0) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.records = records
        self.sampler = sampler
        self.frame_size = frame_size
        self.num_crops = num_crops
        self.on_error = on_error
        self.backend = backend
        self.timeout_s = timeout_s
        self.feature_cache: FeatureCache | None = None
        self.cache_backbone: str | None = None

    @property
    def sampling_key(self) -> str:
        """What decides which pixels reach the model; part of the feature-cache key."""
        s = self.sampler
        mode = "adaptive" if s.adaptive else "uniform"
        return f"{mode},frames={s.num_frames},clips={s.num_clips},crops={self.num_crops},size={self.frame_size}"

    def attach_cache(self, cache: FeatureCache, backbone: str) -> None:
        """Serve videos whose frame features are cached without decoding them (evaluation sampling only)."""
        if not self.sampler.random:
            self.feature_cache, self.cache_backbone = cache, backbone

    def __len__(self) -> int:
        return len(self.records)

    def load(self, path: str, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Frames of one video as uint8 ``[V, T, 3, S, S]``; raises ``VideoDecodeError``."""
        video = open_video(path, short_side=self.frame_size, backend=self.backend)
        if self.sampler.adaptive:
            clips = [self._adaptive(path, video.num_frames)]
        else:
            clips = self.sampler(video.num_frames, rng)
        flat = [i for clip in clips for i in clip]
        frames = read_frames(video, flat, path)
        if frames.shape[0] != len(flat) or frames.shape[-1] != 3:
            raise VideoDecodeError(path, f"decoder returned frames of shape {tuple(frames.shape)}")
        t = self.sampler.num_frames
        views = [square_crops(frames[c * t : (c + 1) * t], self.frame_size, self.num_crops) for c in range(len(clips))]
        return torch.cat(views)

    def _adaptive(self, path: str, num_total: int) -> list[int]:
        """Frame indices from a cheap low-resolution probe pass (32 px) over the video."""
        positions = segment_indices(num_total, min(self.sampler.probe_frames, num_total))
        positions = sorted(set(positions))
        probe = read_frames(open_video(path, short_side=32, backend=self.backend), positions, path)
        return adaptive_indices(positions, change_scores(probe), self.sampler.num_frames, num_total)

    def _load_with_limit(self, path: str, rng: np.random.Generator | None) -> torch.Tensor:
        """``load`` in a daemon thread, abandoned after ``timeout_s`` (a hung C call cannot be interrupted)."""
        if not self.timeout_s:
            return self.load(path, rng)
        box: dict = {}

        def work() -> None:
            try:
                box["video"] = self.load(path, rng)
            except BaseException as e:  # handed to the caller below
                box["error"] = e

        thread = threading.Thread(target=work, daemon=True, name=f"decode:{Path(path).name}")
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            raise VideoDecodeError(path, f"decoding timed out after {self.timeout_s:g} s (abandoned)")
        if "error" in box:
            raise box["error"]
        return box["video"]

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        item = {"path": rec.path, "label": rec.label, "index": index}
        if self.feature_cache is not None:
            try:
                item["cache_key"] = FeatureCache.key(rec.path, self.cache_backbone, self.sampling_key)
            except OSError as e:
                error = VideoDecodeError(rec.path, f"file not found ({e.strerror})")
                if self.on_error == "raise":
                    raise error from e
                return {**item, "error": error.reason}
            features = self.feature_cache.get(item["cache_key"])
            if features is not None:
                return {**item, "features": features}
        rng = None
        if self.sampler.random:  # torch's RNG is seeded per worker and epoch by Lightning's seed_everything
            rng = np.random.default_rng([int(torch.randint(2**31, (1,))), index])
        try:
            video = self._load_with_limit(rec.path, rng)
        except Exception as e:
            if self.on_error == "raise":
                raise
            reason = e.reason if isinstance(e, VideoDecodeError) else f"{type(e).__name__}: {e}"
            return {**item, "error": reason}
        return {**item, "video": video}


def collate_videos(samples: list[dict]) -> dict:
    """Stack the good samples; the bad ones travel as ``errors: [(path, reason)]``.

    Decoded videos go in ``video`` (their batch positions in ``video_pos``); videos served from the feature
    cache go in ``features`` (positions in ``features_pos``); ``cache_keys`` lists every sample's key when
    the cache is on.
    """
    good = [s for s in samples if "error" not in s]
    errors = [(s["path"], s["error"]) for s in samples if "error" in s]
    decoded = [i for i, s in enumerate(good) if "video" in s]
    cached = [i for i, s in enumerate(good) if "features" in s]
    batch = {
        "video": torch.stack([good[i]["video"] for i in decoded]) if decoded else torch.empty(0, dtype=torch.uint8),
        "video_pos": decoded,
        "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "errors": errors,
    }
    if cached:
        batch["features"] = torch.stack([good[i]["features"] for i in cached])
        batch["features_pos"] = cached
    if good and "cache_key" in good[0]:
        batch["cache_keys"] = [s["cache_key"] for s in good]
    return batch
