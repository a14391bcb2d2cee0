"""Labels by example, without training: a cache model over example clips' features (after Tip-Adapter).

Each label may come with a few example clips. A video's affinity to an example is
``exp(-sharpness * (1 - cos))`` (1 for an identical embedding, falling off quickly with distance); a label's
example score is the mean affinity over its examples, 0 when it has none. ``VideoTextModel.eval_logits`` adds
``weight * logit_scale * score`` to the text logits, so ``weight`` is in units of cosine similarity: at 0.3 a
perfect example match counts as much as 0.3 more cosine with the label's text, several times the spread of text
similarities within a label list, so examples decide when the words mean nothing to the text tower while the
words still separate labels whose examples look alike. 0.3 was chosen on a demo world generated with a seed
that the README's table does not use (``benchmarks/labels_by_example.py --seed 7``: invented names with 1
example per label 81 % at 0.3 against 69 % at 0.1; real names never below text alone at 0.3, 93 % against
95 % at 1.0). Tip-Adapter's published sharpness, 5.5, is kept.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_WEIGHT = 0.3
DEFAULT_SHARPNESS = 5.5


def check_example_weight(weight: float) -> float:
    """``weight`` if it is a usable example weight (0 turns examples off; a negative one would push videos away
    from the labels they resemble)."""
    if weight < 0:
        raise ValueError(f"example_weight must be 0 (ignore example clips) or more, got {weight}")
    return weight


class ExampleMemory(nn.Module):
    """Example embeddings ``[K, D]`` (L2-normalised) and the label index of each, for ``num_labels`` labels."""

    def __init__(self, features: torch.Tensor, owner: torch.Tensor | list[int], num_labels: int,
                 weight: float = DEFAULT_WEIGHT, sharpness: float = DEFAULT_SHARPNESS) -> None:
        super().__init__()
        owner = torch.as_tensor(owner, dtype=torch.long)
        if features.dim() != 2 or len(features) != len(owner):
            raise ValueError(f"expected one feature row per example, got {tuple(features.shape)} for {len(owner)}")
        if len(owner) and not (0 <= int(owner.min()) and int(owner.max()) < num_labels):
            raise ValueError(f"example owners must index the {num_labels} labels")
        self.register_buffer("features", features.float())
        self.register_buffer("owner", owner)
        self.num_labels, self.weight, self.sharpness = num_labels, weight, sharpness
        counts = torch.bincount(owner, minlength=num_labels).float()
        self.register_buffer("counts", counts)

    def __len__(self) -> int:
        return len(self.owner)

    def scores(self, videos: torch.Tensor) -> torch.Tensor:
        """Mean affinity of each video ``[N, D]`` to each label's examples ``[N, C]`` (0 without examples)."""
        affinity = torch.exp(-self.sharpness * (1 - videos @ self.features.to(videos).T))  # [N, K]
        total = torch.zeros(len(videos), self.num_labels, device=videos.device, dtype=videos.dtype)
        total.index_add_(1, self.owner.to(videos.device), affinity)
        return total / self.counts.to(videos).clamp(min=1)

    def logits(self, videos: torch.Tensor) -> torch.Tensor:
        """What is added to the text logits, in cosine units (``eval_logits`` multiplies by the logit scale)."""
        return self.weight * self.scores(videos)
