"""Pairs for the contrastive loss, formed inside each P x K batch, and the validation pairs.

"mined": every positive pair plus each anchor's hardest (nearest) negative; "random": the
seed's 50/50 same/different partners (TrainConfig.pairs).
"""

from __future__ import annotations

import numpy as np
import torch


def mined_pairs(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All positive pairs, plus each anchor's hardest (nearest) negative. Returns i, j, y."""
    with torch.no_grad():
        same = labels[:, None] == labels[None, :]
        dist = torch.cdist(embeddings, embeddings)
        pos_i, pos_j = torch.triu_indices(len(labels), len(labels), offset=1)
        keep = same[pos_i, pos_j]
        pos_i, pos_j = pos_i[keep], pos_j[keep]
        neg_j = dist.masked_fill(same, float("inf")).argmin(dim=1)
        anchors = torch.arange(len(labels))
    i = torch.cat([pos_i, anchors])
    j = torch.cat([pos_j, neg_j])
    y = torch.cat([torch.zeros(len(pos_i)), torch.ones(len(anchors))])
    return i, j, y


def random_pairs(labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seed's pairs: each anchor gets a partner, same person or not with probability 1/2."""
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool)
    want_same = torch.rand(n, generator=generator) < 0.5
    choose = torch.where(want_same[:, None], same & ~eye, ~same).float()
    choose[choose.sum(1) == 0] = (~eye).float()[choose.sum(1) == 0]
    j = torch.multinomial(choose, 1, generator=generator).squeeze(1)
    i = torch.arange(n)
    return i, j, (labels[i] != labels[j]).float()


def validation_pairs(labels: np.ndarray, seed: int, max_pairs: int = 3000) -> np.ndarray:
    """Same-person pairs of the held-out people, and as many different-person pairs (i, j, y)."""
    rng = np.random.default_rng(seed)
    pos = [(a, b) for a in range(len(labels)) for b in range(a + 1, len(labels)) if labels[a] == labels[b]]
    pos = [pos[i] for i in rng.permutation(len(pos))[: max_pairs // 2]]
    neg: list[tuple[int, int]] = []
    while len(neg) < len(pos):
        a, b = rng.integers(len(labels), size=2)
        if labels[a] != labels[b]:
            neg.append((a, b))
    return np.array([(a, b, 0) for a, b in pos] + [(a, b, 1) for a, b in neg])
