"""demo.inputs: a request's photo fields can only reach the client's own uploads or inline bytes."""
from __future__ import annotations

import base64
import os

import pytest

from demo.inputs import MAX_PHOTO_BYTES, NOT_AN_UPLOAD, RefusedInput, is_present, photo_input


@pytest.fixture
def uploads(tmp_path, lfw):
    folder = tmp_path / "gradio"
    (folder / "abc").mkdir(parents=True)
    photo = folder / "abc" / "image.jpg"
    photo.write_bytes(lfw("Tony_Blair", 1).read_bytes())
    return folder, photo


def test_an_upload_inside_the_folder_is_accepted_with_its_name(uploads):
    folder, photo = uploads
    got = photo_input({"path": str(photo), "orig_name": "holiday.jpg"}, "photo A", folder=folder)
    assert got.path == photo.resolve() and got.data is None and got.label == "holiday.jpg"
    assert photo_input(str(photo), "photo A", folder=folder).label == "image.jpg"


@pytest.mark.parametrize("make", [
    lambda folder, lfw: {"url": str(lfw("Tony_Blair", 2))},                 # the reported attack
    lambda folder, lfw: {"path": str(lfw("Tony_Blair", 2))},
    lambda folder, lfw: str(lfw("Tony_Blair", 2)),
    lambda folder, lfw: {"path": str(folder / ".." / "secret.jpg")},         # climbing out
    lambda folder, lfw: {"path": str(folder / "abc" / "missing.jpg")},
    lambda folder, lfw: {"path": "/etc/passwd"},
    lambda folder, lfw: {"path": "/no/such/file.jpg"},
    lambda folder, lfw: {"url": "file:///etc/passwd"},
    lambda folder, lfw: {"url": "http://127.0.0.1:7860/gradio_api/file=/etc/passwd"},
    lambda folder, lfw: {"path": str(folder)},
    lambda folder, lfw: {"path": 12},
])
def test_anything_but_an_upload_gets_one_and_the_same_refusal(uploads, lfw, make):
    folder, _ = uploads
    with pytest.raises(RefusedInput) as refused:
        photo_input(make(folder, lfw), "photo A", folder=folder)
    assert str(refused.value) == NOT_AN_UPLOAD


def test_a_symlink_out_of_the_upload_folder_is_refused(uploads, lfw):
    folder, _ = uploads
    link = folder / "abc" / "link.jpg"
    os.symlink(lfw("Tony_Blair", 3), link)
    with pytest.raises(RefusedInput, match="not uploaded"):
        photo_input({"path": str(link)}, "photo A", folder=folder)


def test_inline_photos_are_decoded_only_within_the_limit(uploads, lfw):
    folder, _ = uploads
    data = lfw("Tony_Blair", 1).read_bytes()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    assert photo_input({"url": url}, "pasted", folder=folder).data == data
    assert photo_input(url, "pasted", folder=folder).data == data
    too_big = "data:image/png;base64," + "A" * (MAX_PHOTO_BYTES * 4 // 3 + 8)
    with pytest.raises(RefusedInput, match="too large"):
        photo_input({"url": too_big}, "pasted", folder=folder)
    for bad in ("data:image/jpeg,notbase64", "data:text/html;base64,PGgxPg==", "data:image/png;base64,@@@"):
        with pytest.raises(RefusedInput, match="pasted image could not be read"):
            photo_input({"url": bad}, "pasted", folder=folder)


def test_an_upload_over_the_limit_is_refused(uploads):
    folder, _ = uploads
    big = folder / "abc" / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (MAX_PHOTO_BYTES + 1))
    with pytest.raises(RefusedInput, match="too large"):
        photo_input({"path": str(big)}, "photo A", folder=folder)


def test_empty_fields_are_not_present():
    assert not any(is_present(v) for v in (None, "", {}, {"path": None, "url": None}))
    assert is_present({"path": "/x"}) and is_present("data:image/png;base64,AA")
