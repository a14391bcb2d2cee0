"""The annotation formats users have: a folder per class, ``path label_id`` lists, UCF101 and HMDB51 splits,
Kinetics CSVs and Something-Something v2 JSON.

Each reader returns ``VideoRecord`` rows. A video whose class is not in the class list is kept as a record with
an ``error``, so that the run reports and counts it instead of dropping it silently.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from zsvc_pl.data.decoding import VIDEO_EXTENSIONS
from zsvc_pl.labels import label_key, read_label_file


@dataclass(frozen=True)
class VideoRecord:
    """One video: its path, class index (-1 when unlabelled) and, for a video that cannot be used, why."""

    path: str
    label: int = -1
    error: str | None = None


def list_videos(root: str | Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[str]:
    """Every video file under ``root`` (recursive), sorted; hidden files skipped. Linked folders are followed (a
    library assembled from links is common on shared storage), each real folder once, so a link back up the
    tree ends instead of looping."""
    root = Path(root)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        found += [path for name in files if not name.startswith(".") and Path(name).suffix.lower() in extensions
                  and os.path.isfile(path := os.path.join(folder, name))]
    return sorted(found)


def class_folders(root: str | Path) -> list[str]:
    """The class folder names directly under ``root`` (hidden and ``_`` folders skipped), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def folder_records(root: str | Path, class_names: list[str]) -> list[VideoRecord]:
    """A folder per class: ``root/<class>/<video>`` (videos may sit in nested folders)."""
    root = Path(root)
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    for c in class_folders(root):
        for p in list_videos(root / c):
            if c in index:
                records.append(VideoRecord(p, index[c]))
            else:
                records.append(VideoRecord(p, error=f"class folder '{c}' is not in the class list"))
    if not records:
        raise ValueError(f"no videos found in class folders under {root}")
    return records


def list_records(list_file: str | Path, root: str | Path = "", num_classes: int | None = None) -> list[VideoRecord]:
    """An annotation list: ``relative/path.mp4 label_id`` per line (space, tab or comma separated).

    Ids outside ``[0, num_classes)`` fail at once, naming the file and line.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"annotation list not found: {list_file}")
    records = []
    for n, line in enumerate(list_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, _, label = line.replace(",", " ").replace("\t", " ").rpartition(" ")
        if not path or not label.strip().lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{n}: expected '<path> <label_id>', got {line!r}")
        label_id = int(label)
        if num_classes is not None and not 0 <= label_id < num_classes:
            raise ValueError(f"{list_file}:{n}: label id {label_id} is outside the label file's "
                             f"{num_classes} classes (0..{num_classes - 1})")
        records.append(VideoRecord(str(Path(root) / path.strip()), label_id))
    return records


def ucf101_records(root: str | Path, split_dir: str | Path, split: str = "test", fold: int = 1
                   ) -> tuple[list[VideoRecord], list[str]]:
    """UCF101 official splits: ``classInd.txt`` (1-based ids) and ``{train,test}list0N.txt``."""
    split_dir = Path(split_dir)
    class_names = read_label_file(split_dir / "classInd.txt")
    index = {c: i for i, c in enumerate(class_names)}
    records = []
    list_file = split_dir / f"{split}list0{fold}.txt"
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0]
        if rel.split("/")[0] not in index:
            raise ValueError(f"{list_file}:{n}: class '{rel.split('/')[0]}' is not in classInd.txt")
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


def resolve_paths(records: list[VideoRecord], root: str | Path) -> list[VideoRecord]:
    """Find list entries that are not at ``root/<path>`` by file name anywhere under ``root``: ViFi-CLIP's lists
    name bare files (``v_ApplyEyeMakeup_g24_c04.avi``) that the datasets keep in class folders. A name found
    nowhere, or twice, stays an error record."""
    missing = {i for i, r in enumerate(records) if not r.error and not Path(r.path).exists()}
    if not missing or not Path(root).is_dir():
        return records
    index = _files_by_name(root)
    out = []
    for i, r in enumerate(records):
        if i in missing:
            found = index.get(Path(r.path).name, [])
            reason = (None if len(found) == 1 else f"not found under {root}" if not found
                      else f"{len(found)} files under {root} have this name")
            r = VideoRecord(found[0] if len(found) == 1 else r.path, r.label, reason)
        out.append(r)
    return out


def _files_by_name(root: str | Path) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for p in list_videos(root):
        index.setdefault(Path(p).name, []).append(p)
    return index


def kinetics_records(csv_file: str | Path, root: str | Path, class_names: list[str],
                     other_classes: str = "error") -> list[VideoRecord]:
    """A Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``), videos named
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` or ``<youtube_id>.<ext>`` anywhere under ``root`` (class
    folders or flat). Class names match across spellings (``air_drumming`` = ``air drumming``). A CSV without a
    ``label`` column gives unlabelled videos. ``other_classes``: ``error`` keeps a row of a class outside
    ``class_names`` as an error record; ``skip`` leaves it out (a protocol over some classes, e.g. Kinetics-600's
    zero-shot splits). A video that is not on disk stays an error record (counted, not dropped)."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"Kinetics annotation CSV not found: {csv_file}")
    index = {label_key(c): i for i, c in enumerate(class_names)}
    files = {Path(p).stem: p for p in list_videos(root)} if Path(root).is_dir() else {}
    records = []
    with csv_file.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"youtube_id", "time_start", "time_end"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{csv_file}: expected Kinetics columns label,youtube_id,time_start,time_end,split; "
                             f"got {reader.fieldnames}")
        for n, row in enumerate(reader, 2):
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            label = index.get(label_key(row["label"]), None) if row.get("label") else -1
            if label is None and other_classes == "skip":
                continue
            path = files.get(stem) or files.get(row["youtube_id"]) or str(Path(root) / f"{stem}.mp4")
            error = (f"{csv_file}:{n}: class {row['label']!r} is not in the class list" if label is None
                     else None if Path(path).exists() else f"not found under {root}")
            records.append(VideoRecord(path, -1 if label is None else label, error))
    return records


_BRACKETS = re.compile(r"\[([^\]]*)\]")


def ssv2_class(template: str) -> str:
    """Something-Something v2 class name from a video's template: ``Putting [something] onto [something]`` ->
    ``Putting something onto something`` (the keys of ``labels.json``)."""
    return _BRACKETS.sub(r"\1", template)


def ssv2_records(json_file: str | Path, root: str | Path, class_names: list[str]) -> list[VideoRecord]:
    """Something-Something v2 annotations: a JSON list of ``{"id", "label", "template", "placeholders"}``;
    videos at ``root/<id>.webm``. The class is the template without brackets; entries without a template (the
    test set) are unlabelled."""
    json_file = Path(json_file)
    if not json_file.is_file():
        raise FileNotFoundError(f"Something-Something v2 annotation file not found: {json_file}")
    index = {label_key(c): i for i, c in enumerate(class_names)}
    records = []
    for n, entry in enumerate(json.loads(json_file.read_text(encoding="utf-8"))):
        path = str(Path(root) / f"{entry['id']}.webm")
        if "template" not in entry:
            records.append(VideoRecord(path))
            continue
        label = index.get(label_key(ssv2_class(entry["template"])))
        error = None if label is not None else f"{json_file} entry {n}: class {entry['template']!r} is unknown"
        records.append(VideoRecord(path, -1 if label is None else label, error))
    return records
