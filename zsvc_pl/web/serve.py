"""``zsvc serve LIB``: the library's web page on this machine (or, with an access token, for others).

    zsvc serve LIB [--port 8765] [--reviewer NAME]
    zsvc serve LIB --host 0.0.0.0 --token SECRET      # other hosts: refused without a token

It prints its address and serves until Ctrl+C. Mistakes end with one line and exit 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import socket
import threading

from zsvc_pl.flags import OneLineParser
from zsvc_pl.library.library import Library
from zsvc_pl.web.app import create_app

__all__ = ["Server", "main"]


class Server:
    """The app on a socket of its own, in a thread (``start``/``stop``), or in the foreground (``run``)."""

    def __init__(self, library: Library, host: str = "127.0.0.1", port: int = 8765, reviewer: str = "",
                 token: str | None = None) -> None:
        import uvicorn

        if not _loopback(host) and not token:
            raise ValueError(f"--host {host} serves other machines: give an access token (--token or ZSVC_TOKEN)")
        self.token = token
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as e:
            self.socket.close()
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port") from None
        app = create_app(library, reviewer or getpass.getuser(), token)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{port}/"

    def run(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.run, daemon=True, name="zsvc-serve")
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.socket.close()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    """``zsvc serve``: 0 after Ctrl+C; exit 2 with one line on a mistake."""
    from zsvc_pl.library.store import LibraryError

    parser = OneLineParser(prog="zsvc serve", description="the library's web page")
    parser.add_argument("library", help="the library folder (`zsvc index LIB --videos DIR` fills one)")
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default): this machine only")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--token", default=os.environ.get("ZSVC_TOKEN"),
                        help="access token, needed for any --host but loopback (or ZSVC_TOKEN)")
    parser.add_argument("--reviewer", default="", help="the name reviews are recorded under (default: your login)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        import fastapi  # noqa: F401
    except ImportError:
        parser.exit(2, "zsvc serve: error: the web page needs FastAPI: pip install 'zsvc_pl[web]'\n")
    try:
        server = Server(Library.open(args.library), args.host, args.port, args.reviewer, args.token)
    except (LibraryError, ValueError, OSError) as e:
        if args.debug:
            raise
        parser.exit(2, f"zsvc serve: error: {str(e).splitlines()[0]}\n")
    url = server.url + (f"?token={args.token}" if args.token else "")
    print(f"zsvc serve: {args.library} at {url} (Ctrl+C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0
