"""Twin face engine: detect, align and embed faces with a contrastive twin network."""

from .errors import FaceError, InvalidImage, ModelNotFound, NoFaceFound, PoorQuality, TooMuchWork
from .identification import IdentificationThreshold
from .images import load_image
from .pipeline import Calibration, Comparison, Face, FaceEngine, FaceList
from .quality import QUALITY_FLOOR, Quality, require_quality
from .verdict import DIFFERENT, NOT_SURE, SAME, VERDICTS, VerdictBand

__all__ = [
    "FaceEngine",
    "Face",
    "FaceList",
    "Comparison",
    "Calibration",
    "Quality",
    "QUALITY_FLOOR",
    "require_quality",
    "VerdictBand",
    "IdentificationThreshold",
    "VERDICTS",
    "SAME",
    "NOT_SURE",
    "DIFFERENT",
    "FaceError",
    "InvalidImage",
    "NoFaceFound",
    "ModelNotFound",
    "PoorQuality",
    "TooMuchWork",
    "load_image",
]
