"""int8 dynamic quantisation of the image tower: speed-up and agreement with fp32, side by side.

    python benchmarks/quantization.py --videos ../shared/realvideos --limit 24

Two settings in one run:
  - the demo world with the shipped demo backbone (real accuracy): 24 colour-shape classes, generated videos;
  - the real clips with ViT-B-32 (random weights: agreement of embeddings and top-1 over the manifest labels).
For each: image-tower frames/s fp32 vs int8 (same prepared inputs), top-1 agreement, mean cosine between
fp32 and int8 video embeddings, and (demo world) top-1 accuracy of each.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.demo.world import all_classes, generate_dataset, static_label


def tower_speed(model: ZeroShotVideoClassifier, frames: int = 64, repeats: int = 3) -> float:
    x = torch.randn(frames, 3, model.image_size, model.image_size)
    with torch.inference_mode():
        model.backbone.encode_image(x[:4])
        start = time.perf_counter()
        for _ in range(repeats):
            model.backbone.encode_image(x)
    return frames * repeats / (time.perf_counter() - start)


def compare(model_name: str, pretrained: str, videos: list[str], labels: list[str], truth: list[str] | None,
            num_frames: int) -> dict:
    torch.manual_seed(0)  # with pretrained="none" both models must start from the same random weights
    fp32 = ZeroShotVideoClassifier(model_name=model_name, pretrained=pretrained, num_frames=num_frames)
    torch.manual_seed(0)
    int8 = ZeroShotVideoClassifier(model_name=model_name, pretrained=pretrained, num_frames=num_frames, quantize=True)
    out = {"videos": len(videos), "labels": len(labels)}
    out["fp32_frames_per_s"], out["int8_frames_per_s"] = tower_speed(fp32), tower_speed(int8)
    out["speedup"] = out["int8_frames_per_s"] / out["fp32_frames_per_s"]
    e32, e8 = fp32.encode_videos(videos), int8.encode_videos(videos)
    out["embedding_cosine_mean"] = float(F.cosine_similarity(e32, e8).mean())
    out["embedding_cosine_min"] = float(F.cosine_similarity(e32, e8).min())
    p32 = [r[0][0] for r in fp32.classify(videos, labels, top_k=1)]
    p8 = [r[0][0] for r in int8.classify(videos, labels, top_k=1)]
    out["top1_agreement"] = sum(a == b for a, b in zip(p32, p8)) / len(videos)
    if truth:
        out["fp32_top1"] = sum(a == t for a, t in zip(p32, truth)) / len(videos)
        out["int8_top1"] = sum(b == t for b, t in zip(p8, truth)) / len(videos)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=None, help="real clips folder with manifest.csv (optional)")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    res = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(tmp, {"test": 2}, all_classes(), seed=5, labels="static") / "test"
        labels = sorted({static_label(c, s) for c, s, _ in all_classes()})
        videos = [str(p) for label in labels for p in sorted((root / label).glob("*.mp4"))]
        truth = [Path(v).parent.name for v in videos]
        res["demo_world"] = compare("demo", "demo", videos, labels, truth, args.frames)
    if args.videos:
        rows = [r for r in csv.DictReader(open(Path(args.videos) / "manifest.csv")) if r["label"] != "_robustness"]
        videos = [str(Path(args.videos) / r["path"]) for r in rows][: args.limit]
        res["real_clips_vit_b32_random"] = compare("ViT-B-32", "none", videos, sorted({r["label"] for r in rows}),
                                                   None, args.frames)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
