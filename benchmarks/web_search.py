"""The web page's search latency in a real browser, on a synthetic library (``library_scale``'s vectors).

    python benchmarks/web_search.py --videos 100000 [--queries 50] [--out /tmp/web_search]

Fills (or reuses) a library of ``--videos`` synthetic videos of 8 frame vectors each through the library's own
write path and builds its indexes, serves it with ``zsvc_pl.web.Server`` on 127.0.0.1, and loads the search
page for ``--queries`` different texts in headless Chromium (Debian's, driven by Playwright). Per page it reads
the browser's navigation timing: request start to the last byte of the page (what the server's search and
rendering cost, over loopback), and navigation start to DOMContentLoaded; and the server's own figure printed on
the page. Prints p50 and p99 of each. The next query waits until the page's thumbnail requests are answered (a
person looks at the results first; fired back to back, the 24 thumbnail requests of one page compete with the
next search for the two cores). Thumbnails of synthetic videos do not exist (their files are not there): each is
a 404, so the figures are the page's, not its images'.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from library_scale import CHUNK, TextStandIn, add, videos_and_frames  # noqa: E402

from zsvc_pl.library import Library  # noqa: E402
from zsvc_pl.web import Server  # noqa: E402

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fill(folder: Path, n: int, dim: int, frames: int) -> Library:
    stand_in = TextStandIn(dim, frames)
    if (folder / "library.json").exists():
        lib = Library.open(folder, stand_in)
        if lib.status()["videos"] == n:
            return lib
        shutil.rmtree(folder)
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(np.random.default_rng(2).standard_normal((dim, 32)))[0].T.astype(np.float32)
    lib = Library.create(folder, "synthetic", None, frames, model=stand_in)
    start = time.perf_counter()
    for i in range(0, n, CHUNK):
        add(lib.store, *videos_and_frames(min(CHUNK, n - i), dim, frames, rng, basis, i))
    print(f"filled {n} videos in {time.perf_counter() - start:.0f} s; building indexes", file=sys.stderr, flush=True)
    start = time.perf_counter()
    lib.optimize()
    print(f"indexes built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return lib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default="/tmp/web_search")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    lib = fill(Path(args.out) / f"lib{args.videos}", args.videos, args.dim, args.frames)
    server = Server(lib, port=0, reviewer="bench").start()
    page_ms, dom_ms, server_ms = [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page()
            page.goto(server.url + "?q=warm+up")
            for i in range(args.queries):  # each page's thumbnails requested before the next query, as a person would
                page.goto(server.url + f"?q=a+video+of+scene+{i}", wait_until="networkidle")
                timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
                page_ms.append(timing["responseEnd"] - timing["requestStart"])
                dom_ms.append(timing["domContentLoadedEventEnd"] - timing["startTime"])
                server_ms.append(float(re.search(r"in (\d+) ms", page.locator("#latency").inner_text()).group(1)))
                assert page.locator(".card").count() == 24
            browser.close()
    finally:
        server.stop()
    for name, values in (("request to last byte", page_ms), ("navigation to DOMContentLoaded", dom_ms),
                         ("server's search (shown on the page)", server_ms)):
        print(f"{args.videos} videos, {name}: p50 {np.percentile(values, 50):.0f} ms, "
              f"p99 {np.percentile(values, 99):.0f} ms")


if __name__ == "__main__":
    main()
