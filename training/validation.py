"""Validation during training: embed the held-out people's crops, score their pairs."""

from __future__ import annotations

import numpy as np
import torch

from engine.model import TwinNet, embed_crops

from .config import TrainConfig
from .metrics import best_threshold_accuracy, roc_auc
from .pairs import validation_pairs  # noqa: F401  (re-exported: the pairs validation scores)


def embed_all(
    model: TwinNet, crops: np.ndarray, config: TrainConfig, device: torch.device, flip: bool = True, batch: int = 256
) -> np.ndarray:
    """The model's embeddings of these crops, in eval mode, through the engine's own loop
    (engine.model.embed_crops, as FaceEngine.embed_crops): un-augmented, preprocessed by the
    model's config, which is config.model (train() builds the model from it)."""
    if model.config != config.model:
        raise ValueError("embed_all: the model was not built from this recipe's model config")
    model.eval()
    return embed_crops(model, crops, flip=flip, batch_size=batch, device=device)


def validate(model: TwinNet, crops: np.ndarray, pairs: np.ndarray, config: TrainConfig, device) -> dict[str, float]:
    return score_pairs(embed_all(model, crops, config, device), pairs)


def score_pairs(embeddings: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
    """Best-threshold accuracy, AUC and that threshold of validation pairs (i, j, y) of embeddings."""
    d = np.linalg.norm(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]], axis=1)
    same = pairs[:, 2] == 0
    acc, thr = best_threshold_accuracy(d, same)
    return {"val_acc": acc, "val_auc": roc_auc(d, same), "val_threshold": thr}
