"""The library's web page over HTTP: it serves only the library's own videos, guards its door, keeps what a
reviewer decides, and stays up under many clients. (Its pages in a real browser: test_web_browser.py.)"""

import html
import http.client
import json
import re
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

pytest.importorskip("fastapi")

from zsvc_pl.library import Library  # noqa: E402
from zsvc_pl.web import Server  # noqa: E402

CLASSES = [("red", "circle", "left"), ("blue", "square", "top"), ("green", "triangle", "bottom"),
           ("yellow", "cross", "right")]
LABELS = ["a red circle", "a blue square", "a green triangle", "a yellow cross"]


def make_library(root: Path, model, outside: Path | None = None) -> Library:
    """Twelve demo videos, one broken file, a tag run and a moderation run; with ``outside``, a link in the
    videos folder to a video outside it."""
    from zsvc_pl.demo.world import generate_dataset

    generate_dataset(root / "v", {"lib": 3}, classes=CLASSES, size=64, num_frames=8, labels="static")
    (root / "v" / "broken.mp4").write_bytes(b"\x00" * 600)
    if outside is not None:
        (root / "v" / "link_out.mp4").symlink_to(outside)
    lib = Library.create(root / "lib", "demo", "demo", 8, model=model)
    lib.index(root / "v", log=None)
    lib.tag(LABELS, save=True)
    lib.flags({"a red circle": 0.5}, others=LABELS[1:], save=True)
    return lib


@pytest.fixture(scope="module")
def demo_inline(demo_model):
    from zsvc_pl import ZeroShotVideoClassifier

    return ZeroShotVideoClassifier(model=demo_model.model, num_frames=8, num_workers=0)


@pytest.fixture(scope="module")
def libraries(demo_inline, tmp_path_factory):
    """The served library, and another one whose ids it must not serve."""
    other = make_library(tmp_path_factory.mktemp("other"), demo_inline)
    outside = sorted((other.store.folder.parent / "v" / "lib").rglob("*.mp4"))[0]
    return make_library(tmp_path_factory.mktemp("web"), demo_inline, outside=outside), other


@pytest.fixture(scope="module")
def server(libraries):
    server = Server(libraries[0], port=0, reviewer="ana").start()
    yield server
    server.stop()


def get(server: Server, path: str, headers: dict | None = None, method: str = "GET", body: str | None = None):
    """A raw request: the path goes out byte for byte (no client-side normalising of ``..``)."""
    netloc = urlsplit(server.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=30)
    conn.request(method, path, body=body, headers={"Host": netloc, **(headers or {})})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, dict(answer.getheaders()), data


def post(server: Server, path: str, form: dict, origin: str | None = "same") -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin is not None:
        headers["Origin"] = server.url.rstrip("/") if origin == "same" else origin
    body = "&".join(f"{k}={quote(str(v))}" for k, v in form.items())
    return get(server, path, headers, "POST", body)


def test_it_serves_only_the_librarys_own_readable_videos(server, libraries):
    lib, other = libraries
    video = sorted(p for p in (lib.store.folder.parent / "v").rglob("*.mp4") if p.name[:4] in ("left", "top_"))[0]
    vid = lib.video_id(str(video))
    status, headers, data = get(server, f"/media/{vid}")
    assert status == 200 and data == video.read_bytes() and headers["content-type"] == "video/mp4"
    status, headers, data = get(server, f"/media/{vid}", {"Range": "bytes=100-199"})
    assert status == 206 and data == video.read_bytes()[100:200]  # seeking in long files
    link = str(lib.store.folder.parent / "v" / "link_out.mp4")
    assert lib.video(lib.video_id(link))["status"] == "ok"  # indexed, but its file lies outside the folder
    other_id = other.video_id(str(Path(os.readlink(link))))  # the same file, in the other library
    broken = lib.video_id(str(lib.store.folder.parent / "v" / "broken.mp4"))
    for attempt in ["/media/../../../../etc/passwd", "/media/..%2F..%2F..%2Fetc%2Fpasswd", "/media/%2Fetc%2Fpasswd",
                    "/media/%252e%252e%252fetc%252fpasswd", f"/media/{quote(str(video), safe='')}",
                    f"/media/{lib.video_id(link)}", f"/media/{other_id}", f"/media/{broken}",
                    "/media/" + "0" * 16, "/media/" + vid.upper(), f"/media/{vid}%00", f"/strip/{other_id}.jpg",
                    "/strip/..%2f..%2fetc%2fpasswd.jpg", "/static/../app.py", "/static/..%2fapp.py",
                    "/static/%2e%2e/app.py", f"/video/{other_id}"]:
        status, _, data = get(server, attempt)
        assert status == 404, (attempt, status)
        assert b"root:" not in data and not data.startswith(b"\x00\x00\x00")
    status, headers, data = get(server, f"/strip/{vid}.jpg")
    assert status == 200 and data[:2] == b"\xff\xd8"  # a JPEG of the video's frames
    assert headers["content-security-policy"].startswith("default-src 'self'")


