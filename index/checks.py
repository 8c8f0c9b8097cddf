"""What the gallery accepts (names, embeddings, entry ids) and the rules every store applies
(the model-id guard, "the same photo" for retried enrollments): one set of rules for enroll,
search, rename and import, whichever store holds the data."""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from .errors import InvalidInput, ModelMismatch, NotFound

MAX_NAME_LENGTH = 100
_BANNED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, surrogates, unassigned, line breaks
_JOINERS = {"\u200c", "\u200d"}  # zero-width non-joiner, joiner
#: Characters that draw nothing (or only blank space) yet are letters, marks or symbols, so
#: the category test above lets them through: Unicode's Default_Ignorable_Code_Point ranges
#: (DerivedCoreProperties.txt, Unicode 15.1) that are not format (Cf) characters, plus the
#: blank-looking letters and symbols a name can hide behind (Hangul fillers, the blank
#: braille pattern). Issue 19 row 8: U+034F, U+FE0F, U+2800 and U+3164 made "Tony Blair"s.
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong / jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x2800, 0x2800),  # braille pattern blank
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0x1D173, 0x1D17A),  # musical symbol format characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
)


def clean_name(name: object) -> str:
    """The stored form of a name: NFKC text (a full-width "Ｔｏｎｙ" is "Tony", a ligature
    is its letters) with single spaces between words and none around them. Raises
    InvalidInput for anything else, and for names with control, line-break, invisible,
    blank-looking or direction-control characters (issue 9 item 8, issue 19 item 6:
    `Tony\u200b Blair` or `Tony\u3164Blair` must not pass for `Tony Blair`)."""
    if not isinstance(name, str):
        raise InvalidInput(f"A name must be text, not {type(name).__name__}.")
    if any(unicodedata.category(c) in _BANNED_CATEGORIES for c in name):
        raise InvalidInput("The name contains control characters, line breaks or invalid characters.")
    name = unicodedata.normalize("NFKC", name)
    if any(_is_blank(c) for c in name) or any(
        _invisible(name, i) for i, c in enumerate(name) if unicodedata.category(c) == "Cf"
    ):
        raise InvalidInput(
            "The name contains invisible or direction-control characters (a zero-width space, "
            "a blank-looking filler, a right-to-left override, ...), which make it look like "
            "another name: type it plainly."
        )
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("The name is empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"The name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}.")
    if any(unicodedata.category(c) in _BANNED_CATEGORIES for c in name):
        raise InvalidInput("The name contains control characters, line breaks or invalid characters.")
    return name


def _is_blank(c: str) -> bool:
    code = ord(c)
    return any(low <= code <= high for low, high in _INVISIBLE_RANGES)


def _invisible(name: str, i: int) -> bool:
    """Whether the format character name[i] is refused. All are (zero-width spaces, bidi
    embeddings, overrides and isolates, marks, BOM, soft hyphen, tags), except a zero-width
    (non-)joiner between two non-ASCII letters or symbols, which Persian, Indic scripts and
    emoji sequences need and which cannot make a Latin name look like another."""
    if name[i] not in _JOINERS or not 0 < i < len(name) - 1:
        return True
    return any(c.isascii() or c.isspace() or unicodedata.category(c) == "Cf" for c in (name[i - 1], name[i + 1]))


def name_key(name: str) -> str:
    """The name's confusable skeleton (Unicode TR39 section 4): two names with the same key
    look alike ("Tony Blair" with a Cyrillic "о" has the key of the Latin one), so the
    gallery takes them for one person. `name` is a clean name (clean_name)."""
    table = _prototypes()
    text = unicodedata.normalize("NFD", name)
    for _ in range(2):  # a prototype of several characters ("m" -> "rn") is mapped once more
        text = unicodedata.normalize("NFD", "".join(table.get(c, c) for c in text))
    return " ".join(text.split())


@functools.cache
def _prototypes() -> dict[str, str]:
    """Character -> the representative of its confusable class, from Unicode's confusables
    data as the pinned `confusable-homoglyphs` package ships it (requirements.txt says why).
    That data lists each class symmetrically (every character with its look-alikes), so a
    class is a connected set; its representative is its prototype of several characters
    when it has one (TR39 maps only single characters to sequences), else its lowest
    character: any fixed choice gives equal keys to equal-looking names. About 0.2 s, once."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def plain(text: str) -> str:  # the package wraps right-to-left glyphs in LRMs for display
        return text.replace("\u200e", "") or text

    for char, glyphs in confusables_data.items():
        for glyph in glyphs:
            a, b = root(plain(char)), root(plain(glyph["c"]))
            if a != b:
                parent[max(a, b, key=_rank)] = min(a, b, key=_rank)
    return {c: root(c) for c in parent if len(c) == 1 and root(c) != c}


def _rank(text: str) -> tuple[int, str]:
    """Prototypes of several characters first, then the lowest code point."""
    return (0 if len(text) > 1 else 1, text)


def look_alike(name: str, others: list[str]) -> str | None:
    """The first of `others` (names with this name's key) that is not this very name."""
    return next((other for other in others if other != name), None)


def looks_like(name: str, other: str) -> InvalidInput:
    """The refusal for a name that looks like an enrolled one (issue 19 row 8)."""
    return InvalidInput(
        f"{name!r} looks like {other!r}, who is already enrolled (the two differ only in "
        f"look-alike letters or spacing). To add photos of that person use the name "
        f"{other!r}; for someone else, choose a name that reads differently."
    )


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
#: Embeddings closer than this are the very same embedding: the same request sent again (a
#: client retrying after a lost reply), which Gallery.enroll answers with the first entry. Not
#: index.enrollment.SAME_PHOTO_DISTANCE, which also catches the same photo re-encoded.
RETRY_DISTANCE = 1e-3


def entry_id(value: object) -> int | None:
    """An entry id as the gallery can hold it, or None for anything that cannot be one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and not (value.strip().isascii() and value.strip().isdigit()):
        return None  # ASCII digits only: int() also reads "١" (Arabic-Indic one) as 1
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
    """The entry among (id, embedding) candidates that is this very embedding (distance below
    RETRY_DISTANCE), the newest first when several are; None when none is."""
    best: tuple[float, int] | None = None
    for entry, stored in candidates:
        stored = np.asarray(stored, np.float32).reshape(-1)
        if stored.shape != vector.shape:
            continue  # embeddings of another size: not this face
        distance = float(np.linalg.norm(stored - vector))
        if distance < RETRY_DISTANCE and (best is None or (distance, -entry) < (best[0], -best[1])):
            best = (distance, int(entry))
    return None if best is None else best[1]


def no_such_person(name: str, similar: list[str]) -> NotFound:
    hint = f" Did you mean {similar[0]!r}?" if similar else ""
    return NotFound(f"No one named {name!r} is enrolled.{hint}")


def already_enrolled(name: str) -> InvalidInput:
    return InvalidInput(f"{name!r} is already enrolled; pass merge=True to merge the two.")
