"""Token merging (ToMe, Bolya et al., ICLR 2023) for open_clip's ViT image tower: no training, fewer tokens.

After each block's attention, ``r`` patch tokens are merged into their most similar partner (bipartite soft
matching on the attention keys), so a 12-block ViT-B/32 with ``r = 2`` ends with 26 of its 50 tokens. Merged
tokens are size-weighted averages, and attention counts a token of size ``s`` ``s`` times (proportional
attention, a ``log s`` bias), as in the paper. The class token never merges, so token pooling is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from zsvc_pl.model.image_tower import project_qkv


def bipartite_merge(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor, r: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of ``x [N, L, D]`` (sizes ``[N, L, 1]``); token 0 (class) is kept in place."""
    length = x.shape[1]
    r = min(r, (length - 1) // 2)
    if r <= 0:
        return x, size
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
    scores[:, 0, :] = -torch.inf
    best, best_dst = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    kept, merged = order[:, r:].sort(dim=1)[0], order[:, :r]
    dst = best_dst[..., None].gather(1, merged)

    def combine(t: torch.Tensor) -> torch.Tensor:
        src, dst_side = t[:, ::2], t[:, 1::2]
        width = t.shape[-1]
        moved = src.gather(1, merged.expand(-1, -1, width))
        dst_side = dst_side.scatter_reduce(1, dst.expand(-1, -1, width), moved, reduce="sum")
        return torch.cat([src.gather(1, kept.expand(-1, -1, width)), dst_side], dim=1)

    total = combine(x * size)
    size = combine(size)
    return total / size, size


class _Sizes:
    """Token sizes shared by the blocks of one forward pass; reset before each pass."""

    def __init__(self) -> None:
        self.size: torch.Tensor | None = None


class TokenMergingBlock(nn.Module):
    """An open_clip ``ResidualAttentionBlock`` that merges ``r`` tokens between its attention and its MLP."""

    def __init__(self, block: nn.Module, r: int, sizes: _Sizes) -> None:
        super().__init__()
        self.block, self.r, self._sizes = block, r, sizes

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        b, size = self.block, self._sizes.size
        n, length, width = x.shape
        heads = b.attn.num_heads
        if size is None:  # every token stands for one: no size bias yet
            size, bias = x.new_ones(n, length, 1), attn_mask
        else:
            bias = size.log()[:, None, None, :, 0]  # [N, 1, 1, L]: each key counted as often as its size
            bias = bias + attn_mask.to(bias.dtype) if attn_mask is not None else bias
        q, k, v = project_qkv(b.attn, b.ln_1(x)).chunk(3, dim=-1)
        q, k, v = (t.view(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + b.ls_1(b.attn.out_proj(out.transpose(1, 2).reshape(n, length, width)))
        x, self._sizes.size = bipartite_merge(x, k.transpose(1, 2).reshape(n, length, width), size, self.r)
        return x + b.ls_2(b.mlp(b.ln_2(x)))


def apply_token_merging(visual: nn.Module, r: int) -> nn.Module:
    """Make ``visual`` (an open_clip ``VisionTransformer``) merge ``r`` tokens per block; ``r = 0`` is a no-op."""
    if r < 0:
        raise ValueError(f"token merging r must be >= 0, got {r}")
    if r == 0:
        return visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not all(hasattr(b, "attn") and hasattr(b.attn, "in_proj_weight") for b in blocks):
        raise ValueError("token merging needs an open_clip ViT image tower with standard attention blocks; "
                         "this model has another image tower: run it with token_merging=0")
    if getattr(visual, "pool_type", "tok") != "tok":
        raise ValueError(f"token merging keeps the class token only; this tower pools by '{visual.pool_type}'")
    sizes = _Sizes()
    visual.transformer.resblocks = nn.ModuleList(TokenMergingBlock(b, r, sizes) for b in blocks)

    def reset(*_: object) -> None:
        sizes.size = None

    visual.transformer.register_forward_pre_hook(reset)
    visual.transformer.register_forward_hook(reset)
    return visual
