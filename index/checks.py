"""What the gallery accepts (names, embeddings, entry ids) and the rules every store applies
(the model-id guard, "the same photo" for retried enrollments): one set of rules for enroll,
search, rename and import, whichever store holds the data."""

from __future__ import annotations

import unicodedata

import numpy as np

from .errors import InvalidInput, ModelMismatch, NotFound

MAX_NAME_LENGTH = 100
_BANNED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, surrogates, unassigned, line breaks
_JOINERS = {"\u200c", "\u200d"}  # zero-width non-joiner, joiner


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
        raise InvalidInput(
            "The name contains invisible or direction-control characters (a zero-width space, "
            "a right-to-left override, ...), which make it look like another name: type it plainly."
        )
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
        raise InvalidInput(
            f"An embedding must have {dim} numbers (the size this gallery's model makes), not {vector.size}."
        )
    if not np.isfinite(vector).all():
        raise InvalidInput("The embedding contains NaN or infinite values.")
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise InvalidInput("The embedding is a zero vector: it has no direction to compare.")
    return (vector / norm).astype(np.float32)


# -- rules every store applies (so each is decided once, whatever holds the data) -----------------
MAX_ENTRY_ID = 2**63 - 1
SAME_PHOTO_DISTANCE = 1e-3  # enroll: embeddings closer than this are the same photo (a retry)


def entry_id(value: object) -> int | None:
    """An entry id as the gallery can hold it, or None for anything that cannot be one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    if number != value and not isinstance(value, str):
        return None
    return number if 0 < number <= MAX_ENTRY_ID else None


def check_model(
    stored: str | None, stored_dim: int | None, wanted: str | None, wanted_dim: int, *, empty: bool, writing: bool
) -> bool:
    """The model-id guard. Returns True when an empty gallery must adopt the caller's model and
    size (only when writing: an empty gallery never mismatches a reader), False when they
    already agree; raises ModelMismatch when the gallery holds another model's embeddings."""
    stored_dim = int(stored_dim or wanted_dim)
    if stored == wanted and stored_dim == wanted_dim:
        return False
    if empty:
        return writing
    if stored == wanted:
        problem = f"holds {stored_dim}-number embeddings, not {wanted_dim}"
    else:
        problem = f"holds embeddings of model {stored!r}" if stored else "holds embeddings of an unrecorded model"
        problem += f", not of {wanted!r}" if wanted else ""
    raise ModelMismatch(
        f"This gallery {problem}: they cannot be compared. Re-embed it from its "
        "thumbnails with `python -m index reembed` (or use a new gallery).",
        stored=stored,
        wanted=wanted,
    )


def check_import(stored: str | None, stored_dim: int, source: str | None, source_dim: int, *, empty: bool) -> None:
    """An export of another model (or size) goes only into an empty gallery (or replaces it)."""
    if not empty and (source != stored or source_dim != stored_dim):
        raise ModelMismatch(
            f"The export holds embeddings of model {source!r}, this gallery those of "
            f"{stored!r}: import it into an empty gallery, then run "
            "`python -m index reembed` there.",
            stored=stored,
            wanted=source,
        )


def same_photo(candidates: list[tuple[int, np.ndarray]], vector: np.ndarray) -> int | None:
    """The entry among (id, embedding) candidates that is this very photo (distance below
    SAME_PHOTO_DISTANCE), the newest first when several are; None when none is."""
    best: tuple[float, int] | None = None
    for entry, stored in candidates:
        stored = np.asarray(stored, np.float32).reshape(-1)
        if stored.shape != vector.shape:
            continue  # embeddings of another size: not this face
        distance = float(np.linalg.norm(stored - vector))
        if distance < SAME_PHOTO_DISTANCE and (best is None or (distance, -entry) < (best[0], -best[1])):
            best = (distance, int(entry))
    return None if best is None else best[1]


def no_such_person(name: str, similar: list[str]) -> NotFound:
    hint = f" Did you mean {similar[0]!r}?" if similar else ""
    return NotFound(f"No one named {name!r} is enrolled.{hint}")


def already_enrolled(name: str) -> InvalidInput:
    return InvalidInput(f"{name!r} is already enrolled; pass merge=True to merge the two.")
