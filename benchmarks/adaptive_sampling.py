"""Adaptive against uniform frame sampling on the demo world, with a fixed frame budget.

    python benchmarks/adaptive_sampling.py [--frames 8] [--length 48] [--event 0.25]

Videos of `--length` frames in which the object crosses the picture during only `--event` of the video
(the rest is empty background), labelled by colour and shape (24 classes, one video per class and direction).
Both samplers get the same `--frames` frames per video; the demo backbone classifies them with mean pooling.
A control set with the object visible throughout (event 1.0) checks that adaptive sampling costs nothing there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.demo.world import all_classes, generate_dataset, static_label


def accuracy(sampling: str, videos: list[str], labels: list[str], truth: list[str], frames: int) -> tuple[float, float]:
    clf = ZeroShotVideoClassifier(model_name="demo", pretrained="demo", num_frames=frames, sampling=sampling)
    start = time.perf_counter()
    preds = [r[0][0] for r in clf.classify(videos, labels, top_k=1, batch_size=16)]
    seconds = time.perf_counter() - start
    return sum(p == t for p, t in zip(preds, truth)) / len(truth), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--event", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    labels = sorted({static_label(c, s) for c, s, _ in all_classes()})
    res = {"frames": args.frames, "length": args.length}
    for event in (args.event, 1.0):
        with tempfile.TemporaryDirectory() as tmp:
            root = generate_dataset(tmp, {"test": 1}, all_classes(), seed=args.seed, num_frames=args.length,
                                    labels="static", event=event) / "test"
            videos = [str(p) for label in labels for p in sorted((root / label).glob("*.mp4"))]
            truth = [p.split("/")[-2] for p in videos]
            row = {"videos": len(videos)}
            for sampling in ("uniform", "adaptive"):
                acc, secs = accuracy(sampling, videos, labels, truth, args.frames)
                row[f"{sampling}_top1"], row[f"{sampling}_seconds"] = acc, secs
            res[f"event_{event:g}"] = row
    print(json.dumps(res, indent=1))
    print("\n| object visible in | videos | uniform top-1 | adaptive top-1 | uniform s | adaptive s |")
    print("|---|---|---|---|---|---|")
    for key, r in res.items():
        if key.startswith("event_"):
            print(f"| {float(key[6:]):.0%} of {args.length} frames | {r['videos']} | {100 * r['uniform_top1']:.1f} | "
                  f"{100 * r['adaptive_top1']:.1f} | {r['uniform_seconds']:.1f} | {r['adaptive_seconds']:.1f} |")


if __name__ == "__main__":
    main()
