"""demo.service: the app's actions on a real engine and a real gallery, without a server."""
from __future__ import annotations

from pathlib import Path

import pytest

from demo.inputs import PhotoInput
from demo.service import Limits, TwinService, UserError, entry_number, face_number
from engine import InvalidImage, NoFaceFound, TooMuchWork

EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"


def example(name: str) -> PhotoInput:
    return PhotoInput(name, path=EXAMPLES / name)


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (" ", None), ("12", 12), (12.0, 12), (7, 7)])
def test_entry_ids_from_the_page_or_the_api(value, expected):
    assert entry_number(value) == expected


@pytest.mark.parametrize("value", ["-3", "1e400", float("inf"), float("nan"), 1.5, "x", [1], True])
def test_bad_entry_ids_get_a_clear_message(value):
    with pytest.raises(UserError, match="entry must be given by its number"):
        entry_number(value)


@pytest.mark.parametrize("value, expected", [(None, 0), ("", 0), (2, 2), (2.0, 2), ("3", 3)])  # 0: the most prominent
def test_face_numbers(value, expected):
    assert face_number(value, "A") == expected


@pytest.mark.parametrize("value", [1.9, float("inf"), float("nan"), 0, -1, "two", True, 1e400])
def test_bad_face_numbers_get_a_clear_message(value):
    with pytest.raises(UserError, match="must be a whole number from 1"):
        face_number(value, "A")


@pytest.fixture
def service(engine, tmp_path):
    from index import Gallery
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size)
    yield TwinService(engine, gallery)
    gallery.close()


def test_compare_with_a_pasted_image(service, tmp_path):
    data = (EXAMPLES / "Tony_Blair_0001.jpg").read_bytes()
    result = service.compare(PhotoInput("pasted", data=data), example("Tony_Blair_0001.jpg"))
    assert result.comparison.distance == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(InvalidImage, match="pasted: .*not an image"):
        service.compare(PhotoInput("pasted", data=b"not a photo"), example("Tony_Blair_0001.jpg"))


def test_a_request_past_its_deadline_stops_with_a_clear_message(engine, tmp_path):
    from index import Gallery
    with Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                 embedding_size=engine.embedding_size) as gallery:
        hurried = TwinService(engine, gallery, limits=Limits(request_seconds=-1.0))
        with pytest.raises(TooMuchWork, match="too much work"):
            hurried.identify(example("two_people.jpg"))


def test_the_same_photo_under_another_name_is_refused_a_look_alike_is_warned(service):
    service.enroll("Serena", [example("Serena_Williams_0001.jpg")])
    again = service.enroll("Venus", [example("Serena_Williams_0001.jpg")])
    assert again.failed and "already enrolled as Serena" in again.failure_message()
    other = service.enroll("Serena W", [example("Serena_Williams_0002.jpg")])
    assert len(other.entries) == 1
    assert other.warnings and all("looks like Serena" in w for w in other.warnings)
    assert [p.name for p in service.people()] == ["Serena", "Serena W"]


def test_rename_onto_an_enrolled_name_merges_and_says_so(service):
    service.enroll("Ann", [example("Serena_Williams_0001.jpg")])
    service.enroll("Annie", [example("Serena_Williams_0002.jpg")])
    assert "already enrolled" in service.rename("Annie", "Ann")
    assert [(p.name, len(p.entries)) for p in service.people()] == [("Ann", 2)]
    with pytest.raises(UserError, match="nobody called"):
        service.rename("Annie", "Bob")


def test_bad_names_are_refused_by_the_gallery_with_its_message(service):
    with pytest.raises(UserError, match="100"):
        service.enroll("x" * 101, [example("Serena_Williams_0001.jpg")])
    assert service.people() == []


def test_an_entry_belongs_to_its_person(service):
    entry = service.enroll("Ann", [example("Serena_Williams_0001.jpg")]).entries[0][0]
    with pytest.raises(UserError, match="belongs to Ann"):
        service.remove("Bob", entry)
    message, removed = service.remove("Ann", entry)
    assert "Deleted entry" in message and removed == [entry]


