"""index.Gallery on real embeddings of real photos: enroll, search, identify, remove, persist,
recover, refuse bad input, refuse other models, re-embed, export/import, threads, kill -9.

The behaviour every store shares runs on each backend through one parametrised fixture
(`make`: a folder, Milvus Lite in a *.db path, then a real Milvus server: the session's
`milvus_server`, one collection per gallery, dropped after the test); what only the folder
store has (its FAISS file, SQLite on disk, kill -9 of a writer) uses `make_folder`.

Consistency: on the server, a Gallery object is a separate client, like a replica in another
process, so `test_two_gallery_objects_on_one_directory_see_each_other` (and every test that
reopens) fails there unless reads are Strong; tests/test_milvus_server.py shows that a
Bounded read right after a write indeed misses it. Milvus Lite has one process and applies
every change before it answers, so there the same tests pass whatever the consistency.

Nothing here depends on how good the model is: an enrolled embedding searched back must come
back at distance ~0, and thresholds are set relative to measured distances.
"""
from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import Gallery, GalleryError, InvalidInput, Match, ModelMismatch, NotFound
from index.gallery import DB_NAME, INDEX_NAME
from index.vectors import VectorIndex

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [("att", "s5", 1), ("att", "s5", 2), ("att", "s6", 1), ("att", "s7", 1),
          ("lfw", "George_W_Bush", 1), ("lfw", "George_W_Bush", 2), ("lfw", "Colin_Powell", 1),
          ("lfw", "Tony_Blair", 1), ("lfw", "Aaron_Eckhart", 1)]
EPS = 1e-3


@pytest.fixture(scope="module")
def faces(engine, lfw, att):
    """{"s5_1": Face, "George_W_Bush_1": Face, ...}: the most prominent face of each photo."""
    paths = [att(a, b) if kind == "att" else lfw(a, b) for kind, a, b in PHOTOS]
    found = engine.faces_batch([str(p) for p in paths])
    assert all(found), "every test photo must have a face"
    return {f"{a}_{b}": f[0] for (_, a, b), f in zip(PHOTOS, found)}


#: SQLite + FAISS in a folder; Milvus Lite in a *.db path; the session's Milvus server
BACKENDS = ["folder", "milvus-lite", "milvus-server"]
FOLDER_ONLY = ("exact_limit", "nprobe", "save_every", "background")


def opener(tmp_path: Path, engine, backend: str, opened: list, server_url: str | None = None):
    prefix = f"t{uuid.uuid4().hex[:10]}"  # this test's collections on a shared server

    def open_gallery(where: str | Path | None = None, **options) -> Gallery:
        """where: None (this test's gallery), a short name (another gallery of this test, on
        the same backend), or a location to reopen (g.location)."""
        where = "gallery" if where is None else where
        if isinstance(where, str) and "/" not in where:
            if backend == "milvus-server":
                where = f"{server_url}/{prefix}_{where}"
            else:
                where = tmp_path / (where + (".db" if backend == "milvus-lite" else ""))
        options.setdefault("model_id", engine.model_id)
        options.setdefault("threshold", engine.threshold)
        options.setdefault("embedding_size", engine.embedding_size)
        if backend == "folder":
            options.setdefault("background", False)
        else:
            for option in FOLDER_ONLY:
                options.pop(option, None)
        g = Gallery(where, **options)
        opened.append(g)
        return g
    return open_gallery


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def make(request, tmp_path, engine, backend):
    """make(where=None, **options) -> a Gallery for this engine's model on each backend in turn
    (closed after the test): the behaviour every store must share."""
    opened: list[Gallery] = []
    server = request.getfixturevalue("milvus_server") if backend == "milvus-server" else None
    yield opener(tmp_path, engine, backend, opened, server.url if server else None)
    for g in opened:
        if not g._closed:
            g.close()
    if server is not None:
        server.drop_collections({g.store.target.collection for g in opened})


@pytest.fixture
def make_folder(tmp_path, engine):
    """make_folder(where=None, **options): a folder gallery (SQLite + FAISS), for what only it has."""
    opened: list[Gallery] = []
    yield opener(tmp_path, engine, "folder", opened)
    for g in opened:
        if not g._closed:
            g.close()


