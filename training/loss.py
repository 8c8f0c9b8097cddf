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
