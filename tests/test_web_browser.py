"""The library's web page in a real browser: Debian's headless Chromium driven by Playwright (its own browser
download cannot be reached here). ``make test`` installs Chromium and sets ``ZSVC_REQUIRE_BROWSER=1``, so CI fails
rather than skips when it is missing. ``ZSVC_SCREENSHOTS=DIR`` keeps the pages' screenshots there (the docs' are
made so: ``make screenshots``)."""

import csv
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.test_web import LABELS, make_library

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def browser_or_skip():
    if not Path(CHROMIUM).exists() or not shutil.which("chromium"):
        if os.environ.get("ZSVC_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("no Chromium: `make test` installs it (apt-get install chromium)")
    pytest.importorskip("playwright")


@dataclass
class Site:
    tab: object  # the browser page
    folder: Path  # the library folder
    model: object


@pytest.fixture(scope="module")
def site(demo_model, tmp_path_factory):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    from zsvc_pl import ZeroShotVideoClassifier

    model = ZeroShotVideoClassifier(model=demo_model.model, num_frames=8, num_workers=0)
    lib = make_library(tmp_path_factory.mktemp("browse"), model)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield Site(browser.new_page(viewport={"width": 1200, "height": 820}), lib.store.folder, model)
        browser.close()


@pytest.fixture()
def page(site):
    return site.tab


def start(site: Site):
    from zsvc_pl.library import Library
    from zsvc_pl.web import Server

    return Server(Library.open(site.folder, model=site.model), port=0, reviewer="ana").start()


@pytest.fixture()
def served(site):
    """A server over the library, new for each test (one test restarts it)."""
    server = start(site)
    yield server
    server.stop()


def shoot(page, name: str) -> None:
    folder = os.environ.get("ZSVC_SCREENSHOTS")
    if folder:
        page.wait_for_load_state("networkidle")  # the thumbnails too
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def test_a_search_for_an_object_puts_its_video_first(page, served):
    page.goto(served.url + "?q=" + quote("a photo of a yellow cross"))
    first = page.locator(".card .path").first.inner_text()
    assert "a yellow cross/" in first
    assert page.locator("#latency").inner_text().endswith(" ms")


def test_clicking_a_moment_starts_the_player_there(page, served):
    page.goto(served.url + "?q=" + quote("a photo of a green triangle") + "&moments=true")
    link = page.locator("a.moment").first
    start = float(link.get_attribute("href").split("t=")[1])
    assert "a green triangle/" in page.locator(".card .path").first.inner_text()
    shoot(page, "search")
    link.click()
    page.wait_for_function("() => { const v = document.getElementById('player'); return v && v.readyState >= 1 && "
                           "!v.seeking; }")
    current = page.evaluate("document.getElementById('player').currentTime")
    assert abs(current - start) <= 1 / 8  # within one frame step (the clips run at 8 fps)
    assert page.locator(".curves polyline").count() == len(LABELS)
    shoot(page, "video")


def test_a_confirm_in_the_review_queue_survives_a_restart(site, page, served):
    page.goto(served.url + "review")
    assert page.locator("#counts").inner_text().startswith("3 of 3 flags left")
    shoot(page, "review")
    confirmed = page.locator(".flag").first.get_attribute("data-path")
    page.locator(".flag button.confirm").first.click()
    assert page.locator("#counts").inner_text().startswith("2 of 3 flags left")
    served.stop()
    again = start(site)
    try:
        page.goto(again.url + "review?show=all")
        assert page.locator("#counts").inner_text().startswith("2 of 3 flags left · 1 confirmed")
        row = page.locator(f'.flag[data-path="{confirmed}"]')
        assert "confirm by ana" in row.inner_text()
    finally:
        again.stop()


def test_a_tag_changed_by_hand_shows_in_the_export(page, served):
    page.goto(served.url + "tags")
    card = page.locator(".group .card").first
    path = card.get_attribute("data-path")
    card.locator("input[name=new_label]").fill("a purple star")
    card.locator(".relabel button").click()
    assert page.locator("h2", has_text="a purple star").count() == 1
    export = page.request.get(served.url + page.locator("#export").get_attribute("href").lstrip("/"))
    rows = list(csv.DictReader(io.StringIO(export.text())))
    mine = [r for r in rows if r["path"] == path and r["rank"] == "0"]
    assert mine[0]["decision"] == "relabel" and mine[0]["new_label"] == "a purple star" and mine[0]["reviewer"] == "ana"


def test_path_traversal_from_the_browser_gets_404(page, served):
    for attempt in ("media/..%2F..%2F..%2Fetc%2Fpasswd", "media/%2Fetc%2Fpasswd", "static/..%2Fapp.py",
                    "strip/..%2f..%2fetc%2fpasswd.jpg"):
        assert page.goto(served.url + attempt).status == 404, attempt
