"""`python -m index`: enroll, search, list, remove, rename, reembed, export, import on real photos.

Most commands run in-process through index.__main__.main with the session's engine (loading
one per process costs seconds); two run as real processes, as people and scripts use them.
Refusals exit 2 with one "error:" line and no traceback, as `python -m engine` does.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import Gallery
from index.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path, engine, capsys):
    """cli(*args) -> (exit status, stdout, stderr) of `python -m index --gallery DIR *args`."""
    directory = tmp_path / "gallery"

    def run(*args: str, gallery: Path | None = None) -> tuple[int, str, str]:
        out = io.StringIO()
        code = main(["--gallery", str(gallery or directory), *map(str, args)], engine=engine, out=out)
        return code, out.getvalue(), capsys.readouterr().err

    run.directory = directory
    return run


def one_error_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def blank_photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "wall.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(path)
    return path


def test_enroll_list_search_remove(cli, lfw, att):
    code, out, err = cli("enroll", "George W. Bush", lfw("George_W_Bush", 1), lfw("George_W_Bush", 2))
    assert code == 0, err
    assert out.count("Enrolled 'George W. Bush'") == 2
    assert cli("enroll", "s5", att("s5", 1))[0] == 0

    code, out, _ = cli("list")
    assert code == 0 and "George W. Bush  (2 entries" in out and "s5  (1 entry" in out
    code, out, _ = cli("--json", "list")
    people = {p["name"]: p["entries"] for p in json.loads(out)}
    assert people == {"George W. Bush": 2, "s5": 1}

    code, out, _ = cli("--json", "search", lfw("George_W_Bush", 2), "-k", "3")
    result = json.loads(out)
    assert code == 0 and result["identified"] == "George W. Bush"
    assert result["matches"][0]["distance"] < 1e-3 and len(result["matches"]) == 3
    code, out, _ = cli("search", att("s5", 1))
    assert code == 0 and "Identified: s5" in out and "1. s5" in out

    code, out, _ = cli("--json", "list", "--entries")
    entry = [e for e in json.loads(out) if e["name"] == "s5"][0]
    assert entry["thumbnail"] is True
    code, out, _ = cli("remove", "--entry", entry["entry_id"])
    assert code == 0 and "Removed entry" in out
    code, out, _ = cli("remove", "George W. Bush")
    assert code == 0 and "2 entries" in out
    code, out, _ = cli("list")
    assert "The gallery is empty." in out
    code, out, _ = cli("search", lfw("George_W_Bush", 1))
    assert code == 0 and "the gallery is empty" in out and "Identified: no one" in out


def test_enroll_takes_the_usable_photos_and_names_the_others(cli, lfw, blank_photo, tmp_path):
    """As the app's form does (issue 21 item 1): the good photo is enrolled, the others are
    refused by name; nothing usable at all exits 2 with one line."""
    code, out, err = cli("enroll", "Colin", lfw("Colin_Powell", 1), blank_photo)
    assert code == 0, err
    assert "Enrolled 'Colin'" in out and "Refused" in out and "wall.png: no face" in out
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    code, _, err = cli("enroll", "Ann", notes, blank_photo)
    assert code == 2
    one_error_line(err, "notes.jpg", "wall.png")
    code, _, err = cli("enroll", "", lfw("Colin_Powell", 1))
    assert code == 2
    one_error_line(err, "name")
    assert [p["name"] for p in json.loads(cli("--json", "list")[1])] == ["Colin"]


@pytest.fixture(scope="module")
def hard_photos(tmp_path_factory, lfw) -> dict[str, Path]:
    """A group photo (two real faces side by side) and a poor one (a real face, blurred)."""
    from PIL import ImageFilter

    folder = tmp_path_factory.mktemp("hard")
    left, right = Image.open(lfw("Serena_Williams", 1)), Image.open(lfw("Hugo_Chavez", 1))
    group = Image.new("RGB", (500, 250), "white")
    group.paste(left, (0, 0))
    group.paste(right, (250, 0))
    group.save(folder / "group.jpg", quality=95)
    bush = Image.open(lfw("George_W_Bush", 3))
    bush.filter(ImageFilter.GaussianBlur(radius=6)).save(folder / "poor.jpg", quality=95)
    return {"group": folder / "group.jpg", "poor": folder / "poor.jpg", "enrolled": lfw("Tony_Blair", 1)}


def test_the_cli_enrolls_by_the_forms_policy(cli, engine, hard_photos, tmp_path):
    """Issue 21 item 1: `python -m index enroll` enrolled group photos, poor photos and the same
    face under two names; the form refuses all three. Both now answer the same."""
    from demo.inputs import PhotoInput
    from demo.service import TwinService
    from index import open_gallery

    form_gallery = open_gallery(tmp_path / "form", engine)
    form = TwinService(engine, form_gallery)
    form.enroll("Tony Blair", [PhotoInput("enrolled", path=hard_photos["enrolled"])])
    assert cli("enroll", "Tony Blair", hard_photos["enrolled"])[0] == 0
    for kind in ("group", "poor", "enrolled"):
        by_form = form.enroll("Someone Else", [PhotoInput(str(hard_photos[kind]), path=hard_photos[kind])])
        assert by_form.failed and len(by_form.refused) == 1
        code, out, err = cli("--json", "enroll", "Someone Else", hard_photos[kind])
        assert code == 2 and out == ""
        one_error_line(err)
        assert err.strip() == f"error: {hard_photos[kind]}: {by_form.refused[0][1]}"
    for words, kind in (("2 faces", "group"), ("blurred", "poor"), ("already enrolled as Tony Blair", "enrolled")):
        assert words in form.enroll("X", [PhotoInput(str(hard_photos[kind]), path=hard_photos[kind])]).refused[0][1]
    assert [p["name"] for p in json.loads(cli("--json", "list")[1])] == ["Tony Blair"]
    assert [p.name for p in form_gallery.people()] == ["Tony Blair"]
    form_gallery.close()
    # a face of a group photo chosen knowingly is still enrolled (and still by the policy)
    code, out, err = cli("--json", "enroll", "Hugo Chavez", hard_photos["group"], "--face", "2")
    assert code == 0, err
    assert json.loads(out)["entries"][0]["photo"] == str(hard_photos["group"])


def test_import_twice_adds_nothing_and_reports_counts(cli, lfw, tmp_path):
    cli("enroll", "Bush", lfw("George_W_Bush", 1))
    cli("enroll", "Powell", lfw("Colin_Powell", 1))
    exported = tmp_path / "team.twin"
    assert cli("export", exported)[0] == 0
    other = tmp_path / "other"
    assert json.loads(cli("--json", "import", exported, gallery=other)[1])["imported"] == 2
    code, out, _ = cli("import", exported, gallery=other)
    assert code == 0 and "Imported 0 entries" in out and "2 already enrolled (skipped); 0 refused" in out
    assert len(json.loads(cli("--json", "list", "--entries", gallery=other)[1])) == 2


def test_refusals_exit_2_with_one_line(cli, lfw):
    code, out, err = cli("list")
    assert code == 0 and "No gallery" in out
    assert not cli.directory.exists()  # reading does not create a gallery
    code, _, err = cli("remove", "Nobody")
    assert code == 2
    cli("enroll", "Tony", lfw("Tony_Blair", 1))
    code, _, err = cli("remove", "tony")
    assert code == 2
    one_error_line(err, "no one named 'tony'", "did you mean 'Tony'")
    code, _, err = cli("remove")
    assert code == 2
    one_error_line(err, "NAME or --entry")
    code, _, err = cli("search", lfw("Tony_Blair", 1), "--face", "3")
    assert code == 2
    one_error_line(err, "no face 3")


def test_rename(cli, lfw):
    cli("enroll", "Tony", lfw("Tony_Blair", 1))
    code, out, _ = cli("rename", "Tony", "Tony Blair")
    assert code == 0
    assert json.loads(cli("--json", "list")[1])[0]["name"] == "Tony Blair"


def test_export_import(cli, lfw, tmp_path):
    cli("enroll", "Bush", lfw("George_W_Bush", 1))
    cli("enroll", "Powell", lfw("Colin_Powell", 1))
    exported = tmp_path / "team.twin"
    code, out, _ = cli("export", exported)
    assert code == 0 and exported.is_file() and "Exported 2 entries" in out
    other = tmp_path / "other"
    code, out, err = cli("import", exported, gallery=other)
    assert code == 0, err
    assert "Imported 2 entries" in out
    code, out, _ = cli("--json", "search", lfw("Colin_Powell", 1), gallery=other)
    assert json.loads(out)["identified"] == "Powell"
    junk = tmp_path / "junk.twin"
    junk.write_bytes(b"junk" * 100)
    code, _, err = cli("import", junk, gallery=other)
    assert code == 2
    one_error_line(err, "not a Twin gallery")


def test_reembed_after_a_model_upgrade(cli, engine, lfw):
    # a gallery written by an "older model": other vectors, same thumbnails (the aligned crops)
    faces = engine.faces_batch([str(lfw("George_W_Bush", 1)), str(lfw("Colin_Powell", 1))])
    with Gallery(cli.directory, model_id="twin-older") as old:
        for name, found in zip(("Bush", "Powell"), faces):
            old.enroll(name, found[0].embedding[::-1].copy(), thumbnail=found[0].crop)
    code, _, err = cli("search", lfw("Colin_Powell", 1))
    assert code == 2
    one_error_line(err, "twin-older", "python -m index reembed")
    code, out, err = cli("reembed")
    assert code == 0, err
    assert "Re-embedded 2 entries" in out
    code, out, _ = cli("--json", "search", lfw("Colin_Powell", 1))
    match = json.loads(out)["matches"][0]
    assert match["name"] == "Powell" and match["distance"] < 1e-3


# -- as real processes ----------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "index", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_real_process_enroll_search_and_list(tmp_path, lfw):
    gallery = str(tmp_path / "gallery")
    done = run("--gallery", gallery, "--device", "cpu", "enroll", "Aaron", str(lfw("Aaron_Eckhart", 1)))
    assert done.returncode == 0, done.stderr
    assert "Enrolled 'Aaron'" in done.stdout
    done = run("--gallery", gallery, "--json", "list")
    assert done.returncode == 0 and json.loads(done.stdout)[0]["name"] == "Aaron"
    done = run("--gallery", gallery, "remove", "Nobody")
    assert done.returncode == 2
    one_error_line(done.stderr, "no one named")


def test_help_lists_every_command():
    done = run("--help")
    assert done.returncode == 0
    for command in ("enroll", "search", "list", "remove", "rename", "reembed", "export", "import"):
        assert command in done.stdout
