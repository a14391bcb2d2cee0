"""Which image-tower speed-ups pay on this machine: fp32 eager against channels-last, bf16 autocast,
torch.compile, int8 (torchao: int8 weights, dynamically quantised int8 activations; eager and compiled; every
projection as ``quantize=True`` does, and the MLPs only, as torchao alone reaches in open_clip's blocks) and
token merging, on the same prepared frames in one run.

    python benchmarks/image_tower.py --model ViT-B-32 [--rounds 5]

The variants take turns, one pass each per round (this machine's speed drifts by 10-30 % within minutes), so
each speed-up is the median over rounds of the ratio to the fp32 pass of the same round. Prints frames/s
(median), the speed-up, the lowest cosine between the variant's frame embeddings and fp32's (random weights:
speed does not depend on them), and torch.compile's one-off compile times.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.image_tower import int8_matmul_speedup, quantize_image_tower
from zsvc_pl.model.token_merging import apply_token_merging


def frames_per_second(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int,
                      warm_up: bool = True) -> float:
    with torch.inference_mode():
        if warm_up:
            fn(x)  # (for torch.compile, the compilation)
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x)
    return len(x) * repeats / (time.perf_counter() - start)


def compile_timed(tower: torch.nn.Module, x: torch.Tensor) -> tuple[Callable, float]:
    """``torch.compile(tower)`` and the seconds its first call takes (the compilation)."""
    start = time.perf_counter()
    compiled = torch.compile(tower)
    with torch.inference_mode():
        compiled(x)
    return compiled, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--frames", type=int, default=32, help="frames per forward pass (4 videos x 8 frames)")
    parser.add_argument("--repeats", type=int, default=1, help="passes per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    bb = load_clip(args.model, "none")
    tower = bb.model.visual.eval()
    x = torch.randn(args.frames, 3, bb.image_size, bb.image_size)
    with torch.inference_mode():
        reference = tower(x)

    def bf16(frames: torch.Tensor) -> torch.Tensor:
        with torch.autocast(frames.device.type, dtype=torch.bfloat16):
            return tower(frames)

    channels_last = copy.deepcopy(tower).to(memory_format=torch.channels_last)
    quantized = copy.deepcopy(bb.model)
    quantize_image_tower(quantized)  # what quantize=True does where int8 products pay (forced here, to measure)
    int8 = quantized.visual
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    mlp_only = copy.deepcopy(tower)  # torchao alone: nn.MultiheadAttention keeps its projections in fp32
    quantize_(mlp_only, Int8DynamicActivationInt8WeightConfig())
    print(json.dumps({"cpu": torch.backends.cpu.get_cpu_capability(),
                      "int8_matmul_speedup": round(int8_matmul_speedup(), 3)}), flush=True)
    compiled, compile_s = compile_timed(tower, x)
    int8_compiled, int8_compile_s = compile_timed(int8, x)
    mlp_only_compiled, _ = compile_timed(mlp_only, x)
    variants = {
        "fp32": tower,
        "channels_last": lambda frames: channels_last(frames.contiguous(memory_format=torch.channels_last)),
        "bf16_autocast": bf16,
        "torch_compile": compiled,
        "int8_torchao": int8,
        "int8_torchao_compiled": int8_compiled,
        "int8_mlp_only": mlp_only,
        "int8_mlp_only_compiled": mlp_only_compiled,
        "token_merging_r2": apply_token_merging(copy.deepcopy(tower), 2),  # what token_merging=2 does
    }
    res: dict = {"model": args.model, "frames": args.frames, "threads": torch.get_num_threads(),
                 "compile_seconds": compile_s, "int8_compile_seconds": int8_compile_s}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            rates[name].append(frames_per_second(fn, x, args.repeats, warm_up=not rates[name]))
    for name, fn in variants.items():
        with torch.inference_mode():
            cos = F.cosine_similarity(fn(x).float(), reference).min().item()
        ratios = [a / b for a, b in zip(rates[name], rates["fp32"])]
        res[name] = {"frames_per_s": statistics.median(rates[name]), "min_cosine_to_fp32": cos,
                     "speedup": statistics.median(ratios), "speedups": ratios}
    print(json.dumps(res, indent=1))
    print("\n| variant | frames/s | vs fp32 | min cosine to fp32 |\n|---|---|---|---|")
    for name in variants:
        r = res[name]
        print(f"| {name} | {r['frames_per_s']:.1f} | {r['speedup']:.2f}x | {r['min_cosine_to_fp32']:.4f} |")
    print(f"torch.compile: {compile_s:.0f} s to compile fp32, {int8_compile_s:.0f} s int8")


if __name__ == "__main__":
    main()
