"""What the gallery accepts as a name and as an embedding: one set of rules for enroll, search,
rename and import."""
from __future__ import annotations

import unicodedata

import numpy as np

from .errors import InvalidInput

MAX_NAME_LENGTH = 100
_BANNED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, surrogates, unassigned, line breaks
_JOINERS = {"\u200c", "\u200d"}                            # zero-width non-joiner, joiner


def clean_name(name: object) -> str:
    """The stored form of a name: NFC text without surrounding space. Raises InvalidInput for
    anything else, and for names with control, line-break, invisible or direction-control
    characters (issue 9, item 8: `Tony\u200b Blair` must not pass for `Tony Blair`)."""
    if not isinstance(name, str):
        raise InvalidInput(f"A name must be text, not {type(name).__name__}.")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidInput("The name is empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"The name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}.")
    if any(unicodedata.category(c) in _BANNED_CATEGORIES for c in name):
        raise InvalidInput("The name contains control characters, line breaks or invalid characters.")
    if any(_invisible(name, i) for i, c in enumerate(name) if unicodedata.category(c) == "Cf"):
        raise InvalidInput("The name contains invisible or direction-control characters (a zero-width space, "
                           "a right-to-left override, ...), which make it look like another name: type it plainly.")
    return name


def _invisible(name: str, i: int) -> bool:
    """Whether the format character name[i] is refused. All are (zero-width spaces, bidi
    embeddings, overrides and isolates, marks, BOM, soft hyphen, tags), except a zero-width
    (non-)joiner between two non-ASCII letters or symbols, which Persian, Indic scripts and
    emoji sequences need and which cannot make a Latin name look like another."""
    if name[i] not in _JOINERS or not 0 < i < len(name) - 1:
        return True
    return any(c.isascii() or c.isspace() or unicodedata.category(c) == "Cf" for c in (name[i - 1], name[i + 1]))


def clean_vector(embedding: object, dim: int) -> np.ndarray:
    """A float32 unit vector of length dim. Raises InvalidInput for anything else."""
    try:
        vector = np.asarray(embedding, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("An embedding must be a vector of numbers.") from exc
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1:
        raise InvalidInput(f"An embedding must be one vector, not an array of shape {vector.shape}.")
    if vector.size != dim:
        raise InvalidInput(f"An embedding must have {dim} numbers (the size this gallery's model makes), "
                           f"not {vector.size}.")
    if not np.isfinite(vector).all():
        raise InvalidInput("The embedding contains NaN or infinite values.")
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise InvalidInput("The embedding is a zero vector: it has no direction to compare.")
    return (vector / norm).astype(np.float32)
