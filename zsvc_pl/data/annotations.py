"""The annotation formats users have: a folder per class, ``path label_id`` lists, UCF101 and HMDB51 splits.

Each reader returns ``VideoRecord`` rows. A video whose class is not in the class list is kept as a record with
an ``error``, so that the run reports and counts it instead of dropping it silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zsvc_pl.data.decoding import VIDEO_EXTENSIONS
from zsvc_pl.labels import read_label_file


@dataclass(frozen=True)
class VideoRecord:
    """One video: its path, class index (-1 when unlabelled) and, for a video that cannot be used, why."""

    path: str
    label: int = -1
    error: str | None = None


def list_videos(root: str | Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[str]:
    """Every video file under ``root`` (recursive), sorted; hidden files skipped."""
    root = Path(root)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    return sorted(str(p) for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."))


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
