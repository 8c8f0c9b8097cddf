"""What the app does, without Gradio: compare, enroll, identify and manage, on engine + gallery.

The UI layer (demo/inputs.py) has already turned every photo field of a request into a
`PhotoInput` (a file inside the upload folder, or bounded inline bytes); this module never
sees a client's raw path or URL. Every request's work is bounded: at most `Limits.max_faces`
faces are aligned and embedded per photo, and each request has a deadline after which the
engine stops with TooMuchWork. Every mistake a user can make ends as a `UserError` (or an
engine `FaceError`, or a gallery `GalleryError`) whose message can be shown as it is.

The gallery is thread-safe and its reads never wait on a writer, so there is no lock here:
one user's search does not queue behind another's enrollment.

(About 400 lines: one class, one short method per action of the app, with the input checks
that belong to each; splitting it would scatter what a tab can ask for.)
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from engine import Comparison, Face, FaceEngine, InvalidImage, load_image, picking
from engine.errors import BadFaceNumber
from engine.settings import MIN_FACE_SIZE
from index import GalleryCorrupt, GalleryError
from index.enrollment import Candidate as EnrollCandidate
from index.enrollment import Outcome, admit, candidate_from, enroll_collection, unreadable_outcomes
from index.people_folder import FolderLimits, read_zip
from index.scopes import SHARED_LINE

from .inputs import PhotoInput
from .order import in_reading_order

log = logging.getLogger("twin.demo")

#: Top matches listed per face in Identify.
TOP_K = 3
#: People per page of the Gallery tab and of /people.
PEOPLE_PER_PAGE = 50


@dataclass(frozen=True)
class Limits:
    """What one request may cost. The defaults keep a request to a few CPU-seconds."""

    max_faces: int = 20  # faces aligned, embedded and drawn per photo (most prominent)
    max_enroll_photos: int = 20  # photos in one Enroll request
    request_seconds: float = 20.0  # Compare / Identify deadline
    enroll_seconds: float = 60.0  # the whole Enroll request
    bulk_seconds: float = 300.0  # a bulk (zip) enrollment; what is done by then stays
    folder: FolderLimits = FolderLimits()  # a zip's photos, people and bytes


class UserError(ValueError):
    """A mistake the user can fix; the message says how."""


class _gallery_errors:
    """Turn the gallery's own refusals (bad name, no such entry, busy, other model) into UserError."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, GalleryError) and not isinstance(exc, GalleryCorrupt):
            raise UserError(str(exc)) from None
        return False


@dataclass
class Photo:
    """A decoded photo, its faces (at most the cap, the most prominent ones), how many were found.

    The faces are in reading order (demo.order: left to right), the order the app numbers them
    in; `prominent` is the number of the most prominent one, the face Compare uses by default."""

    image: Image.Image
    faces: list[Face]
    label: str
    found: int = 0  # faces the detector found, before the cap
    prominent: int = 1

    @property
    def capped(self) -> bool:
        return self.found > len(self.faces)


@dataclass
class CompareResult:
    photo_a: Photo
    photo_b: Photo
    used_a: int  # 1-based face numbers
    used_b: int
    comparison: Comparison


@dataclass
class Candidate:
    name: str
    entry_id: Any
    distance: float
    similarity: float


@dataclass
class IdentifiedFace:
    number: int  # 1-based
    face: Face
    match: Candidate | None  # within the threshold, else None (unknown)
    top: list[Candidate]


@dataclass
class Identification:
    photo: Photo
    faces: list[IdentifiedFace]
    threshold: float  # the naming threshold the faces were judged by (engine.naming, for this gallery's size)


@dataclass
class EnrollResult:
    name: str
    entries: list[tuple[Any, Any, str]] = field(default_factory=list)  # (entry id, crop, photo) made
    refused: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason)
    warnings: list[str] = field(default_factory=list)
    duplicates: list[tuple[Any, Any, str]] = field(default_factory=list)  # already enrolled: (entry id, crop, photo)

    @property
    def failed(self) -> bool:
        """Nothing was enrolled and nothing was there already: the request as a whole failed."""
        return not self.entries and not self.duplicates

    def failure_message(self) -> str:
        return " ".join(f"{photo}: {reason}" for photo, reason in self.refused) or "Nothing was enrolled."


@dataclass
class Person:
    name: str
    entries: list[Any]


