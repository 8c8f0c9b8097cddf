"""demo.service: the app's actions on a real engine and a real gallery, without a server."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PIL import Image

from demo.service import TwinService, UserError, _entry_id, photo_label, photo_path
from engine import InvalidImage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"


def test_photo_path_and_label_accept_what_gradio_hands_over():
    assert photo_path(None) is None and photo_path("") is None
    assert photo_path("/tmp/a.jpg") == "/tmp/a.jpg"
    assert photo_path({"path": "/tmp/gradio/x/image.jpg", "orig_name": "holiday.jpg"}) == "/tmp/gradio/x/image.jpg"
    assert photo_label({"path": "/tmp/gradio/x/image.jpg", "orig_name": "holiday.jpg"}, "photo A") == "holiday.jpg"
    assert photo_label({"path": None}, "photo A") == "photo A"
    assert photo_label("data:image/png;base64,AAAA", "photo A") == "photo A"


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (" ", None), ("12", 12), (12.0, 12), (7, 7)])
def test_entry_ids_from_the_page_or_the_api(value, expected):
    assert _entry_id(value) == expected


@pytest.fixture(scope="module")
def engine():
    from engine import FaceEngine
    return FaceEngine(device="cpu")


@pytest.fixture
def service(engine, tmp_path):
    from index import Gallery
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size)
    yield TwinService(engine, gallery)
    gallery.close()


def test_compare_with_a_pasted_image(service, tmp_path):
    data = (EXAMPLES / "Tony_Blair_0001.jpg").read_bytes()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    result = service.compare(url, EXAMPLES / "Tony_Blair_0001.jpg")
    assert result.comparison.distance == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(InvalidImage, match="pasted image"):
        service.compare("data:image/jpeg,notbase64", EXAMPLES / "Tony_Blair_0001.jpg")


def test_rename_onto_an_enrolled_name_merges_and_says_so(service):
    service.enroll("Ann", [str(EXAMPLES / "Serena_Williams_0001.jpg")])
    service.enroll("Annie", [str(EXAMPLES / "Serena_Williams_0002.jpg")])
    assert "already enrolled" in service.rename("Annie", "Ann")
    assert [(p.name, len(p.entries)) for p in service.people()] == [("Ann", 2)]
    with pytest.raises(UserError, match="nobody called"):
        service.rename("Annie", "Bob")


def test_bad_names_are_refused_by_the_gallery_with_its_message(service):
    with pytest.raises(UserError, match="100"):
        service.enroll("x" * 101, [str(EXAMPLES / "Serena_Williams_0001.jpg")])
    assert service.people() == []


def test_an_entry_belongs_to_its_person(service):
    entry = service.enroll("Ann", [str(EXAMPLES / "Serena_Williams_0001.jpg")]).entries[0][0]
    with pytest.raises(UserError, match="belongs to Ann"):
        service.remove("Bob", entry)
    assert "Deleted entry" in service.remove("Ann", entry)


def test_without_thumbnails_nothing_but_name_and_embedding_is_kept(engine, tmp_path):
    from index import Gallery
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size, thumbnails=False)
    service = TwinService(engine, gallery, thumbnails=False)
    entry = service.enroll("Ann", [str(EXAMPLES / "Serena_Williams_0001.jpg")]).entries[0][0]
    assert gallery.thumbnail(entry) is None and service.thumbnail(entry) is None
    gallery.close()
