"""The library's verbs on the command line (``zsvc VERB LIB ...``, also ``python -m zsvc_pl VERB LIB ...``):

    zsvc index LIB --videos DIR [--model.model_name ViT-B-32 --model.pretrained openai --data.num_frames 8]
                                [--library.every_s 2 --library.max_segments 600]
    torchrun --nproc-per-node 4 -m zsvc_pl index LIB --videos DIR   # ranks share the work; one library
    zsvc search LIB "a person riding a horse" [--moments] [--top-k 10] [--json]
    zsvc like LIB VIDEO [--start 12 --end 15]
    zsvc tag LIB --labels labels.txt|label_set.yaml|examples/ [--top-k 3] [--out tags.csv]
    zsvc moderate LIB --rules rules.yaml [--out flags.csv]
    zsvc export LIB --out videos.csv|.parquet|.jsonl [--run RUN]   # a saved run: its results and reviews
    zsvc status LIB
    zsvc import LIB --index videos.idx          # a zsvc_pl.search index, once, without decoding

Mistakes and unusable files end with one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from zsvc_pl.flags import OneLineParser

VERBS = {"index": "add new and changed videos, drop deleted ones (resumable)",
         "import": "a new library from a zsvc_pl.search index file, without decoding",
         "search": "videos (or --moments) most like a text",
         "like": "videos most like a video, or like its moment --start/--end",
         "tag": "every video against a label list or label set, from the stored vectors",
         "moderate": "flags with their spans, from the stored frames",
         "export": "the videos table, or a saved run with its reviews",
         "status": "what the library holds and what filled it"}


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="zsvc", description="a video library: fill it once, ask it anything")
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=VERBS[name], allow_abbrev=False)
        p.add_argument("library", help="the library folder")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        return p

    p = verb("index")
    p.add_argument("--videos", required=True, help="a folder (recursive) or one video")
    p.add_argument("--model.model_name", dest="model_name", default="ViT-B-32")
    p.add_argument("--model.pretrained", dest="pretrained", default="openai")
    p.add_argument("--model.tower", dest="tower", default="auto",
                   choices=("auto", "fp32", "compiled", "int8", "int8-compiled"),
                   help="how the image tower runs; auto: the quickest within cosine 0.999 of fp32 here (measured "
                   "once per machine and backbone)")
    p.add_argument("--data.num_frames", dest="num_frames", type=int, default=8)
    p.add_argument("--data.batch_size", dest="batch_size", type=int, default=8)
    p.add_argument("--data.seek", dest="seek", choices=("exact", "keyframe"), default="exact",
                   help="keyframe: each frame taken at the nearest keyframe in its segment (faster, approximate)")
    p.add_argument("--library.every_s", dest="every_s", type=float, default=None,
                   help="a new library: one segment every this many seconds of a long video (default 2; 0: the "
                   "sampled frames only)")
    p.add_argument("--library.max_segments", dest="max_segments", type=int, default=None,
                   help="a new library: segments per video at most (default 600)")
    p = verb("import")
    p.add_argument("--index", required=True, help="the .idx file")
    p = verb("search")
    p.add_argument("query")
    p.add_argument("--moments", action="store_true", help="where in each video: start and end seconds")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    p = verb("like")
    p.add_argument("video")
    p.add_argument("--start", type=float, default=None)
    p.add_argument("--end", type=float, default=None)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p = verb("tag")
    p.add_argument("--labels", required=True, help="a label file (one per line, id,name CSV, JSON), or a label "
                   "set with example clips (YAML 'label: [text or clip, ...]', or a folder of clips per label)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--out", default=None, help=".csv or .jsonl (default: JSON Lines on stdout)")
    p = verb("moderate")
    p.add_argument("--rules", required=True, help="YAML: flags (label: threshold), others, abstain")
    p.add_argument("--out", default=None, help="flags .csv (default: JSON Lines on stdout)")
    p = verb("export")
    p.add_argument("--out", required=True, help=".csv, .parquet or .jsonl")
    p.add_argument("--run", default=None, help="a saved tag or moderation run (`zsvc status` lists them)")
    verb("status")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; 0 on success, 1 when moderation found unreadable videos, exit 2 with one line on a mistake,
    130 after Ctrl-C (``index``: with how to resume)."""
    from zsvc_pl.data.outputs import OutputError
    from zsvc_pl.labels import LabelError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        resume = ("; rerun the same command to resume (the videos committed so far are kept)"
                  if args.verb == "index" else "")
        print(f"zsvc {args.verb}: interrupted{resume}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, LabelError, OutputError, RuntimeError) as e:
        if args.debug:
            raise
        parser.exit(2, f"zsvc {args.verb}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}\n")


def _run(args: argparse.Namespace) -> int:
    from zsvc_pl.data.outputs import printable
    from zsvc_pl.library.library import Library

    if args.verb == "index":
        from zsvc_pl.api import ZeroShotVideoClassifier
        from zsvc_pl.library.ranks import Ranks

        ranks = Ranks.from_environment()  # the ranks of a torchrun launch, or this process alone
        model = ZeroShotVideoClassifier(args.model_name, args.pretrained, num_frames=args.num_frames,
                                        device=ranks.device, seek=args.seek, tower=args.tower)

        def create() -> Library:
            return Library.create(args.library, args.model_name, args.pretrained, args.num_frames, model=model,
                                  every_s=args.every_s, max_segments=args.max_segments)

        ranks.first(lambda: create() and None)  # rank 0 makes a new library; the others then open it
        lib = create()
        counts = lib.index(args.videos, args.batch_size, log=sys.stderr if ranks.rank == 0 else None, ranks=ranks)
        if ranks.rank == 0:
            for path, reason in lib.unreadable():
                print(f"unreadable {printable(path)}: {reason}", file=sys.stderr)
            print(f"indexed {args.library}: {counts['added']} added, {counts['kept']} unchanged, "
                  f"{counts['dropped']} dropped, {counts['unreadable']} unreadable this run "
                  f"({lib.status()['unreadable']} in all)" + (f" by {ranks.world} ranks" if ranks.world > 1 else ""))
        return 0
    if args.verb == "import":
        lib = Library.import_index(args.library, args.index)
        print(f"imported {args.index} into {args.library}: {lib.status()['videos']} videos")
        return 0
    lib = Library.open(args.library)
    if args.verb == "status":
        print(json.dumps({**lib.status(), "runs": [{k: r[k] for k in ("run", "kind", "created")} for r in lib.runs()]},
                         indent=1))
        return 0
    if args.verb in ("search", "like"):
        if args.verb == "like":
            found = lib.like(args.video, args.top_k, args.start, args.end)
        else:
            found = lib.moments(args.query, args.top_k) if args.moments else lib.search(args.query, args.top_k)
        for rank, hit in enumerate(found, 1):
            row = asdict(hit)
            if args.json:
                print(json.dumps(row))
            else:
                span = f"  {row['start']:.2f}-{row['end']:.2f} s" if "start" in row else ""
                print(f"{rank}. {row['score']:.3f}{span}  {printable(row['path'])}")
        return 0
    if args.verb == "tag":
        return _write(lib.tag(args.labels, args.top_k, save=True), args.out)
    if args.verb == "moderate":
        from zsvc_pl.moderation import load_rules

        thresholds, others, abstain = load_rules(args.rules)
        flags, unreadable = lib.flags(thresholds, others, abstain, save=True)
        _write([asdict(f) for f in flags], args.out)
        for path, reason in unreadable:
            print(f"not checked (unreadable) {printable(path)}: {reason}", file=sys.stderr)
        print(f"{len(flags)} flag(s) in {len({f.path for f in flags})} videos; {len(unreadable)} unreadable video(s) "
              "not checked", file=sys.stderr)
        return 1 if unreadable else 0
    if args.verb == "export":
        return _export(lib.export(args.run), Path(args.out))
    raise AssertionError(args.verb)


def _write(rows: list[dict], out: str | None) -> int:
    """Rows as JSON Lines on stdout, or to a .csv/.jsonl file written atomically."""
    from zsvc_pl.data.outputs import atomic_write_text, csv_text

    if out is None:
        for row in rows:
            print(json.dumps(row))
        return 0
    if Path(out).suffix.lower() == ".csv":
        cells = [[("|".join(map(str, v)) if isinstance(v, list) else v) for v in r.values()] for r in rows]
        atomic_write_text(out, csv_text(list(rows[0]) if rows else [], cells))
    else:
        atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} row(s) -> {out}", file=sys.stderr)
    return 0


def _export(table, out: Path) -> int:
    from zsvc_pl.data.outputs import atomic_write

    kind = out.suffix.lower()
    if kind == ".parquet":
        import pyarrow.parquet as pq

        atomic_write(out, lambda f: pq.write_table(table, f))
    elif kind in (".csv", ".jsonl"):
        return _write(table.to_pylist(), str(out))
    else:
        raise ValueError(f"--out {out}: export writes .csv, .parquet or .jsonl")
    print(f"{table.num_rows} row(s) -> {out}", file=sys.stderr)
    return 0
