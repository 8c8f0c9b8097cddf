"""The app end to end: app.py on loopback with a temporary gallery, driven with gradio_client.

The shipped weights may be an untrained placeholder, so nothing here depends on accuracy:
a photo compared with itself is at distance ~0, the verdict is one of two phrases, and an
enrolled photo identifies itself.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from app_server import DATA, EXAMPLES, AppServer, lfw

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no LFW photos in {DATA}")

VERDICTS = {"same person", "not sure", "different people"}
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("app"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    text = folder / "notes.jpg"                       # a text file renamed .jpg
    text.write_text("these are not the pixels you are looking for\n")
    blank = folder / "blank.jpg"                      # a real image with no face in it
    Image.new("RGB", (200, 200), (128, 140, 150)).save(blank)
    return {"text": text, "blank": blank}


def compare(client, a: Path, b: Path, face_a: int = 1, face_b: int = 1):
    return client.predict(handle_file(str(a)), handle_file(str(b)), face_a, face_b, api_name="/compare")


def people(client) -> dict[str, dict]:
    return {p["name"]: p for p in client.predict(api_name="/people")[2]}


def test_the_api_has_every_action(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/compare", "/enroll", "/identify", "/people", "/remove", "/rename"} <= names


def test_compare_a_photo_with_itself(client):
    photo = lfw("Serena_Williams", 1)
    verdict, details, pair, boxed_a, boxed_b, *_ = compare(client, photo, photo)
    assert details["verdict"] == "same person" and details["same"] is True
    assert details["distance"] == pytest.approx(0.0, abs=1e-4)
    assert 0.0 <= details["similarity"] <= 1.0
    assert "Same person" in verdict
    for image in (pair, boxed_a, boxed_b):
        assert Path(image).is_file() and Image.open(image).size[0] > 0


def test_compare_two_photos(client):
    verdict, details, *_ = compare(client, lfw("Serena_Williams", 1), lfw("Tony_Blair", 1))
    assert details["verdict"] in VERDICTS
    assert isinstance(details["distance"], float) and math.isfinite(details["distance"]) and details["distance"] >= 0
    assert details["similarity_percent"].endswith("%")
    assert details["faces_in_a"] == 1 and details["faces_in_b"] == 1
    assert details["verdict"].capitalize() in verdict


def test_compare_says_which_face_of_a_group_photo_and_lets_you_pick(client):
    group = EXAMPLES / "two_people.jpg"
    verdict, details, *_ = compare(client, group, lfw("Tony_Blair", 1))
    assert details["faces_in_a"] == 2 and details["face_a"] == 1
    assert "Photo A has 2 faces; face 1" in verdict
    _, picked, *_ = compare(client, group, group, 2, 2)
    assert picked["face_a"] == 2 and picked["distance"] == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(AppError, match="Photo A has 2 faces; there is no face 3"):
        compare(client, group, group, 3, 1)


def test_compare_refuses_a_text_file_named_jpg_with_a_clear_message(client, files, server):
    with pytest.raises(AppError, match="not an image we can read"):
        compare(client, files["text"], lfw("Tony_Blair", 1))
    with pytest.raises(AppError, match="No face was found in photo B"):
        compare(client, lfw("Tony_Blair", 1), files["blank"])
    with pytest.raises(AppError, match="Add photo A first"):
        client.predict(None, handle_file(str(lfw("Tony_Blair", 1))), 1, 1, api_name="/compare")
    assert server.proc.poll() is None, "the server died"
    assert "Traceback" not in server.log()


def test_enroll_then_identify(client):
    photo = lfw("Serena_Williams", 2)
    text, shots, details = client.predict("Serena Williams", [handle_file(str(photo))], api_name="/enroll")
    assert "Enrolled 1 photo" in text and len(details["entries"]) == 1 and len(shots) == 1
    entry = details["entries"][0]["entry_id"]
    assert "Serena Williams" in people(client)

    drawn, table, found, top = client.predict(handle_file(str(photo)), api_name="/identify")
    assert len(found["faces"]) == 1
    face = found["faces"][0]
    assert face["name"] == "Serena Williams" and face["entry_id"] == entry
    assert face["distance"] == pytest.approx(0.0, abs=1e-4)
    assert "Serena Williams" in table and Path(drawn).is_file()
    assert any("Serena Williams" in (item.get("caption") or "") for item in top)


def test_identify_labels_every_face_or_unknown(client):
    _, table, found, _ = client.predict(handle_file(str(EXAMPLES / "two_people.jpg")), api_name="/identify")
    assert len(found["faces"]) == 2
    for face in found["faces"]:
        assert face["label"] == "unknown" or face["label"] == face["name"]


def test_enroll_refuses_photos_with_no_face_or_several_faces(client, files):
    with pytest.raises(AppError, match="2 faces"):
        client.predict("Group", [handle_file(str(EXAMPLES / "two_people.jpg"))], api_name="/enroll")
    with pytest.raises(AppError, match="no face"):
        client.predict("Nobody", [handle_file(str(files["blank"]))], api_name="/enroll")
    with pytest.raises(AppError, match="not an image"):
        client.predict("Notes", [handle_file(str(files["text"]))], api_name="/enroll")
    with pytest.raises(AppError, match="name"):
        client.predict("  ", [handle_file(str(lfw("Tony_Blair", 1)))], api_name="/enroll")
    # A good photo next to a refused one: the good one is enrolled, the refusal explained.
    text, _, details = client.predict("Angelina Jolie", [handle_file(str(lfw("Angelina_Jolie", 1))),
                                                         handle_file(str(EXAMPLES / "two_people.jpg"))],
                                      api_name="/enroll")
    assert len(details["entries"]) == 1 and details["refused"][0]["photo"] == "two_people.jpg"
    assert "Refused two" in text
    assert not {"Group", "Nobody", "Notes"} & set(people(client))


def test_enroll_warns_when_the_face_looks_like_someone_enrolled_and_refuses_the_same_photo(client, engine):
    first, second = lfw("Tony_Blair", 2), lfw("Tony_Blair", 10)
    client.predict("Tony Blair", [handle_file(str(first))], api_name="/enroll")
    distance = engine.distance(engine.faces(first)[0].embedding, engine.faces(second)[0].embedding)
    text, _, details = client.predict("Someone Else", [handle_file(str(second))], api_name="/enroll")
    warned = any("looks like Tony Blair" in w for w in details["warnings"])
    naming = getattr(engine, "identification_threshold", None) or engine.threshold
    assert warned == (distance <= naming), (distance, details)
    with pytest.raises(AppError, match="already enrolled as Tony Blair"):
        client.predict("Someone Else", [handle_file(str(first))], api_name="/enroll")


def test_remove_an_entry_then_a_person_and_rename(client):
    a, b = handle_file(str(lfw("Hugo_Chavez", 1))), handle_file(str(lfw("Hugo_Chavez", 2)))
    _, _, details = client.predict("Hugo", [a, b], api_name="/enroll")
    first, second = (e["entry_id"] for e in details["entries"])
    assert people(client)["Hugo"]["count"] == 2

    assert "Deleted entry" in client.predict("", str(first), api_name="/remove")
    assert people(client)["Hugo"]["entries"] == [second]
    client.predict("Hugo", "Hugo Chavez", api_name="/rename")
    assert "Hugo" not in people(client) and people(client)["Hugo Chavez"]["count"] == 1
    assert "Deleted Hugo Chavez" in client.predict("Hugo Chavez", "", api_name="/remove")
    assert "Hugo Chavez" not in people(client)

    with pytest.raises(AppError, match="nobody called"):
        client.predict("Hugo Chavez", "", api_name="/remove")
    with pytest.raises(AppError, match="no entry"):
        client.predict("", str(first), api_name="/remove")


def test_names_are_escaped_in_the_page(client):
    text, _, _ = client.predict(SCRIPT, [handle_file(str(lfw("Colin_Powell", 1)))], api_name="/enroll")
    table = client.predict(api_name="/people")[0]
    for markdown in (text, table):
        assert "<script>" not in markdown and "&lt;script&gt;" in markdown
    assert SCRIPT in people(client)           # stored as typed, only escaped when shown
    with pytest.raises(AppError) as error:
        client.predict(SCRIPT + "x", "", api_name="/remove")
    assert "<script>" not in str(error.value)
    client.predict(SCRIPT, "", api_name="/remove")


def test_uploads_over_10_mb_are_refused(client, tmp_path, server):
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (11 * 2**20))
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        compare(client, big, lfw("Tony_Blair", 1))
    assert server.proc.poll() is None


def test_auth_and_no_thumbnails(tmp_path):
    app = AppServer(tmp_path, "--auth", "ann:s3cret", "--no-thumbnails")
    try:
        with pytest.raises(Exception):
            Client(app.url, verbose=False).predict(api_name="/people")
        client = Client(app.url, auth=("ann", "s3cret"), verbose=False, download_files=str(tmp_path / "dl"))
        _, shots, details = client.predict("Tony Blair", [handle_file(str(lfw("Tony_Blair", 1)))],
                                           api_name="/enroll")
        assert len(details["entries"]) == 1
        table, covers, everyone, _ = client.predict(api_name="/people")
        assert everyone == [{"name": "Tony Blair", "count": 1, "entries": [details["entries"][0]["entry_id"]]}]
        assert covers == []                       # nothing to show: no thumbnail was stored
    finally:
        app.stop()
