"""The library's web page: search, a video at its moment, tags and the review queue over one ``Library``.

A thin layer: every answer comes from ``Library`` (the same calls as ``zsvc`` and the Python API); this module
only reads requests, renders templates and guards the door:

- videos are named by their library id, never by a path from the request; a file is served only when
  ``Library.media`` finds it inside the folders the library was filled from (anything else is 404);
- without a token the app answers only requests addressed to the loopback names (a page elsewhere cannot reach
  it by pointing a host name at 127.0.0.1); with one (``--token``, needed for any other host) every request must
  carry it, once as ``?token=`` (then a cookie) or as ``Authorization: Bearer``;
- a POST must come from this app's own pages (its ``Origin``, or ``Referer`` without one, is this host);
- pages allow only their own scripts, styles and media (``Content-Security-Policy``).
"""

from __future__ import annotations

import math
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import yaml
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from zsvc_pl.data.label_sets import LabelSet
from zsvc_pl.data.outputs import csv_text
from zsvc_pl.library.library import Library
from zsvc_pl.library.store import LibraryError
from zsvc_pl.yaml_files import loads

HERE = Path(__file__).parent
PER_PAGE, MAX_PER_PAGE, MAX_PAGE, REVIEW_PAGE = 24, 100, 1000, 50
LOOPBACK = ("127.0.0.1", "localhost", "::1")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self'; media-src 'self'; style-src 'self'; "
                                      "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def create_app(library: Library, reviewer: str, token: str | None = None) -> FastAPI:
    """The app over ``library``; reviews are recorded under ``reviewer``. ``token``: required of every request
    (serving beyond this machine); without it only loopback host names are answered."""
    app = FastAPI(title="zsvc library", docs_url=None, redoc_url=None, openapi_url=None)
    pages = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    library.model  # built now, not by the first requests at once
    roots = [r.rstrip("/") + "/" for r in library.sources()]

    def short(path: str) -> str:
        """A path as shown on a card: below the folder the library was filled from (its title holds all of it)."""
        return next((path[len(r):] for r in roots if path.startswith(r)), path)

    pages.env.filters["short"] = short

    @app.middleware("http")
    async def door(request: Request, call_next):
        if token is None and urlsplit("//" + request.headers.get("host", "")).hostname not in LOOPBACK:
            return PlainTextResponse("this server answers only 127.0.0.1 and localhost", 403)
        if token is not None:
            given = request.query_params.get("token")
            if given is not None and secrets.compare_digest(given.encode(), token.encode()):
                query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                answer = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
                answer.set_cookie("zsvc_token", token, httponly=True, samesite="strict")
                return answer
            held = request.cookies.get("zsvc_token") or request.headers.get("authorization", "").removeprefix(
                "Bearer ")
            if not secrets.compare_digest(held.encode(), token.encode()):
                return PlainTextResponse("an access token is needed: open the address `zsvc serve` printed", 401)
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return PlainTextResponse("refused: a change must come from this app's own pages", 403)
        answer = await call_next(request)
        answer.headers.update(HEADERS)
        return answer

    def page(request: Request, name: str, **context) -> HTMLResponse:
        return pages.TemplateResponse(request, name, {"library": library.store.folder.name, **context})

    def row_of(video: str) -> dict:
        row = library.video(video)
        if row is None:
            raise HTTPException(404, "no such video in this library")
        return row

    def latest(kind: str) -> dict | None:
        runs = [r for r in library.runs() if r["kind"] == kind]
        return runs[-1] if runs else None

    def run_named(run: str | None, kind: str) -> dict | None:
        if not run:
            return latest(kind)
        found = [r for r in library.runs() if r["run"] == run and r["kind"] == kind]
        if not found:
            raise HTTPException(404, f"no saved {kind} run {run}")
        return found[0]

    @app.exception_handler(LibraryError)
    @app.exception_handler(ValueError)
    async def refused(request: Request, e: Exception) -> Response:
        return PlainTextResponse(str(e).splitlines()[0] if str(e) else type(e).__name__, 400)

    @app.get("/", response_class=HTMLResponse)
    def search(request: Request, q: str = "", moments: bool = False, like: str = "", start: float | None = None,
               end: float | None = None, folder: str = "", tag: str = "", min_s: float | None = None,
               max_s: float | None = None, page_no: int = 1, per: int = PER_PAGE) -> HTMLResponse:
        page_no, per = min(max(1, page_no), MAX_PAGE), min(max(1, per), MAX_PER_PAGE)
        for x in (start, end, min_s, max_s):
            if x is not None and not math.isfinite(x):
                raise HTTPException(400, "times and durations are numbers of seconds")
        hits, took, note, tag_run = [], None, "", latest("tag")
        like_path = row_of(like)["path"] if like else ""
        if q.strip() or like:
            began = time.perf_counter()
            hits, note = _search(library, q.strip(), moments, like_path, start, end, folder, tag,
                                 min_s, max_s, page_no, per, tag_run)
            took = (time.perf_counter() - began) * 1000
        tags = tag_run["settings"]["labels"] if tag_run else []
        query = {k: v for k, v in request.query_params.items() if k != "page_no"}
        return page(request, "search.html", q=q, moments=moments, like=like, like_path=like_path,
                    hits=hits, took=took, note=note, page_no=page_no, per=per, folder=folder, tag=tag, tags=tags,
                    min_s=min_s, max_s=max_s, prev=urlencode({**query, "page_no": page_no - 1}),
                    next=urlencode({**query, "page_no": page_no + 1}), more=len(hits) == per)

    @app.get("/api/search")
    def api_search(q: str, top_k: int = 10, moments: bool = False) -> JSONResponse:
        began = time.perf_counter()
        found = (library.moments if moments else library.search)(q, min(max(1, top_k), MAX_PER_PAGE))
        return JSONResponse({"took_ms": round((time.perf_counter() - began) * 1000, 2),
                             "results": [vars(h) for h in found]})

    @app.get("/video/{video}", response_class=HTMLResponse)
    def video(request: Request, video: str, t: float = 0.0, labels: str = "") -> HTMLResponse:
        row = row_of(video)
        path = row["path"]
        tag_run = latest("tag")
        names = [x.strip() for x in labels.split("|") if x.strip()] or (
            tag_run["settings"]["labels"] if tag_run else [])
        curves = _curves(library.timeline(path, names[:len(COLOURS)]), row["duration"]) if names else None
        tags = library.results(tag_run["run"], path) if tag_run else []
        flags = [dict(r, run=m["run"]) for m in library.runs() if m["kind"] == "moderate"
                 for r in library.results(m["run"], path)]
        return page(request, "video.html", video=row, t=t if math.isfinite(t) else 0.0, curves=curves,
                    labels="|".join(names), tags=tags, flags=flags, tag_run=tag_run,
                    like=library.like(path, 8) if row["status"] == "ok" else [])

    @app.get("/media/{video}")
    def media(video: str) -> FileResponse:
        real = library.media(video)
        if real is None:
            raise HTTPException(404, "no such video in this library")
        return FileResponse(real, media_type=_media_type(real), content_disposition_type="inline")

    @app.get("/strip/{video}.jpg")
    def strip(video: str) -> Response:
        data = library.strip(video)
        if data is None:
            raise HTTPException(404, "no frames for this video")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/tags", response_class=HTMLResponse)
    def tags(request: Request, run: str = "", abstain: float = 0.0) -> HTMLResponse:
        chosen = run_named(run, "tag")
        groups: dict[str, list[dict]] = {}
        if chosen:
            for r in library.results(chosen["run"]):
                if r["rank"] == 0:
                    none = r["decision"] != "relabel" and r["score"] < abstain
                    r["id"] = library.video_id(r["path"])
                    groups.setdefault("none of these" if none else _label(r), []).append(r)
        return page(request, "tags.html", run=chosen, runs=[r for r in library.runs() if r["kind"] == "tag"],
                    groups=dict(sorted(groups.items())), abstain=abstain,
                    labels=chosen["settings"]["labels"] if chosen else [])

    @app.post("/tags")
    def tag(labels: str = Form(...), top_k: int = Form(3)) -> RedirectResponse:
        label_set = _label_set(library, labels)
        if len(label_set.names) < 2:
            raise HTTPException(400, "give at least two labels, one per line")
        library.tag(label_set, min(max(1, top_k), len(label_set.names)), save=True, library_examples_only=True)
        return RedirectResponse(f"/tags?{urlencode({'run': latest('tag')['run']})}", 303)

    @app.get("/review", response_class=HTMLResponse)
    def review_queue(request: Request, run: str = "", show: str = "left", page_no: int = 1) -> HTMLResponse:
        chosen = run_named(run, "moderate")
        flags = library.results(chosen["run"]) if chosen else []
        for f in flags:
            f["id"] = library.video_id(f["path"])
        counts = {"flags": len(flags), "left": sum(f["decision"] is None for f in flags),
                  **{d: sum(f["decision"] == d for f in flags) for d in ("confirm", "dismiss", "relabel")}}
        shown = flags if show == "all" else [f for f in flags if f["decision"] is None]
        page_no = min(max(1, page_no), MAX_PAGE)
        return page(request, "review.html", run=chosen, runs=[r for r in library.runs() if r["kind"] == "moderate"],
                    flags=shown[(page_no - 1) * REVIEW_PAGE:page_no * REVIEW_PAGE], counts=counts, show=show,
                    reviewer=reviewer, page_no=page_no, more=len(shown) > page_no * REVIEW_PAGE)

    @app.post("/review")
    def review(run: str = Form(...), video: str = Form(...), label: str = Form(...), decision: str = Form(...),
               start_s: str = Form(""), new_label: str = Form(""), back: str = Form("/")) -> RedirectResponse:
        start = float(start_s) if start_s.strip() else None
        if start is not None and not math.isfinite(start):
            raise HTTPException(400, "start_s must be a number of seconds")
        library.review(run, row_of(video)["path"], label, decision, reviewer, start, new_label or None)
        target = urlsplit(back)
        if target.scheme or target.netloc or not back.startswith("/") or back.startswith("//"):
            back = "/"
        return RedirectResponse(back, 303)

    @app.get("/export/{run}.csv")
    def export(run: str) -> Response:
        table = library.export(run)
        text = csv_text(table.column_names, [list(r.values()) for r in table.to_pylist()])
        return Response(text, media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{run}.csv"'})

    @app.get("/status", response_class=HTMLResponse)
    def status(request: Request) -> HTMLResponse:
        progress = library.progress()
        return page(request, "status.html", status=library.status(), unreadable=library.unreadable(),
                    progress=progress, running=bool(progress and not progress.get("finished")),
                    runs=library.runs(), sources=library.sources())

    return app


def _same_origin(request: Request) -> bool:
    """A POST from this app's own page: the browser's ``Origin`` (or ``Referer``) names the host it asked."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host")


def _label_set(library: Library, text: str) -> LabelSet:
    """The Tags form: one label per line, or ``label: example, ...`` lines (a YAML mapping) whose examples are
    words or library videos, named by id (the video page shows it) or by path."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not any(":" in x for x in lines):
        return LabelSet(list(dict.fromkeys(lines)))
    try:
        mapping = loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise LibraryError(f"the labels are not 'label: [example, ...]' lines: {str(e).splitlines()[0]}") from None
    if not isinstance(mapping, dict):
        raise LibraryError("the labels are not 'label: [example, ...]' lines")
    for name, items in mapping.items():
        items = [] if items is None else [items] if isinstance(items, str) else items
        mapping[name] = [(library.video(x) or {}).get("path", x) if isinstance(x, str) else x for x in items]
    return LabelSet.from_mapping(mapping, source="the labels")


def _label(result: dict) -> str:
    """A tag result's label after review: the hand-given one when it was relabelled."""
    return result["new_label"] if result.get("decision") == "relabel" else result["label"]


def _search(library: Library, q: str, moments: bool, like_path: str, start, end, folder: str, tag: str, min_s,
            max_s, page_no: int, per: int, tag_run: dict | None) -> tuple[list, str]:
    """One page of results and a note on filters that did not apply."""
    offset, note = (page_no - 1) * per, ""
    if like_path:
        found = library.like(like_path, offset + per, start, end)[offset:]
        return found, "filters apply to text searches" if (folder or tag or min_s or max_s) else ""
    if moments:
        found = [m for m in library.moments(q, offset + per) if not folder or m.path.startswith(folder)]
        return found[offset:], "moments filter by folder only" if (tag or min_s or max_s) else ""
    paths = None
    if tag and tag_run:
        paths = [r["path"] for r in library.results(tag_run["run"]) if r["rank"] == 0 and _label(r) == tag]
    return library.search(q, per, offset, folder or None, min_s, max_s, paths), note


def _curves(timeline, duration: float | None) -> dict:
    """SVG polylines of the label scores over time (x: 0-1000 over the video, y: 0-100, score 1 at the top)."""
    span = duration or (float(timeline.times[-1]) if len(timeline.times) else 1.0) or 1.0
    lines = []
    for j, label in enumerate(timeline.labels):
        points = " ".join(f"{1000 * t / span:.1f},{100 * (1 - s):.1f}" for t, s in
                          zip(timeline.times, timeline.scores[:, j]))
        lines.append({"label": label, "points": points, "colour": COLOURS[j % len(COLOURS)],
                      "peak": float(timeline.scores[:, j].max())})
    return {"lines": lines, "duration": span}


def _media_type(path: Path) -> str:
    return {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
            ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo"}.get(
        path.suffix.lower(), "application/octet-stream")
