"""The one enrollment policy, shared by every way in: the app's form and zip upload,
`python -m index enroll`, `enroll-folder` and `import` (issue 21 item 1, issue 19 row 9).

It sees faces already found and embedded (by whoever holds the engine), never images:

- a photo with no usable face, several faces, or a face below the quality floor is refused
  with the reason (decided by the caller, passed as `Candidate.problem`);
- the same photo already enrolled under the same name is a *duplicate*: skipped and reported
  with the existing entry (a retried request, or a second run over the same folder);
- the same photo already enrolled under *another* name is refused: one photo cannot be two
  people (the usual slip is a form still holding the previous person's photos);
- a face merely like someone else's (within the identification threshold) is enrolled with a
  warning that says how to undo it;
- a name that looks like an enrolled one without being it is refused (Gallery.check_name).

An import (`ImportPolicy`) has no photos, only embeddings, and applies the same rules to each
row: the same face already enrolled under the row's name adds nothing (so importing a file
twice adds nothing the second time), under another name it is refused, and so is a name that
looks like another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Two embeddings this close come from the same photo (re-encoded or resized at most), never
#: from two photos of one person nor from look-alikes. Not checks.RETRY_DISTANCE (1e-3), which
#: is "the very same embedding", a retried request.
SAME_PHOTO_DISTANCE = 0.1


@dataclass
class Candidate:
    """One photo offered for enrollment: its usable face, or why there is none."""

    label: str  # how the user knows the photo (file name)
    embedding: np.ndarray | None = None  # the face's embedding; None when refused
    thumbnail: np.ndarray | None = None  # aligned crop to keep (None: keep none)
    problem: str | None = None  # why the photo cannot be used
    note: str | None = None  # a warning to pass on even when enrolled (poor quality)


@dataclass
class Outcome:
    """What enrolling one person did."""

    name: str
    entries: list[tuple[Any, str]] = field(default_factory=list)  # (entry id, photo) made
    duplicates: list[tuple[Any, str]] = field(default_factory=list)  # (existing entry id, photo)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason)
    warnings: list[str] = field(default_factory=list)


def admit(gallery: Any, name: str, candidates: Sequence[Candidate], similarity: Any = None) -> Outcome:
    """Enroll the usable candidates under `name` in `gallery`, by the rules above.

    similarity: distance -> 0..1 (the engine's calibration), used in look-alike warnings.
    """
    check = getattr(gallery, "check_name", None)
    if check is not None:  # a bad or look-alike name: refused before any photo is looked at
        name = check(name)
    outcome = Outcome(name)
    threshold = getattr(gallery, "threshold", None)
    for candidate in candidates:
        if candidate.problem or candidate.embedding is None:
            outcome.refused.append((candidate.label, candidate.problem or "no usable face was found in it."))
            continue
        if candidate.note:
            outcome.warnings.append(f"{candidate.label}: {candidate.note}")
        nearest, mine, other = same_photo(gallery, name, candidate.embedding)
        if mine is not None:
            outcome.duplicates.append((mine.entry_id, candidate.label))
            continue
        if other is not None:
            outcome.refused.append((candidate.label, taken(other)))
            continue
        alike = nearest[0] if nearest else None
        if alike is not None and alike.name != name and threshold is not None and alike.distance <= threshold:
            score = f" (similarity {similarity(float(alike.distance)) * 100:.1f}%)" if similarity else ""
            outcome.warnings.append(
                f"{candidate.label}: this face looks like {alike.name}, who is already enrolled{score}. "
                f"It was enrolled as {name}; if it is the same person, delete this entry or rename "
                f"in the Gallery tab."
            )
        entry = gallery.enroll(name, candidate.embedding, thumbnail=candidate.thumbnail)
        outcome.entries.append((entry, candidate.label))
    return outcome


def same_photo(gallery: Any, name: str, embedding: np.ndarray) -> tuple[list[Any], Any, Any]:
    """(the 5 nearest entries, the one that is this photo under `name` or None, the one that
    is this photo under another name or None): "the same photo" decided once for every way in."""
    return _same(gallery.search(embedding, k=5) if len(gallery) else [], name)


def _same(nearest: list[Any], name: str) -> tuple[list[Any], Any, Any]:
    same = [m for m in nearest if m.distance <= SAME_PHOTO_DISTANCE]
    mine = next((m for m in same if m.name == name), None)
    other = next((m for m in same if m.name != name), None)
    return nearest, mine, None if mine is not None else other


def taken(other: Any) -> str:
    return (
        f"this is the photo already enrolled as {other.name} (entry {other.entry_id}). "
        "If that name is wrong, rename or delete it in the Gallery tab."
    )


class ImportPolicy:
    """The rules above for the rows of an import (Gallery.import_from): `admit(name, vector)`
    is None for a row to add, "duplicate" for one already there, else the refusal reason.

    Rows are judged against the gallery as it was before the import and against the rows of
    the same import admitted before them (the very same embedding, or a look-alike name)."""

    def __init__(self, gallery: Any, *, replace: bool = False):
        self.gallery = None if replace else gallery
        self.searched = not replace and len(gallery) > 0  # the import's own rows are not seen meanwhile
        self.names: dict[str, str] = {}  # key -> name, of names this import brings or checked
        self.vectors: dict[bytes, str] = {}  # digest of the embedding -> name, of rows admitted
        self.refusals: dict[str, str | None] = {}  # name -> why it is refused (None: fine)

    def admit(self, name: str, vector: np.ndarray) -> str | None:
        from .checks import name_key

        if name not in self.refusals:
            self.refusals[name] = self._name_problem(name, name_key(name))
        if self.refusals[name]:
            return self.refusals[name]
        raw = hashlib.blake2b(np.asarray(vector, "<f4").tobytes(), digest_size=16).digest()
        if raw in self.vectors:
            return "duplicate" if self.vectors[raw] == name else f"the same face is also in it as {self.vectors[raw]}."
        if self.searched and self.gallery is not None:
            _, mine, other = _same(self.gallery.search(vector, k=5), name)
            if mine is not None:
                return "duplicate"
            if other is not None:
                return taken(other)
        self.vectors[raw] = name
        return None

    def _name_problem(self, name: str, key: str) -> str | None:
        if key in self.names and self.names[key] != name:
            return f"the name looks like {self.names[key]!r}, also in it."
        self.names.setdefault(key, name)
        if self.gallery is not None:
            try:
                self.gallery.check_name(name)
            except ValueError as exc:
                return str(exc)
        return None


# -- from photos: the part that needs the engine (the app and the CLI pass theirs in) ------------
def candidate_from(
    engine: Any,
    source: Any,
    label: str,
    name: str,
    *,
    deadline: float | None = None,
    thumbnails: bool = True,
    face: int | None = None,
) -> tuple[Candidate, np.ndarray | None]:
    """One photo as an enrollment candidate: its single face, or why it cannot be used.

    face: use this face (1 = the most prominent) of a photo of several people, which the
    caller chose knowingly (`python -m index enroll --face N`); None: the photo must show one.
    Returns the candidate and the face's aligned crop (to show the user; None when refused).
    The photo is decoded by `engine.images.load_image`; engine errors become the refusal reason.
    """
    from engine import FaceError, load_image

    try:  # two faces are enough to know a photo shows more than one person
        image = load_image(source)
        (faces,) = engine.faces_batch([image], max_faces=max(2, face or 0), deadline=deadline)
    except FaceError as exc:
        message = str(exc)
        return Candidate(
            label, problem=message[len(label) + 2 :] if message.startswith(f"{label}: ") else message
        ), None
    found = int(getattr(faces, "found", len(faces)))
    if not faces:
        return Candidate(label, problem="no face was found in it."), None
    if face is not None and face > found:
        return Candidate(label, problem=f"it has {found} face(s); there is no face {face}."), None
    if face is None and found > 1:
        return Candidate(label, problem=f"it shows {found} faces; use a photo of {name} alone (or crop it)."), None
    chosen = faces[(face or 1) - 1]
    quality = getattr(chosen, "quality", None)
    if quality is not None and not getattr(quality, "ok", True):
        reason = getattr(quality, "reason", None) or "the face is too poor to recognise reliably"
        return Candidate(label, problem=f"{reason}."), chosen.crop
    return Candidate(label, chosen.embedding, chosen.crop if thumbnails else None), chosen.crop


def enroll_collection(
    engine: Any,
    gallery: Any,
    people: Sequence[Any],
    *,
    thumbnails: bool = True,
    deadline: float | None = None,
    progress: Any = None,
    max_pixels: int | None = None,
) -> list[Outcome]:
    """Enroll every person of an index.people_folder collection; `progress(done, total, label)`.

    max_pixels: how many pixels the whole collection may decode (an upload's work is bounded:
    137 large PNGs in a 9.7 MB zip cost 71 CPU-s before); photos past it are refused with the
    reason, from their header alone, without being decoded. None: no bound (the CLI).

    Stops between photos once `deadline` (time.monotonic) has passed: what was enrolled stays,
    the rest is reported as refused ("out of time"), so a second run picks up where this one
    stopped (photos already there are duplicates, skipped).
    """
    import time

    total = sum(len(p.photos) for p in people)
    done = decoded = 0
    outcomes: list[Outcome] = []
    for person in people:
        candidates = []
        for label, source in person.photos:
            pixels = pixel_count(source) if max_pixels is not None else 0
            if max_pixels is not None and decoded + pixels > max_pixels:
                candidates.append(
                    Candidate(
                        label,
                        problem=f"this upload's photos add up to more than {max_pixels / 1e6:.0f} megapixels, "
                        "the most one upload may decode; send smaller photos, or the rest in another zip.",
                    )
                )
            elif deadline is not None and time.monotonic() > deadline:
                candidates.append(
                    Candidate(
                        label,
                        problem="out of time for this upload; run it again "
                        "to enroll the rest (what is enrolled is skipped).",
                    )
                )
            else:
                decoded += pixels
                candidates.append(
                    candidate_from(engine, source, label, person.name, deadline=deadline, thumbnails=thumbnails)[0]
                )
            done += 1
            if progress is not None:
                progress(done, total, label)
        try:
            outcomes.append(admit(gallery, person.name, candidates, similarity=getattr(engine, "similarity", None)))
        except ValueError as exc:  # the gallery's refusal of this name (InvalidInput): report it
            outcome = Outcome(person.name)
            outcome.refused = [(c.label, str(exc)) for c in candidates]
            outcomes.append(outcome)
    return outcomes


def unreadable_outcomes(unreadable: Sequence[tuple[str, str, str]], outcomes: list[Outcome]) -> list[Outcome]:
    """Fold the photos a zip could not give us (people_folder.Collection.unreadable: person,
    photo, why) into the outcomes as refusals, so every report lists them with their reason."""
    by_name = {o.name: o for o in outcomes}
    for person, label, why in unreadable:
        if person not in by_name:
            by_name[person] = Outcome(person)
            outcomes.append(by_name[person])
        by_name[person].refused.append((label, f"{why}."))
    return outcomes


def pixel_count(source: Any) -> int:
    """How many pixels a photo (a path or bytes) declares in its header, read without decoding
    it (0 when the header does not say: load_image will refuse it, cheaply)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            return int(width) * int(height)
    except Exception:  # noqa: BLE001 - any unreadable header: decoding it refuses it with the reason
        return 0


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """A bulk enrollment's totals, for the CLI's summary and the app's /enroll_zip JSON alike."""
    return {
        "people": len(outcomes),
        "enrolled": sum(len(o.entries) for o in outcomes),
        "already_enrolled": sum(len(o.duplicates) for o in outcomes),
        "refused": [{"name": o.name, "photo": p, "reason": why} for o in outcomes for p, why in o.refused],
        "warnings": [w for o in outcomes for w in o.warnings],
        "by_person": [
            {
                "name": o.name,
                "enrolled": len(o.entries),
                "already_enrolled": len(o.duplicates),
                "refused": len(o.refused),
            }
            for o in outcomes
        ],
    }
