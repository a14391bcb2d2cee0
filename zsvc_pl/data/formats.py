"""Which files each split reads, per annotation format: the one place a new format is added.

Formats: ``folder`` (a folder per class), ``list`` (``path label_id`` lines), ``ucf101`` and ``hmdb51``
(official split files), ``kinetics`` (annotation CSVs) and ``ssv2`` (Something-Something v2 JSON).
``hp`` is the data module's hyper-parameters (``root``, ``format``, the list files, ``split_dir``, ``fold``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from zsvc_pl.data.annotations import (
    VideoRecord,
    class_folders,
    folder_records,
    hmdb51_records,
    kinetics_records,
    list_records,
    resolve_paths,
    ssv2_records,
    ucf101_records,
)
from zsvc_pl.labels import validate_labels

FORMATS = ("folder", "list", "ucf101", "hmdb51", "kinetics", "ssv2")
SPLITS = ("train", "val", "test")


def has_split_dirs(root: str | None) -> bool:
    return root is not None and any((Path(root) / s).is_dir() for s in SPLITS)


def split_file(hp, split: str) -> str:
    """The annotation file a ``list``/``kinetics``/``ssv2`` split reads (validation falls back to test)."""
    path = {"train": hp.train_list, "val": hp.val_list or hp.test_list, "test": hp.test_list}[split]
    if path is None:
        raise ValueError(f"the {hp.format} format needs data.{split}_list")
    return path


def dataset_classes(hp) -> list[str]:
    """Class names when none are given: the class folders over every split (``folder``), what the official
    split files list (``ucf101``, ``hmdb51``), or the sorted labels of the annotation CSVs (``kinetics``, whose
    class ids are the sorted class names)."""
    root = Path(hp.root)
    if hp.format == "folder":
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root} (data.root)")
        folders = [root / s for s in SPLITS if (root / s).is_dir()] if has_split_dirs(hp.root) else [root]
        names = sorted({c for f in folders for c in class_folders(f)})
        if not names:
            raise ValueError(f"no class folders under {root}: expected root/<class>/<video>")
        return validate_labels(names, f"the class folders under {root}", unit="folder")
    if hp.format == "kinetics":
        files = [f for f in (hp.train_list, hp.val_list, hp.test_list) if f]
        names = set()
        for f in files:
            with open(f, newline="", encoding="utf-8-sig") as handle:
                names |= {row["label"] for row in csv.DictReader(handle) if row.get("label")}
        if not names:
            raise ValueError(f"no labels in {files or 'the annotation CSVs'}: give data.label_file")
        return validate_labels(sorted(names), " + ".join(files), unit="class")
    if hp.format in ("list", "ssv2"):
        raise ValueError(f"the {hp.format} format needs data.label_file (or data.class_names)")
    return split_records(hp, "test", None, None)[1]


def split_records(hp, split: str, names: list[str] | None, n_base: int | None
                  ) -> tuple[list[VideoRecord], list[str]]:
    """The records of ``split`` and the class names they index. ``n_base``: size of the base id space of
    ViFi-CLIP base-to-novel lists (the novel list's ids follow it)."""
    root = hp.root or ""
    if hp.format == "folder":
        if hp.root is None:
            raise ValueError("the folder format needs data.root")
        folder = Path(root) / split if has_split_dirs(hp.root) else Path(root)
        if not folder.is_dir():
            raise FileNotFoundError(f"no '{split}' folder under {root}")
        return folder_records(folder, names), names
    if hp.format == "list":
        n_base = n_base or len(names)
        records = list_records(split_file(hp, split), root, n_base)
        if split != "train" and hp.novel_test_list:
            novel = list_records(hp.novel_test_list, root, len(names) - n_base)
            records = records + [VideoRecord(r.path, r.label + n_base) for r in novel]
        return resolve_paths(records, root), names
    if hp.format == "kinetics":
        return kinetics_records(split_file(hp, split), root, names, hp.other_classes), names
    if hp.format == "ssv2":
        return ssv2_records(split_file(hp, split), root, names), names
    reader = ucf101_records if hp.format == "ucf101" else hmdb51_records
    if hp.root is None or hp.split_dir is None:
        raise ValueError(f"the {hp.format} format needs data.root and data.split_dir")
    return reader(root, hp.split_dir, "train" if split == "train" else "test", hp.fold)
