"""The video library: an embedded database filled once per video that answers search, moments, tagging and
moderation without decoding again (``Library``), and its command line (``zsvc index|search|like|tag|moderate|
export|status``)."""

from zsvc_pl.library.library import Hit, Library, Moment
from zsvc_pl.library.store import LibraryError

__all__ = ["Hit", "Library", "LibraryError", "Moment"]
