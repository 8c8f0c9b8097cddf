"""The contrastive loss of the twin network (Hadsell, Chopra and LeCun, 2006).

    L = (1 - Y) * 1/2 * D^2  +  Y * 1/2 * max(0, m - D)^2

Y = 0 for a pair of the same person, Y = 1 for different people, D the Euclidean distance of
the two embeddings, m > 0 the margin. Same-person pairs are pulled together; different-person
pairs are pushed apart until they are at least m apart, and then left alone.
"""
from __future__ import annotations

import torch


def contrastive_loss(distance: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean contrastive loss over pairs; `y` is 0 (same) or 1 (different)."""
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    y = y.to(distance.dtype)
    same = (1 - y) * 0.5 * distance.pow(2)
    different = y * 0.5 * torch.clamp(margin - distance, min=0).pow(2)
    return (same + different).mean()


def pair_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Euclidean distance per row; eps keeps the gradient finite when a == b."""
    return (a - b).pow(2).sum(dim=1).add(eps).sqrt()
