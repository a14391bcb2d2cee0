"""The optimizer of the learnable parts: AdamW (no weight decay on vectors and the temporal position table) with a
linear warm-up over the first tenth of the steps, then a cosine decay to zero, stepped per batch."""

from __future__ import annotations

import math

import torch
from torch import nn


def adamw_warmup_cosine(params: list[nn.Parameter], no_decay_extra: list[nn.Parameter], lr: float,
                        weight_decay: float, total_steps: int) -> dict:
    """Lightning's ``configure_optimizers`` answer for ``params`` (the trainable ones): matrices decay, vectors
    and ``no_decay_extra`` (e.g. a position table) do not."""
    extra = {id(p) for p in no_decay_extra}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in extra]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in extra]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps = max(1, int(total_steps))
    warmup = max(1, steps // 10)

    def warmup_cosine(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
