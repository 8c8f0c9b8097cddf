"""Twin gallery: one-shot face enrollments in SQLite with a FAISS index; `python -m index`."""
from .errors import GalleryBusy, GalleryCorrupt, GalleryError, InvalidInput, ModelMismatch, NotFound
from .gallery import Entry, Gallery, Match, Person

__all__ = ["Gallery", "Match", "Person", "Entry", "GalleryError", "InvalidInput", "ModelMismatch",
           "NotFound", "GalleryCorrupt", "GalleryBusy"]
