"""VideoDataModule: one DataModule for every annotation format, with an optional base/novel split."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from zsvc_pl.cache import FeatureCache
from zsvc_pl.data.datasets import (
    VideoClassificationDataset,
    VideoRecord,
    collate_videos,
    folder_records,
    hmdb51_records,
    list_records,
    list_videos,
    read_label_file,
    ucf101_records,
)
from zsvc_pl.data.sampling import FrameSampler

FORMATS = ("folder", "list", "ucf101", "hmdb51")
SPLITS = ("train", "val", "test")


class VideoDataModule(LightningDataModule):
    """Videos for ``fit``, ``validate``, ``test`` and ``predict``.

    Formats (``format``):
      - ``folder``: ``root/<class>/<video>``; if ``root`` has ``train/``, ``val/``, ``test/`` folders, each
        is such a folder, else ``root`` itself serves validation and test.
      - ``list``: ``{train,val,test}_list`` files of ``relative/path label_id`` lines under ``root``,
        with class names from ``label_file``.
      - ``ucf101`` / ``hmdb51``: the official split files in ``split_dir`` (fold ``fold``), videos under ``root``.

    Args:
        root: the dataset folder (see formats).
        format: one of ``folder``, ``list``, ``ucf101``, ``hmdb51``.
        train_list, val_list, test_list: annotation lists (``list`` format).
        label_file: class names (``id,name`` CSV, ``id name`` lines, or one name per line); also names the
            labels for ``predict`` over unlabelled videos.
        split_dir: folder of UCF101/HMDB51 split files.
        fold: official split number (1-3).
        class_names: the classes and their order; overrides what the format provides.
        predict_root: a folder (searched recursively) or a single video to predict on.
        skip_done: a predictions file (CSV/JSONL) of an earlier run: videos already in it, or in its partial file
            from an interrupted run, are not predicted again (the CLI links ``predictions.output`` here).
        base_novel: ``None``; ``auto`` (the most frequent half of the classes in the training set is base,
            ties broken by name); ``train`` (ViFi-CLIP-style split lists: the classes that occur in the training
            list are base, the others novel); or a file with one base class name per line.
        k_shot: keep at most K training videos per class (drawn with ``seed``).
        num_frames, num_clips, num_crops: frames per view, temporal views and spatial views at evaluation.
        sampling: ``uniform`` or ``adaptive`` frame choice at evaluation and prediction (training always draws
            a random frame per segment).
        frame_size: side of the square frames given to the model.
        batch_size, num_workers: DataLoader settings.
        on_error: ``skip`` unreadable videos (counted and reported) or ``raise``.
        seed: seed for K-shot selection.
        backend: ``auto`` (sparse PyAV decoding for MP4/MOV/MKV/WebM, decord for the rest, sequential PyAV when
            both fail), ``sparse``, ``decord`` or ``pyav``; see ``zsvc_pl.data.decoding.open_video``.
        decode_timeout: seconds before a hanging decode is abandoned and reported (``None``: no limit).
        feature_cache: folder for per-video frame features at evaluation and prediction: a second ``test`` or
            ``predict`` over the same videos (e.g. with another label list) skips decoding and the image tower.
    """

    def __init__(
        self,
        root: str | None = None,
        format: str = "folder",
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        label_file: str | None = None,
        split_dir: str | None = None,
        fold: int = 1,
        class_names: list[str] | None = None,
        predict_root: str | None = None,
        skip_done: str | None = None,
        base_novel: str | None = None,
        k_shot: int | None = None,
        num_frames: int = 8,
        num_clips: int = 1,
        num_crops: int = 1,
        sampling: str = "uniform",
        frame_size: int = 224,
        batch_size: int = 8,
        num_workers: int = 2,
        on_error: str = "skip",
        seed: int = 0,
        backend: str = "auto",
        decode_timeout: float | None = 60.0,
        feature_cache: str | None = None,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.save_hyperparameters()
        # the model logs the hyper-parameters that matter (class names included); the data settings are in the
        # run's config.yaml. Logging both would make Lightning compare overlapping keys and refuse to run.
        self._log_hyperparams = False
        self.root = root
        self.format = format
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._records: dict[str, list[VideoRecord]] = {}
        self._names = list(class_names) if class_names else None
        if label_file and not self._names:
            self._names = read_label_file(label_file)
        if self._names is None and root is not None:
            self._scan_split(self._first_split())
        self._base = self._resolve_base() if base_novel else None

    # --- class names and the base/novel split -------------------------------------------------
    @property
    def class_names(self) -> list[str] | None:
        """All class names, in label-id order."""
        return self._names

    @property
    def base_classes(self) -> list[int] | None:
        """Indices of the base classes (trained on), or ``None`` without a base/novel split."""
        return self._base

    def _resolve_base(self) -> list[int]:
        names = self._names or []
        spec = self.hparams.base_novel
        if spec == "train":
            return sorted({r.label for r in self._split_records("train")})
        if spec == "auto":
            counts = Counter(r.label for r in self._split_records("train"))
            order = sorted(range(len(names)), key=lambda i: (-counts.get(i, 0), names[i]))
            return sorted(order[: (len(names) + 1) // 2])
        wanted = [line.strip() for line in Path(spec).read_text().splitlines() if line.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise ValueError(f"{spec}: base classes not among the dataset's classes: {unknown[:5]}")
        return sorted(names.index(w) for w in wanted)

    # --- records -------------------------------------------------------------------------------
    def _has_split_dirs(self) -> bool:
        return self.root is not None and any((Path(self.root) / s).is_dir() for s in SPLITS)

    def _first_split(self) -> str:
        if self.format == "folder" and self._has_split_dirs():
            return next(s for s in SPLITS if (Path(self.root) / s).is_dir())
        return "test" if self.format != "list" or self.hparams.test_list else "train"

    def _scan_split(self, split: str) -> list[VideoRecord]:
        hp = self.hparams
        if hp.format == "folder":
            if self.root is None:
                raise ValueError("the folder format needs data.root")
            folder = Path(self.root) / split if self._has_split_dirs() else Path(self.root)
            if not folder.is_dir():
                raise FileNotFoundError(f"no '{split}' folder under {self.root}")
            records, names = folder_records(folder, self._names)
        elif hp.format == "list":
            lst = {"train": hp.train_list, "val": hp.val_list or hp.test_list, "test": hp.test_list}[split]
            if lst is None:
                raise ValueError(f"the list format needs data.{split}_list")
            if not self._names:
                raise ValueError("the list format needs data.label_file (or data.class_names)")
            records, names = list_records(lst, self.root or ""), self._names
        else:
            reader = ucf101_records if hp.format == "ucf101" else hmdb51_records
            if self.root is None or hp.split_dir is None:
                raise ValueError(f"the {hp.format} format needs data.root and data.split_dir")
            records, names = reader(self.root, hp.split_dir, "train" if split == "train" else "test", hp.fold)
            names = self._names or names
        self._names = self._names or names
        self._records[split] = records
        return records

    def _split_records(self, split: str) -> list[VideoRecord]:
        return self._records.get(split) or self._scan_split(split)

    def _train_records(self) -> list[VideoRecord]:
        records = self._split_records("train")
        if self._base is not None:
            base = set(self._base)
            records = [r for r in records if r.label in base]
        if self.hparams.k_shot:
            by_class: dict[int, list[VideoRecord]] = defaultdict(list)
            for r in records:
                by_class[r.label].append(r)
            rng = random.Random(self.hparams.seed)
            records = [r for label in sorted(by_class)
                       for r in rng.sample(by_class[label], min(self.hparams.k_shot, len(by_class[label])))]
        return records

    def attach_feature_cache(self, backbone: str) -> FeatureCache | None:
        """Called by the model once it knows its backbone: evaluation datasets then serve cached features."""
        if not self.hparams.feature_cache:
            return None
        self._cache = (FeatureCache(self.hparams.feature_cache), backbone)
        for name in ("val_set", "test_set", "predict_set"):
            if hasattr(self, name):
                getattr(self, name).attach_cache(*self._cache)
        return self._cache[0]

    def _dataset(self, records: list[VideoRecord], train: bool) -> VideoClassificationDataset:
        hp = self.hparams
        adaptive = hp.sampling == "adaptive" and not train
        sampler = FrameSampler(hp.num_frames, 1 if train or adaptive else hp.num_clips, random=train, adaptive=adaptive)
        ds = VideoClassificationDataset(records, sampler, hp.frame_size, 1 if train else hp.num_crops,
                                        hp.on_error, hp.backend, hp.decode_timeout)
        if getattr(self, "_cache", None) and not train:
            ds.attach_cache(*self._cache)
        return ds

    def setup(self, stage: str) -> None:
        """Build the datasets that ``stage`` needs."""
        if stage == "fit":
            self.train_set = self._dataset(self._train_records(), train=True)
            self.val_set = self._dataset(self._split_records("val"), train=False)
        elif stage == "validate":
            self.val_set = self._dataset(self._split_records("val"), train=False)
        elif stage == "test":
            self.test_set = self._dataset(self._split_records("test"), train=False)
        elif stage == "predict":
            source = self.hparams.predict_root or self.root
            if source is None:
                raise ValueError("predict needs data.predict_root (a folder or a video file)")
            paths = list_videos(source)
            if self.hparams.skip_done:
                from zsvc_pl.callbacks import done_paths

                done = done_paths(self.hparams.skip_done)
                paths = [p for p in paths if p not in done]
                if done:
                    rank_zero_info(f"zsvc_pl predict: {len(done)} video(s) already done, {len(paths)} to go")
            self.predict_set = self._dataset([VideoRecord(p) for p in paths], train=False)

    def _loader(self, dataset: VideoClassificationDataset, shuffle: bool) -> DataLoader:
        sampler = None
        if not shuffle and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # evaluation under DDP: every video exactly once (no padding duplicates); ranks may differ by one batch
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_videos,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)
