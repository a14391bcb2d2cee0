"""VideoDataModule: one DataModule for every annotation format, with an optional base/novel split."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from zsvc_pl.data.annotations import VideoRecord, list_videos
from zsvc_pl.data.cache import FeatureCache
from zsvc_pl.data.datasets import VideoClassificationDataset, collate_videos
from zsvc_pl.data.formats import FORMATS, dataset_classes, split_records
from zsvc_pl.data.label_sets import is_label_set, read_label_set
from zsvc_pl.data.reader import SEEKS, FrameReader
from zsvc_pl.data.sampling import DEFAULT_NUM_FRAMES, FrameSampler
from zsvc_pl.labels import read_label_file, validate_labels



class VideoDataModule(LightningDataModule):
    """Videos for ``fit``, ``validate``, ``test`` and ``predict``.

    Formats (``format``):
      - ``folder``: ``root/<class>/<video>``; if ``root`` has ``train/``, ``val/``, ``test/`` folders, each
        is such a folder, else ``root`` itself serves validation and test. The classes are the union of the class
        folders over all splits (sorted), so a class present only in ``test/`` (a novel class) is known.
      - ``list``: ``{train,val,test}_list`` files of ``relative/path label_id`` lines under ``root``,
        with class names from ``label_file``. ViFi-CLIP's published base-to-novel files index two label files,
        each list in its own id space: ``label_file`` = ``*_base_labels.csv``, ``novel_label_file`` =
        ``*_novel_labels.csv``, ``train_list`` = ``fs_base_s1_train.txt``, ``test_list`` = ``base_val.txt``,
        ``novel_test_list`` = ``novel_val.txt``; base classes are then the base label file's.
      - ``ucf101`` / ``hmdb51``: the official split files in ``split_dir`` (fold ``fold``), videos under ``root``.
      - ``kinetics``: ``{train,val,test}_list`` are Kinetics annotation CSVs, videos anywhere under ``root``
        named ``<youtube_id>_<start>_<end>.mp4``; classes from ``label_file`` or the CSVs' sorted labels.
      - ``ssv2``: ``{train,val,test}_list`` are Something-Something v2 JSON files, videos ``root/<id>.webm``;
        ``label_file`` is its ``labels.json``.
      List entries not found at ``root/<path>`` are looked up by file name under ``root`` (ViFi-CLIP's lists
      name bare files that the datasets keep in class folders).

    Args:
        root: the dataset folder (see formats).
        format: one of ``folder``, ``list``, ``ucf101``, ``hmdb51``, ``kinetics``, ``ssv2``.
        train_list, val_list, test_list: annotation lists (``list`` format).
        label_file: class names (``id,name`` CSV, ``id name`` lines, or one name per line; see
            ``zsvc_pl.labels.read_label_file``); also names the labels for ``predict`` over unlabelled videos, and
            for ``test``/``predict`` may be a label set: a YAML ``label: [texts, example clips]`` or a folder of
            example clips per label (``zsvc_pl.data.label_sets``).
        novel_label_file, novel_test_list: the novel half of a ViFi-CLIP base-to-novel split (see formats).
        split_dir: folder of UCF101/HMDB51 split files.
        other_classes: ``kinetics``: a row whose class is not in ``label_file`` is an ``error`` (counted) or
            ``skip``ped (a protocol over some classes: Kinetics-600's zero-shot splits).
        fold: official split number (1-3).
        class_names: the classes and their order; overrides what the format provides.
        predict_root: a folder (searched recursively) or a single video to predict on.
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
        seek: ``exact`` (default) or ``keyframe``: each sampled frame moved to the nearest keyframe in its
            segment, which decodes alone (faster, approximate: for tagging, not for protocol numbers).
        feature_cache: folder for per-video frame features: a second ``test`` or ``predict`` over the same videos
            (e.g. with another label list) skips decoding and the image tower, and ``fit`` decodes and encodes
            each training video once, then trains from its cached features (the image tower is frozen). The data
            module opens it (``self.feature_cache``); the model's owner binds it to its backbone.
        cache_positions: frames per training video kept in the cache, among which each epoch draws
            ``num_frames`` at random (one per segment); default twice ``num_frames``.
    """

    def __init__(
        self,
        root: str | None = None,
        format: str = "folder",
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        label_file: str | None = None,
        novel_label_file: str | None = None,
        novel_test_list: str | None = None,
        split_dir: str | None = None,
        other_classes: str = "error",
        fold: int = 1,
        class_names: list[str] | None = None,
        predict_root: str | None = None,
        base_novel: str | None = None,
        k_shot: int | None = None,
        num_frames: int = DEFAULT_NUM_FRAMES,
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
        cache_positions: int | None = None,
        seek: str = "exact",
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if other_classes not in ("error", "skip"):
            raise ValueError(f"other_classes must be 'error' or 'skip', got {other_classes!r}")
        for name, value in (("num_frames", num_frames), ("num_clips", num_clips),
                            ("frame_size", frame_size), ("batch_size", batch_size)):
            if value < 1:  # caught here, before any video is read, rather than as one error per video
                raise ValueError(f"data.{name} must be at least 1, got {value}")
        if num_crops not in (1, 3):
            raise ValueError(f"data.num_crops must be 1 or 3 (spatial views per clip), got {num_crops}")
        if seek not in SEEKS:
            raise ValueError(f"data.seek must be one of {', '.join(SEEKS)}, got {seek!r}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be 0 (decode in the main process) or more, got {num_workers}")
        if cache_positions is not None and cache_positions < num_frames:
            raise ValueError(f"data.cache_positions ({cache_positions}) must be at least data.num_frames "
                             f"({num_frames}): every training epoch draws num_frames of the cached positions")
        self.save_hyperparameters()
        # the model logs the hyper-parameters that matter (class names included); the data settings are in the
        # run's config.yaml. Logging both would make Lightning compare overlapping keys and refuse to run.
        self._log_hyperparams = False
        self.root = root
        self.format = format
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._records: dict[str, list[VideoRecord]] = {}
        self._names = validate_labels(list(class_names), "data.class_names", unit="item") if class_names else None
        self._n_base: int | None = None  # size of the base id space of ViFi-CLIP base-to-novel lists
        self.label_set = read_label_set(label_file) if label_file and is_label_set(label_file) else None
        if label_file and not self._names:
            self._names = self.label_set.names if self.label_set else read_label_file(label_file)
            if novel_label_file:
                self._n_base = len(self._names)
                both = self._names + read_label_file(novel_label_file)
                self._names = validate_labels(both, f"{label_file} + {novel_label_file}")
        if self._names is None and root is not None:
            self._names = self._dataset_classes()
        self._base = self._resolve_base() if base_novel else None
        if self._n_base is not None:
            self._base = list(range(self._n_base))
        self.feature_cache = FeatureCache(feature_cache) if feature_cache else None

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
    def _dataset_classes(self) -> list[str]:
        return dataset_classes(self.hparams)

    def _scan_split(self, split: str) -> tuple[list[VideoRecord], list[str]]:
        records, names = split_records(self.hparams, split, self._names, self._n_base)
        self._records[split] = records
        return records, names

    def _split_records(self, split: str) -> list[VideoRecord]:
        return self._records.get(split) or self._scan_split(split)[0]

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

    def _dataset(self, records: list[VideoRecord], train: bool) -> VideoClassificationDataset:
        hp = self.hparams
        adaptive = hp.sampling == "adaptive" and not train
        sampler = FrameSampler(hp.num_frames, 1 if train or adaptive else hp.num_clips, random=train, adaptive=adaptive)
        reader = FrameReader(sampler, hp.frame_size, 1 if train else hp.num_crops, hp.backend, hp.decode_timeout,
                             "exact" if train else hp.seek)
        positions = hp.cache_positions or 2 * hp.num_frames
        return VideoClassificationDataset(records, reader, hp.on_error, self.feature_cache,
                                          positions if train else None)

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
            source = self.predict_source
            if source is None:
                raise ValueError("predict needs data.predict_root (a folder or a video file)")
            self.predict_videos = list_videos(source)
            if not self.predict_videos:
                raise ValueError(f"no video files under {source} (extensions: .mp4, .avi, .mkv, .mov, .webm, ...)")
            self.predict_set = self._dataset([VideoRecord(p) for p in self.predict_videos], train=False)

    @property
    def predict_source(self) -> str | None:
        """The folder or file that ``predict`` reads, as an absolute path."""
        source = self.hparams.predict_root or self.root
        return str(Path(source).resolve()) if source else None

    def skip_videos(self, done: set[str]) -> int:
        """Leave videos that an earlier run already predicted out of the predict set; returns how many are left."""
        self.predict_set.records = [r for r in self.predict_set.records if r.path not in done]
        return len(self.predict_set.records)

    def _loader(self, dataset: VideoClassificationDataset, shuffle: bool) -> DataLoader:
        sampler = None
        if not shuffle and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # evaluation under DDP: every video exactly once (no padding duplicates); ranks may differ by one batch
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=collate_videos, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)

    def example_dataloader(self) -> DataLoader | None:
        """The label set's example clips, read like test videos (``label``: the label each shows); every rank
        reads them all; a clip that cannot be read is an error. ``None`` without examples."""
        if self.label_set is None or not self.label_set.has_examples:
            return None
        clips, owner = self.label_set.example_clips()
        dataset = self._dataset([VideoRecord(c, o) for c, o in zip(clips, owner)], train=False)
        dataset.on_error = "raise"
        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=collate_videos)
