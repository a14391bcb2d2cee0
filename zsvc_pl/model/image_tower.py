"""Running the frozen image tower fast: bounded chunks of frames, int8 layers (torchao), and ``torch.compile``.

- Chunks: on the CPU a forward pass of many frames is slower per frame than one of a few dozen (its activations
  leave the caches; the demo tower: 1.23 ms against 0.94 ms per frame at 512 and 64 frames), so frames go through
  in chunks of at most ``CHUNK_TOKENS`` tokens, a power of two of frames (batches of 8-frame videos divide
  evenly: demo tower 64, ViT-B/32 128, ViT-B/16 32 frames).
- int8: torchao's ``quantize_`` replaces linear layers only; open_clip's attention keeps its q/k/v and output
  projections inside ``nn.MultiheadAttention``, whose fused inference path reads the fp32 weights directly.
  ``LinearAttention`` is the same attention with those projections as ``nn.Linear`` layers, so all four of a
  block's projections and its two MLP layers become int8.
- compile: ``torch.compile`` of the tower, always called on chunks of one shape (shorter ones padded), so it
  compiles once per process (and reuses Inductor's on-disk cache in later processes).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

CHUNK_TOKENS = 8192  # image-tower tokens (frames x tokens per frame) per forward pass on the CPU


def tokens_per_frame(visual: nn.Module) -> int:
    """Tokens a ViT image tower carries per frame (patches + class token); 64 for towers of other kinds."""
    grid = getattr(visual, "grid_size", None)
    if isinstance(grid, (tuple, list)) and len(grid) == 2:
        return int(grid[0]) * int(grid[1]) + 1
    return 64


def chunk_frames(visual: nn.Module) -> int:
    """Frames per forward pass: the largest power of two whose tokens fit in ``CHUNK_TOKENS``."""
    fit = max(1, CHUNK_TOKENS // tokens_per_frame(visual))
    return 1 << (fit.bit_length() - 1)


class LinearAttention(nn.Module):
    """``nn.MultiheadAttention`` (self-attention, as in open_clip's ViT blocks) with its projections as
    ``nn.Linear`` layers: ``qkv`` and ``out_proj``. Same results (within float rounding), same call signature."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("LinearAttention converts plain self-attention only")
        width = mha.embed_dim
        self.num_heads, self.batch_first = mha.num_heads, mha.batch_first
        self.qkv = nn.Linear(width, 3 * width, bias=mha.in_proj_bias is not None)
        self.out_proj = nn.Linear(width, width, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(mha.in_proj_weight)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                self.qkv.bias.copy_(mha.in_proj_bias)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)
        self.requires_grad_(False)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None, **_: object
                ) -> tuple[torch.Tensor, None]:
        x = query if self.batch_first else query.transpose(0, 1)
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, width))
        return (out if self.batch_first else out.transpose(0, 1)), None


def project_qkv(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The concatenated q/k/v projection of ``x`` by an ``nn.MultiheadAttention`` or a ``LinearAttention``."""
    if isinstance(attn, LinearAttention):
        return attn.qkv(x)
    return F.linear(x, attn.in_proj_weight, attn.in_proj_bias)


def linear_attention(visual: nn.Module) -> int:
    """Turn the self-attention of every block of a ViT image tower into a ``LinearAttention``; how many.

    Only the blocks' own attention: an attentional pooler (CoCa) attends across, which this class does not do.
    """
    blocks = [getattr(b, "block", b) for b in getattr(getattr(visual, "transformer", None), "resblocks", [])]
    targets = [b for b in blocks if isinstance(getattr(b, "attn", None), nn.MultiheadAttention)]  # ToMe unwrapped
    for block in targets:
        block.attn = LinearAttention(block.attn)
    return len(targets)


@functools.lru_cache(maxsize=None)
def int8_matmul_speedup(size: int = 512, repeats: int = 3) -> float:
    """How much faster an int8 matrix product is than fp32 on this CPU (best of ``repeats``, ~0.1 s).

    torchao's int8 linear layers rest on ``torch._int_mm``, fast only where the CPU has int8 dot-product
    instructions (AVX512-VNNI, AMX: 5.6x fp32 on a Xeon with AMX); on an AVX2-only CPU it measured 50x slower
    than fp32, making the int8 image tower 15x slower instead of faster. Measured once per process.
    """
    a8 = torch.randint(-127, 127, (size, size), dtype=torch.int8)
    b8 = torch.randint(-127, 127, (size, size), dtype=torch.int8)
    a, b = a8.float(), b8.float()

    def best(fn: Callable[[], torch.Tensor]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(lambda: a @ b) / best(lambda: torch._int_mm(a8, b8))


def quantize_image_tower(model: nn.Module, only_if_faster: bool = False) -> bool:
    """int8 weights and dynamically quantised int8 activations in every projection of the image tower (CPU):
    attention q/k/v and output (via ``LinearAttention``) and both MLP layers of each block.

    Uses torchao's ``quantize_``, the path PyTorch points to now that ``torch.ao.quantization`` is deprecated.
    With ``only_if_faster``, a CPU whose int8 matrix products are slower than fp32 (``int8_matmul_speedup``)
    keeps the fp32 tower, with a warning. Returns whether the tower was quantised.
    """
    if only_if_faster:
        speedup = int8_matmul_speedup()
        if speedup < 1:
            log.warning("zsvc_pl: quantize=True ignored: int8 matrix products run %.0fx slower than fp32 on this CPU "
                        "(%s, no int8 dot-product instructions); the image tower stays fp32",
                        1 / speedup, torch.backends.cpu.get_cpu_capability())
            return False
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)  # torchao's import registers an Enum with torch's pytree: a notice, not ours
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as err:
        raise ImportError(f"quantize=True needs torchao ({err}); install it with `pip install torchao`") from None
    finally:
        pytree_log.setLevel(level)
    linear_attention(model.visual)
    quantize_(model.visual, Int8DynamicActivationInt8WeightConfig())
    return True


class FrameEncoder:
    """Image features of many frames: the tower called on chunks of at most ``chunk`` frames.

    Args:
        model: the open_clip model (``encode_image``).
        compiled: run ``torch.compile`` of the image tower. Its chunks then all have the size of the first call
            (at most ``chunk``; a shorter chunk is padded with zeros and cut off again), so it compiles once.
        chunk: frames per forward pass; default ``chunk_frames(model.visual)``.
    """

    def __init__(self, model: nn.Module, compiled: bool = False, chunk: int | None = None) -> None:
        self.model = model
        self.chunk = chunk or chunk_frames(model.visual)
        self.compiled = torch.compile(model.visual) if compiled else None
        self.compiled_frames: int | None = None  # the one input size the compiled tower sees

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[N, 3, S, S]`` -> image features ``[N, D]`` (not yet L2-normalised)."""
        if self.compiled is None:
            if pixels.device.type != "cpu" or len(pixels) <= self.chunk:
                return self.model.encode_image(pixels)
            chunks = -(-len(pixels) // self.chunk)  # as even as they come: 80 frames in 64-frame chunks go as 40 + 40
            return torch.cat([self.model.encode_image(part) for part in pixels.tensor_split(chunks)])
        size = self.compiled_frames = self.compiled_frames or min(len(pixels), self.chunk)
        parts = []
        for part in pixels.split(size):
            n = len(part)
            if n < size:
                part = torch.cat([part, part.new_zeros(size - n, *part.shape[1:])])
            parts.append(self.compiled(part)[:n])
        return torch.cat(parts)
