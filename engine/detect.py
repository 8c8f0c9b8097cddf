"""Face detection behind one seam: the Detector protocol, detectors by name, and detect-pick-align.

A detector turns photos into `Detection`s (box, score, five landmarks), most prominent face
first. MTCNN (engine/detectors/mtcnn.py) is the one we ship; another detector is one new
module under engine/detectors/ plus one line in `DETECTORS`. Each detector owns its settings
(minimum score, stage thresholds...) and the quality constants tuned on its output
(`QualityTuning`: how its scores and landmarks read), so nothing else restates them.

`detect_pick_align` is the one way a photo becomes aligned faces: the product
(engine.pipeline), the training crop caches (training.data) and the benches all call it, so
they pad, choose and align the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from .align import align
from .errors import TooMuchWork

#: Detectors by name: "module:class" (imported when first asked for, so a detector's
#: dependencies load only when it is used). A new detector is one module plus one line here;
#: its class follows Detector and has QUALITY (its QualityTuning) and two classmethods:
#: for_crop_cache(device) (the detector as the crop caches run it) and crop_cache_key() (the
#: settings that key those caches).
DETECTORS: dict[str, str] = {
    "mtcnn": "engine.detectors.mtcnn:MTCNNDetector",
}
#: The detector the product, the crop caches and the benches use.
DEFAULT_DETECTOR = "mtcnn"


@dataclass(frozen=True)
class Detection:
    """One face: box (x1, y1, x2, y2), detector confidence, landmarks (5 x 2: eyes, nose, mouth)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


@dataclass(frozen=True)
class QualityTuning:
    """The constants of engine.quality that depend on the detector's output, not on the face.

    score_ramp: (bad, good) of the detector's confidence: confidences mean different things
        for different detectors.
    frontal_nose: where this detector puts the nose tip on a frontal face, between the eye
        line (0) and the mouth line (1): the zero of the pitch estimate.
    """

    score_ramp: tuple[float, float]
    frontal_nose: float


@runtime_checkable
class Detector(Protocol):
    """What the engine needs of a face detector."""

    #: The quality constants tuned on this detector's output (engine.quality reads them).
    quality: QualityTuning

    def detect_batch(self, images: Sequence[Image.Image], deadline: float | None = None) -> list[list[Detection]]:
        """Per RGB image its faces, most prominent first (sort_by_prominence), in the image's
        pixels. deadline: a time.monotonic() value; past it, raise TooMuchWork between stages."""
        ...

    def describe(self) -> dict[str, object]:
        """What decides the boxes (version and settings): the content of a cache key."""
        ...


def detector_class(name: str = DEFAULT_DETECTOR) -> Any:
    """The class registered as `name` in DETECTORS (ValueError for an unknown name)."""
    try:
        module, _, attr = DETECTORS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}") from None
    return getattr(importlib.import_module(module), attr)


def make_detector(name: str = DEFAULT_DETECTOR, **settings: object) -> Detector:
    """The product's detector `name` (its own defaults, overridden by `settings`)."""
    return detector_class(name)(**settings)


def crop_cache_detector(name: str = DEFAULT_DETECTOR, device: str | None = "cpu") -> Detector:
    """Detector `name` as the crop caches run it: the training crops, the LFW evaluation and
    bench/quality.py see every photo the same way."""
    return detector_class(name).for_crop_cache(device)


def crop_cache_key(name: str = DEFAULT_DETECTOR) -> dict[str, object]:
    """The settings of crop_cache_detector(name) that key the crop caches."""
    return detector_class(name).crop_cache_key()


def default_quality_tuning() -> QualityTuning:
    """The default detector's quality constants (engine.quality's defaults)."""
    return detector_class(DEFAULT_DETECTOR).QUALITY


# -- detect, pick, align: the one path from photos to aligned faces ----------------------------------

#: Which faces of a photo to keep: every face (the product), the most prominent, or the one
#: nearest the centre (LFW's convention: the named person; others are bystanders).
Pick = Literal["all", "prominent", "centre"]


@dataclass
class AlignedFaces:
    """One photo's result: the faces kept with their aligned crops, and how many were found.

    image: the image the detector saw (the photo itself, or a black-padded copy when `pad` was
    given); boxes and landmarks are in its pixels. found: faces the detector found (more than
    len(faces) when the pick or max_faces left some out).
    """

    image: Image.Image
    detections: list[Detection] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    found: int = 0


