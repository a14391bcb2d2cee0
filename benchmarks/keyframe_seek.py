"""Exact against keyframe seeking (``--data.seek keyframe``): sampled frames per core-second on real clips, how far
the frames move, and what it does to top-1 on the demo world.

    python benchmarks/keyframe_seek.py --videos ../shared/realvideos [--frames 8 --rounds 3]

Each real clip of the manifest (the labelled and the odd ones) is read by ``FrameReader`` at 224 px, ``--frames``
uniformly sampled frames, in this process with one thread, timed in CPU seconds (so per core); the modes take
turns per clip and round and the best round counts. Also printed: the share of frames taken at a keyframe and the
mean distance from the asked position (seconds). Top-1: the demo backbone over a generated demo world (static and
motion labels), exact against keyframe, and their agreement. No real CLIP weights here: the effect on real-clip
accuracy is not measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import torch

from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.data.reader import FrameReader
from zsvc_pl.data.sampling import FrameSampler


def read_speed(paths: list[str], frames: int, rounds: int) -> dict:
    readers = {mode: FrameReader(FrameSampler(frames), 224, timeout_s=None, seek=mode)
               for mode in ("exact", "keyframe")}
    cpu = {mode: 0.0 for mode in readers}
    moved, snapped, read = [], 0, 0
    for path in paths:
        best, clips = {}, {}
        for _ in range(rounds):
            for mode, reader in readers.items():
                start = time.process_time()
                try:
                    clips[mode] = reader.read(path)
                except VideoDecodeError:
                    break
                best[mode] = min(best.get(mode, float("inf")), time.process_time() - start)
        if len(best) < 2:
            continue
        read += 1
        for mode in readers:
            cpu[mode] += best[mode]
        asked, taken = clips["exact"].indices[0], clips["keyframe"].indices[0]
        snapped += sum(a != t for a, t in zip(asked, taken))
        moved += [abs(a - t) / clips["exact"].fps for a, t in zip(asked, taken)]
    out = {"clips": read, "frames": read * frames}
    for mode in readers:
        out[f"{mode}_frames_per_core_s"] = round(read * frames / cpu[mode], 1)
    out["speedup"] = round(cpu["exact"] / cpu["keyframe"], 2)
    out["share_moved_to_a_keyframe"] = round(snapped / max(read * frames, 1), 3)
    out["mean_shift_s"] = round(sum(moved) / max(len(moved), 1), 3)
    return out


def demo_top1(frames: int) -> dict:
    from zsvc_pl import ZeroShotVideoClassifier, generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for kind in ("static", "motion"):
            root = generate_dataset(Path(tmp) / kind, {"test": 2}, seed=7, labels=kind)
            paths = sorted(str(p) for p in root.rglob("*.mp4"))
            labels = sorted({Path(p).parent.name for p in paths})
            truth = [labels.index(Path(p).parent.name) for p in paths]
            tops = {}
            for mode in ("exact", "keyframe"):
                clf = ZeroShotVideoClassifier("demo", "demo", num_frames=frames, num_workers=0, seek=mode)
                tops[mode] = clf.probabilities(paths, labels).argmax(1).tolist()
            def share(a: list, b: list) -> float:
                return round(sum(x == y for x, y in zip(a, b)) / len(paths), 4)

            out[kind] = {"videos": len(paths), **{f"top1_{m}": share(t, truth) for m, t in tops.items()},
                         "agreement": share(tops["exact"], tops["keyframe"])}
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", required=True, help="real clips folder with manifest.csv")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = [str(Path(args.videos) / r["path"]) for r in csv.DictReader(open(Path(args.videos) / "manifest.csv"))]
    print(json.dumps({"real_clips": read_speed(paths, args.frames, args.rounds)}), flush=True)
    print(json.dumps({"demo_world": demo_top1(args.frames)}), flush=True)


if __name__ == "__main__":
    main()
