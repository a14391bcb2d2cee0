"""Temporal aggregation: normalised frame features ``[B, T, D]`` -> video features.

Each aggregator returns ``[B, D]`` (one video feature) or ``[B, C, D]`` (one per class, when the
pooling looks at the class text).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MeanPool(nn.Module):
    """Average of frame features: the frozen-CLIP baseline."""

    def forward(self, frames: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        return frames.mean(dim=1)


class TextAttentionPool(nn.Module):
    """Parameter-free, text-conditioned pooling: for each class, frames are weighted by their
    similarity to that class, ``softmax_t(cos(f_t, e_c) / temperature)``.

    A short event in a long video then dominates the feature for the class it matches.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, frames: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if text is None:
            return frames.mean(dim=1)
        sim = torch.einsum("btd,cd->bct", F.normalize(frames, dim=-1), text)
        weights = torch.softmax(sim / self.temperature, dim=-1)
        return torch.einsum("bct,btd->bcd", weights, frames)


class TemporalTransformer(nn.Module):
    """A small transformer over frame features, added residually to mean pooling.

    ``out = mean_t(f) + mean_t(proj(transformer(f + pos)))`` with ``proj`` initialised to zero, so an
    untrained module returns exactly the mean-pooled feature (the zero-shot path).

    Args:
        dim: feature dimension of the frame features.
        depth: number of transformer layers.
        num_heads: attention heads (must divide ``dim``).
        max_frames: length of the learned frame-position table; longer inputs interpolate it.
        mlp_ratio: hidden width of each layer's MLP relative to ``dim``.
        dropout: dropout inside the layers.
    """

    def __init__(self, dim: int, depth: int = 1, num_heads: int = 4, max_frames: int = 32,
                 mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the feature dimension {dim}")
        self.pos = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, num_heads, int(dim * mlp_ratio), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def _positions(self, t: int) -> torch.Tensor:
        if t <= self.pos.shape[0]:
            return self.pos[:t]
        return F.interpolate(self.pos.T[None], size=t, mode="linear", align_corners=True)[0].T

    def forward(self, frames: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(frames + self._positions(frames.shape[1]))
        return frames.mean(dim=1) + self.proj(self.norm(h)).mean(dim=1)


def build_temporal(kind: str, dim: int, depth: int = 1, num_heads: int = 4, max_frames: int = 32,
                   temperature: float = 0.05) -> nn.Module:
    """Aggregator by name: ``mean``, ``text_attention`` or ``transformer``."""
    if kind == "mean":
        return MeanPool()
    if kind == "text_attention":
        return TextAttentionPool(temperature)
    if kind == "transformer":
        return TemporalTransformer(dim, depth=depth, num_heads=num_heads, max_frames=max_frames)
    raise ValueError(f"unknown temporal aggregation {kind!r}: use mean, text_attention or transformer")
