"""Spatial views of decoded frames: square crops at the model's size, computed from the crop region only, so
memory does not depend on the video's aspect ratio."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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

    Square regions as tall as the shorter side are taken along the longer side: the centre (1 crop), or start,
    centre and end (3 crops, the usual "3 spatial views" of video evaluation); each is then resized to ``size``.
    Cropping before resizing keeps the work and memory at ``size x size`` per view whatever the aspect ratio.
    """
    if num_crops == 1:
        offsets = [0.5]
    elif num_crops == 3:
        offsets = [0.0, 0.5, 1.0]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    x = torch.as_tensor(frames).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    side = min(h, w)
    crops = []
    for o in offsets:
        top = int(round((h - side) * (o if h > w else 0.5)))
        left = int(round((w - side) * (o if w >= h else 0.5)))
        crops.append(resize_short_side(x[..., top : top + side, left : left + side], size))
    return torch.stack(crops).contiguous()
