"""Compare two runs from their run cards: which settings differ, how the metrics moved, which videos changed.

    python -m zsvc_pl.compare runs/test-a runs/test-b [--show 20]

Each argument is a run card (``run.json``) or a run folder (its newest ``run*.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IGNORED = ("created", "command", "metrics", "predictions")


def load_card(path: str | Path) -> dict:
    """A run card from a file or a run folder (its newest card)."""
    path = Path(path)
    if path.is_dir():
        cards = sorted(path.glob("run*.json"), key=lambda p: p.stat().st_mtime_ns)
        if not cards:
            raise FileNotFoundError(f"no run card (run.json) in {path}: test or predict writes one there")
        path = cards[-1]
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"run card not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a run card ({getattr(e, 'msg', 'not UTF-8 text')})") from None
    if not isinstance(card, dict):
        raise ValueError(f"{path} is not a run card (a JSON object): it holds a {type(card).__name__}")
    return card


def flatten(card: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in card.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in IGNORED:
            out.update(flatten(value, name + "."))
        elif key not in IGNORED or prefix:
            out[name] = value
    return out


def compare(a: dict, b: dict) -> dict:
    """Settings that differ, metric changes, and the videos whose top label changed (present in both runs)."""
    fa, fb = flatten(a), flatten(b)
    settings = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    ma, mb = a.get("metrics", {}), b.get("metrics", {})
    metrics = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))}
    pa, pb = a.get("predictions", {}), b.get("predictions", {})
    both = sorted(set(pa) & set(pb))
    changed = [(p, pa[p], pb[p]) for p in both if pa[p] != pb[p]]
    return {"settings": settings, "metrics": metrics, "videos_in_both": len(both), "changed": changed,
            "only_a": sorted(set(pa) - set(pb)), "only_b": sorted(set(pb) - set(pa))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zsvc_pl.compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--show", type=int, default=20, help="changed videos listed (all are counted)")
    args = parser.parse_args(argv)
    try:
        diff = compare(load_card(args.run_a), load_card(args.run_b))
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"zsvc_pl.compare: error: {e}\n")
    print(f"settings that differ: {len(diff['settings'])}")
    for key, (va, vb) in diff["settings"].items():
        print(f"  {key}: {json.dumps(va)} -> {json.dumps(vb)}")
    print("metrics:")
    for key, (va, vb) in diff["metrics"].items():
        delta = f" ({vb - va:+.4f})" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else ""
        print(f"  {key}: {va} -> {vb}{delta}")
    print(f"videos in both runs: {diff['videos_in_both']}; prediction changed: {len(diff['changed'])}; "
          f"only in A: {len(diff['only_a'])}; only in B: {len(diff['only_b'])}")
    for path, la, lb in diff["changed"][: args.show]:
        print(f"  {path}: {la} -> {lb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