def rows(g: Gallery) -> int:
    """What the store holds, read past the Gallery: a folder's entry and thumbnail rows, or
    the rows of the Milvus collection."""
    if g.kind == "milvus":
        return g.store._count()
    with sqlite3.connect(g.directory / DB_NAME) as conn:
        return conn.execute("SELECT count(*) FROM entries").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM thumbnails").fetchone()[0]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def variant(embedding: np.ndarray, seed: int, scale: float = 0.05) -> np.ndarray:
    """A unique unit vector near a real embedding (to enroll many distinct 'photos')."""
    noise = np.random.default_rng(seed).standard_normal(embedding.shape).astype(np.float32)
    return unit(embedding + scale * noise / np.linalg.norm(noise))


# -- enroll, search, identify -----------------------------------------------------------------
def test_enrolled_faces_are_found_back_at_distance_zero(make, faces):
    g = make()
    ids = {key: g.enroll(key, f.embedding, thumbnail=f.crop) for key, f in faces.items()}
    assert len(g) == len(faces) and len(set(ids.values())) == len(faces)
    for key, face in faces.items():
        matches = g.search(face.embedding, k=3)
        assert len(matches) == 3 and all(isinstance(m, Match) for m in matches)
        assert matches[0] == Match(key, ids[key], matches[0].distance)
        assert matches[0].distance < EPS
        assert [m.distance for m in matches] == sorted(m.distance for m in matches)
        others = [np.linalg.norm(face.embedding - faces[m.name].embedding) for m in matches[1:]]
        assert np.allclose([m.distance for m in matches[1:]], others, atol=1e-4)  # Euclidean
    assert len(g.search(faces["s5_1"].embedding, k=50)) == len(faces)  # k larger than the gallery


def test_identify_uses_the_threshold(make, faces, engine):
    g = make()
    g.enroll("George", faces["George_W_Bush_1"].embedding)
    g.enroll("Colin", faces["Colin_Powell_1"].embedding)
    assert g.identify(faces["George_W_Bush_1"].embedding).name == "George"
    assert g.threshold == engine.threshold
    # a photo not enrolled, with a threshold just below its nearest entry: nobody
    stranger = faces["Tony_Blair_1"].embedding
    nearest = g.search(stranger, k=1)[0]
    assert g.identify(stranger, threshold=nearest.distance * 0.99) is None
    assert g.identify(stranger, threshold=nearest.distance * 1.01) == nearest
    assert make(g.location, threshold=nearest.distance * 0.99).identify(stranger) is None
    with pytest.raises(ValueError, match="threshold"):
        make(g.location, threshold=None).identify(stranger)


def test_empty_gallery(make, faces):
    g = make()
    assert len(g) == 0 and g.people() == [] and g.search(faces["s5_1"].embedding) == []
    assert g.identify(faces["s5_1"].embedding) is None


def test_several_entries_per_person_people_and_entries(make, faces):
    g = make()
    a = g.enroll("s5", faces["s5_1"].embedding, thumbnail=faces["s5_1"].crop)
    time.sleep(0.01)
    b = g.enroll("s5", faces["s5_2"].embedding)
    g.enroll("Ada", faces["s6_1"].embedding)
    people = {p.name: p for p in g.people()}
    assert [p.name for p in g.people()] == ["Ada", "s5"]  # by name, ignoring case
    assert people["s5"].entries == 2 and people["Ada"].entries == 1
    assert people["s5"].first_enrolled < people["s5"].last_enrolled
    assert people["s5"].first_enrolled.tzinfo is not None
    entries = g.entries("s5")
    assert [e.entry_id for e in entries] == [a, b]
    assert [e.has_thumbnail for e in entries] == [True, False]
    assert g.owner(b) == "s5" and g.owner(10_000) is None
    assert "s5" in g and "nobody" not in g
    # per_person: the nearest entry of each person
    per_person = g.search(faces["s5_1"].embedding, k=2, per_person=True)
    assert [m.name for m in per_person] == ["s5", "Ada"] and per_person[0].entry_id == a