class TwinService:
    """The app's actions over one engine and one gallery; safe to call from many threads."""

    def __init__(self, engine: FaceEngine, gallery: Any, thumbnails: bool = True, limits: Limits = Limits()):
        self.engine = engine
        self.gallery = gallery
        self.thumbnails = thumbnails
        self.limits = limits

    # -- photos ----------------------------------------------------------------------------
    def photos(
        self, inputs: Sequence[PhotoInput], deadline: float | None = None, max_faces: int | None = None
    ) -> list[Photo]:
        """Decode and find the faces of several photos (one network pass for all of them)."""
        images = []
        for item in inputs:
            try:
                images.append(load_image(item.source))
            except InvalidImage as exc:
                raise InvalidImage(f"{item.label}: {exc}") from None
        cap = self.limits.max_faces if max_faces is None else max_faces
        if deadline is None:
            deadline = time.monotonic() + self.limits.request_seconds
        found = self.engine.faces_batch(images, max_faces=cap, deadline=deadline)
        return [_photo(image, faces, item.label) for item, image, faces in zip(inputs, images, found)]

    # -- compare ---------------------------------------------------------------------------
    def compare(
        self, a: PhotoInput | None, b: PhotoInput | None, face_a: Any = None, face_b: Any = None
    ) -> CompareResult:
        number_a, number_b = face_number(face_a, "A"), face_number(face_b, "B")  # 0: the most prominent
        if a is None or b is None:
            raise UserError(
                f"Add photo {'A' if a is None else 'B'} first (upload a file, use the webcam or paste one)."
            )
        photo_a, photo_b = self.photos([a, b])
        number_a, number_b = number_a or photo_a.prominent, number_b or photo_b.prominent
        comparison = self.engine.compare_faces(_pick(number_a, photo_a, "A"), _pick(number_b, photo_b, "B"))
        return CompareResult(photo_a, photo_b, number_a, number_b, comparison)

    # -- identify --------------------------------------------------------------------------
    def identify(self, photo: PhotoInput | None) -> Identification:
        """Every face of the photo (up to the cap), its TOP_K nearest entries (one search per
        face) and the person it is, if the nearest is within the naming threshold."""
        if photo is None:
            raise UserError("Add a photo first (upload a file, use the webcam or paste one).")
        (found,) = self.photos([photo])
        result = []
        with _gallery_errors():
            threshold = self.naming_threshold()
            for i, face in enumerate(found.faces):
                # engine.naming decides (the one rule the CLI and the benches use too)
                named = self.gallery.name(face.embedding, self.engine.naming)
                top = [self._candidate(c) for c in named.candidates[:TOP_K]]
                match = top[0] if named.match is not None else None
                result.append(IdentifiedFace(i + 1, face, match, top))
                threshold = named.threshold
        return Identification(found, result, threshold)

    def naming_threshold(self) -> float:
        """The score within which Identify names someone: the engine's naming threshold for this
        gallery's number of people (a stranger has one chance per person enrolled)."""
        return float(self.engine.naming.threshold_for(self.gallery.count_people()))

    def _candidate(self, match: Any) -> Candidate:
        distance = float(match.distance)
        return Candidate(match.name, match.entry_id, distance, self.engine.similarity(distance))

    # -- enroll ----------------------------------------------------------------------------
    def enroll(self, name: str | None, photos: Sequence[PhotoInput]) -> EnrollResult:
        """Enroll one person from photos; the rules are index.enrollment's (shared with the CLI)."""
        if not isinstance(name, (str, type(None))):
            raise UserError("The name must be text.")
        name = " ".join((name or "").split())
        if not name:
            raise UserError("Type the person's name first.")
        if not photos:
            raise UserError("Add at least one photo of the person.")
        if len(photos) > self.limits.max_enroll_photos:
            raise UserError(
                f"Enroll at most {self.limits.max_enroll_photos} photos at a time (you gave {len(photos)})."
            )
        deadline = time.monotonic() + self.limits.enroll_seconds
        candidates, crops = [], {}
        for item in _distinct_labels(photos):
            candidate, crop = self._candidate_of(item, name, deadline)
            candidates.append(candidate)
            crops[item.label] = crop
        with _gallery_errors():
            outcome = admit(self.gallery, name, candidates, similarity=self.engine.similarity)
        result = EnrollResult(name, refused=outcome.refused, warnings=outcome.warnings)
        result.entries = [(entry, crops[label], label) for entry, label in outcome.entries]
        result.duplicates = [(entry, crops[label], label) for entry, label in outcome.duplicates]
        return result

    def _candidate_of(self, item: PhotoInput, name: str, deadline: float) -> tuple[EnrollCandidate, Any]:
        return candidate_from(self.engine, item.source, item.label, name, deadline=deadline, thumbnails=self.thumbnails)

    def enroll_zip(self, upload: PhotoInput | None, progress: Any = None) -> list[Outcome]:
        """Bulk enrollment: a zip with one folder per person (the folder name is the name)."""
        if upload is None:
            raise UserError("Add a zip file first: one folder per person, named after them, with their photos.")
        source = upload.path if upload.path is not None else io.BytesIO(upload.data or b"")
        try:
            collection = read_zip(source, self.limits.folder)
        except GalleryError as exc:
            raise UserError(str(exc)) from None
        if not collection.people and not collection.unreadable:
            raise UserError("The zip holds no photos in person folders (expected Name/photo.jpg).")
        deadline = time.monotonic() + self.limits.bulk_seconds
        with _gallery_errors():
            outcomes = enroll_collection(
                self.engine,
                self.gallery,
                collection.people,
                thumbnails=self.thumbnails,
                deadline=deadline,
                progress=progress,
                max_pixels=self.limits.folder.max_pixels,
            )
        return unreadable_outcomes(collection.unreadable, outcomes)

    # -- manage ----------------------------------------------------------------------------
    def scope_line(self) -> str:
        """Which gallery the caller is in and what becomes of its faces (index/scopes.py)."""
        describe = getattr(self.gallery, "describe", None)
        return describe() if callable(describe) else SHARED_LINE

    def people(self) -> list[Person]:
        """Everyone enrolled with their entry ids (oldest first), ordered as Gallery.people
        orders them: from one read of the entries."""
        with _gallery_errors():
            by_name: dict[str, list[Any]] = {}
            for entry in self.gallery.entries():
                by_name.setdefault(entry.name, []).append(entry.entry_id)
        return [Person(name, ids) for name, ids in sorted(by_name.items(), key=lambda p: (p[0].casefold(), p[0]))]

    def people_page(self, page: Any = 1, start: Any = "") -> tuple[list[Person], int, int]:
        """One page of people (PEOPLE_PER_PAGE, in name order, from the first name >= `start`)
        with their entry ids, how many people there are and the page number used: a page of a
        million-person gallery reads only that page (issue 19 row 12)."""
        number = page_number(page)
        start = " ".join(start.split()) if isinstance(start, str) else ""
        with _gallery_errors():
            people, total = self.gallery.people_page(number, PEOPLE_PER_PAGE, start=start)
            ids = self.gallery.entry_ids([p.name for p in people])
            return [Person(p.name, ids[p.name]) for p in people], total, number

    def entries_of(self, person: str | None) -> list[Any]:
        """The entry ids of one person, oldest first ([] for nobody)."""
        if not isinstance(person, str) or not person.strip():
            return []
        with _gallery_errors():
            try:
                return [e.entry_id for e in self.gallery.entries(person.strip())]
            except GalleryError:
                return []

    def thumbnail(self, entry_id: Any) -> Image.Image | None:
        """An entry's thumbnail, or None (none stored, thumbnails off, or one that will not decode)."""
        if not self.thumbnails:
            return None
        try:
            with _gallery_errors():
                png = self.gallery.thumbnail(int(entry_id))
        except (TypeError, ValueError, UserError):
            return None
        if not png:
            return None
        try:
            with Image.open(io.BytesIO(png)) as image:
                if image.width * image.height > 512 * 512:
                    raise ValueError(f"{image.width}x{image.height} is too large for a thumbnail")
                return image.convert("RGB")
        except Exception as exc:  # one bad thumbnail must not fail the page that lists it
            log.warning("entry %s: unusable thumbnail (%s)", entry_id, exc)
            return None

    def remove(self, person: str | None, entry: Any = None) -> tuple[str, list[Any]]:
        """Delete one entry (when `entry` is given) or every entry of `person`.

        Returns what was done, in words, and the ids of the entries removed (the UI forgets
        any picture it made of them).
        """
        person = (person or "").strip() if isinstance(person, str) else ""
        entry_id = entry_number(entry)
        with _gallery_errors():
            if entry_id is not None:
                owner = self.gallery.owner(entry_id)
                if owner is None:
                    raise UserError(f"There is no entry {entry_id} in the gallery.")
                if person and owner != person:
                    raise UserError(f"Entry {entry_id} belongs to {owner}, not to {person}.")
                self.gallery.remove_entry(entry_id)
                return f"Deleted entry {entry_id} of {owner}.", [entry_id]
            if not person:
                raise UserError("Choose the person (or one of their entries) to delete.")
            if person not in self.gallery:
                raise UserError(f"There is nobody called {person} in the gallery.")
            ids = [e.entry_id for e in self.gallery.entries(person)]
            count = self.gallery.remove_person(person)
            return f"Deleted {person} ({count} {'entry' if count == 1 else 'entries'}).", ids

    def rename(self, old: str | None, new: str | None) -> str:
        """Rename a person; renaming onto someone already enrolled merges the two, and says so."""
        old = (old or "").strip() if isinstance(old, str) else ""
        new = " ".join((new or "").split()) if isinstance(new, str) else ""
        if not old:
            raise UserError("Choose the person to rename.")
        if not new:
            raise UserError("Type the new name.")
        with _gallery_errors():
            if old not in self.gallery:
                raise UserError(f"There is nobody called {old} in the gallery.")
            merging = new != old and new in self.gallery
            count = self.gallery.rename_person(old, new, merge=True)
        entries = f"{count} {'entry' if count == 1 else 'entries'}"
        if merging:
            return f"Moved the {entries} of {old} to {new}, who was already enrolled."
        return f"Renamed {old} to {new} ({entries})."


