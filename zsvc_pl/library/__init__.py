"""The video library: an embedded database filled once per video that answers search, moments, tagging and
moderation without decoding again (``Library``), and its command line (``zsvc index|search|like|tag|moderate|
export|status``). Names are imported when first used (``zsvc --help`` reads the verbs without torch)."""

from __future__ import annotations

from zsvc_pl.lazy import lazy_names

_WHERE = {"Hit": "zsvc_pl.library.library", "Library": "zsvc_pl.library.library",
          "Moment": "zsvc_pl.library.library", "LibraryError": "zsvc_pl.library.store"}
__all__ = list(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
