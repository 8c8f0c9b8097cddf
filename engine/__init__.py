"""Twin face engine: detect, align and embed faces with a contrastive twin network."""
from .errors import FaceError, InvalidImage, ModelNotFound, NoFaceFound, TooMuchWork
from .images import load_image
from .pipeline import Calibration, Comparison, Face, FaceEngine, FaceList

__all__ = ["FaceEngine", "Face", "FaceList", "Comparison", "Calibration", "FaceError", "InvalidImage",
           "NoFaceFound", "ModelNotFound", "TooMuchWork", "load_image"]