def _distinct_labels(photos: Sequence[PhotoInput]) -> list[PhotoInput]:
    """Photos whose labels tell them apart ("a.jpg", "a.jpg (2)"): results are reported by label."""
    seen: dict[str, int] = {}
    out = []
    for item in photos:
        count = seen[item.label] = seen.get(item.label, 0) + 1
        out.append(item if count == 1 else PhotoInput(f"{item.label} ({count})", item.path, item.data))
    return out


def _photo(image: Image.Image, faces: Sequence[Face], label: str) -> Photo:
    ordered = in_reading_order(faces)
    prominent = next((n for n, face in enumerate(ordered, 1) if faces and face is faces[0]), 1)
    return Photo(image, ordered, label, _found(faces), prominent)


def _found(faces: Sequence[Face]) -> int:
    """How many faces the engine found before its cap (it says so on the list it returns)."""
    return int(getattr(faces, "found", len(faces)))


def face_number(value: Any, which: str) -> int:
    """A face number as a client may send it (1, 1.0, "2"; none: 0, the most prominent face), or
    UserError saying what is wrong."""
    try:
        return picking.face_number(value, default=0)
    except BadFaceNumber:
        raise UserError(
            f"The face number for photo {which} must be a whole number from 1 (not {str(value)[:20]})."
        ) from None


