"""The contrastive loss of the twin network (Hadsell, Chopra and LeCun, 2006).

    L = (1 - Y) * 1/2 * D^2  +  Y * 1/2 * max(0, m - D)^2

Y = 0 for a pair of the same person, Y = 1 for different people, D the Euclidean distance of
the two embeddings, m > 0 the margin. Same-person pairs are pulled together; different-person
pairs are pushed apart until they are at least m apart, and then left alone.

Beside it, the distillation terms (direct, relational) pull the student toward the teacher's
embeddings. `LOSS_TERMS` names every term; a recipe weighs them (distill_weight, ...), and
the training loss is their weighted sum (weighted_loss).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


def direct_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared Euclidean distance between each photo's student and teacher embeddings.

    Both are expected L2-normalised (rows), so this is 2 - 2 cos(angle), in 0..4.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} embeddings differ in shape"
        )
    return (student - teacher).pow(2).sum(dim=1).mean()


def relational_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the batch's pairwise distances, student vs teacher,
    each divided by its own mean (Park et al. 2019, "Relational knowledge distillation").

    The contrastive idea with soft targets: the pairs of photos in the batch should lie near
    or far in the same proportions for the student as for the teacher. Matching the shape,
    not the scale, leaves the scale to the contrastive margin (the teacher's unit embeddings
    of different people lie about 0.6 apart, the margin asks for 1.2). Works for any two
    embedding sizes.
    """
    n = len(student)
    if n != len(teacher) or n < 2:
        raise ValueError(f"need the same number (>= 2) of student and teacher rows, got {n} and {len(teacher)}")
    i, j = torch.triu_indices(n, n, offset=1, device=student.device)
    d_student = pair_distance(student[i], student[j])
    d_teacher = (teacher[i] - teacher[j]).pow(2).sum(dim=1).sqrt()
    d_student = d_student / d_student.mean().clamp_min(1e-9)
    d_teacher = d_teacher / d_teacher.mean().clamp_min(1e-9)
    return (d_student - d_teacher).pow(2).mean()


# -- the terms a recipe names ----------------------------------------------------------------------


@dataclass
class LossInputs:
    """What a loss term sees of one batch (float32 whatever the forward pass ran in).

    embeddings: every photo's embedding (the P x K part first, then any single-photo people).
    distance, y: the distances of the pairs mined in the P x K part, and 0 (same) / 1 (different).
    margin: the recipe's contrastive margin.
    targets: the teacher's unit embeddings, one row per photo (None without distillation).
    student: the embeddings in the teacher's space (through the projection when there is one).
    """

    embeddings: torch.Tensor
    distance: torch.Tensor
    y: torch.Tensor
    margin: float
    targets: torch.Tensor | None = None
    student: torch.Tensor | None = None


@dataclass(frozen=True)
class LossTerm:
    """One weighted term of the training loss.

    compute: the term's value on a batch. weight: the recipe key holding its weight (a
    TrainConfig field; None: always 1). teacher: it needs the teacher's targets (`make teacher`).
    """

    compute: Callable[[LossInputs], torch.Tensor]
    weight: str | None = None
    teacher: bool = False


def _teacher(inputs: LossInputs) -> torch.Tensor:
    if inputs.targets is None:
        raise ValueError("this loss term needs the teacher's targets")
    return inputs.targets


#: The loss terms by name, in the order they are added up (and reported: summary "terms_*",
#: history "NAME_mean"). A new term is its function plus one line here (and its weight's
#: field in training.config.TrainConfig).
LOSS_TERMS: dict[str, LossTerm] = {
    "contrastive": LossTerm(lambda b: contrastive_loss(b.distance, b.y, b.margin)),
    "distill": LossTerm(
        lambda b: direct_distillation_loss(b.embeddings if b.student is None else b.student, _teacher(b)),
        weight="distill_weight",
        teacher=True,
    ),
    # Distances of the student's own (shipped) embeddings, not of the projection.
    "relational": LossTerm(
        lambda b: relational_distillation_loss(b.embeddings, _teacher(b)), weight="relational_weight", teacher=True
    ),
}


def term_weights(recipe: Mapping[str, Any]) -> dict[str, float]:
    """Each term's weight in a recipe (a resolved configs/ dict or asdict(TrainConfig)); 1 for a
    term without a weight key, 0 for a key the recipe leaves out."""
    return {
        name: 1.0 if term.weight is None else float(recipe.get(term.weight) or 0.0) for name, term in LOSS_TERMS.items()
    }


def needs_teacher(recipe: Mapping[str, Any]) -> bool:
    """Whether a recipe weighs any term that needs the teacher's targets above 0."""
    weights = term_weights(recipe)
    return any(term.teacher and weights[name] > 0 for name, term in LOSS_TERMS.items())


def weighted_loss(inputs: LossInputs, weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """The sum of weight x term over the terms weighted above 0 (teacher terms only with targets),
    and each term's own value (unweighted) by name."""
    total: torch.Tensor | None = None
    values: dict[str, float] = {}
    for name, term in LOSS_TERMS.items():
        weight = weights.get(name, 0.0)
        if weight <= 0 or (term.teacher and inputs.targets is None):
            continue
        value = term.compute(inputs)
        values[name] = float(value.detach())
        part = value if term.weight is None else weight * value
        total = part if total is None else total + part
    if total is None:
        raise ValueError("the recipe weighs no loss term above 0")
    return total, values
