"""Writing outputs without losing them: atomic replacement, one writer per output, and resumable row journals.

A resumable output (predictions) has a journal beside it, ``.<name>.journal``: its first line is the run's
signature (what decides the rows: input folder, labels, templates, top-k, backbone, sampling), then one JSON row
per video. JSON lines keep any path intact (control characters, line separators, undecodable bytes), and a line
cut by a kill fails to parse and is simply redone. The output itself is only ever replaced whole.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # file names that are not UTF-8 round-trip


class OutputError(RuntimeError):
    """An output that cannot be written as asked; the message says what to do instead."""


def atomic_write(target: str | Path, write: Callable[[Path], None], durable: bool = True) -> None:
    """Write ``target`` through ``write(tmp)`` on a temporary file in the same folder, fsync it, rename it over
    ``target``: readers see the old file or the new one, never a part. ``durable=False`` skips the fsyncs, for
    files whose readers check them and can make them again (the feature cache): still atomic, not crash-proof."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    if not durable:
        return
    try:
        fd = os.open(target.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:  # some file systems cannot fsync a folder
        pass


def remove_stale_temporaries(target: str | Path) -> int:
    """Delete temporary files that a killed writer of ``target`` left behind; returns how many."""
    target = Path(target)
    stale = list(target.parent.glob(f".{target.name}.*.tmp")) if target.parent.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def output_lock(target: str | Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``target`` for one writer at a time; a second one is refused at once."""
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{target} is being written by another run; wait for it to finish or choose "
                              f"another output") from None
        yield
    finally:
        os.close(fd)


class Journal:
    """The rows written so far for one output, keyed by video path, with the signature they were made under."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> tuple[dict | None, dict[str, dict]]:
        """(signature, rows by path); complete lines only."""
        if not self.path.is_file():
            return None, {}
        lines = self.path.read_text(**ENCODING).split("\n")
        try:
            signature = json.loads(lines[0])["signature"]
        except (ValueError, KeyError, TypeError):
            return None, {}
        rows = {}
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # cut by an interruption: that video is done again
            if isinstance(row, dict) and "path" in row:
                rows[row["path"]] = row
        return signature, rows

    def start(self, signature: dict) -> None:
        """A new journal holding only the signature."""
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps({"signature": signature}) + "\n", **ENCODING))

    def append(self, rows: list[dict]) -> None:
        """Add rows durably (flushed and fsynced: a kill loses at most the line being written)."""
        with open(self.path, "a", **ENCODING) as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def file_stamp(path: str | Path) -> list[int] | None:
    """Size and modification time (ns) of a file, or ``None`` when it cannot be found: what outputs kept across
    runs (predict journals, the search index) compare to tell that a file changed since it was read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def signature_difference(old: dict, new: dict) -> str:
    """The settings that differ between two signatures, for a message."""
    keys = sorted(set(old) | set(new))
    diff = [k for k in keys if old.get(k) != new.get(k)]
    return ", ".join(f"{k} ({_short(old.get(k))} -> {_short(new.get(k))})" for k in diff)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
