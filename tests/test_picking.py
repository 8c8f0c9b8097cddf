"""engine.picking: the one rule for choosing a face by its number (engine, app and both CLIs)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from demo import service
from engine import FaceError, FaceList, NoFaceFound
from engine.errors import BadFaceNumber
from engine.picking import MAX_FACE_NUMBER, face_argument, face_number, pick_face
from index import __main__ as index_cli


def faces(kept: int, found: int | None = None) -> FaceList:
    return FaceList([f"face {i}" for i in range(1, kept + 1)], found=found)


@pytest.mark.parametrize("value, expected", [(None, 1), ("", 1), (2, 2), (2.0, 2), ("3", 3), (" 4 ", 4),
                                             (np.int64(5), 5), (MAX_FACE_NUMBER, MAX_FACE_NUMBER)])
def test_face_numbers_as_people_and_clients_give_them(value, expected):
    assert face_number(value) == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, "1.9", "two", True, float("nan"), float("inf"), "1e400",
                                   [1], MAX_FACE_NUMBER + 1, 10**400])
def test_bad_face_numbers_are_one_error(value):
    with pytest.raises(BadFaceNumber, match="whole number from 1") as exc:
        face_number(value)
    assert isinstance(exc.value, FaceError) and isinstance(exc.value, ValueError)


def test_on_the_command_line_a_face_number_must_be_given_and_good():
    assert face_argument("2") == 2
    for text in ("", "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number from 1"):
            face_argument(text)


def test_pick_face_numbers_from_one():
    assert pick_face(faces(3), 1, "first") == "face 1"
    assert pick_face(faces(3), np.int64(3), "first") == "face 3"
    for bad in (True, "2", 1.0):
        with pytest.raises(BadFaceNumber):
            pick_face(faces(3), bad, "first")


def test_no_face_and_no_such_face_are_one_error_with_the_engines_words():
    with pytest.raises(NoFaceFound) as exc:
        pick_face(faces(0), 1, "second")
    assert str(exc.value) == "No face was found in the second photo."
    assert (exc.value.which, exc.value.number, exc.value.found) == ("second", 1, 0)
    for number in (0, 4):
        with pytest.raises(NoFaceFound) as exc:
            pick_face(faces(3), number, "first")
        assert str(exc.value) == f"The first photo has 3 face(s); there is no face number {number}."


def test_a_capped_list_counts_every_face_but_offers_only_the_kept_ones():
    with pytest.raises(NoFaceFound) as exc:
        pick_face(faces(2, found=5), 3, "first")
    assert str(exc.value) == "The first photo has 5 face(s) (the 2 most prominent can be picked); there is no face number 3."
    assert exc.value.found == 5
    assert pick_face(["a", "b"], 2, "A", found=9) == "b"


def test_each_surface_keeps_its_own_words():
    def message(number, listed, **kw):
        with pytest.raises(NoFaceFound) as exc:
            pick_face(listed, number, **kw)
        return str(exc.value)

    app = {"no_face": service.NO_FACE, "no_such_face": service.NO_SUCH_FACE}
    assert message(1, faces(0), which="B", **app) == (
        "No face was found in photo B. Try a sharper, front-facing photo where the face is at least 20 pixels wide.")
    assert message(3, faces(2), which="A", **app) == "Photo A has 2 faces; there is no face 3."
    assert message(2, faces(1), which="A", **app) == "Photo A has 1 face; there is no face 2."
    assert message(3, faces(2, found=4), which="A", **app) == (
        "Photo A has 4 faces (the 2 most prominent can be picked); there is no face 3.")
    cli = {"no_face": index_cli.NO_FACE, "no_such_face": index_cli.NO_SUCH_FACE}
    assert message(1, faces(0), which="wall.png", **cli) == "wall.png: no face found."
    assert message(3, faces(1), which="a.jpg", **cli) == "a.jpg: has 1 face(s); there is no face 3."


def test_the_app_says_which_photo_has_a_bad_face_number():
    wording = r"^The face number for photo B must be a whole number from 1 \(not 0\)"
    with pytest.raises(service.UserError, match=wording):
        service.face_number(0, "B")
