"""int8 quantisation of the image tower (torchao), eager and compiled: speed-up and agreement with fp32.

    python benchmarks/quantization.py --videos ../shared/realvideos --limit 24

Two settings in one run:
  - the demo world with the shipped demo backbone (real accuracy): 24 colour-shape classes, generated videos;
  - the real clips with ViT-B-32 (random weights: agreement of embeddings and top-1 over the manifest labels).
For each, two variants against fp32 with the same weights: ``quantize=True`` and ``quantize=True,
compile_tower=True``: image-tower frames/s on the same prepared inputs (plain and variant take turns, 5 rounds;
the speed-up is the median of the rounds' ratios; the compile happens before timing), top-1 agreement, mean
cosine between fp32 and int8 video embeddings, and (demo world) top-1 accuracy of each.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from image_tower import frames_per_second

from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.labels import label_key
from zsvc_pl.demo.world import all_classes, generate_dataset, static_label


def tower_speedup(plain: ZeroShotVideoClassifier, changed: ZeroShotVideoClassifier, frames: int = 64,
                  rounds: int = 5) -> tuple[float, float, float]:
    """Image-tower frames/s of both (medians) and the median ratio, the two taking turns on the same random
    prepared frames (a compiled tower compiles in its warm-up pass)."""
    size = plain.model.image_size
    x = torch.randn(frames, 3, size, size)
    rates: list[tuple[float, float]] = []
    for i in range(rounds):
        rates.append(tuple(frames_per_second(m.model.encode_frames, x, 1, warm_up=i == 0) for m in (plain, changed)))
    return (statistics.median(a for a, _ in rates), statistics.median(b for _, b in rates),
            statistics.median(b / a for a, b in rates))


def compare(model_name: str, pretrained: str, videos: list[str], labels: list[str], truth: list[str] | None,
            num_frames: int, **variant) -> dict:
    """The plain model against the same weights built with ``variant`` (e.g. ``quantize=True``), same videos."""
    torch.manual_seed(0)  # with pretrained="none" both models must start from the same random weights
    plain = ZeroShotVideoClassifier(model_name=model_name, pretrained=pretrained, num_frames=num_frames)
    torch.manual_seed(0)
    changed = ZeroShotVideoClassifier(model_name=model_name, pretrained=pretrained, num_frames=num_frames, **variant)
    out = {"videos": len(videos), "labels": len(labels), **variant}
    out["plain_frames_per_s"], out["variant_frames_per_s"], out["speedup"] = tower_speedup(plain, changed)
    e0, e1 = plain.encode_videos(videos), changed.encode_videos(videos)
    out["embedding_cosine_mean"] = float(F.cosine_similarity(e0, e1).mean())
    out["embedding_cosine_min"] = float(F.cosine_similarity(e0, e1).min())
    p0 = [r[0][0] for r in plain.classify(videos, labels, top_k=1)]
    p1 = [r[0][0] for r in changed.classify(videos, labels, top_k=1)]
    out["top1_agreement"] = sum(a == b for a, b in zip(p0, p1)) / len(videos)
    if truth:
        out["plain_top1"] = sum(a == t for a, t in zip(p0, truth)) / len(videos)
        out["variant_top1"] = sum(b == t for b, t in zip(p1, truth)) / len(videos)
    return out


def demo_world(folder: str) -> tuple[list[str], list[str], list[str]]:
    """Videos, labels and true labels of a generated demo-world test set (24 colour-shape classes, 8 each)."""
    root = generate_dataset(folder, {"test": 2}, all_classes(), seed=5, labels="static") / "test"
    labels = sorted({static_label(c, s) for c, s, _ in all_classes()})
    videos = [str(p) for label in labels for p in sorted((root / label).glob("*.mp4"))]
    return videos, labels, [Path(v).parent.name for v in videos]


def real_clips(folder: str, limit: int) -> tuple[list[str], list[str]]:
    """The first ``limit`` labelled clips of a real-clips folder (``manifest.csv``) and all their labels, one per
    meaning (the manifest spells some twice: ``PlayingGuitar``, ``playing_guitar``)."""
    rows = [r for r in csv.DictReader(open(Path(folder) / "manifest.csv")) if r["label"] != "_robustness"]
    labels = {label_key(r["label"]): r["label"] for r in reversed(rows)}
    return [str(Path(folder) / r["path"]) for r in rows][:limit], sorted(labels.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=None, help="real clips folder with manifest.csv (optional)")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    res = {"threads": torch.get_num_threads()}
    variants = {"int8": {"quantize": True}, "int8_compiled": {"quantize": True, "compile_tower": True}}
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_world(tmp)
        for name, kw in variants.items():
            res[f"demo_world_{name}"] = compare("demo", "demo", *demo, args.frames, **kw)
    if args.videos:
        videos, labels = real_clips(args.videos, args.limit)
        for name, kw in variants.items():
            res[f"real_clips_vit_b32_random_{name}"] = compare("ViT-B-32", "none", videos, labels, None, args.frames,
                                                               **kw)
    print(json.dumps(res, indent=1))
    print("\n| setting | variant | frames/s fp32 / variant | speed-up | cosine mean (min) | top-1 agreement | "
          "top-1 fp32 / variant |\n|---|---|---|---|---|---|---|")
    for key, r in res.items():
        if isinstance(r, dict):
            acc = f"{100 * r['plain_top1']:.1f} / {100 * r['variant_top1']:.1f}" if "plain_top1" in r else "-"
            print(f"| {key.rsplit('_int8', 1)[0]} | int8{'_compiled' if 'compiled' in key else ''} | "
                  f"{r['plain_frames_per_s']:.1f} / {r['variant_frames_per_s']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['embedding_cosine_mean']:.6f} ({r['embedding_cosine_min']:.6f}) | "
                  f"{100 * r['top1_agreement']:.1f} % | {acc} |")


if __name__ == "__main__":
    main()
