"""Writing outputs without losing them: atomic replacement, one writer per output, and resumable row journals.

A resumable output (predictions) has a journal beside it, ``.<name>.journal``: its first line is the run's
signature (what decides the rows: input folder, labels, templates, top-k, backbone, sampling), then one JSON row
per video. JSON lines keep any path intact (control characters, line separators, undecodable bytes), and a line
cut by a kill fails to parse and is simply redone. The output itself is only ever replaced whole.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # file names that are not UTF-8 round-trip
_CANNOT_WRITE = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: new files get the permissions open() would give them


class OutputError(RuntimeError):
    """An output that cannot be written as asked; the message says what to do instead."""


def atomic_write(target: str | Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Write ``target`` through ``write(f)`` on a binary file that is new, private to this writer and in the
    target's folder, then fsync it and rename it over ``target``: readers see the old file or the new one, never
    a part, and a kill at any point leaves the old one whole. The temporary file is created exclusively under a
    random name (``O_EXCL``, so a link planted in the folder is never followed) and the target itself is
    replaced, never opened, so a link at the target's name is replaced, not written through. ``durable=False``
    skips the fsyncs, for files whose readers check them and can make them again (the feature cache): still
    atomic, not crash-proof. A full or read-only disk raises ``OutputError`` naming the target."""
    target = Path(target)
    with _temporary(target, write, durable) as tmp:
        os.replace(tmp, target)
    if durable:
        fsync_folder(target.parent)


def write_new(folder: str | Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``text`` to ``<stem><suffix>``, or ``<stem>-2<suffix>``, ... : the first name no file holds, claimed
    atomically (a hard link fails where the name exists), so two runs writing into one folder at once never
    take the same name and never overwrite an earlier file. Returns the path written."""
    folder = Path(folder)
    with _temporary(folder / f"{stem}{suffix}", lambda f: f.write(text.encode(**ENCODING)), True) as tmp:
        n = 1
        while True:
            target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, target)
                break
            except FileExistsError:
                n += 1
    fsync_folder(folder)
    return target


@contextmanager
def _temporary(target: Path, write: Callable[[BinaryIO], None], durable: bool) -> Iterator[Path]:
    """A temporary file beside ``target`` holding what ``write`` wrote (fsynced when ``durable``), removed after
    the block whatever happens; disk errors become one ``OutputError`` naming ``target``."""
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
        tmp = Path(name)
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        yield tmp
    except OSError as e:
        if e.errno in _CANNOT_WRITE:
            raise OutputError(f"cannot write {target} ({e.strerror}): free space, make the folder writable or "
                              "choose another output") from None
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def check_writable(target: str | Path) -> None:
    """Refuse, before any work, an output whose folder cannot take a new file (read-only, full, not a folder, or
    the target itself a folder), so that a long run never ends in losing what it computed."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target} is a folder: name a file to write")
    with _temporary(target, lambda f: None, durable=False):  # created the way the output will be, then removed
        pass


def atomic_write_text(target: str | Path, text: str, durable: bool = True) -> None:
    """``atomic_write`` of a text (UTF-8; file names that are not UTF-8 round-trip)."""
    atomic_write(target, lambda f: f.write(text.encode(**ENCODING)), durable)


def csv_text(header: list[str], rows: list) -> str:
    """Rows as CSV text (``csv`` module quoting, so any file name survives), for ``atomic_write_text``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def fsync_folder(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where the file system cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path, name: str = "*", min_age_s: float = 0) -> int:
    """Delete the temporary files that killed writers of ``folder/name`` left behind; returns how many. Where
    live writers may share the folder (the feature cache, filled by several processes or nodes), ``min_age_s``
    keeps the files younger than that: a write takes milliseconds, so an hour-old temporary is a dead one."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for f in folder.glob(f".{name}.*.tmp"):
        try:
            if min_age_s and now - f.lstat().st_mtime < min_age_s:
                continue
            f.unlink()
            removed += 1
        except FileNotFoundError:  # its writer finished, or another cleaner was first
            pass
    return removed


@contextmanager
def output_lock(target: str | Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``target`` for one writer at a time; a second one is refused at once."""
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise OutputError(f"cannot create {lock} ({e.strerror}): the folder must be writable and the name not "
                          "a link") from None
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

    def start(self, signature: dict, rows: list[dict] = ()) -> None:
        """Replace the journal, in one atomic step, by one holding ``signature`` and ``rows``: a kill leaves either
        the old journal or the new one, whole."""
        text = "".join(json.dumps(r) + "\n" for r in [{"signature": signature}, *rows])
        atomic_write_text(self.path, text)

    def append(self, rows: list[dict]) -> None:
        """Add rows durably (flushed and fsynced: a kill loses at most the line being written). A link at the
        journal's name is refused, never written through."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write {self.path} ({e.strerror}): remove it if it is a link, or choose "
                              "another output") from None
        with os.fdopen(fd, "a", **ENCODING) as f:
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


def printable(path: str) -> str:
    """A path on one line: control characters (a newline in a file name) escaped as Python writes them."""
    return path if path.isprintable() else repr(path)[1:-1]


def signature_difference(old: dict, new: dict) -> str:
    """The settings that differ between two signatures, for a message."""
    keys = sorted(set(old) | set(new))
    diff = [k for k in keys if old.get(k) != new.get(k)]
    return ", ".join(f"{k} ({_short(old.get(k))} -> {_short(new.get(k))})" for k in diff)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