#: How the app words a photo without the face asked for (engine.picking.pick_face's fields).
NO_FACE = (
    "No face was found in photo {which}. Try a sharper, front-facing photo "
    f"where the face is at least {MIN_FACE_SIZE} pixels wide."
)
NO_SUCH_FACE = "Photo {which} has {found} face{s}{shown}; there is no face {number}."


def _pick(number: int, photo: Photo, which: str) -> Face:
    return picking.pick_face(photo.faces, number, which, found=photo.found, no_face=NO_FACE, no_such_face=NO_SUCH_FACE)


def page_number(value: Any) -> int:
    """A page number as a client may send it (2, 2.0, "2"; none: 1), ASCII digits only."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1
    try:
        number = None if isinstance(value, bool) else entry_number(value)
    except UserError:
        number = None
    if number is None or number < 1:
        raise UserError("The page must be a whole number from 1.")
    return number


def entry_number(value: Any) -> int | None:
    """An entry id as a client may send it (7, 7.0, "7"); None for none; UserError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise UserError("An entry must be given by its number.")
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 18:  # not "²", "١" (int() reads it as 1)
            raise UserError("An entry must be given by its number.")
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError("An entry must be given by its number.") from None
    if not math.isfinite(number) or number != int(number) or not 0 <= number < 2**62:
        raise UserError("An entry must be given by its number.")
    return int(number)
