"""The teacher itself: dlib's ResNet face encoder on our aligned crops (training only).

What the teacher sees: our own MTCNN-aligned 112x112 crop (training.data's crop cache),
upscaled 2x, dlib's 5-point shape predictor run inside a fixed box (top, right, bottom,
left) = (0.277, 0.897, 0.987, 0.098) of the crop side (the median box of dlib's own HOG
detector on such crops), dlib's 150 px face chip (padding 0.25, as face_recognition uses),
then `face_recognition_models`' ResNet encoder (dlib.face_recognition_model_v1). Each photo
is embedded twice, as it is and mirrored (the chip flipped left-right); the stored target
is the mean of the two L2-normalised embeddings, renormalised ("embedding"); the plain
view ("plain") and dlib's raw descriptors ("raw", "raw_mirror") are kept beside it.

dlib is imported only inside DlibTeacher, only when something must be embedded: the engine,
the app and the tests never need it. It runs in .venv-bench (requirements-bench.txt). The
sharded job that runs it over the crop caches is training/teacher.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import numpy as np

#: (top, right, bottom, left) of the face box inside an aligned crop, as fractions of its side.
BOX = (0.277, 0.897, 0.987, 0.098)
RECIPE = {
    "teacher": "dlib_face_recognition_resnet_model_v1 (face_recognition_models)",
    "landmarks": "shape_predictor_5_face_landmarks, inside a fixed box",
    "box_trbl": BOX,
    "upscale": 2,
    "upscale_filter": "bicubic",
    "chip_size": 150,
    "chip_padding": 0.25,
    "jitters": 0,
    "views": ["plain", "mirror (chip flipped left-right)"],
    "embedding": "mean of the L2-normalised plain and mirror descriptors, L2-normalised",
}
RECIPE = json.loads(json.dumps(RECIPE))  # as stored and read back (tuples become lists)

#: An encoder: aligned uint8 crops (N x 112 x 112 x 3) -> raw descriptors of (the photos, their mirror images).
Encoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def recipe_digest() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:8]


def box_pixels(side: int) -> tuple[int, int, int, int]:
    """The fixed face box in an image of this side, as dlib.rectangle's (left, top, right, bottom)."""
    top, right, bottom, left = BOX
    return (int(round(left * side)), int(round(top * side)), int(round(right * side)), int(round(bottom * side)))


def single_thread() -> None:
    """One core: the teacher runs in the background on a machine shared with other work."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a runtime requirement
        pass


class DlibTeacher:
    """dlib's 5-point predictor + ResNet encoder on our aligned crops (see the module docstring)."""

    def __init__(self):
        single_thread()
        import dlib  # noqa: PLC0415 - only the teacher needs dlib
        import face_recognition_models as models

        self.dlib = dlib
        self.predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def chip(self, crop: np.ndarray) -> np.ndarray:
        """One aligned crop -> dlib's 150 px face chip (RGB uint8)."""
        from PIL import Image

        side = crop.shape[0] * RECIPE["upscale"]
        image = np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC))
        shape = self.predictor(image, self.dlib.rectangle(*box_pixels(side)))
        return np.asarray(
            self.dlib.get_face_chip(image, shape, size=RECIPE["chip_size"], padding=RECIPE["chip_padding"])
        )

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chips = [self.chip(np.ascontiguousarray(c)) for c in crops]
        views = chips + [np.ascontiguousarray(c[:, ::-1]) for c in chips]
        raw = np.array([np.array(d) for d in self.encoder.compute_face_descriptor(views)], dtype=np.float32)
        return raw[: len(chips)], raw[len(chips) :]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def targets_of(raw: np.ndarray, raw_mirror: np.ndarray) -> dict[str, np.ndarray]:
    """The stored views: mirror-averaged unit embedding, plain unit embedding, raw descriptors."""
    return {
        "embedding": unit(unit(raw) + unit(raw_mirror)),
        "plain": unit(raw),
        "raw": raw.astype(np.float32),
        "raw_mirror": raw_mirror.astype(np.float32),
    }