def detect_pick_align(
    detector: Detector,
    images: Sequence[Image.Image],
    *,
    pick: Pick = "all",
    max_faces: int | None = None,
    pad: float = 0.0,
    deadline: float | None = None,
) -> list[AlignedFaces]:
    """Detect the faces of each photo, choose some, and align them (112 x 112 crops).

    pick: "all" keeps every face, most prominent first, cut to max_faces; "prominent" and
    "centre" keep one face (or none). pad: a black border of pad x the longer side added
    before detection (tight crops need room around the face). deadline: a time.monotonic()
    value; past it TooMuchWork is raised (within detection, after it, after alignment).
    """
    canvases = [_padded(image, pad) for image in images]
    detections = detector.detect_batch(canvases, deadline=deadline)
    found = [len(d) for d in detections]
    kept = [_choose(d, canvas.size, pick, max_faces) for d, canvas in zip(detections, canvases, strict=True)]
    results = [AlignedFaces(canvas, chosen, [], count) for canvas, chosen, count in zip(canvases, kept, found)]
    if not any(kept):
        return results
    _check(deadline, found)
    for result in results:
        result.crops = [align(result.image, d.landmarks) for d in result.detections]
    _check(deadline, found)
    return results


def _padded(image: Image.Image, pad: float) -> Image.Image:
    border = int(round(pad * max(image.size))) if pad else 0
    return ImageOps.expand(image, border=border, fill=0) if border else image


def _choose(detections: list[Detection], size: tuple[int, int], pick: Pick, max_faces: int | None) -> list[Detection]:
    if pick == "all":
        return detections if max_faces is None else detections[:max_faces]
    if pick == "centre":
        choice = nearest_centre(detections, size)
        return [choice] if choice is not None else []
    if pick == "prominent":
        return detections[:1]
    raise ValueError(f"unknown pick {pick!r}: all, prominent or centre")


def _check(deadline: float | None, found: list[int]) -> None:
    if deadline is not None and monotonic() > deadline:
        raise TooMuchWork(sum(found), photos=len(found))


# -- ordering faces (every detector returns them this way) --------------------------------------------


def visible_area(box: np.ndarray, size: tuple[int, int]) -> float:
    """The part of a face box inside the photo.

    A detector may extend the box of a face cut by the photo's border beyond the border (MTCNN
    does: to where the whole face would be): a half-visible face at the edge gets a box larger
    than the face in the middle of the picture. What a person sees, and what can be aligned, is
    the part inside.
    """
    x1, x2 = np.clip([box[0], box[2]], 0, size[0])
    y1, y2 = np.clip([box[1], box[3]], 0, size[1])
    return float(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))


def sort_by_prominence(detections: list[Detection], size: tuple[int, int]) -> list[Detection]:
    """Largest visible face first; among faces of nearly the same size (within 10%), nearest the centre.

    Size is the box's area inside the photo (visible_area), not the box the detector extrapolates
    past the border. Faces are grouped greedily from the largest down: a face joins the current
    group when its side is within 10% of the group's largest (fixed bins would split near-equal
    faces that happen to straddle a bin edge, putting a corner face before a centred one).
    """
    groups: list[list[tuple[float, Detection]]] = []
    for area, d in sorted(((visible_area(d.box, size), d) for d in detections), key=lambda pair: -pair[0]):
        if groups and np.sqrt(area) * 1.1 >= np.sqrt(groups[-1][0][0]):
            groups[-1].append((area, d))
        else:
            groups.append([(area, d)])
    return [d for group in groups for _, d in sorted(group, key=lambda pair: centre_distance(pair[1].box, size))]


def centre_distance(box: np.ndarray, size: tuple[int, int]) -> float:
    """Squared distance from the box's centre to the photo's centre (the tie-break of prominence)."""
    return float(((box[0] + box[2]) / 2 - size[0] / 2.0) ** 2 + ((box[1] + box[3]) / 2 - size[1] / 2.0) ** 2)


def nearest_centre(detections: list[Detection], size: tuple[int, int]) -> Detection | None:
    """The face whose box centre is nearest the image centre (LFW's convention)."""
    if not detections:
        return None
    return min(detections, key=lambda d: centre_distance(d.box, size))
