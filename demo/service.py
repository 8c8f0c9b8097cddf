"""What the app does, without Gradio: compare, enroll, identify and manage, on engine + gallery.

ui.py wires these to components; render.py turns their results into words and pictures.
Every mistake a user can make ends as a `UserError` (or an engine `FaceError`, or a
gallery `ValueError`) whose message can be shown to that user as it is.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from engine import Comparison, Face, FaceEngine, InvalidImage, load_image
from index import GalleryCorrupt, GalleryError

log = logging.getLogger("twin.demo")

#: Identify draws and matches at most this many faces of one photo (the most prominent).
MAX_FACES = 20
#: Photos accepted by one Enroll request.
MAX_ENROLL_PHOTOS = 20
#: Top matches listed per face in Identify.
TOP_K = 3


class UserError(ValueError):
    """A mistake the user can fix; the message says how."""


class _gallery_errors:
    """Turn the gallery's own refusals (bad name, no such entry, other model) into UserError."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, GalleryError) and not isinstance(exc, GalleryCorrupt):
            raise UserError(str(exc)) from None
        return False


@dataclass
class Photo:
    """A decoded photo, its faces (most prominent first) and a short name to mention it by."""

    image: Image.Image
    faces: list[Face]
    label: str


@dataclass
class CompareResult:
    photo_a: Photo
    photo_b: Photo
    used_a: int                # 1-based face numbers
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
    number: int                # 1-based
    face: Face
    match: Candidate | None    # within the threshold, else None (unknown)
    top: list[Candidate]


@dataclass
class EnrollResult:
    name: str
    entries: list[tuple[Any, np.ndarray, str]] = field(default_factory=list)   # (entry id, crop, photo)
    refused: list[tuple[str, str]] = field(default_factory=list)              # (photo, reason)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Person:
    name: str
    entries: list[Any]


