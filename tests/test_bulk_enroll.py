"""Bulk enrollment: folders and zips of people, read within limits, enrolled by the one policy."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from index import Gallery, InvalidInput
from index.enrollment import enroll_collection
from index.people_folder import FolderLimits, read_folder, read_zip

EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"


@pytest.fixture
def people_dir(tmp_path, lfw):
    """Two people with real photos, plus a group photo, a blank photo and junk that must be skipped."""
    root = tmp_path / "people"
    for name, numbers in (("Tony Blair", (1, 2)), ("Serena Williams", (1, 3))):
        (root / name).mkdir(parents=True)
        for n in numbers:
            (root / name / f"{n}.jpg").write_bytes(lfw(name.replace(" ", "_"), n).read_bytes())
    (root / "Tony Blair" / "group.jpg").write_bytes((EXAMPLES / "two_people.jpg").read_bytes())
    Image.new("RGB", (200, 200), (120, 130, 140)).save(root / "Serena Williams" / "blank.jpg")
    (root / "Serena Williams" / "notes.txt").write_text("not a photo")
    (root / "stray.jpg").write_bytes(b"x")
    return root


def zipped(root: Path, top: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(root))
                archive.write(path, f"{top}/{name}" if top else name)
    return out.getvalue()


def test_a_folder_reads_one_person_per_sub_folder(people_dir):
    collection = read_folder(people_dir)
    assert [p.name for p in collection.people] == ["Serena Williams", "Tony Blair"]
    assert [label for label, _ in collection.people[1].photos] == ["Tony Blair/1.jpg", "Tony Blair/2.jpg",
                                                                   "Tony Blair/group.jpg"]
    assert ("Serena Williams/notes.txt", "not a photo (by its file name)") in collection.skipped
    assert ("stray.jpg", "not inside a person's folder") in collection.skipped


@pytest.mark.parametrize("top", [None, "people"])
def test_a_zip_reads_the_same_as_the_folder(people_dir, tmp_path, top):
    path = tmp_path / "people.zip"
    path.write_bytes(zipped(people_dir, top))
    collection = read_zip(path)
    assert [(p.name, [label for label, _ in p.photos]) for p in collection.people] == \
        [(p.name, [label for label, _ in p.photos]) for p in read_folder(people_dir).people]
    assert all(isinstance(data, bytes) and data for p in collection.people for _, data in p.photos)


def test_a_zip_cannot_climb_out_or_hide(tmp_path, lfw):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("../../etc/Ann/1.jpg", lfw("Tony_Blair", 1).read_bytes())
        archive.writestr("Ann/../../x.jpg", b"x")
        archive.writestr(".hidden/1.jpg", b"x")
        archive.writestr("Ann/.1.jpg", b"x")
        archive.writestr("/abs/1.jpg", b"x")
    path = tmp_path / "evil.zip"
    path.write_bytes(out.getvalue())
    collection = read_zip(path)
    assert collection.people == [] and len(collection.skipped) == 5


def test_a_zip_bomb_and_oversize_zips_are_refused_before_decompressing(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Ann/bomb.jpg", b"\0" * (50 * 2**20))      # 50 MB of zeros in ~50 KB
    path = tmp_path / "bomb.zip"
    path.write_bytes(out.getvalue())
    assert path.stat().st_size < 200_000
    collection = read_zip(path)
    assert collection.people == [] and "larger than" in collection.skipped[0][1]
    small = read_zip(path, FolderLimits(max_photo_bytes=100 * 2**20))
    assert small.people == [] and "zip bomb" in small.skipped[0][1]

    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(30):
            archive.writestr(f"Person {i}/1.jpg", b"\xff\xd8 not really")
    path.write_bytes(many.getvalue())
    with pytest.raises(InvalidInput, match="30 people; the limit is 10"):
        read_zip(path, FolderLimits(max_people=10))
    with pytest.raises(InvalidInput, match="30 photos; the limit is 20"):
        read_zip(path, FolderLimits(max_photos=20))
    path.write_bytes(b"PK not a zip")
    with pytest.raises(InvalidInput, match="not a zip"):
        read_zip(path)


def test_bulk_enrollment_enrolls_good_refuses_bad_and_skips_what_is_there(engine, people_dir, tmp_path):
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size)
    seen = []
    outcomes = enroll_collection(engine, gallery, read_folder(people_dir).people,
                                 progress=lambda done, total, label: seen.append((done, total)))
    assert seen[-1] == (6, 6)
    by_name = {o.name: o for o in outcomes}
    assert len(by_name["Tony Blair"].entries) == 2 and len(by_name["Serena Williams"].entries) == 2
    assert "2 faces" in dict(by_name["Tony Blair"].refused)["Tony Blair/group.jpg"]
    assert "no face" in dict(by_name["Serena Williams"].refused)["Serena Williams/blank.jpg"]
    assert len(gallery) == 4

    again = enroll_collection(engine, gallery, read_folder(people_dir).people)       # resumable
    assert sum(len(o.entries) for o in again) == 0 and sum(len(o.duplicates) for o in again) == 4
    assert len(gallery) == 4
    gallery.close()


def test_bulk_enrollment_stops_at_its_deadline_and_keeps_what_it_did(engine, people_dir, tmp_path):
    gallery = Gallery(tmp_path / "g", model_id=engine.model_id, threshold=engine.threshold,
                      embedding_size=engine.embedding_size)
    outcomes = enroll_collection(engine, gallery, read_folder(people_dir).people, deadline=0.0)
    assert all("out of time" in why for o in outcomes for _, why in o.refused)
    assert len(gallery) == 0
    gallery.close()


def test_the_cli_enrolls_a_folder_with_progress_and_a_second_run_skips_everything(people_dir, tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    gallery = tmp_path / "cli-gallery"

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "index", "--gallery", str(gallery), *extra, "enroll-folder",
                               str(people_dir)], cwd=root, capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stderr
    assert "4 photo(s) enrolled for 2 people; 0 already enrolled (skipped); 2 refused; 2 file(s) skipped" in first.stdout
    assert "group.jpg: it shows 2 faces" in first.stdout and "6/6" in first.stderr     # the tqdm bar
    second = run("--json")
    summary = json.loads(second.stdout)
    assert summary["enrolled"] == 0 and summary["already_enrolled"] == 4 and len(summary["refused"]) == 2
