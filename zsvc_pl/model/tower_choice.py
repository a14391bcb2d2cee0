"""``tower="auto"``: the quickest image tower this machine runs that is exact enough, measured once and kept.

The candidates are the ways ``create_model`` can run a frozen image tower (``candidates``): ``fp32``, and on a CPU
``int8`` and ``int8-compiled`` (torchao) where int8 matrix products beat fp32 (``int8_matmul_speedup``), on a GPU
``compiled``; where fp32 is the only one, nothing is timed. Each runs the same fixed input; a candidate whose frame
embeddings fall below cosine ``MIN_COSINE`` of fp32's is never chosen, nor one less than ``MIN_GAIN`` times as fast
(timing noise on a busy machine must not pick a variant that only rounds differently). The choice and its figures
are kept per machine (CPU model and instruction sets, GPU, torch version) and backbone in
``$XDG_CACHE_HOME/zsvc_pl/towers.json``, so later runs start at once; a new torch or another CPU measures again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zsvc_pl.data.outputs import OutputError, atomic_write_text
from zsvc_pl.model.image_tower import chunk_frames, int8_matmul_speedup, quantize_image_tower

TOWERS = ("fp32", "compiled", "int8", "int8-compiled")
CHOICES = (*TOWERS, "auto")
MIN_COSINE = 0.999  # lowest cosine of a candidate's frame embeddings to fp32's
MIN_GAIN = 1.2  # a candidate must be at least this much faster than fp32 to be chosen (timing noise)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")


def tower_flags(tower: str) -> tuple[bool, bool]:
    """(int8, compiled) of a named tower."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {', '.join(CHOICES)}, got {tower!r}")
    return tower.startswith("int8"), tower.endswith("compiled")


def machine() -> dict:
    """What a tower's speed depends on besides the backbone."""
    cpu, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": cpu, "flags": sorted(f for f in FLAGS if f in flags),
            "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zsvc_pl" / "towers.json"


def candidates(device: torch.device) -> list[str]:
    """The towers worth timing here. On a CPU: int8, eager and compiled, and only where its matrix products beat
    fp32; not fp32 compiled, which gained at most 1.1x on a fixed chunk of the demo tower and lost to its
    per-process compile on a real job (192 demo videos: 28.2 s against 23.9 s), and lost outright on ViT-B-32
    (10.4 against 11.8 frames/s). On a GPU: fp32 and compiled."""
    if device.type != "cpu":
        return ["fp32", "compiled"]
    return ["fp32", "int8", "int8-compiled"] if int8_matmul_speedup() >= 1 else ["fp32"]


def build(model: nn.Module, tower: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A copy of ``model``'s image tower run as ``tower`` (the original is left as it is)."""
    quantized, compiled = tower_flags(tower)
    copied = copy.deepcopy(model).to(device).eval()
    if quantized:
        quantize_image_tower(copied)
    return torch.compile(copied.visual) if compiled else copied.visual


def measure(model: nn.Module, image_size: int, device: torch.device, towers: list[str],
            repeats: int = 3) -> dict[str, dict]:
    """Frames per second (best of ``repeats`` after a warm-up, which pays any compilation) and the lowest cosine
    to fp32 of each tower, on one fixed chunk of frames."""
    frames = min(32, chunk_frames(model.visual))
    x = torch.randn(frames, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    out, reference = {}, None
    with torch.inference_mode():
        for tower in towers:
            run = build(model, tower, device)
            start = time.perf_counter()
            y = run(x).float()
            first = time.perf_counter() - start
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                run(x)
                best = min(best, time.perf_counter() - start)
            reference = y if tower == "fp32" else reference
            cosine = F.cosine_similarity(y, reference, dim=-1).min().item() if reference is not None else 1.0
            out[tower] = {"frames_per_s": round(frames / best, 2), "min_cosine": round(cosine, 6),
                          "first_call_s": round(first, 2)}
    return out


def pick(figures: dict[str, dict]) -> str:
    """The fastest tower at least ``MIN_GAIN`` times fp32's speed with cosine >= ``MIN_COSINE``; else fp32."""
    base = figures["fp32"]["frames_per_s"]
    fit = [t for t, f in figures.items() if f["min_cosine"] >= MIN_COSINE and f["frames_per_s"] >= MIN_GAIN * base]
    return max(fit, key=lambda t: figures[t]["frames_per_s"], default="fp32")


def choose_tower(model: nn.Module, identity: str, image_size: int, device: torch.device,
                 again: bool = False) -> tuple[str, dict]:
    """The tower ``auto`` means for this backbone on this machine, and the figures it was chosen by: from the
    cache file, or measured now (seconds to a few minutes, once; ``again``: in any case) and kept there."""
    about = {**machine(), "backbone": identity, "device": device.type}
    key = hashlib.sha1(json.dumps(about, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if not again and isinstance(known.get(key), dict) and known[key].get("tower") in TOWERS:
        return known[key]["tower"], known[key]
    towers = candidates(device)
    figures = measure(model, image_size, device, towers) if len(towers) > 1 else {}  # fp32 alone: nothing to time
    entry = {"tower": pick(figures) if figures else "fp32", "figures": figures, "machine": about,
             "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    known[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1), durable=False)  # never half a file for a reader
    except (OSError, OutputError):
        pass  # an unwritable cache costs the measurement next time, nothing else
    return entry["tower"], entry

