"""The library's web page (``zsvc serve LIB``): ``create_app`` over a ``Library``, ``Server`` to run it."""

from zsvc_pl.web.app import create_app
from zsvc_pl.web.serve import Server

__all__ = ["Server", "create_app"]
