"""Read "one sub-folder per person" photo collections: a folder on disk, or a zip of one.

The layout most face data sets and deepface's `find(db_path=...)` use:

    people/
      Ada Lovelace/  1.jpg  2.jpg
      Alan Turing/   portrait.png

The folder name is the person's name. A zip is untrusted input (an upload): its member names
are only ever used as labels (never as paths to write or read), and it is bounded before and
while it is read: number of members, bytes per photo, total bytes decompressed, compression
ratio (a zip bomb), and photos and people per upload. Files that are not photos, hidden files
and anything not exactly two levels deep are skipped and counted, never fatal; so are members
that cannot be read: encrypted, compressed by a method we do not read, or damaged (a bad
checksum, a header that lies about the data), each with its reason in our words. A file
that is not a zip at all, or whose directory is broken, is refused with one clear message.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import InvalidInput

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif", ".tiff", ".gif"}
#: The compression methods read (what zip tools write); any other is skipped with its number.
METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
#: What a damaged member or directory raises inside zipfile and the decompressors.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    LookupError,
    MemoryError,
)


@dataclass(frozen=True)
class FolderLimits:
    """What one collection may hold. The defaults suit one web request; the CLI raises them."""

    max_photos: int = 200
    max_people: int = 100
    max_photo_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024  # decompressed, for a zip
    max_members: int = 5000  # entries in a zip's directory, photos or not
    max_ratio: float = 100.0  # decompressed / compressed, per member
    max_pixels: int | None = 150_000_000  # decoded per upload (index.enrollment): ~5 CPU-s of decoding


@dataclass
class PersonPhotos:
    """One person's photos: (label, source) where source is a Path or the photo's bytes."""

    name: str
    photos: list[tuple[str, Path | bytes]] = field(default_factory=list)


@dataclass
class Collection:
    people: list[PersonPhotos]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, why): not photos
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # (person, member, why): photos

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
    except _ZIP_ERRORS:  # the library's text is not for people: say it our way
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
        unreadable: list[tuple[str, str, str]] = []
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
            if member.flag_bits & 0x1:
                why = "it is encrypted (password-protected); zip it without a password"
            elif member.compress_type not in METHODS:
                why = f"it is compressed by a method we do not read (method {member.compress_type}); use plain zip"
            if why:
                unreadable.append((rel[0], label[:200], why))
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
            try:
                people[person].photos.append((label, _read_member(archive, member, limits.max_photo_bytes)))
            except InvalidInput as exc:  # its header lied about its size
                unreadable.append((person, label[:200], str(exc).rstrip(".")))
            except _ZIP_ERRORS as exc:
                unreadable.append((person, label[:200], f"it is damaged: {_why(exc)}"))
        people = {name: photos for name, photos in people.items() if photos.photos}
        for person_photos in people.values():
            person_photos.photos.sort(key=lambda item: item[0])
        return Collection(sorted(people.values(), key=lambda p: p.name), skipped, unreadable)


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, never more than `limit` whatever its header claims."""
    with archive.open(member) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"larger than {limit >> 20} MB once decompressed (its header says less).")
    return data


def _why(exc: BaseException) -> str:
    """A zip error in our words (zipfile's own messages name internals, or nothing)."""
    text = str(exc)
    if "CRC" in text:
        return "its checksum does not match its contents"
    if "encrypted" in text or "password" in text:
        return "it is encrypted"
    if isinstance(exc, NotImplementedError) or "compression" in text:
        return "it uses a compression method we do not read"
    if isinstance(exc, MemoryError):
        return "it would not fit in memory"
    if isinstance(exc, (EOFError, zlib.error, struct.error)) or "header" in text or "Truncated" in text:
        return "its data is cut short or does not match its header"
    return "it is damaged or not a zip"


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