def photo_path(value: Any) -> str | None:
    """A photo as Gradio hands it over: a path, a FileData-like dict, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("path") or value.get("url")
        return str(value) if value else None
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    path = getattr(value, "path", None) or getattr(value, "name", None)
    return str(path) if path else None


def photo_label(value: Any, default: str) -> str:
    """The file name the user knows a photo by (Gradio's temp copies keep it as orig_name)."""
    if isinstance(value, dict) and value.get("orig_name"):
        return Path(str(value["orig_name"])).name
    path = photo_path(value)
    return Path(path).name if path and not path.startswith("data:") else default


class TwinService:
    """The app's actions over one engine and one gallery; safe to call from many threads."""

    def __init__(self, engine: FaceEngine, gallery: Any, thumbnails: bool = True):
        self.engine = engine
        self.gallery = gallery
        self.thumbnails = thumbnails
        self._lock = threading.RLock()      # the gallery is changed and read under this lock

    # -- photos ----------------------------------------------------------------------------
    def _image(self, value: Any, which: str) -> tuple[Image.Image, str]:
        path = photo_path(value)
        if path is None:
            raise UserError(f"Add {which} first (upload a file, use the webcam or paste one).")
        label = photo_label(value, which)
        try:
            if path.startswith("data:"):                 # a pasted or webcam image sent inline
                return load_image(_data_url_bytes(path)), which
            return load_image(path), label
        except InvalidImage as exc:
            raise InvalidImage(f"{label}: {exc}") from None

    def photos(self, values: Sequence[Any], names: Sequence[str]) -> list[Photo]:
        """Decode and find the faces of several photos (one network pass for all of them)."""
        decoded = [self._image(v, n) for v, n in zip(values, names)]
        faces = self.engine.faces_batch([image for image, _ in decoded])
        return [Photo(image, found[:MAX_FACES], label) for (image, label), found in zip(decoded, faces)]

    # -- compare ---------------------------------------------------------------------------
    def compare(self, a: Any, b: Any, face_a: int | float | None = 1, face_b: int | float | None = 1) -> CompareResult:
        photo_a, photo_b = self.photos([a, b], ["photo A", "photo B"])
        used_a = _face_number(face_a, photo_a, "A")
        used_b = _face_number(face_b, photo_b, "B")
        comparison = self.engine.compare_faces(photo_a.faces[used_a - 1], photo_b.faces[used_b - 1])
        return CompareResult(photo_a, photo_b, used_a, used_b, comparison)

    # -- identify --------------------------------------------------------------------------
    def identify(self, photo: Any) -> tuple[Photo, list[IdentifiedFace]]:
        (found,) = self.photos([photo], ["a photo"])
        result = []
        with self._lock, _gallery_errors():
            for i, face in enumerate(found.faces):
                top = [self._candidate(m) for m in self.gallery.search(face.embedding, k=TOP_K)]
                match = self.gallery.identify(face.embedding)
                result.append(IdentifiedFace(i + 1, face, self._candidate(match) if match else None, top))
        return found, result

    def _candidate(self, match: Any) -> Candidate:
        distance = float(match.distance)
        return Candidate(match.name, match.entry_id, distance, self.engine.similarity(distance))

    # -- enroll ----------------------------------------------------------------------------
    def enroll(self, name: str | None, photos: Sequence[Any] | Any) -> EnrollResult:
        name = " ".join((name or "").split())
        if not name:
            raise UserError("Type the person's name first.")
        if photos is None or photos == "":
            photos = []
        elif not isinstance(photos, (list, tuple)):
            photos = [photos]
        photos = [p for p in photos if photo_path(p) is not None]
        if not photos:
            raise UserError("Add at least one photo of the person.")
        if len(photos) > MAX_ENROLL_PHOTOS:
            raise UserError(f"Enroll at most {MAX_ENROLL_PHOTOS} photos at a time (you gave {len(photos)}).")
        result = EnrollResult(name)
        usable: list[tuple[Face, str]] = []
        for i, value in enumerate(photos):
            label = photo_label(value, f"photo {i + 1}")
            try:
                (photo,) = self.photos([value], [label])
            except InvalidImage as exc:
                result.refused.append((label, _strip_label(str(exc), label)))
                continue
            if not photo.faces:
                result.refused.append((label, "no face was found in it."))
            elif len(photo.faces) > 1:
                result.refused.append((label, f"it shows {len(photo.faces)} faces; use a photo of "
                                              f"{name} alone (or crop it)."))
            else:
                usable.append((photo.faces[0], label))
        with self._lock, _gallery_errors():
            for face, label in usable:
                known = self.gallery.identify(face.embedding)
                if known is not None and known.name != name:
                    result.warnings.append(
                        f"{label}: this face is already enrolled as {known.name} "
                        f"(similarity {self.engine.similarity(float(known.distance)) * 100:.1f}%).")
                thumbnail = face.crop if self.thumbnails else None
                entry = self.gallery.enroll(name, face.embedding, thumbnail=thumbnail)
                result.entries.append((entry, face.crop, label))
        return result

    # -- manage ----------------------------------------------------------------------------
    def people(self) -> list[Person]:
        with self._lock, _gallery_errors():
            return [Person(name, list(entries)) for name, entries in _people(self.gallery)]

    def thumbnail(self, entry_id: Any) -> Image.Image | None:
        if not self.thumbnails:
            return None
        with self._lock, _gallery_errors():
            return _thumbnail(self.gallery, entry_id)

    def remove(self, person: str | None, entry: Any = None) -> str:
        """Delete one entry (when `entry` is given) or every entry of `person`; say what was done."""
        person = (person or "").strip()
        entry_id = _entry_id(entry)
        with self._lock, _gallery_errors():
            if entry_id is not None:
                owner = _owner(self.gallery, entry_id)
                if owner is None:
                    raise UserError(f"There is no entry {entry_id} in the gallery.")
                if person and owner != person:
                    raise UserError(f"Entry {entry_id} belongs to {owner}, not to {person}.")
                self.gallery.remove_entry(int(entry_id))
                return f"Deleted entry {entry_id} of {owner}."
            if not person:
                raise UserError("Choose the person (or one of their entries) to delete.")
            if person not in self.gallery:
                raise UserError(f"There is nobody called {person} in the gallery.")
            count = self.gallery.remove_person(person)
            return f"Deleted {person} ({count} {'entry' if count == 1 else 'entries'})."

    def rename(self, old: str | None, new: str | None) -> str:
        """Rename a person; renaming onto someone already enrolled merges the two, and says so."""
        old = (old or "").strip()
        new = " ".join((new or "").split())
        if not old:
            raise UserError("Choose the person to rename.")
        if not new:
            raise UserError("Type the new name.")
        with self._lock, _gallery_errors():
            if old not in self.gallery:
                raise UserError(f"There is nobody called {old} in the gallery.")
            merging = new != old and new in self.gallery
            count = self.gallery.rename_person(old, new, merge=True)
        entries = f"{count} {'entry' if count == 1 else 'entries'}"
        if merging:
            return f"Moved the {entries} of {old} to {new}, who was already enrolled."
        return f"Renamed {old} to {new} ({entries})."


def _face_number(value: int | float | str | None, photo: Photo, which: str) -> int:
    if not photo.faces:
        raise UserError(f"No face was found in photo {which}. Try a sharper, front-facing photo "
                        f"where the face is at least 20 pixels wide.")
    try:
        number = 1 if value is None or value == "" else int(float(value))
    except (TypeError, ValueError):
        raise UserError(f"The face number for photo {which} must be a whole number.") from None
    if not 1 <= number <= len(photo.faces):
        count = len(photo.faces)
        raise UserError(f"Photo {which} has {count} face{'s' if count != 1 else ''}; "
                        f"there is no face {number}.")
    return number


def _data_url_bytes(url: str) -> bytes:
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise InvalidImage("The pasted image could not be read.")
    try:
        return base64.b64decode(payload, validate=False)
    except (ValueError, binascii.Error):
        raise InvalidImage("The pasted image could not be read.") from None


def _strip_label(message: str, label: str) -> str:
    prefix = f"{label}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _entry_id(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


# -- the gallery's shape ------------------------------------------------------------------------
def _people(gallery: Any) -> list[tuple[str, list[int]]]:
    """Everyone enrolled with their entry ids, oldest first, in the gallery's name order."""
    entries: dict[str, list[int]] = {}
    for entry in gallery.entries():
        entries.setdefault(entry.name, []).append(entry.entry_id)
    return [(p.name, entries.get(p.name, [])) for p in gallery.people()]


def _owner(gallery: Any, entry_id: Any) -> str | None:
    for entry in gallery.entries():
        if str(entry.entry_id) == str(entry_id):
            return entry.name
    return None


def _thumbnail(gallery: Any, entry_id: Any) -> Image.Image | None:
    try:
        png = gallery.thumbnail(int(entry_id))
    except (TypeError, ValueError):
        return None
    if not png:
        return None
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")
