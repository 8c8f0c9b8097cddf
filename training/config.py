"""One training recipe as a typed object: TrainConfig, made from a configs/NAME.json file.

The recipes are the files under configs/ (training.recipes resolves their bases); this module
gives them types and defaults. The bottom base, "defaults", is TrainConfig() itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.model import ModelConfig

from .data import Augment
from .loss import LOSS_TERMS

#: Training precisions: "fp32" plain, "bf16" mixed (see TrainConfig.precision).
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """One training recipe: data, batches, pairs, loss, optimiser, schedule, augmentation."""

    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    sets: tuple[str, ...] = ("celeba_aligned", "celeba_wild", "att_train")
    val_fraction: float = 0.05
    p: int = 42
    k: int = 3
    pairs: str = "mined"  # "mined" (all positives + hardest negatives) or "random"
    margin: float = 1.2
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    schedule: str = "cosine"  # "cosine" decay over the run, or "constant" (the seed notebook)
    steps: int = 0  # 0: run for `minutes` of wall-clock time instead
    minutes: float = 90.0
    eval_every: int = 500
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    threads: int = 2
    raw_images: bool = False  # the seed recipe: un-aligned photos resized, as the notebook did
    # Distillation from the teacher's targets (0 = off: the from-scratch recipe).
    distill_weight: float = 0.0  # direct: each photo's embedding pulled toward the teacher's
    relational_weight: float = 0.0  # relational: the batch's distance matrix matched to the teacher's
    distill_target: str = "embedding"  # "embedding" (mirror-averaged teacher view) or "plain"
    distill_projection: str = "auto"  # "auto": none when the sizes match, else "linear"; or "none" / "linear"
    distill_centre: bool = False  # centre the targets on the training photos' mean, then renormalise
    singles_per_batch: int = 0  # photos of single-photo people added to each batch (distillation only)
    init: str | None = None  # start from these weights (fine-tuning) instead of random ones
    # "bf16": mixed precision (autocast to bfloat16, weights and losses stay float32) with
    # channels-last tensors: 2.2x faster steps on CPUs with AVX512-BF16 (this one: 0.47 s -> 0.21 s
    # per 158-photo batch), so a time-budgeted recipe takes twice the steps. "fp32": plain.
    precision: str = "fp32"
    recipe: str | None = None  # the configs/ file this came from (set by --config)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be {' or '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def mixed_precision(self) -> bool:
        return self.precision == "bf16"

    @property
    def loss_weights(self) -> dict[str, float]:
        """Each loss term's weight (training.loss.LOSS_TERMS; 1 for a term without a weight key)."""
        return {
            name: 1.0 if term.weight is None else float(getattr(self, term.weight)) for name, term in LOSS_TERMS.items()
        }

    @property
    def distills(self) -> bool:
        """Whether a term that needs the teacher's targets is weighted above 0."""
        weights = self.loss_weights
        return any(term.teacher and weights[name] > 0 for name, term in LOSS_TERMS.items())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["model"] = ModelConfig.from_dict(data.get("model", {}))
        data["augment"] = Augment(**data.get("augment", {}))
        data["sets"] = tuple(data.get("sets", cls.sets))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


#: Every augmentation switched off (the seed recipe, and the --no-augment ablation).
NO_AUGMENT = Augment(flip=0, scale=0, rotate=0, shift=0, brightness=0, contrast=0, saturation=0, grey=0, blur=0)


def recipe_config(name: str | Path) -> TrainConfig:
    """The TrainConfig of a recipe: configs/NAME.json by NAME (e.g. shipped, seed, ablations/grey),
    or a JSON file; the recipe's name is recorded in it."""
    from .recipes import resolve

    return TrainConfig.from_dict({**resolve(name), "recipe": str(name)})
