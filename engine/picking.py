"""Choosing one face of a photo by its number: the one rule the engine, the app and both CLIs use.

Faces are numbered from 1, most prominent first (as FaceEngine.faces lists them). Two steps:

    face_number(value)             a number as a person or client typed it (2, 2.0, "2") -> int,
                                   or BadFaceNumber when it is not a whole number from 1
    pick_face(faces, number, ...)  that face, or NoFaceFound when the photo has no face, or not
                                   that one (the message says how many it has)

The decision is made here once; each surface keeps its own voice through the message
templates pick_face takes (the engine says "the first photo", the app "photo A", the gallery
CLI the file's name). Both errors are engine FaceErrors, so every surface shows them as they are.
"""

from __future__ import annotations

import argparse
import math
import operator
from collections.abc import Sequence
from typing import Any, TypeVar

from .errors import BadFaceNumber, NoFaceFound

#: The largest face number accepted (the detector reports far fewer faces than this).
MAX_FACE_NUMBER = 10_000

#: The engine's wording; fields: {which} (the photo, as the caller names it), {number} (asked
#: for), {found} (faces the detector found), {kept} (faces that can be picked: fewer than
#: found when a max_faces cap cut the list), {s} ("" for one face found, else "s") and
#: {shown} (" (the 3 most prominent can be picked)" when capped, else "").
NO_FACE = "No face was found in the {which} photo."
NO_SUCH_FACE = "The {which} photo has {found} face(s){shown}; there is no face number {number}."

F = TypeVar("F")


def face_number(value: Any, default: int | None = 1) -> int:
    """A face number as a person or a client may give it (2, 2.0, "2", numpy ints) -> int.

    None or "" is `default` (the most prominent face), unless default is None. BadFaceNumber
    (a ValueError) for anything that is not a whole number from 1 to MAX_FACE_NUMBER.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise BadFaceNumber(value)
        return default
    if isinstance(value, bool) or (isinstance(value, str) and not value.isascii()):
        raise BadFaceNumber(value)  # ASCII only: float() also reads "١" (Arabic-Indic one) as 1
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadFaceNumber(value) from None
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= MAX_FACE_NUMBER:
        raise BadFaceNumber(value)
    return int(number)


def face_argument(text: str) -> int:
    """face_number for argparse (`type=face_argument`): a bad number is a usage error."""
    try:
        return face_number(text, default=None)
    except BadFaceNumber as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pick_face(
    faces: Sequence[F],
    number: int,
    which: str,
    *,
    found: int | None = None,
    no_face: str = NO_FACE,
    no_such_face: str = NO_SUCH_FACE,
) -> F:
    """Face `number` (1 = the most prominent) of one photo's faces.

    faces: the photo's faces, most prominent first (a FaceList, or any list of them).
    found: how many faces the detector found (default: `faces.found` of a FaceList, else
        len(faces)); more than len(faces) when a max_faces cap cut the list.
    which: the photo as the messages name it; no_face / no_such_face: the messages (see the
        fields above). NoFaceFound (with .which, .number, .found) when there is no face, or no
        face `number` among those that can be picked; BadFaceNumber when number is not a
        whole number.
    """
    if isinstance(number, bool):
        raise BadFaceNumber(number)
    try:
        number = operator.index(number)
    except TypeError:
        raise BadFaceNumber(number) from None
    kept = len(faces)
    count = int(getattr(faces, "found", kept) if found is None else found)
    fields = {
        "which": which,
        "number": number,
        "found": count,
        "kept": kept,
        "s": "" if count == 1 else "s",
        "shown": f" (the {kept} most prominent can be picked)" if count > kept else "",
    }
    if not count or not kept:
        raise NoFaceFound(no_face.format(**fields), which=which, number=number, found=count)
    if not 1 <= number <= kept:
        raise NoFaceFound(no_such_face.format(**fields), which=which, number=number, found=count)
    return faces[number - 1]