def test_remove_entry_person_and_rename(make, faces):
    g = make()
    a = g.enroll("Bush", faces["George_W_Bush_1"].embedding)
    b = g.enroll("Bush", faces["George_W_Bush_2"].embedding)
    c = g.enroll("Powell", faces["Colin_Powell_1"].embedding)
    g.remove_entry(a)
    assert g.search(faces["George_W_Bush_1"].embedding, k=3)[0].entry_id != a
    assert {m.entry_id for m in g.search(faces["s5_1"].embedding, k=10)} == {b, c}
    with pytest.raises(NotFound):
        g.remove_entry(a)
    assert g.rename_person("Bush", "George W. Bush") == 1
    assert g.search(faces["George_W_Bush_2"].embedding, k=1)[0].name == "George W. Bush"
    with pytest.raises(ValueError, match="already enrolled"):
        g.rename_person("Powell", "George W. Bush")
    assert g.rename_person("Powell", "George W. Bush", merge=True) == 1
    assert [(p.name, p.entries) for p in g.people()] == [("George W. Bush", 2)]
    with pytest.raises(NotFound, match="Did you mean 'George W. Bush'"):
        g.remove_person("george w. bush")
    assert g.remove_person("George W. Bush") == 2
    assert len(g) == 0 and g.search(faces["George_W_Bush_2"].embedding) == []
    with pytest.raises(LookupError):
        g.remove_person("George W. Bush")


def test_names_are_stored_as_text(make, faces):
    g = make()
    tricky = ["<script>alert('x')</script>", "Robert'); DROP TABLE entries;--", "Zoë Ådahl-Ó Briain 李小龍 🙂",
              "  padded  "]
    for i, name in enumerate(tricky):
        g.enroll(name, variant(faces["s5_1"].embedding, i))
    assert {p.name for p in g.people()} == {n.strip() for n in tricky}
    assert len(g) == len(tricky)
    # the same name in decomposed Unicode is the same person
    g.enroll("Zoe\u0308 Ådahl-Ó Briain 李小龍 🙂", variant(faces["s5_1"].embedding, 99))
    assert {p.name: p.entries for p in g.people()}["Zoë Ådahl-Ó Briain 李小龍 🙂"] == 2


# -- bad input: refused with ValueError, nothing stored ----------------------------------------
BAD_EMBEDDINGS = {
    "too short": lambda e: e[:127],
    "too long": lambda e: np.concatenate([e, [0.1]]),
    "two vectors": lambda e: np.stack([e, e]),
    "nan": lambda e: np.where(np.arange(e.size) == 3, np.nan, e),
    "inf": lambda e: np.where(np.arange(e.size) == 3, np.inf, e),
    "zero": lambda e: np.zeros_like(e),
    "text": lambda e: "not a vector",
    "none": lambda e: None,
    "scalar": lambda e: 1.0,
}
BAD_NAMES = ["", "   ", "x" * 101, None, 42, b"bytes", "two\nlines", "nul\x00char", "tab\tbed",
             "Tony\u200b Blair", "abc\u202egnp.exe", "Ann\u2066 Lee", "\ufeffBOM", "Ann\u200e"]
BAD_THUMBNAILS = {
    "float pixels": np.zeros((112, 112, 3), np.float32),
    "wrong shape": np.zeros((112, 112, 5), np.uint8),
    "too small": np.zeros((4, 4, 3), np.uint8),
    "too big": np.zeros((2000, 2000, 3), np.uint8),
    "not an image": b"GIF89a but not really",
    "empty bytes": b"",
    "a list": [[1, 2], [3, 4]],
}


@pytest.mark.parametrize("kind", list(BAD_EMBEDDINGS))
def test_bad_embeddings_are_refused_and_nothing_stored(make, faces, kind):
    g = make()
    bad = BAD_EMBEDDINGS[kind](faces["s5_1"].embedding.copy())
    with pytest.raises(ValueError) as refused:
        g.enroll("Someone", bad, thumbnail=faces["s5_1"].crop)
    assert isinstance(refused.value, InvalidInput) and str(refused.value)
    with pytest.raises(ValueError):
        g.search(bad)
    with pytest.raises(ValueError):
        g.identify(bad)
    assert len(g) == 0 and rows(g) == 0


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_bad_names_are_refused_and_nothing_stored(make, faces, name):
    g = make()
    with pytest.raises(ValueError, match="name"):
        g.enroll(name, faces["s5_1"].embedding, thumbnail=faces["s5_1"].crop)
    assert len(g) == 0 and rows(g) == 0


@pytest.mark.parametrize("kind", list(BAD_THUMBNAILS))
def test_bad_thumbnails_are_refused_and_nothing_stored(make, faces, kind):
    g = make()
    with pytest.raises(ValueError, match="thumbnail"):
        g.enroll("Someone", faces["s5_1"].embedding, thumbnail=BAD_THUMBNAILS[kind])
    assert len(g) == 0 and rows(g) == 0


