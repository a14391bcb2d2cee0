"""CLIP input preparation on the model's device: uint8 frames -> the image tower's normalised float input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClipNormalize(nn.Module):
    """uint8 frames ``[..., 3, H, W]`` -> float input of the image tower: resize the shorter side to
    ``image_size`` and centre-crop (only when the frames are not already that size), then normalise with the
    backbone's own mean and std."""

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 interpolation: str = "bicubic") -> None:
        super().__init__()
        self.image_size = image_size
        self.interpolation = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float()
        size = self.image_size
        if x.shape[-2:] != (size, size):
            h, w = x.shape[-2:]
            scale = size / min(h, w)
            new = (max(size, round(h * scale)), max(size, round(w * scale)))
            if new != (h, w):
                lead = x.shape[:-3]
                x = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=new, mode=self.interpolation, antialias=True,
                                  align_corners=False).reshape(*lead, 3, *new)
            top, left = (new[0] - size) // 2, (new[1] - size) // 2
            x = x[..., top : top + size, left : left + size]
        return (x - self.mean) / self.std
