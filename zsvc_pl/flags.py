"""Mistyped flags end in one line that names the closest valid ones, for every verb of ``zsvc``.

``OneLineParser`` is the argparse parser of the library's verbs and ``serve``; ``one_line_error`` is what the
LightningCLI parser (``zsvc_pl.cli``) prints. No usage block, no prefix abbreviations (``--top`` is not
``--top-k``): exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable
from typing import NoReturn


def suggestions(message: str, known: Iterable[str]) -> str:
    """``message`` with, for each unrecognised ``--flag`` in it, the closest valid flags appended."""
    known = sorted(set(known))
    hints = []
    for flag in re.findall(r"(--[\w.\-]+)", message.partition(":")[2] or message):
        close = difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
        if close and flag not in known:
            hints.append(f"{flag}: did you mean {' or '.join(close)}?")
    return message + ("; " + "; ".join(hints) if hints else "")


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` of a parser and of its sub-parsers."""
    out = set()
    for action in parser._actions:
        out |= {s for s in action.option_strings if s.startswith("--")}
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= option_strings(sub)
    return out


def one_line_error(prog: str, message: str, known: Iterable[str]) -> NoReturn:
    """Print ``prog: error: message`` (with suggestions for unknown flags) and exit with status 2."""
    text = " ".join(str(message).split())
    if "unrecognized" in text.lower():
        text = suggestions(text, known)
    print(f"{prog}: error: {text}", file=sys.stderr)
    raise SystemExit(2)


class OneLineParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose mistakes are one line with suggestions, and which takes no abbreviations."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        one_line_error(self.prog, message, option_strings(self))
