"""Naming people from a gallery (issue 20): cohort-normalised scores, templates, the threshold
for N people, and one rule for the app and `python -m index search`, on real photos and both
stores (SQLite + FAISS in a folder; Milvus Lite in a *.db path)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil

import numpy as np
import pytest

from demo.inputs import PhotoInput
from demo.service import TwinService
from engine.identification import (
    Cohort,
    IdentificationThreshold,
    Naming,
    as_norm,
    cohort_path,
)
from engine.model import DEFAULT_WEIGHTS
from index import Gallery
from index.__main__ import main as index_main

PHOTOS = {"George": ("George_W_Bush", 1), "Colin": ("Colin_Powell", 1), "Tony": ("Tony_Blair", 1),
          "Serena": ("Serena_Williams", 1), "Aaron": ("Aaron_Eckhart", 1)}


def photo_input(path) -> PhotoInput:
    return PhotoInput(path.name, path=path)


@pytest.fixture(scope="module")
def faces(engine, lfw):
    found = engine.faces_batch([str(lfw(*p)) for p in PHOTOS.values()]
                               + [str(lfw("George_W_Bush", 2)), str(lfw("George_W_Bush", 3))])
    assert all(found)
    names = [*PHOTOS, "George 2", "George 3"]
    return {n: f[0] for n, f in zip(names, found, strict=True)}


@pytest.fixture(params=["folder", "milvus-lite"])
def gallery(request, tmp_path, engine):
    where = tmp_path / ("g.db" if request.param == "milvus-lite" else "g")
    g = Gallery(where, model_id=engine.model_id, embedding_size=engine.embedding_size, thumbnails=False)
    yield g
    g.close()


def test_the_shipped_weights_name_with_their_cohort(engine):
    naming = engine.naming
    assert naming.normalised, "engine/weights has no usable cohort: run python -m training.naming --write"
    assert cohort_path(DEFAULT_WEIGHTS).stat().st_size < 4 * 2**20  # a few MB at most
    assert naming.cohort.model_id == engine.model_id and naming.cohort.vectors.shape[1] == engine.embedding_size
    assert np.allclose(np.linalg.norm(naming.cohort.vectors, axis=1), 1, atol=1e-3)
    # more people, more chances for a stranger: never looser
    sizes = [1, 10, 100, 1000, 1680, 10000]
    values = [naming.threshold_for(n) for n in sizes]
    assert values == sorted(values, reverse=True) and values[1] > values[3]


def test_gallery_name_scores_as_the_engine_does_on_both_stores(gallery, faces, engine):
    ids = {n: gallery.enroll(n, faces[n].embedding) for n in PHOTOS}
    query = faces["George 2"].embedding
    named = gallery.name(query, engine.naming)
    assert named.people == len(PHOTOS) and named.threshold == engine.naming.threshold_for(len(PHOTOS))
    # every candidate scored from the store's own copy of its embedding, as the engine scores it
    by_name = {c.name: c for c in named.candidates}
    assert set(by_name) == set(PHOTOS)
    expected = engine.naming.scores(query, np.stack([faces[n].embedding for n in PHOTOS]))
    for n, score in zip(PHOTOS, expected, strict=True):
        assert by_name[n].entry_id == ids[n]
        assert by_name[n].score == pytest.approx(score, abs=1e-4)
        assert by_name[n].distance == pytest.approx(np.linalg.norm(query - faces[n].embedding), abs=1e-4)
    assert [c.score for c in named.candidates] == sorted(c.score for c in named.candidates)
    assert named.candidates[0].name == "George"
    assert (named.match is not None) == (named.candidates[0].score <= named.threshold)
    if named.match is not None:
        assert named.match.name == "George"
    assert gallery.store.vectors([ids["Tony"], 10**9]).keys() == {ids["Tony"]}


def test_mean_templates_score_a_person_by_the_mean_of_their_entries(faces, engine, tmp_path):
    with Gallery(tmp_path / "g", model_id=engine.model_id, embedding_size=engine.embedding_size) as g:
        g.enroll("George", faces["George"].embedding)
        g.enroll("George", faces["George 2"].embedding)
        g.enroll("Colin", faces["Colin"].embedding)
        query = faces["George 3"].embedding
        mean = dataclasses.replace(engine.naming, templates="mean")
        nearest = dataclasses.replace(engine.naming, templates="nearest")
        template = faces["George"].embedding + faces["George 2"].embedding
        template /= np.linalg.norm(template)
        george = {c.name: c for c in g.name(query, mean).candidates}["George"]
        assert george.score == pytest.approx(float(mean.scores(query, template[None])[0]), abs=1e-4)
        best_entry = min(nearest.scores(query, np.stack([faces["George"].embedding, faces["George 2"].embedding])))
        assert {c.name: c for c in g.name(query, nearest).candidates}["George"].score == pytest.approx(
            float(best_entry), abs=1e-4)


@pytest.mark.parametrize("score", ["as-norm", "csls"])
def test_the_normalised_score_by_brute_force(engine, faces, score):
    cohort = dataclasses.replace(engine.naming.cohort, score=score)
    naming = dataclasses.replace(engine.naming, cohort=cohort)
    q, e = faces["George"].embedding, faces["George 2"].embedding
    d = np.linalg.norm(q - e)
    # each face's K nearest cohort faces, by brute force
    dq, de = (np.sort(np.linalg.norm(cohort.vectors - x, axis=1))[: cohort.k] for x in (q, e))
    (mq, sq), (me, se) = cohort.stats(q), cohort.stats(e)
    assert mq[0] == pytest.approx(dq.mean(), abs=1e-4) and sq[0] == pytest.approx(dq.std(), abs=1e-4)
    if score == "csls":
        expected = d**2 - 0.5 * ((dq**2).mean() + (de**2).mean())
    else:
        expected = 0.5 * ((d - dq.mean()) / dq.std() + (d - de.mean()) / de.std())
        assert as_norm(d, (mq[0], sq[0]), (me[0], se[0])) == pytest.approx(expected, abs=1e-4)
    assert naming.scores(q, e[None])[0] == pytest.approx(expected, abs=1e-4)


def test_a_cohort_of_other_weights_or_a_broken_one_is_refused(tmp_path, engine, caplog):
    weights = tmp_path / "twin.pt"
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    shutil.copy(cohort_path(DEFAULT_WEIGHTS), cohort_path(weights))
    args = (weights, engine.model_id, engine.embedding_size)
    assert Cohort.load(weights, card, *args[1:]) is not None
    other = {**card, "naming": {**card["naming"], "cohort_model_id": "twin-000000000000"}}
    assert Cohort.load(weights, other, *args[1:]) is None and "embedded by twin-000000000000" in caplog.text
    fallback = IdentificationThreshold(0.4)
    naming = Naming.from_card(other, *args, fallback)
    assert not naming.normalised and naming.threshold is fallback  # raw distances, the raw threshold
    cohort_path(weights).write_bytes(b"not a numpy file")
    assert Cohort.load(weights, card, *args[1:]) is None
    assert Cohort.load(weights, card, engine.model_id, engine.embedding_size + 1) is None
    assert Naming.from_card({}, *args, fallback).threshold is fallback


def test_the_cli_and_the_app_name_the_same_person_by_the_same_threshold(tmp_path, engine, lfw, capsys):
    """`python -m index search` and the app's Identify on the same gallery and photo."""
    directory = tmp_path / "g"
    with Gallery(directory, model_id=engine.model_id, embedding_size=engine.embedding_size) as g:
        service = TwinService(engine, g)
        for name, (person, number) in PHOTOS.items():
            assert service.enroll(name, [photo_input(lfw(person, number))]).entries
    for photo, expected in ((lfw("George_W_Bush", 2), "George"), (lfw("Colin_Powell", 2), None)):
        out = io.StringIO()
        assert index_main(["--gallery", str(directory), "--json", "search", str(photo)], engine=engine, out=out) == 0
        cli = json.loads(out.getvalue())
        text = io.StringIO()
        assert index_main(["--gallery", str(directory), "search", str(photo)], engine=engine, out=text) == 0
        with Gallery(directory, model_id=engine.model_id, embedding_size=engine.embedding_size) as g:
            app = TwinService(engine, g).identify(photo_input(photo))
        (face,) = app.faces
        assert cli["threshold"] == pytest.approx(app.threshold) == engine.naming.threshold_for(len(PHOTOS))
        assert cli["identified"] == (face.match.name if face.match else None)
        assert f"{app.threshold:.3f}" in text.getvalue() and f"threshold for {len(PHOTOS)} people" in text.getvalue()
        if expected == "George":
            assert cli["identified"] == "George", cli
