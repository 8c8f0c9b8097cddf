"""FaceEngine: photo -> faces -> embeddings -> comparison. The public face of the engine."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .detect import Detector, detect_pick_align, make_detector
from .identification import IdentificationThreshold, Naming
from .images import ImageSource, load_image
from .model import DEFAULT_WEIGHTS, TwinNet, embed_crops, load_checkpoint, pick_device
from .picking import face_number, pick_face
from .quality import Quality, assess
from .verdict import DIFFERENT, SAME, VerdictBand, band_from_calibration


@dataclass
class Face:
    """A detected face: where it is, how sure the detector is, its aligned crop and embedding."""

    box: np.ndarray  # x1, y1, x2, y2 in the photo's pixels (float32)
    score: float  # detector confidence
    landmarks: np.ndarray  # 5 x 2 float32: eyes, nose tip, mouth corners
    crop: np.ndarray  # aligned 112 x 112 x 3 uint8
    embedding: np.ndarray  # float32, L2 norm 1
    #: How usable the face is (engine.quality): score 0..1, ok, reason, measurements. FaceEngine
    #: fills it for every face; None only for a Face made by hand without it.
    quality: Quality | None = None


class FaceList(list):
    """The faces of one photo, most prominent first: a plain list of Face, plus `found`.

    `found` is how many faces the detector found in the photo: more than len() when a
    `max_faces` cap cut the list (only the faces kept were aligned and embedded). In a photo
    of hundreds of faces it is a lower bound: the detector examines a bounded number of
    candidates (MTCNN: engine.detectors.mtcnn.MAX_CANDIDATES).
    """

    found: int

    def __init__(self, faces=(), found: int | None = None):
        super().__init__(faces)
        self.found = len(self) if found is None else int(found)

    @property
    def capped(self) -> bool:
        """True when the photo holds more faces than the list: a max_faces cap cut it."""
        return self.found > len(self)


@dataclass
class Comparison:
    """The answer to "same person?": distance, verdict, 0..1 similarity, and how far to trust it.

    same: distance <= threshold (the shipped two-way verdict, kept as it was).
    verdict: "same", "not sure" or "different" (engine.verdict.VERDICTS): "not sure" when the
        distance lies in the band (low, high] around the threshold; "same" implies same is
        True, "different" that it is False.
    warnings: one sentence per face whose quality is not ok ("the first photo: the face is
        blurred; use a sharper photo"); a verdict on a poor face is unreliable. Empty when both
        faces are good.
    """

    distance: float
    same: bool
    similarity: float
    face_a: Face
    face_b: Face
    threshold: float
    verdict: str = ""
    band: VerdictBand | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.verdict:  # made without a band: the two-way verdict
            self.verdict = SAME if self.same else DIFFERENT

    @property
    def reliable(self) -> bool:
        """False when either face's quality is below the floor (see warnings)."""
        return not self.warnings


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

    Safe to share between threads without a lock: neither MTCNN nor the twin network keeps
    state between calls (both run in inference mode), and on a CPU the detector runs the
    photos of one call side by side on its own small thread pool.

    The work per call is bounded: the detector sees a copy of at most DETECTION_MAX_SIDE
    pixels a side and a bounded number of candidate boxes (engine.detect), `max_faces` cuts
    the faces to align and embed (most prominent first), and `deadline` stops a call between
    stages with TooMuchWork.
    """

    def __init__(
        self,
        weights: str | Path = DEFAULT_WEIGHTS,
        device: str | torch.device | None = None,
        flip_average: bool = True,
        detector: Detector | None = None,
    ):
        self.device = pick_device(device)
        self.model: TwinNet
        self.model, meta = load_checkpoint(weights, self.device)
        #: The checkpoint's own metadata (training summary and history, model id).
        self.meta: dict[str, Any] = meta
        #: The model card (twin.json beside the weights): what people are shown about the model.
        self.card: dict[str, Any] = _read_card(Path(weights).with_suffix(".json")) or {
            k: v for k, v in meta.items() if k != "train"
        }
        self.model_id: str = meta["model_id"]
        self.threshold: float = float(self.card.get("threshold", 1.0))
        cal = self.card.get("calibration") or {}
        self.calibration = Calibration(float(cal.get("slope", 8.0)), float(cal.get("midpoint", self.threshold)))
        #: Distances in (low, high] are "not sure": the card's `verdict_band` (fitted on the
        #: validation people training held out), else threshold -+ a margin from the calibration.
        self.verdict_band: VerdictBand = VerdictBand.from_card(self.card, self.threshold) or band_from_calibration(
            self.threshold, self.calibration.slope
        )
        #: Naming someone from a gallery of many (a stricter question than "same person?"): the card's
        #: `identification_threshold`, fitted on the validation people for a target false-alarm rate at
        #: a reference gallery size (engine.identification), else the verdict band's lower end, with a
        #: warning. Distances <= this name the nearest person; above it the answer is "unknown".
        self.identification: IdentificationThreshold = IdentificationThreshold.from_card(
            self.card
        ) or IdentificationThreshold.fallback_for(self.threshold, self.verdict_band.low)
        self.identification_threshold: float = self.identification.value
        #: How a gallery names someone (issue 20): scores normalised against the cohort beside the
        #: weights and the card's naming threshold for N people; raw distances and the threshold
        #: above when the weights have no cohort. Every caller names through it (index Gallery.name).
        self.naming: Naming = Naming.from_card(
            self.card, weights, self.model_id, self.model.config.embedding_size, self.identification
        )
        self.flip_average = flip_average
        #: Any engine.detect.Detector; default: the default detector (MTCNN) on this device.
        self.detector: Detector = detector or make_detector(device=self.device)
        self.embedding_size = self.model.config.embedding_size

    # -- photos to faces -------------------------------------------------------------------
    def faces(self, image: ImageSource, max_faces: int | None = None, deadline: float | None = None) -> FaceList:
        """Every face in the photo, most prominent first; [] when there is none.

        max_faces: keep (align and embed) only this many most prominent faces (largest inside
        the photo first; among faces of about the same size, nearest the centre); the result's `found`
        still counts every face found. None: no cap.
        deadline: a time.monotonic() value; when it has passed between two stages (within
        detection, after detection, before embedding), TooMuchWork is raised.
        """
        return self.faces_batch([image], max_faces=max_faces, deadline=deadline)[0]

    def faces_batch(
        self, images: Sequence[ImageSource], max_faces: int | None = None, deadline: float | None = None
    ) -> list[FaceList]:
        """Faces of many photos; all their crops go through the network in one pass.

        max_faces and deadline as for faces(): the cap applies to each photo, the deadline to
        the whole call.
        """
        cap = _face_cap(max_faces)
        pictures = [load_image(image) for image in images]
        photos = detect_pick_align(self.detector, pictures, max_faces=cap, deadline=deadline)
        flat = [c for photo in photos for c in photo.crops]
        embeddings = self.embed_crops(np.stack(flat)) if flat else np.zeros((0, self.embedding_size), np.float32)
        tuning = self.detector.quality
        result, at = [], 0
        for photo in photos:
            faces = [
                Face(
                    d.box,
                    d.score,
                    d.landmarks,
                    c,
                    embeddings[at + i],
                    assess(d.box, d.score, d.landmarks, c, tuning=tuning),
                )
                for i, (d, c) in enumerate(zip(photo.detections, photo.crops, strict=True))
            ]
            at += len(faces)
            result.append(FaceList(faces, found=photo.found))
        return result

    def embed_crops(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Aligned uint8 crops (N x 112 x 112 x 3) -> float32 unit embeddings (N x D), mirror
        averaged when flip_average (engine.model.embed_crops: the one embedding loop)."""
        return embed_crops(self.model, crops, flip=self.flip_average, batch_size=batch_size, device=self.device)

    # -- comparing ---------------------------------------------------------------------------
    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))

    def similarity(self, distance: float) -> float:
        """Calibrated 0..1 similarity for a distance (1 = surely the same person)."""
        return self.calibration(distance)

    def verdict(self, distance: float) -> str:
        """ "same", "not sure" or "different" for a distance (see verdict_band)."""
        return self.verdict_band.verdict(distance)

    def compare_faces(self, face_a: Face, face_b: Face) -> Comparison:
        d = self.distance(face_a.embedding, face_b.embedding)
        return Comparison(
            d,
            d <= self.threshold,
            self.similarity(d),
            face_a,
            face_b,
            self.threshold,
            verdict=self.verdict(d),
            band=self.verdict_band,
            warnings=quality_warnings(face_a, face_b),
        )

    def compare(
        self,
        image_a: ImageSource,
        image_b: ImageSource,
        face_a: int = 1,
        face_b: int = 1,
        deadline: float | None = None,
    ) -> Comparison:
        """Compare the most prominent face (or the chosen one) of each photo.

        face_a / face_b: face numbers from 1 (most prominent first), as everywhere else
        (engine.picking); BadFaceNumber for anything else. Only the faces up to the chosen
        ones are aligned and embedded; deadline as for faces().
        """
        number_a, number_b = face_number(face_a, default=None), face_number(face_b, default=None)
        cap = max(number_a, number_b)
        faces_a, faces_b = self.faces_batch([image_a, image_b], max_faces=cap, deadline=deadline)
        return self.compare_faces(pick_face(faces_a, number_a, "first"), pick_face(faces_b, number_b, "second"))


def quality_warnings(face_a: Face, face_b: Face) -> list[str]:
    """One sentence per face whose quality is below the floor, naming the photo."""
    warnings = []
    for which, face in (("first", face_a), ("second", face_b)):
        q = face.quality
        if q is not None and not q.ok:
            warnings.append(f"The {which} photo: {q.reason}. A verdict on a poor-quality face is unreliable.")
    return warnings


def _face_cap(max_faces: int | None) -> int | None:
    if max_faces is None:
        return None
    try:
        if isinstance(max_faces, bool):
            raise TypeError
        cap = operator.index(max_faces)
    except TypeError:
        raise ValueError(f"max_faces must be a whole number >= 0 or None, not {max_faces!r}") from None
    if cap < 0:
        raise ValueError(f"max_faces must be a whole number >= 0 or None, not {max_faces!r}")
    return cap


def _read_card(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
