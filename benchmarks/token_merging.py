"""Token merging (ToMe) in the image tower: speed and agreement with the unmerged tower, for several r.

    python benchmarks/token_merging.py

  - the demo world with the shipped demo backbone (65 tokens, 4 blocks): image-tower speed-up, top-1 agreement
    with the unmerged tower and top-1 accuracy of each, over 192 generated videos of 24 classes;
  - ViT-B-32 (50 tokens, 12 blocks; random weights, speed does not depend on them): image-tower speed-up and the
    cosine between merged and unmerged frame embeddings, on the same prepared frames.
r is the number of tokens merged in every block (``token_merging=r`` in the API, ``--model.token_merging`` in
the CLI).
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch
import torch.nn.functional as F
from quantization import compare, demo_world

from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.token_merging import apply_token_merging


def tokens_left(tokens: int, blocks: int, r: int) -> int:
    for _ in range(blocks):
        tokens -= min(r, (tokens - 1) // 2)
    return tokens


def tower_only(model_name: str, r: int, frames: int = 32, repeats: int = 3) -> dict:
    """Frames/s of the unmerged and merged image tower (alternating), and the lowest embedding cosine."""
    import time

    torch.manual_seed(0)
    plain = load_clip(model_name, "none").model.visual.eval()
    torch.manual_seed(0)
    merged = apply_token_merging(load_clip(model_name, "none").model.visual.eval(), r)
    x = torch.randn(frames, 3, 224, 224)
    seconds = {"plain": 0.0, "merged": 0.0}
    with torch.inference_mode():
        a, b = plain(x), merged(x)  # warm-up, and the embeddings compared
        for _ in range(repeats):
            for name, tower in (("plain", plain), ("merged", merged)):
                start = time.perf_counter()
                tower(x)
                seconds[name] += time.perf_counter() - start
    return {"r": r, "plain_frames_per_s": frames * repeats / seconds["plain"],
            "variant_frames_per_s": frames * repeats / seconds["merged"],
            "speedup": seconds["plain"] / seconds["merged"],
            "embedding_cosine_min": float(F.cosine_similarity(a, b).min()),
            "embedding_cosine_mean": float(F.cosine_similarity(a, b).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-r", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--vit-r", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    res: dict = {"threads": torch.get_num_threads(), "demo_world": [], "vit_b32": []}
    with tempfile.TemporaryDirectory() as tmp:
        world = demo_world(tmp)
        for r in args.demo_r:
            res["demo_world"].append(compare("demo", "demo", *world, args.frames, token_merging=r))
    for r in args.vit_r:
        res["vit_b32"].append(tower_only("ViT-B-32", r))
    print(json.dumps(res, indent=1))
    print("\n| backbone | r | tokens after the last block | image tower speed-up | embedding cosine mean (min) "
          "| top-1 agreement | top-1 unmerged / merged |\n|---|---|---|---|---|---|---|")
    for name, rows, tokens, blocks in (("demo", res["demo_world"], 65, 4), ("ViT-B-32", res["vit_b32"], 50, 12)):
        for row in rows:
            r = row.get("r", row.get("token_merging"))
            agree = f"{100 * row['top1_agreement']:.1f} %" if "top1_agreement" in row else "-"
            top1 = (f"{100 * row['plain_top1']:.1f} / {100 * row['variant_top1']:.1f}" if "plain_top1" in row
                    else "-")
            print(f"| {name} | {r} | {tokens_left(tokens, blocks, r)} of {tokens} | {row['speedup']:.2f}x "
                  f"| {row['embedding_cosine_mean']:.4f} ({row['embedding_cosine_min']:.4f}) | {agree} | {top1} |")


if __name__ == "__main__":
    main()
