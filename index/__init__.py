"""Twin gallery: one-shot face enrollments searched by embedding; `python -m index`.

A folder holds SQLite + FAISS (embedded, the default); a *.db path Milvus Lite; a milvus://
or https:// URL a Milvus server (index/stores/)."""

from .errors import (
    GalleryBusy,
    GalleryCorrupt,
    GalleryError,
    GalleryUnavailable,
    InvalidInput,
    ModelMismatch,
    NotFound,
)
from .gallery import Entry, Gallery, Match, Person, open_gallery

__all__ = [
    "Gallery",
    "open_gallery",
    "Match",
    "Person",
    "Entry",
    "GalleryError",
    "InvalidInput",
    "ModelMismatch",
    "NotFound",
    "GalleryCorrupt",
    "GalleryBusy",
    "GalleryUnavailable",
]
