"""`python -m engine`: compare two photos, list faces; user errors exit 2 with one line, no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def assert_one_error_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def blank_photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "wall.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(path)
    return path


# -- real processes ---------------------------------------------------------------------------
def test_compare_two_real_photos(lfw):
    done = run_cli("compare", str(lfw("George_W_Bush", 1)), str(lfw("George_W_Bush", 2)), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "distance:" in done.stdout and "similarity:" in done.stdout
    assert "same person" in done.stdout or "different people" in done.stdout
    assert "Traceback" not in done.stderr


def test_bad_file_exits_2_with_one_line(lfw, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo\n")
    done = run_cli("compare", str(bad), str(lfw("George_W_Bush", 1)), "--device", "cpu")
    assert done.returncode == 2
    assert_one_error_line(done.stderr, "notes.jpg", "not an image")
    assert done.stdout == ""


def test_missing_weights_exit_2_with_one_line(lfw, tmp_path):
    done = run_cli("compare", str(lfw("George_W_Bush", 1)), str(lfw("Colin_Powell", 1)),
                   "--weights", str(tmp_path / "missing.pt"), "--device", "cpu")
    assert done.returncode == 2
    assert_one_error_line(done.stderr, "make train")


# -- in process (same code path, faster) ------------------------------------------------------
def test_no_face_names_the_photo(lfw, blank_photo, capsys):
    assert main(["compare", str(lfw("George_W_Bush", 1)), str(blank_photo), "--device", "cpu"]) == 2
    out = capsys.readouterr()
    assert_one_error_line(out.err, "no face", "second", "wall.png")


def test_missing_file(tmp_path, lfw, capsys):
    assert main(["compare", str(lfw("George_W_Bush", 1)), str(tmp_path / "gone.jpg")]) == 2
    assert_one_error_line(capsys.readouterr().err, "gone.jpg", "no such file")


def test_truncated_photo(tmp_path, lfw, capsys):
    data = lfw("George_W_Bush", 1).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["faces", str(cut)]) == 2
    assert_one_error_line(capsys.readouterr().err, "cut.jpg", "truncated")


def test_compare_json(lfw, capsys):
    assert main(["compare", str(lfw("George_W_Bush", 1)), str(lfw("Colin_Powell", 1)),
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"distance", "same", "similarity", "threshold", "model_id", "face_a", "face_b"}
    assert result["same"] == (result["distance"] <= result["threshold"])
    assert 0 <= result["similarity"] <= 1 and len(result["face_a"]["box"]) == 4
    assert result["face_a"]["number"] == result["face_b"]["number"] == 1      # numbered from 1, as in the app


def test_faces_lists_boxes_and_scores(lfw, blank_photo, capsys):
    assert main(["faces", str(lfw("George_W_Bush", 1)), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "1: box (" in out and "score " in out
    assert main(["faces", str(blank_photo), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"size": [200, 200], "faces": []}


def test_compare_uses_the_numbered_face(engine, capsys):
    """--face-a 2 is the second most prominent face, as `faces` numbers it and the app does."""
    two = ROOT / "demo" / "examples" / "two_people.jpg"
    assert main(["compare", str(two), str(two), "--face-a", "2", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    faces = engine.faces(two)
    assert (result["face_a"]["number"], result["face_b"]["number"]) == (2, 1) and result["distance"] > 0.1
    assert result["face_a"]["box"] == [round(float(v), 1) for v in faces[1].box]
    assert result["face_b"]["box"] == [round(float(v), 1) for v in faces[0].box]


def test_face_number_out_of_range(lfw, capsys):
    assert main(["compare", str(lfw("George_W_Bush", 1)), str(lfw("Colin_Powell", 1)),
                 "--face-b", "3", "--device", "cpu"]) == 2
    assert_one_error_line(capsys.readouterr().err, "second", "no face number 3")


@pytest.mark.parametrize("args", [["compare", "a.jpg"], ["compare", "a.jpg", "b.jpg", "--face-a", "0"], ["frobnicate"]])
def test_usage_errors_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_device(lfw, capsys):
    assert main(["faces", str(lfw("George_W_Bush", 1)), "--device", "toaster"]) == 2
    assert_one_error_line(capsys.readouterr().err, "device")
