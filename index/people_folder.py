"""Read "one sub-folder per person" photo collections: a folder on disk, or a zip of one.

The layout most face data sets and deepface's `find(db_path=...)` use:

    people/
      Ada Lovelace/  1.jpg  2.jpg
      Alan Turing/   portrait.png

The folder name is the person's name. A zip is untrusted input (an upload): its member names
are only ever used as labels (never as paths to write or read), and it is bounded before and
while it is read: number of members, bytes per photo, total bytes decompressed, compression
ratio (a zip bomb), and photos and people per upload. Files that are not photos, hidden files
and anything not exactly two levels deep are skipped and counted, never fatal.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import InvalidInput

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif", ".tiff", ".gif"}


@dataclass(frozen=True)
class FolderLimits:
    """What one collection may hold. The defaults suit one web request; the CLI raises them."""

    max_photos: int = 200
    max_people: int = 100
    max_photo_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024  # decompressed, for a zip
    max_members: int = 5000  # entries in a zip's directory, photos or not
    max_ratio: float = 100.0  # decompressed / compressed, per member


@dataclass
class PersonPhotos:
    """One person's photos: (label, source) where source is a Path or the photo's bytes."""

    name: str
    photos: list[tuple[str, Path | bytes]] = field(default_factory=list)


@dataclass
class Collection:
    people: list[PersonPhotos]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, why)

    @property
    def photo_count(self) -> int:
        return sum(len(p.photos) for p in self.people)


def read_folder(root: str | Path, limits: FolderLimits = FolderLimits()) -> Collection:
    """A folder with one sub-folder per person (sorted by name, photos sorted by file name)."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder.")
    found: dict[str, PersonPhotos] = {}
    skipped: list[tuple[str, str]] = []
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(person_dir.iterdir()):
            label = f"{person_dir.name}/{path.name}"
            why = _not_a_photo(path.name) or (None if path.is_file() else "not a file")
            if why is None and path.stat().st_size > limits.max_photo_bytes:
                why = f"larger than {limits.max_photo_bytes >> 20} MB"
            if why:
                skipped.append((label, why))
                continue
            found.setdefault(person_dir.name, PersonPhotos(person_dir.name)).photos.append((label, path))
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        skipped.append((path.name, "not inside a person's folder"))
    return _bounded(Collection(list(found.values()), skipped), limits)


def read_zip(path: str | Path | IO[bytes], limits: FolderLimits = FolderLimits()) -> Collection:
    """A zip of such a folder (optionally inside one top folder), read within `limits`."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):  # the library's text is not for people: say it our way
        raise InvalidInput(
            "This file is not a zip archive we can read: make one with your system's 'compress' or "
            "'zip' command, one folder per person inside."
        ) from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise InvalidInput(f"The zip holds {len(members)} entries; the limit is {limits.max_members}.")
        parts = [PurePosixPath(m.filename.replace("\\", "/")).parts for m in members]
        prefix = _common_top_folder(parts)
        accepted: list[tuple[zipfile.ZipInfo, str, str]] = []  # (member, person, label)
        skipped: list[tuple[str, str]] = []
        total = 0
        for member, member_parts in zip(members, parts):
            if member.is_dir():
                continue
            rel = member_parts[len(prefix) :]
            label = "/".join(rel) or member.filename
            why = None
            if len(rel) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in rel):
                why = "not inside a person's folder"
            else:
                why = _not_a_photo(rel[1])
            if why is None and member.file_size > limits.max_photo_bytes:
                why = f"larger than {limits.max_photo_bytes >> 20} MB"
            if why is None and member.file_size > limits.max_ratio * max(member.compress_size, 1) + 4096:
                why = "compressed suspiciously well (a zip bomb?)"
            if why:
                skipped.append((label[:200], why))
                continue
            total += member.file_size
            if total > limits.max_total_bytes:
                raise InvalidInput(f"The zip's photos add up to more than {limits.max_total_bytes >> 20} MB.")
            accepted.append((member, rel[0], label))
        people: dict[str, PersonPhotos] = {}
        for _, person, _ in accepted:
            people.setdefault(person, PersonPhotos(person))
        if len(people) > limits.max_people or len(accepted) > limits.max_photos:
            _bounded(Collection(list(people.values()), skipped), limits, counting_only=True)
            raise InvalidInput(f"The zip has {len(accepted)} photos; the limit is {limits.max_photos} at a time.")
        for member, person, label in accepted:  # only now is anything decompressed
            people[person].photos.append((label, _read_member(archive, member, limits.max_photo_bytes)))
        for person_photos in people.values():
            person_photos.photos.sort(key=lambda item: item[0])
        return Collection(sorted(people.values(), key=lambda p: p.name), skipped)


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, never more than `limit` whatever its header claims."""
    with archive.open(member) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"{member.filename} is larger than {limit >> 20} MB once decompressed.")
    return data


def _common_top_folder(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    """("people",) when every member lies under one top folder with person folders below it."""
    files = [p for p in parts if p]
    tops = {p[0] for p in files}
    if len(tops) == 1 and any(len(p) >= 3 for p in files):
        return (next(iter(tops)),)
    return ()


def _not_a_photo(name: str) -> str | None:
    if name.startswith("."):
        return "a hidden file"
    if Path(name).suffix.lower() not in PHOTO_SUFFIXES:
        return "not a photo (by its file name)"
    return None


def _bounded(collection: Collection, limits: FolderLimits, counting_only: bool = False) -> Collection:
    people = len(collection.people)
    if people > limits.max_people:
        raise InvalidInput(f"The collection has {people} people; the limit is {limits.max_people} at a time.")
    if not counting_only and collection.photo_count > limits.max_photos:
        raise InvalidInput(
            f"The collection has {collection.photo_count} photos; the limit is {limits.max_photos} at a time."
        )
    return collection
