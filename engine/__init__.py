"""Twin face engine: detect, align and embed faces with a contrastive twin network."""
from .errors import FaceError, InvalidImage, ModelNotFound, NoFaceFound
from .images import load_image
from .pipeline import Calibration, Comparison, Face, FaceEngine

__all__ = ["FaceEngine", "Face", "Comparison", "Calibration", "FaceError", "InvalidImage",
           "NoFaceFound", "ModelNotFound", "load_image"]
