"""Label lists: class names to words, validation, and label files. Pure Python, imported by every layer.

A label is the whole line of a label file; ids are read only where the file's format says so (an ``id,name``
header, or every line an id followed by a name, the ids running 0..n-1 or 1..n as in UCF101's ``classInd.txt``).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ID_LINE = re.compile(r"^\s*(\d+)\s*[,\t ]\s*(.+?)\s*$")
_HEADERS = {("id", "name"), ("id", "label"), ("id", "class"), ("index", "name")}


class LabelError(ValueError):
    """A label list that cannot be classified against; the message names the file and lines."""


def humanize_label(name: str) -> str:
    """Turn a dataset class name into words: ``ApplyEyeMakeup`` -> ``apply eye makeup``.

    Names that already contain spaces are kept as written (only trimmed).
    """
    name = name.strip()
    if " " in name:
        return name
    words = re.split(r"[_\-]+", name)
    words = [w for part in words for w in _CAMEL.split(part) if w]
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)


def label_key(label: str) -> str:
    """What two labels that mean the same words share: ``Blue_Circle``, ``BlueCircle``, ``blue circle``."""
    return " ".join(humanize_label(label).lower().split())


def validate_labels(labels: list[str] | None, source: str = "the label list",
                    lines: list[int] | None = None, unit: str = "line") -> list[str]:
    """Trimmed labels; refuses an empty list, empty labels and labels that name the same words twice, naming
    where each one is (``unit`` ``line`` of a file, or ``item`` of a list)."""
    if labels is None or len(labels) == 0:
        raise LabelError(f"{source} is empty: give at least one label to classify against")
    cleaned = [str(label).strip() for label in labels]
    where = lines or list(range(1, len(cleaned) + 1))
    if any(not label for label in cleaned):
        raise LabelError(f"{source} contains an empty label ({unit} {where[cleaned.index('')]})")
    seen: dict[str, int] = {}
    for n, label in enumerate(cleaned):
        key = label_key(label)
        if key in seen:
            first = seen[key]
            what = "duplicate label" if cleaned[first] == label else "labels that mean the same words"
            raise LabelError(f"{source}: {what} would make scores ambiguous: {cleaned[first]!r} ({unit} "
                             f"{where[first]}) and {label!r} ({unit} {where[n]})")
        seen[key] = n
    return cleaned


def read_label_file(path: str | Path) -> list[str]:
    """Class names in id order from a label file: an ``id,name`` CSV (Kinetics, X-CLIP/ViFi-CLIP, SSv2; quotes
    and commas in names as the ``csv`` module reads them), ``id name`` lines (UCF101 ``classInd.txt``), one
    name per line, or a JSON ``{name: id}`` mapping or list (Something-Something v2's ``labels.json``). Lines
    starting with ``#`` before the first label are a header (a source note); a UTF-8 byte-order mark is dropped."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"label file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        return _json_labels(path, text)
    rows = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    while rows and rows[0][1].lstrip().startswith("#"):
        rows.pop(0)
    if not rows:
        raise LabelError(f"{path}: the label file is empty")
    first = next(csv.reader([rows[0][1]]))
    header = tuple(c.strip().lower() for c in first[:2])
    if header in _HEADERS:
        ids = _csv_ids(path, rows[1:])
    elif all(_ID_LINE.match(line) for _, line in rows):
        ids = _csv_ids(path, rows) if "," in rows[0][1] else _space_ids(path, rows)
        numbers = [int(_ID_LINE.match(line).group(1)) for _, line in rows]
        counting = numbers[0] in (0, 1) and all(a < b for a, b in zip(numbers, numbers[1:]))
        repeats = len(set(numbers)) < len(numbers)
        if repeats or (not _contiguous(ids) and not counting):  # "3 little pigs": numbers that belong to the names
            ids = {i: (n, line.strip()) for i, (n, line) in enumerate(rows)}
    else:
        ids = {i: (n, line.strip()) for i, (n, line) in enumerate(rows)}
    if not _contiguous(ids):
        raise LabelError(f"{path}: label ids must run 0..n-1 or 1..n without gaps or repeats; got "
                         f"{_gaps(ids)}. If the numbers are part of the names, write the names as a JSON list")
    order = sorted(ids)
    return validate_labels([ids[i][1] for i in order], str(path), [ids[i][0] for i in order])


def _json_labels(path: Path, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict):
        try:
            ids = {int(i): (0, name) for name, i in data.items()}
        except (TypeError, ValueError):
            raise LabelError(f"{path}: expected {{name: id}} with integer ids") from None
        if len(ids) != len(data) or not _contiguous(ids):
            raise LabelError(f"{path}: label ids must run 0..n-1 or 1..n without gaps or repeats")
        return validate_labels([ids[i][1] for i in sorted(ids)], str(path), unit="entry")
    if isinstance(data, list):
        return validate_labels([str(x) for x in data], str(path), unit="entry")
    raise LabelError(f"{path}: expected a JSON object {{name: id}} or a list of names")


def _csv_ids(path: Path, rows: list[tuple[int, str]]) -> dict[int, tuple[int, str]]:
    ids: dict[int, tuple[int, str]] = {}
    for n, line in rows:
        cells = next(csv.reader([line]))
        if len(cells) < 2 or not cells[0].strip().isdigit():
            raise LabelError(f"{path}:{n}: expected 'id,name', got {line!r}")
        i = int(cells[0])
        if i in ids:
            raise LabelError(f"{path}:{n}: label id {i} repeats line {ids[i][0]}")
        ids[i] = (n, ",".join(cells[1:]).strip())
    return ids


def _space_ids(path: Path, rows: list[tuple[int, str]]) -> dict[int, tuple[int, str]]:
    """``id name`` lines (UCF101's ``classInd.txt``)."""
    return {int(m.group(1)): (n, m.group(2)) for n, m in ((n, _ID_LINE.match(line)) for n, line in rows)}


def _gaps(ids: dict[int, tuple[int, str]]) -> str:
    order = sorted(ids)
    start = 0 if order and order[0] == 0 else 1
    missing = sorted(set(range(start, max(order[-1], start) + 1)) - set(order))
    return f"ids {order[0]}..{order[-1]} without {', '.join(map(str, missing[:5]))}" if missing else f"ids {order[:10]}"


def _contiguous(ids: dict[int, tuple[int, str]]) -> bool:
    order = sorted(ids)
    return bool(order) and order[0] in (0, 1) and order == list(range(order[0], order[0] + len(order)))
