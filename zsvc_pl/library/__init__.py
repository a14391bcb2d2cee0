"""The video library: an embedded database filled once per video that answers search, moments, tagging and
moderation without decoding again (``Library``), and its command line (``zsvc index|search|like|tag|moderate|
export|status``). Names are imported when first used (``zsvc --help`` reads the verbs without torch)."""

from __future__ import annotations

import importlib

_WHERE = {"Hit": "zsvc_pl.library.library", "Library": "zsvc_pl.library.library",
          "Moment": "zsvc_pl.library.library", "LibraryError": "zsvc_pl.library.store"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