def test_other_host_names_and_other_machines_need_a_token(libraries, server):
    assert get(server, "/", {"Host": "attacker.example:80"})[0] == 403  # a name rebound to 127.0.0.1
    with pytest.raises(ValueError, match="access token"):
        Server(libraries[0], host="0.0.0.0", port=0)
    guarded = Server(libraries[0], host="0.0.0.0", port=0, token="s3cret").start()
    try:
        assert get(guarded, "/status")[0] == 401
        assert get(guarded, "/status", {"Cookie": "zsvc_token=wrong"})[0] == 401
        assert get(guarded, "/status", {"Authorization": "Bearer s3cret"})[0] == 200
        status, headers, _ = get(guarded, "/status?token=s3cret")
        assert status == 303 and headers["location"] == "/status" and "zsvc_token=s3cret" in headers["set-cookie"]
        assert get(guarded, "/status", {"Cookie": "zsvc_token=s3cret", "Host": "my.host:8000"})[0] == 200
    finally:
        guarded.stop()


def test_serve_on_another_host_without_a_token_is_refused_in_one_line(libraries, capsys, monkeypatch):
    from zsvc_pl.web.serve import main

    monkeypatch.delenv("ZSVC_TOKEN", raising=False)
    with pytest.raises(SystemExit) as e:
        main([str(libraries[0].store.folder), "--host", "0.0.0.0", "--port", "0"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "access token" in err
    with pytest.raises(SystemExit) as e:
        main([str(libraries[0].store.folder.parent / "nope")])
    assert e.value.code == 2 and "not a zsvc_pl library" in capsys.readouterr().err


def test_changes_need_this_apps_own_page_and_a_malformed_one_changes_nothing(server, libraries):
    lib = libraries[0]
    run = [r for r in lib.runs() if r["kind"] == "moderate"][0]["run"]
    flag = lib.results(run)[0]
    form = {"run": run, "video": lib.video_id(flag["path"]), "label": flag["label"], "start_s": flag["start_s"],
            "decision": "dismiss", "back": "/review"}
    before = lib.store.table("reviews").count_rows()
    assert post(server, "/review", form, origin=None)[0] == 403
    assert post(server, "/review", form, origin="http://attacker.example")[0] == 403
    assert post(server, "/review", {**form, "decision": "delete everything"})[0] == 400
    assert post(server, "/review", {**form, "video": "0" * 16})[0] == 404
    assert post(server, "/review", {**form, "start_s": "nan"})[0] == 400
    assert post(server, "/review", {**form, "label": "a label it never gave"})[0] == 400
    assert post(server, "/review", {k: v for k, v in form.items() if k != "decision"})[0] == 422
    assert post(server, "/tags", {"labels": "only one"})[0] == 400
    assert lib.store.table("reviews").count_rows() == before  # none of those changed anything
    status, headers, _ = post(server, "/review", {**form, "back": "https://attacker.example/"})
    assert status == 303 and headers["location"] == "/"  # never sent off-site
    done = [r for r in lib.results(run) if r["path"] == flag["path"] and r["start_s"] == flag["start_s"]]
    assert done[0]["decision"] == "dismiss" and done[0]["reviewer"] == "ana"
    status, _, page = get(server, f"/review?run={run}")
    assert status == 200 and flag["path"].encode() not in page  # off the queue of what is left
    assert b"dismissed" in page


def test_fifty_clients_at_once_all_get_answers(server):
    def ask(i: int):
        status, _, data = get(server, f"/api/search?q={quote(LABELS[i % 4])}&top_k=3")
        return status, json.loads(data)["results"][0]["path"] if status == 200 else None

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert all(status == 200 for status, _ in answers)
    assert all(LABELS[i % 4][2:] in path for i, (_, path) in enumerate(answers))  # each its own right answer
    assert get(server, "/status")[0] == 200


def card_paths(page: bytes) -> list[str]:
    """The video paths of a page's result cards, in order."""
    return [html.unescape(p) for p in re.findall(r'class="path" title="([^"]+)"', page.decode())]


def test_pages_answer_with_what_the_library_holds(server, libraries):
    lib = libraries[0]
    status, _, page = get(server, "/?q=" + quote("a photo of a blue square") + "&per=3")
    assert status == 200 and len(card_paths(page)) == 3 and "blue square" in card_paths(page)[0]
    pages = [get(server, "/?q=" + quote("a photo of a blue square") + f"&per=3&page_no={n}")[2] for n in range(1, 7)]
    assert [len(card_paths(p)) for p in pages] == [3, 3, 3, 3, 1, 0]  # 13 readable; past the end: empty
    assert len({p for page in pages for p in card_paths(page)}) == 13  # each video on exactly one page
    assert get(server, "/?q=x&min_s=inf")[0] == 400
    folder = str(lib.store.folder.parent / "v" / "lib" / "a green triangle")
    status, _, page = get(server, "/?q=" + quote("a photo of a blue square") + "&folder=" + quote(folder))
    assert len(card_paths(page)) == 3 and all(p.startswith(folder + "/") for p in card_paths(page))
    status, _, page = get(server, "/?q=anything&tag=" + quote("a yellow cross"))
    assert len(card_paths(page)) == 3 and all("yellow cross/right_" in p for p in card_paths(page))
    status, _, page = get(server, "/?q=anything&max_s=0.5")
    assert status == 200 and card_paths(page) == []  # every clip lasts one second
    status, _, page = get(server, "/status")
    assert b"broken.mp4" in page and b'id="videos">13<' in page  # 12 clips and the link
    assert str(lib.store.folder.parent.resolve() / "v").encode() in page.split(b'id="sources"')[1][:400]
    status, _, page = get(server, "/tags?abstain=0.999")
    assert b"none of these" in page
    vid = lib.video_id(sorted(lib.store.scan("videos", ["path"], "status = 'ok'")["path"].to_pylist())[0])
    status, _, page = get(server, f"/video/{vid}?t=0.5&labels=" + quote("a red circle|a blue square"))
    assert status == 200 and page.count(b"<polyline") == 2 and b'data-start="0.5"' in page


def test_tags_from_a_label_set_with_library_videos_as_examples(server, libraries):
    lib = libraries[0]
    paths = lib.store.scan("videos", ["path"], "status = 'ok'")["path"].to_pylist()
    circles, crosses = (sorted(p for p in paths if kind in p) for kind in ("red circle/", "yellow cross/"))
    text = (f"a blicket: [{lib.video_id(circles[0])}]\na wug: [{lib.video_id(crosses[0])}]\na blue square:\n"
            "a green triangle:\n")
    status, headers, _ = post(server, "/tags", {"labels": text, "top_k": 1})
    assert status == 303
    status, _, page = get(server, headers["location"])
    group = page.decode().split("<h2>a blicket")[1].split("</section>")[0]
    assert sorted(card_paths(group.encode())) == circles  # the example's own kind, by one library clip
    for refused in ("a blicket: [/etc/passwd.mp4]\nb:", "a blicket: [" + "0" * 16 + ".mp4]\nb:", "a: [b\nc:"):
        assert post(server, "/tags", {"labels": refused})[0] == 400, refused
