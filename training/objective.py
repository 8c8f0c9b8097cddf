"""The loss of one batch: embed it once, form pairs, add up the recipe's weighted terms.

The terms themselves and their registry are in training.loss; this module feeds them a batch
(training.loss.LossInputs) and holds what distillation needs beside the model: the projection
into the teacher's space and the centring of its targets.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.model import TwinNet

from .config import TrainConfig
from .loss import LossInputs, pair_distance, weighted_loss
from .pairs import mined_pairs, random_pairs


def batch_loss(
    model: TwinNet,
    x: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    targets: torch.Tensor | None = None,
    projection: torch.nn.Module | None = None,
    n_labelled: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Embed the batch once (both branches of the twin share the weights), form pairs, score.

    The first `n_labelled` photos (all, by default) are the P x K part: the contrastive loss
    sees only them. `targets` (the teacher's unit embeddings, one row per photo) add the
    distillation terms over the whole batch, the single-photo people included.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
        embeddings = model.embed(x)
    # Pairs, distances and losses in float32 whatever the forward pass ran in (renormalised:
    # a bfloat16 unit vector is unit only to 3 digits).
    embeddings = embeddings.float()
    if config.mixed_precision and config.model.normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    n = len(x) if n_labelled is None else n_labelled
    labelled, labels = embeddings[:n], labels[:n]
    if config.pairs == "mined":
        i, j, y = mined_pairs(labelled.detach(), labels)
    else:
        i, j, y = random_pairs(labels, generator)
    distance = pair_distance(labelled[i], labelled[j])
    distills = targets is not None and config.distills
    student = projection(embeddings) if distills and projection is not None else embeddings
    inputs = LossInputs(embeddings, distance, y, config.margin, targets if distills else None, student)
    loss, stats = weighted_loss(inputs, config.loss_weights)
    d = distance.detach()
    stats["d_same"] = float(d[y == 0].mean()) if (y == 0).any() else float("nan")
    stats["d_diff"] = float(d[y == 1].mean()) if (y == 1).any() else float("nan")
    return loss, stats


class Projection(torch.nn.Module):
    """Student embedding -> the teacher's space (a linear map, then L2 norm); training only."""

    def __init__(self, student: int, teacher: int):
        super().__init__()
        self.linear = torch.nn.Linear(student, teacher, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.linear(x), dim=1)


def make_projection(config: TrainConfig, teacher_dim: int) -> Projection | None:
    """None when the student's embedding is compared with the teacher's as it is."""
    kind = config.distill_projection
    if kind == "auto":
        kind = "none" if config.model.embedding_size == teacher_dim else "linear"
    if kind == "none":
        if config.model.embedding_size != teacher_dim:
            raise ValueError(
                f"distill_projection 'none' needs the student's embedding size "
                f"({config.model.embedding_size}) to equal the teacher's ({teacher_dim})"
            )
        return None
    if kind != "linear":
        raise ValueError(f"distill_projection must be auto, none or linear, got {kind!r}")
    return Projection(config.model.embedding_size, teacher_dim)


def centre_targets(targets: torch.Tensor, train_rows: np.ndarray) -> torch.Tensor:
    """The teacher's unit embeddings moved to the training photos' mean, then renormalised.

    Why: dlib's raw unit embeddings of different people lie only ~0.56 apart (same person
    ~0.33), a geometry the contrastive margin of 1.2 fights. Centred, they lie ~1.41 apart
    (same person ~0.84), the spacing the margin asks for. Only training rows set the mean.
    """
    centred = targets - targets[torch.as_tensor(train_rows)].mean(dim=0, keepdim=True)
    return torch.nn.functional.normalize(centred, dim=1)