def test_bad_k_is_refused(make, faces):
    g = make()
    g.enroll("a", faces["s5_1"].embedding)
    for k in (0, -1, 1.5, "3", True, 10_001):
        with pytest.raises(ValueError):
            g.search(faces["s5_1"].embedding, k=k)


def test_embeddings_are_normalised_and_lists_accepted(make, faces):
    g = make()
    entry = g.enroll("s5", list(map(float, 3.0 * faces["s5_1"].embedding)))
    assert g.search(faces["s5_1"].embedding, k=1) == [Match("s5", entry, pytest.approx(0.0, abs=EPS))]


# -- thumbnails and privacy ---------------------------------------------------------------------
def test_thumbnail_is_the_crop_as_png_without_metadata(make, faces):
    g = make()
    crop = faces["George_W_Bush_1"].crop
    entry = g.enroll("Bush", faces["George_W_Bush_1"].embedding, thumbnail=crop)
    png = g.thumbnail(entry)
    assert png.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), crop)  # lossless
    # encoded bytes are accepted too, and re-encoded without their EXIF
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    jpeg = io.BytesIO()
    Image.fromarray(crop).save(jpeg, format="JPEG", exif=exif)
    assert b"SecretCam" in jpeg.getvalue()
    entry = g.enroll("Bush", faces["George_W_Bush_2"].embedding, thumbnail=jpeg.getvalue())
    assert b"SecretCam" not in g.thumbnail(entry) and g.thumbnail(entry).startswith(b"\x89PNG")


def test_thumbnails_off_stores_none(make, faces):
    g = make(thumbnails=False)
    entry = g.enroll("Bush", faces["George_W_Bush_1"].embedding, thumbnail=faces["George_W_Bush_1"].crop)
    assert g.thumbnail(entry) is None and not g.entries()[0].has_thumbnail
    assert rows(g) == 1    # the entry, and no thumbnail (a folder counts thumbnail rows too)


def _directory_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _database_size(directory: Path) -> int:
    """The database's footprint: the file plus its write-ahead log (WAL mode)."""
    return sum(p.stat().st_size for p in (directory / DB_NAME, directory / f"{DB_NAME}-wal") if p.exists())


def test_removing_a_person_erases_their_vectors_and_thumbnails_from_disk(make_folder, faces):
    g = make_folder()
    keep = g.enroll("Powell", faces["Colin_Powell_1"].embedding, thumbnail=faces["Colin_Powell_1"].crop)
    gone = [g.enroll("Bush", faces[f"George_W_Bush_{i}"].embedding, thumbnail=faces[f"George_W_Bush_{i}"].crop)
            for i in (1, 2)]
    g.search(faces["s5_1"].embedding)  # load the index
    g.save()
    with sqlite3.connect(g.directory / DB_NAME) as conn:
        vectors = [conn.execute("SELECT embedding FROM entries WHERE id = ?", (e,)).fetchone()[0] for e in gone]
    pngs = [g.thumbnail(e) for e in gone]
    pieces = [png[i:i + 48] for png in pngs for i in range(100, len(png) - 48, 997)]
    before = _directory_bytes(g.directory)
    size_before = _database_size(g.directory)
    assert all(v in before for v in vectors)                # in SQLite and in the FAISS file
    assert sum(p in before for p in pieces) > len(pieces) // 2
    assert g.remove_person("Bush") == 2
    after = _directory_bytes(g.directory)
    assert not any(v in after for v in vectors)
    assert not any(p in after for p in pieces)
    assert _database_size(g.directory) < size_before  # freed pages went back
    assert (g.directory / f"{DB_NAME}-wal").stat().st_size == 0  # the log was checkpointed and cut
    g.close()
    # also after reopening (the saved index holds no trace) and after VACUUM
    g = make_folder()
    assert [m.entry_id for m in g.search(faces["George_W_Bush_1"].embedding, k=5)] == [keep]
    g.vacuum()
    assert not any(v in _directory_bytes(g.directory) for v in vectors)


# -- persistence and recovery -------------------------------------------------------------------
def test_reopen_loads_the_saved_index_without_rebuilding(make_folder, faces, monkeypatch):
    g = make_folder()
    ids = {k: g.enroll(k, f.embedding) for k, f in faces.items()}
    g.search(faces["s5_1"].embedding)
    g.close()
    assert (g.directory / INDEX_NAME).is_file()

    def no_build(*args, **kwargs):
        raise AssertionError("the saved index should have been used")
    monkeypatch.setattr(VectorIndex, "build", classmethod(no_build))
    g = make_folder()
    for key, face in faces.items():
        assert g.search(face.embedding, k=1)[0].entry_id == ids[key]


