"""FaceEngine: photo -> faces -> embeddings -> comparison. The public face of the engine."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .align import CROP_SIZE, align
from .detect import Detection, FaceDetector
from .errors import NoFaceFound
from .images import ImageSource, load_image
from .model import DEFAULT_WEIGHTS, TwinNet, load_checkpoint, pick_device


@dataclass
class Face:
    """A detected face: where it is, how sure the detector is, its aligned crop and embedding."""

    box: np.ndarray          # x1, y1, x2, y2 in the photo's pixels (float32)
    score: float             # detector confidence
    landmarks: np.ndarray    # 5 x 2 float32: eyes, nose tip, mouth corners
    crop: np.ndarray         # aligned 112 x 112 x 3 uint8
    embedding: np.ndarray    # float32, L2 norm 1


@dataclass
class Comparison:
    """The answer to "same person?": distance, verdict at the shipped threshold, 0..1 similarity."""

    distance: float
    same: bool
    similarity: float
    face_a: Face
    face_b: Face
    threshold: float


@dataclass
class Calibration:
    """Distance -> similarity in 0..1: a logistic fitted on LFW View 1 (P(same | distance))."""

    slope: float = 8.0
    midpoint: float = 1.0

    def __call__(self, distance: float) -> float:
        z = self.slope * (float(distance) - self.midpoint)
        return 1.0 / (1.0 + math.exp(min(max(z, -60.0), 60.0)))


class FaceEngine:
    """Detect, align and embed faces with the trained twin network; compare two photos.

    Safe to share between threads: detection holds a lock, the network runs in inference
    mode and keeps no state between calls.
    """

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, device: str | torch.device | None = None,
                 flip_average: bool = True, detector: FaceDetector | None = None):
        self.device = pick_device(device)
        self.model: TwinNet
        self.model, meta = load_checkpoint(weights, self.device)
        #: The checkpoint's own metadata (training summary and history, model id).
        self.meta: dict[str, Any] = meta
        #: The model card (twin.json beside the weights): what people are shown about the model.
        self.card: dict[str, Any] = _read_card(Path(weights).with_suffix(".json")) or {
            k: v for k, v in meta.items() if k != "train"}
        self.model_id: str = meta["model_id"]
        self.threshold: float = float(self.card.get("threshold", 1.0))
        cal = self.card.get("calibration") or {}
        self.calibration = Calibration(float(cal.get("slope", 8.0)), float(cal.get("midpoint", self.threshold)))
        self.flip_average = flip_average
        self.detector = detector or FaceDetector(device=self.device)
        self.embedding_size = self.model.config.embedding_size

    # -- photos to faces -------------------------------------------------------------------
    def faces(self, image: ImageSource) -> list[Face]:
        """Every face in the photo, most prominent first; [] when there is none."""
        return self.faces_batch([image])[0]

    def faces_batch(self, images: Sequence[ImageSource]) -> list[list[Face]]:
        """Faces of many photos; all their crops go through the network in one pass."""
        pictures = [load_image(image) for image in images]
        detections = self.detector.detect_batch(pictures)
        crops = [[align(picture, d.landmarks) for d in found] for picture, found in zip(pictures, detections)]
        flat = [c for per_photo in crops for c in per_photo]
        embeddings = self.embed_crops(np.stack(flat)) if flat else np.zeros((0, self.embedding_size), np.float32)
        result, at = [], 0
        for found, per_photo in zip(detections, crops):
            faces = [Face(d.box, d.score, d.landmarks, c, embeddings[at + i]) for i, (d, c) in enumerate(zip(found, per_photo))]
            at += len(faces)
            result.append(faces)
        return result

    def embed_crops(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Aligned uint8 crops (N x 112 x 112 x 3) -> float32 unit embeddings (N x D)."""
        crops = np.array(crops, dtype=np.uint8)  # a copy: crops from PIL are read-only (torch warns)
        if crops.ndim == 3:
            crops = crops[None]
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                x = self.model.preprocess(crops[start:start + batch_size]).to(self.device)
                e = self.model.embed_flip_averaged(x) if self.flip_average else self.model.embed(x)
                out.append(e.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    # -- comparing ---------------------------------------------------------------------------
    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))

    def similarity(self, distance: float) -> float:
        """Calibrated 0..1 similarity for a distance (1 = surely the same person)."""
        return self.calibration(distance)

    def compare_faces(self, face_a: Face, face_b: Face) -> Comparison:
        d = self.distance(face_a.embedding, face_b.embedding)
        return Comparison(d, d <= self.threshold, self.similarity(d), face_a, face_b, self.threshold)

    def compare(self, image_a: ImageSource, image_b: ImageSource, face_a: int = 0, face_b: int = 0) -> Comparison:
        """Compare the most prominent face (or the chosen one) of each photo."""
        faces_a, faces_b = self.faces_batch([image_a, image_b])
        return self.compare_faces(_pick(faces_a, face_a, "first"), _pick(faces_b, face_b, "second"))


def _pick(faces: list[Face], index: int, which: str) -> Face:
    if not faces:
        raise NoFaceFound(f"No face was found in the {which} photo.", which=which)
    if not 0 <= index < len(faces):
        raise NoFaceFound(f"The {which} photo has {len(faces)} face(s); there is no face number {index + 1}.", which=which)
    return faces[index]


def _read_card(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
