"""Vision-side prompts: learnable tokens inside the frozen image tower (VPT-deep, the kind ViFi-CLIP's and
Vita-CLIP's prompting add).

``n`` tokens join the patch tokens before the first block; before every later block their outputs are replaced
by that block's own learnable tokens. The class token still pools the image, so the tokens act only through
attention. They change the frame features themselves: training them back-propagates through the whole image
tower (several times the cost of training on cached features, which they rule out).
"""

from __future__ import annotations

import torch
from torch import nn


class VisionPrompts(nn.Module):
    """``n`` learnable tokens per block of an open_clip ``VisionTransformer`` (hooks on its blocks)."""

    def __init__(self, visual: nn.Module, n: int) -> None:
        super().__init__()
        if n <= 0:
            raise ValueError(f"vision prompts need at least one token, got {n}")
        if not hasattr(visual, "transformer") or getattr(visual, "attn_pool", None) is not None \
                or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("vision prompts need a ViT image tower pooled by its class token")
        blocks = visual.transformer.resblocks
        width = visual.class_embedding.shape[-1]
        self.n = n
        self.dim = 1 if getattr(visual.transformer, "batch_first", True) else 0
        self.tokens = nn.Parameter(torch.randn(len(blocks), n, width) * 0.02)
        for i, block in enumerate(blocks):
            block.register_forward_pre_hook(self._hook(i))

    def _hook(self, i: int):
        def insert(module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            shape = list(x.shape)
            shape[self.dim] = self.n
            tokens = self.tokens[i].to(x.dtype)
            tokens = (tokens.unsqueeze(0) if self.dim == 1 else tokens.unsqueeze(1)).expand(shape)
            kept = x if i == 0 else x.narrow(self.dim, 0, x.shape[self.dim] - self.n)
            return (torch.cat([kept, tokens], dim=self.dim), *args[1:])
        return insert
