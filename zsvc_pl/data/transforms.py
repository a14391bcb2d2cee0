"""Video transforms on uint8 tensors, in batch: spatial crops (data side) and CLIP normalisation (model side)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def resize_short_side(frames: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[..., C, H, W]`` frames so the shorter side is ``size`` (antialiased, dtype kept)."""
    h, w = frames.shape[-2:]
    if min(h, w) == size:
        return frames
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:])
    out = F.interpolate(x.float(), size=new, mode=mode, antialias=mode in ("bilinear", "bicubic"), align_corners=False)
    if frames.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(*lead, *out.shape[-3:])


def square_crops(frames: np.ndarray | torch.Tensor, size: int, num_crops: int = 1) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` frames -> ``[num_crops, T, 3, size, size]``.

    The shorter side is resized to ``size``; crops are taken along the longer side: the centre (1 crop),
    or start, centre and end (3 crops, the usual "3 spatial views" of video evaluation).
    """
    x = torch.as_tensor(frames).permute(0, 3, 1, 2)
    x = resize_short_side(x, size)
    h, w = x.shape[-2:]
    if num_crops == 1:
        offsets = [0.5]
    elif num_crops == 3:
        offsets = [0.0, 0.5, 1.0]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    crops = []
    for o in offsets:
        top = int(round((h - size) * (o if h > w else 0.5)))
        left = int(round((w - size) * (o if w >= h else 0.5)))
        crops.append(x[..., top : top + size, left : left + size])
    return torch.stack(crops).contiguous()


class ClipNormalize(nn.Module):
    """uint8 frames ``[..., 3, H, W]`` -> float input of the image tower: resize to ``image_size``
    (if needed) and normalise with the backbone's own mean and std. Runs on the model's device."""

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 interpolation: str = "bicubic") -> None:
        super().__init__()
        self.image_size = image_size
        self.interpolation = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = resize_short_side(x, self.image_size, self.interpolation)
            h, w = x.shape[-2:]
            top, left = (h - self.image_size) // 2, (w - self.image_size) // 2
            x = x[..., top : top + self.image_size, left : left + self.image_size]
        return (x - self.mean) / self.std