def test_without_thumbnails_nothing_but_name_and_embedding_is_kept(engine, tmp_path):
    from index import Gallery
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size, thumbnails=False)
    service = TwinService(engine, gallery, thumbnails=False)
    entry = service.enroll("Ann", [example("Serena_Williams_0001.jpg")]).entries[0][0]
    assert gallery.thumbnail(entry) is None and service.thumbnail(entry) is None
    gallery.close()


def test_identify_counts_people_without_listing_them(service, monkeypatch):
    service.enroll("Serena", [example("Serena_Williams_0001.jpg"), example("Serena_Williams_0002.jpg")])
    service.enroll("Tony", [example("Tony_Blair_0001.jpg")])

    def listed():
        raise AssertionError("identify listed every person")

    monkeypatch.setattr(service.gallery, "people", listed)
    result = service.identify(example("Serena_Williams_0001.jpg"))
    assert result.threshold == service.engine.naming.threshold_for(2) == service.naming_threshold()
    (face,) = result.faces
    assert face.match is not None and face.match.name == "Serena" and face.top[0].name == "Serena"


def test_people_lists_everyone_with_their_entries_in_the_gallery_order(service):
    ann = service.enroll("ann", [example("Serena_Williams_0001.jpg")]).entries[0][0]
    bob = service.enroll("Bob", [example("Tony_Blair_0001.jpg")]).entries[0][0]
    assert [(p.name, p.entries) for p in service.people()] == [("ann", [ann]), ("Bob", [bob])]
    assert [p.name for p in service.gallery.people()] == ["ann", "Bob"]


def test_the_app_words_a_missing_face_its_own_way(service):
    with pytest.raises(NoFaceFound, match="Photo A has 2 faces; there is no face 3") as exc:
        service.compare(example("two_people.jpg"), example("Tony_Blair_0001.jpg"), 3, 1)
    assert (exc.value.which, exc.value.number, exc.value.found) == ("A", 3, 2)
    used = service.compare(example("two_people.jpg"), example("Tony_Blair_0001.jpg"), "2", 1.0)
    assert (used.used_a, used.used_b) == (2, 1)


def test_the_app_numbers_faces_left_to_right_and_compares_the_most_prominent_by_default(service, engine):
    from PIL import Image

    group = example("two_people.jpg")
    prominent = engine.faces(Image.open(group.path))[0]  # the engine's first: the most prominent
    result = service.compare(group, example("Tony_Blair_0001.jpg"))
    lefts = [f.box[0] for f in result.photo_a.faces]
    assert lefts == sorted(lefts)                       # face 1 is the leftmost
    assert result.used_a == result.photo_a.prominent    # no number given: the most prominent face
    assert list(result.photo_a.faces[result.used_a - 1].box) == list(prominent.box)
    who = service.identify(group)
    assert [f.number for f in who.faces] == [1, 2]
    assert who.faces[0].face.box[0] < who.faces[1].face.box[0]


LIBRARY_WORDS = ("File is not a zip file", "cannot identify", "truncated", "Errno", "Error:", "broken data stream")


def test_messages_are_ours_never_a_librarys_exception_text(service, tmp_path):
    notes = tmp_path / "people.zip"
    notes.write_text("these are my notes, not a zip")
    with pytest.raises(UserError) as refused:
        service.enroll_zip(PhotoInput("people.zip", path=notes))
    assert "not a zip archive we can read" in str(refused.value)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((EXAMPLES / "Tony_Blair_0001.jpg").read_bytes()[:700])    # a JPEG cut short
    with pytest.raises(Exception) as damaged:
        service.compare(PhotoInput("cut.jpg", path=cut), example("Tony_Blair_0001.jpg"))
    assert "damaged or truncated" in str(damaged.value) or "not an image" in str(damaged.value)
    for message in (str(refused.value), str(damaged.value)):
        assert "(" not in message.split(":", 1)[-1] or "JPEG" in message       # no library text in brackets
        assert not any(words in message.split("damaged or truncated")[-1] for words in LIBRARY_WORDS), message
