"""The one enrollment policy, shared by the app, `python -m index enroll` and `enroll-folder`.

It sees faces already found and embedded (by whoever holds the engine), never images:

- a photo with no usable face, several faces, or a face below the quality floor is refused
  with the reason (decided by the caller, passed as `Candidate.problem`);
- the same photo already enrolled under the same name is a *duplicate*: skipped and reported
  with the existing entry (a retried request, or a second run over the same folder);
- the same photo already enrolled under *another* name is refused: one photo cannot be two
  people (the usual slip is a form still holding the previous person's photos);
- a face merely like someone else's (within the identification threshold) is enrolled with a
  warning that says how to undo it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Two embeddings this close come from the same photo (re-encoded at most), not a look-alike.
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
    outcome = Outcome(name)
    threshold = getattr(gallery, "threshold", None)
    for candidate in candidates:
        if candidate.problem or candidate.embedding is None:
            outcome.refused.append((candidate.label, candidate.problem or "no usable face was found in it."))
            continue
        if candidate.note:
            outcome.warnings.append(f"{candidate.label}: {candidate.note}")
        nearest = gallery.search(candidate.embedding, k=5) if len(gallery) else []
        same_photo = [m for m in nearest if m.distance <= SAME_PHOTO_DISTANCE]
        mine = [m for m in same_photo if m.name == name]
        if mine:
            outcome.duplicates.append((mine[0].entry_id, candidate.label))
            continue
        if same_photo:
            other = same_photo[0]
            outcome.refused.append(
                (
                    candidate.label,
                    f"this is the photo already enrolled as {other.name} "
                    f"(entry {other.entry_id}). If that name is wrong, rename "
                    f"or delete it in the Gallery tab.",
                )
            )
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


# -- from photos: the part that needs the engine (the app and the CLI pass theirs in) ------------
def candidate_from(
    engine: Any, source: Any, label: str, name: str, *, deadline: float | None = None, thumbnails: bool = True
) -> tuple[Candidate, np.ndarray | None]:
    """One photo as an enrollment candidate: its single face, or why it cannot be used.

    Returns the candidate and the face's aligned crop (to show the user; None when refused).
    The photo is decoded by `engine.images.load_image`; engine errors become the refusal reason.
    """
    from engine import FaceError, load_image

    try:  # two faces are enough to know a photo shows more than one person
        image = load_image(source)
        (faces,) = engine.faces_batch([image], max_faces=2, deadline=deadline)
    except FaceError as exc:
        message = str(exc)
        return Candidate(
            label, problem=message[len(label) + 2 :] if message.startswith(f"{label}: ") else message
        ), None
    found = int(getattr(faces, "found", len(faces)))
    if not faces:
        return Candidate(label, problem="no face was found in it."), None
    if found > 1:
        return Candidate(label, problem=f"it shows {found} faces; use a photo of {name} alone (or crop it)."), None
    face = faces[0]
    quality = getattr(face, "quality", None)
    if quality is not None and not getattr(quality, "ok", True):
        reason = getattr(quality, "reason", None) or "the face is too poor to recognise reliably"
        return Candidate(label, problem=f"{reason}."), face.crop
    return Candidate(label, face.embedding, face.crop if thumbnails else None), face.crop


def enroll_collection(
    engine: Any,
    gallery: Any,
    people: Sequence[Any],
    *,
    thumbnails: bool = True,
    deadline: float | None = None,
    progress: Any = None,
) -> list[Outcome]:
    """Enroll every person of an index.people_folder collection; `progress(done, total, label)`.

    Stops between photos once `deadline` (time.monotonic) has passed: what was enrolled stays,
    the rest is reported as refused ("out of time"), so a second run picks up where this one
    stopped (photos already there are duplicates, skipped).
    """
    import time

    total = sum(len(p.photos) for p in people)
    done = 0
    outcomes = []
    for person in people:
        candidates = []
        for label, source in person.photos:
            if deadline is not None and time.monotonic() > deadline:
                candidates.append(
                    Candidate(
                        label,
                        problem="out of time for this upload; run it again "
                        "to enroll the rest (what is enrolled is skipped).",
                    )
                )
            else:
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