def test_stale_index_file_catches_up(make_folder, faces, tmp_path):
    g = make_folder(save_every=10_000)
    a = g.enroll("a", faces["s5_1"].embedding)
    g.search(faces["s5_1"].embedding)
    g.save()
    stale = (g.directory / INDEX_NAME).read_bytes()
    b = g.enroll("b", faces["s6_1"].embedding)        # not saved: as if killed here
    g.close()
    (g.directory / INDEX_NAME).write_bytes(stale)     # an index file one enrollment behind
    g = make_folder()
    assert g.search(faces["s6_1"].embedding, k=1)[0].entry_id == b
    assert {m.entry_id for m in g.search(faces["s6_1"].embedding, k=5)} == {a, b}


DAMAGE = {
    "garbage": lambda data: os.urandom(len(data)),
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "bit flip in vectors": lambda data: data[:200] + bytes([data[200] ^ 0x10]) + data[201:],
    "bit flip in stamp": lambda data: data[:-40] + bytes([data[-40] ^ 0x01]) + data[-39:],
    "another gallery's": None,
    "deleted": None,
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_index_file_is_rebuilt(make_folder, faces, kind, tmp_path):
    g = make_folder()
    ids = {k: g.enroll(k, f.embedding) for k, f in faces.items()}
    g.search(faces["s5_1"].embedding)
    g.close()
    path = g.directory / INDEX_NAME
    if kind == "deleted":
        path.unlink()
    elif kind == "another gallery's":
        other = make_folder("other")
        other.enroll("x", faces["s5_1"].embedding)
        other.search(faces["s5_1"].embedding)
        other.close()
        path.write_bytes((other.directory / INDEX_NAME).read_bytes())
    else:
        path.write_bytes(DAMAGE[kind](path.read_bytes()))
    g = make_folder()
    for key, face in faces.items():
        best = g.search(face.embedding, k=1)[0]
        assert best.entry_id == ids[key] and best.distance < EPS
    index, stamp = VectorIndex.load(path)  # rewritten, valid
    assert len(index) == len(faces)


def test_damaged_database_is_reported(tmp_path):
    directory = tmp_path / "gallery"
    directory.mkdir()
    (directory / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(GalleryError, match="not a readable gallery"):
        Gallery(directory)


def test_two_gallery_objects_on_one_directory_see_each_other(make, faces):
    g1, g2 = make(), make()
    a = g1.enroll("a", faces["s5_1"].embedding)
    assert g2.search(faces["s5_1"].embedding, k=1)[0].entry_id == a
    b = g2.enroll("b", faces["s6_1"].embedding)
    assert g1.search(faces["s6_1"].embedding, k=1)[0].entry_id == b
    g2.remove_entry(a)
    assert [m.entry_id for m in g1.search(faces["s5_1"].embedding, k=5)] == [b]
    g2.rename_person("b", "Bee")
    assert g1.search(faces["s6_1"].embedding, k=1)[0].name == "Bee"


def test_reopen_finds_every_entry(make, faces):
    g = make()
    ids = {k: g.enroll(k, f.embedding, thumbnail=f.crop) for k, f in faces.items()}
    g.remove_entry(ids.pop("s7_1"))
    g.close()
    g = make()
    assert len(g) == len(ids) and g.model_mismatch is None
    for key, entry in ids.items():
        best = g.search(faces[key].embedding, k=1)[0]
        assert (best.entry_id, best.name) == (entry, key) and best.distance < EPS
        assert g.thumbnail(entry) is not None


# -- models ---------------------------------------------------------------------------------------
def test_another_models_gallery_is_refused_until_reembedded(make, faces, engine, tmp_path):
    old = make(model_id="old-model")
    rotation = np.linalg.qr(np.random.default_rng(0).standard_normal((128, 128)))[0].astype(np.float32)
    ids = {}
    for key in ("s5_1", "George_W_Bush_1", "Colin_Powell_1"):
        f = faces[key]
        ids[key] = old.enroll(key, rotation @ f.embedding, thumbnail=f.crop)  # "another model's" space
    old.close()

    g = make()  # this engine's model
    assert "old-model" in g.model_mismatch and "reembed" in g.model_mismatch
    for action in (lambda: g.enroll("x", faces["s6_1"].embedding), lambda: g.search(faces["s6_1"].embedding),
                   lambda: g.identify(faces["s6_1"].embedding)):
        with pytest.raises(ModelMismatch, match="python -m index reembed") as refused:
            action()
        assert isinstance(refused.value, ValueError)
    assert len(g) == 3 and [p.entries for p in g.people()] == [1, 1, 1]  # reading still works

    assert g.reembed(engine.embed_crops, engine.model_id) == 3
    assert g.model_mismatch is None
    for key, entry in ids.items():
        best = g.search(faces[key].embedding, k=1)[0]
        assert best.entry_id == entry and best.distance < EPS
    g.close()
    again = make()
    assert again.search(faces["s5_1"].embedding, k=1)[0].entry_id == ids["s5_1"]  # persisted
    assert {e.model_id for e in again.entries()} == {engine.model_id}


def test_a_gallery_without_a_model_id(make, faces):
    g = make(model_id=None)
    entry = g.enroll("a", faces["s5_1"].embedding)
    assert g.model_mismatch is None and g.stored_model_id is None and g.entries()[0].model_id is None
    assert g.search(faces["s5_1"].embedding, k=1)[0].entry_id == entry
    g.close()
    assert "unrecorded model" in make().model_mismatch      # this engine's model: refused until re-embedded


def test_reembed_needs_thumbnails(make, faces, engine):
    old = make(model_id="old-model")
    with_thumb = old.enroll("a", faces["s5_1"].embedding, thumbnail=faces["s5_1"].crop)
    old.enroll("b", faces["s6_1"].embedding)  # no thumbnail
    old.close()
    g = make()
    with pytest.raises(GalleryError, match="no thumbnail"):
        g.reembed(engine.embed_crops, engine.model_id)
    assert g.model_mismatch and len(g) == 2  # nothing changed
    assert g.reembed(engine.embed_crops, engine.model_id, drop_missing=True) == 1
    assert [e.entry_id for e in g.entries()] == [with_thumb]


def test_an_empty_gallery_adopts_the_model_and_other_sizes_are_refused(make, faces, tmp_path):
    g = make(model_id="first")
    g.close()
    g = make()                 # empty: takes this engine's model
    assert g.model_mismatch is None
    g.enroll("a", faces["s5_1"].embedding)
    g.close()
    wider = make(embedding_size=256)
    assert wider.model_mismatch is not None
    with pytest.raises(ValueError):
        wider.enroll("b", np.ones(256, np.float32))


# -- export and import ----------------------------------------------------------------------------
def test_export_and_import_round_trip(make, faces, tmp_path):
    g = make()
    ids = {k: g.enroll(k, f.embedding, thumbnail=f.crop) for k, f in faces.items()}
    g.remove_entry(ids.pop("s7_1"))
    exported = tmp_path / "gallery.twin"
    assert g.export(exported) == len(ids)

    h = make("copy")
    assert h.import_from(exported) == len(ids)
    assert [(p.name, p.entries) for p in h.people()] == [(p.name, p.entries) for p in g.people()]
    for key in ids:
        best = h.search(faces[key].embedding, k=1)[0]
        assert best.name == key and best.distance < EPS
        assert h.thumbnail(best.entry_id) == g.thumbnail(ids[key])
    # importing again adds nothing (issue 19 row 9: it doubled the entries); replace: one copy
    again = h.import_from(exported)
    assert again == 0 and again.already_enrolled == len(ids) and len(h) == len(ids)
    assert h.import_from(exported, replace=True) == len(ids) and len(h) == len(ids)

    bare = tmp_path / "bare.twin"
    g.export(bare, thumbnails=False)
    k = make("bare")
    k.import_from(bare)
    assert all(not e.has_thumbnail for e in k.entries()) and len(k) == len(ids)


def test_bad_imports_change_nothing(make, faces, tmp_path):
    g = make()
    g.enroll("a", faces["s5_1"].embedding, thumbnail=faces["s5_1"].crop)
    good = tmp_path / "good.twin"
    g.export(good)

    target = make("target")
    target.enroll("t", faces["s6_1"].embedding)
    junk = tmp_path / "junk.twin"
    junk.write_bytes(b"not a gallery at all" * 50)
    with pytest.raises(ValueError, match="not a Twin gallery"):
        target.import_from(junk)
    with pytest.raises(ValueError):
        target.import_from(tmp_path / "missing.twin")
    plain = tmp_path / "plain.sqlite"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a Twin gallery"):
        target.import_from(plain)
    # one poisoned entry among good ones: all or nothing
    poisoned = tmp_path / "poisoned.twin"
    g.enroll("b", faces["s7_1"].embedding)
    g.export(poisoned)
    with sqlite3.connect(poisoned) as conn:
        conn.execute("UPDATE entries SET embedding = ? WHERE name = 'b'",
                     (np.full(128, np.nan, "<f4").tobytes(),))
    with pytest.raises(ValueError, match="nothing was imported"):
        target.import_from(poisoned)
    # another model's export into a non-empty gallery
    other = make("other", model_id="other-model")
    other.enroll("o", faces["s5_2"].embedding)
    foreign = tmp_path / "foreign.twin"
    other.export(foreign)
    with pytest.raises(ModelMismatch):
        target.import_from(foreign)
    assert [(p.name, p.entries) for p in target.people()] == [("t", 1)]
    assert target.search(faces["s5_1"].embedding, k=5)[0].name == "t"


# -- scale: exact, then IVF ------------------------------------------------------------------------
def test_switches_to_ivf_above_the_exact_limit_and_back(make_folder, faces):
    g = make_folder(exact_limit=60)
    real = {k: g.enroll(k, f.embedding, thumbnail=f.crop) for k, f in faces.items()}
    rng = np.random.default_rng(1)
    filler = rng.standard_normal((300, 128)).astype(np.float32)
    filler_ids = [g.enroll(f"filler {i}", v) for i, v in enumerate(filler)]
    g.search(faces["s5_1"].embedding)
    assert g.index_kind == "ivf" and g.store.cache.index.nlist > 1
    g.store.cache.index.nprobe = 1   # the hardest setting: an exact copy still lands in its own list
    for key, face in faces.items():
        best = g.search(face.embedding, k=1)[0]
        assert best.entry_id == real[key] and best.distance < EPS
    g.remove_entry(real["s5_1"])
    assert all(m.entry_id != real["s5_1"] for m in g.search(faces["s5_1"].embedding, k=20))
    g.close()
    g = make_folder(exact_limit=60)
    assert g.search(faces["s6_1"].embedding, k=1)[0].entry_id == real["s6_1"]
    assert g.index_kind == "ivf"
    for entry in filler_ids[:-10]:
        g.remove_entry(entry)
    assert g.index_kind == "flat"   # below half the limit
    assert g.search(faces["s6_1"].embedding, k=1)[0].entry_id == real["s6_1"]


def test_background_rebuild_keeps_answering(make_folder, faces):
    g = make_folder(exact_limit=40, background=True)
    ids = [g.enroll(f"p{i}", variant(faces["s5_1"].embedding, i, 0.5)) for i in range(30)]
    assert g.search(faces["s5_1"].embedding)[0].name.startswith("p")
    assert g.index_kind == "flat"
    ids += [g.enroll(f"q{i}", variant(faces["s6_1"].embedding, i, 0.5)) for i in range(30)]
    g.wait()
    assert g.index_kind == "ivf"
    extra = g.enroll("late", faces["Tony_Blair_1"].embedding)
    assert g.search(faces["Tony_Blair_1"].embedding, k=1)[0].entry_id == extra
    assert len(g) == 61


# -- threads ------------------------------------------------------------------------------------
def test_concurrent_threads(make, faces, backend):
    # On a server every change costs a few Strong reads (~0.2 s each, the server's time tick):
    # 8 writers queue for longer than the default busy_timeout, and fewer rounds keep it short.
    server = backend == "milvus-server"
    rounds = 5 if server else 25
    g = make(exact_limit=150, background=True, **({"busy_timeout": 120} if server else {}))
    base = list(faces.values())
    errors: list[BaseException] = []
    enrolled: dict[int, np.ndarray] = {}
    removed: set[int] = set()
    guard = threading.Lock()

    def worker(t: int) -> None:
        try:
            for i in range(rounds):
                vector = variant(base[(t + i) % len(base)].embedding, 1000 * t + i, 0.3)
                entry = g.enroll(f"thread {t}", vector, thumbnail=base[i % len(base)].crop)
                with guard:
                    enrolled[entry] = vector
                best = g.search(vector, k=3)[0]
                assert best.entry_id == entry and best.distance < EPS, (best, entry)
                g.identify(vector)
                g.people()
                if i % 5 == 4:
                    g.remove_entry(entry)
                    with guard:
                        removed.add(entry)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    g.wait()
    alive = {e: v for e, v in enrolled.items() if e not in removed}
    kept = rounds - rounds // 5
    assert len(g) == len(alive) == 8 * kept
    for entry, vector in alive.items():
        assert g.search(vector, k=1)[0].entry_id == entry
    assert {p.name: p.entries for p in g.people()} == {f"thread {t}": kept for t in range(8)}


# -- kill -9 --------------------------------------------------------------------------------------
CHILD = r"""
import sys, numpy as np
from index import Gallery
directory, data, start, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
vectors = np.load(data + "/vectors.npy"); crops = np.load(data + "/crops.npy")
g = Gallery(directory, model_id=model, save_every=3, exact_limit=25, background=False)
print("open", flush=True)
for i in range(start, len(vectors)):
    entry = g.enroll(f"person {i}", vectors[i], thumbnail=crops[i % len(crops)])
    print("enrolled", i, entry, flush=True)
    if i % 7 == 6:
        g.remove_entry(entry)
        print("removed", i, entry, flush=True)
    if i % 5 == 0:
        g.search(vectors[i], k=1)
"""


def test_kill_9_while_enrolling_loses_nothing_that_returned(make_folder, faces, engine, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    base = [f.embedding for f in faces.values()]
    vectors = np.stack([variant(base[i % len(base)], i, 0.3) for i in range(400)])
    np.save(data / "vectors.npy", vectors)
    np.save(data / "crops.npy", np.stack([f.crop for f in faces.values()]))
    directory = tmp_path / "gallery"
    watcher = make_folder(directory)                   # an open gallery in this process, all along
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    returned: dict[int, int] = {}               # vector number -> entry id
    removed: set[int] = set()
    start, rng = 0, np.random.default_rng(7)
    for round_ in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(data), str(start), engine.model_id],
                                 stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert child.stdout.readline().strip() == "open"
        stop_after = int(rng.integers(5, 40))
        seen = 0
        for line in child.stdout:
            word, i, entry = line.split()
            if word == "enrolled":
                returned[int(i)] = int(entry)
                start = int(i) + 1
                seen += 1
            else:
                removed.add(int(entry))
            if seen >= stop_after:
                if round_ % 2:  # sometimes a little later: in the middle of the next write
                    time.sleep(float(rng.uniform(0, 0.02)))
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
        # the database is intact; every enroll that returned is there, with its own vector
        with sqlite3.connect(directory / DB_NAME) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, name, embedding FROM entries")}
        for i, entry in returned.items():
            if entry in removed or (entry not in stored and i % 7 == 6):  # removed (maybe unreported)
                assert entry not in stored
                removed.add(entry)
                continue
            assert stored[entry][0] == f"person {i}"
        for entry, (name, blob) in stored.items():  # nothing half-written: each row is whole
            i = int(name.split()[1])
            assert np.allclose(np.frombuffer(blob, "<f4"), vectors[i], atol=1e-6)
        start = max(start, max(int(n.split()[1]) for n, _ in stored.values()) + 1)
    # a fresh open finds them all, and so does the gallery that stayed open
    g = make_folder(directory, exact_limit=25)
    for gallery in (g, watcher):
        assert len(gallery) == len(stored) >= len([e for e in returned.values() if e not in removed])
        for i, entry in returned.items():
            best = gallery.search(vectors[i], k=1)[0]
            if entry in removed:
                assert best.entry_id != entry
            else:
                assert best.entry_id == entry and best.distance < EPS
    assert g.index_kind == ("ivf" if len(g) > 25 else "flat")


def test_files_are_private_and_dead_temporaries_are_cleaned(make_folder, faces, tmp_path):
    g = make_folder()
    g.enroll("a", faces["s5_1"].embedding, thumbnail=faces["s5_1"].crop)
    g.search(faces["s5_1"].embedding)
    g.export(tmp_path / "out.twin")
    g.close()
    for path in (g.directory / DB_NAME, g.directory / INDEX_NAME, tmp_path / "out.twin"):
        assert path.stat().st_mode & 0o077 == 0, path
    leftover = g.directory / f".{INDEX_NAME}.999999999.1.tmp"   # a saver killed mid-write
    leftover.write_bytes(b"half an index")
    make_folder()
    assert not leftover.exists()


def test_closed_gallery_refuses(make, faces):
    g = make()
    g.close()
    with pytest.raises(GalleryError, match="closed"):
        g.search(faces["s5_1"].embedding)
