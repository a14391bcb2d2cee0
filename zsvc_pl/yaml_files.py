"""One YAML reader for every file a user hands over: run configs, label sets, moderation rules, descriptions.

Safe tags only (no Python objects), no aliases (``*name``: a few hundred bytes of nested aliases expand to
gigabytes once a program walks them), a size bound, and one line naming the file and the line for every file
that is not YAML text. Typed fields are read with ``number`` (booleans, strings and non-finite values are
refused where a number is meant, since YAML reads ``yes`` as true and ``.inf`` as infinity).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 16 * 2**20  # far above any config or label set; a bound on what one file may cost


class YamlFileError(ValueError):
    """A YAML file that cannot be used; the message names it and says what is wrong."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted: write the values out",
                                              mark)
        return super().compose_node(parent, index)


def loads(text: str) -> Any:
    """Parse YAML text safely and without aliases (also the CLI's loader for configs and flag values)."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The content of a YAML (or JSON) file; ``YamlFileError`` naming the file for anything but YAML text."""
    path = Path(path)
    if path.is_dir():
        raise YamlFileError(f"{what} {path} is a folder, not a file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlFileError(f"{what} not found: {path}") from None
    except OSError as e:
        raise YamlFileError(f"cannot read {what} {path} ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise YamlFileError(f"{what} {path} is larger than {MAX_BYTES // 2**20} MB: not a config")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise YamlFileError(f"{what} {path} is not UTF-8 text (a binary file?)") from None
    if "\x00" in text:
        raise YamlFileError(f"{what} {path} is not text (it holds NUL bytes)")
    try:
        return loads(text)
    except yaml.YAMLError as e:
        raise YamlFileError(f"{what} {path} is not valid YAML ({describe(e)})") from None


def describe(error: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number within ``[low, high]``; booleans, strings and non-finite values are refused naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise YamlFileError(f"{where}: {value!r} is not a number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise YamlFileError(f"{where}: {value!r} is outside [{low}, {high}]")
    return float(value)
