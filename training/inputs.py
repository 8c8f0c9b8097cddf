"""The training photos as the loop reads them: crops (or the seed's raw photos), the teacher's
targets row for row, and the network's input tensors (augmented for training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import CropSet, known_sets, load_crops, load_teacher_targets, merge


def load_training_data(config: TrainConfig) -> CropSet:
    sets = known_sets()
    if config.raw_images:
        return load_raw(sets[config.sets[0]].root)
    return merge([load_crops(sets[name]) for name in config.sets])


def load_targets(config: TrainConfig, data_dir: Path | None = None) -> np.ndarray:
    """The teacher's targets for the training sets, row for row with load_training_data's crops.

    Raises TeacherTargetsMissing with what to run when they are not cached.
    """
    if config.raw_images:
        raise ValueError("distillation needs aligned crops (teacher targets exist only for the crop cache)")
    sets = known_sets(data_dir) if data_dir else known_sets()
    return np.concatenate([load_teacher_targets(sets[name], kind=config.distill_target) for name in config.sets])


def load_raw(root: Path) -> CropSet:
    """Un-aligned photos as they are (the seed recipe resizes them, as the notebook did)."""
    from engine.images import load_image

    from .data import FolderSet

    files = FolderSet("raw", root).files()
    names = sorted({p for p, _ in files})
    crops = np.stack([np.asarray(load_image(path)) for _, path in files])
    labels = np.array([names.index(p) for p, _ in files])
    return CropSet(crops, labels, names, [str(p) for _, p in files], np.ones(len(files), bool))


def to_input(crops: np.ndarray, config: TrainConfig, augment: bool, generator: torch.Generator) -> torch.Tensor:
    from engine.model import normalise

    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    if augment:
        x = config.augment(x, generator)
    return normalise(x, config.model)
