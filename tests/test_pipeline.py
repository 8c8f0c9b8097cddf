"""engine.pipeline.FaceEngine: the public API, on real photos.

Nothing here depends on how well the shipped weights recognise people (they may be a
placeholder): only on shapes, types, determinism, error behaviour and thread safety.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from engine import (
    QUALITY_FLOOR,
    VERDICTS,
    Comparison,
    Face,
    FaceEngine,
    ModelNotFound,
    NoFaceFound,
    Quality,
    load_image,
)
from engine.model import DEFAULT_WEIGHTS, ModelConfig, TwinNet, load_checkpoint, model_id_of, save_checkpoint
from engine.errors import BadFaceNumber


@pytest.fixture(scope="module")
def bush(lfw):
    return lfw("George_W_Bush", 1)


@pytest.fixture(scope="module")
def powell(lfw):
    return lfw("Colin_Powell", 1)


def blank(size=(300, 300)) -> Image.Image:
    return Image.new("RGB", size, (128, 128, 128))


def two_faces(lfw) -> tuple[Image.Image, tuple[int, int, int, int]]:
    picture = blank((700, 400))
    picture.paste(load_image(lfw("Tony_Blair", 2)).resize((160, 160)), (40, 120))
    picture.paste(load_image(lfw("Colin_Powell", 1)).resize((300, 300)), (380, 50))
    return picture, (380, 50, 680, 350)


def test_threshold_and_model_id(engine):
    assert isinstance(engine.threshold, float) and engine.threshold > 0
    assert isinstance(engine.model_id, str) and engine.model_id.startswith("twin-")
    assert engine.device == torch.device("cpu")


def test_faces_fields_shapes_and_dtypes(engine, bush):
    faces = engine.faces(bush)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face)
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert isinstance(face.score, float) and 0 < face.score <= 1
    assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
    assert face.embedding.shape == (engine.embedding_size,) and face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(face.quality, Quality) and 0.0 <= face.quality.score <= 1.0
    assert face.quality.ok == (face.quality.score >= QUALITY_FLOOR)
    assert face.quality.width_px == pytest.approx(float(face.box[2] - face.box[0]))


def test_faces_most_prominent_first(engine, lfw):
    picture, big_region = two_faces(lfw)
    faces = engine.faces(picture)
    assert len(faces) >= 2
    x1, y1, x2, y2 = faces[0].box
    assert x1 >= big_region[0] - 10 and x2 <= big_region[2] + 10
    for face in faces:
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)


def test_no_face_gives_empty_list(engine):
    assert engine.faces(blank()) == []
    assert engine.faces_batch([blank(), blank((50, 80))]) == [[], []]


def test_every_input_kind_gives_the_same_embedding(engine, bush):
    reference = engine.faces(bush)[0].embedding
    image = load_image(bush)
    for source in (str(bush), bush.read_bytes(), io.BytesIO(bush.read_bytes()), image, np.asarray(image)):
        np.testing.assert_allclose(engine.faces(source)[0].embedding, reference, atol=1e-6)


def test_embedding_is_deterministic_and_batch_independent(engine, bush, powell, lfw):
    first = engine.faces(bush)[0].embedding
    again = engine.faces(bush)[0].embedding
    assert np.array_equal(first, again)
    batch = engine.faces_batch([powell, bush, blank(), lfw("Tony_Blair", 2)])
    assert [len(f) for f in batch] == [1, 1, 0, 1]
    np.testing.assert_allclose(batch[1][0].embedding, first, atol=1e-5)
    np.testing.assert_allclose(batch[0][0].embedding, engine.faces(powell)[0].embedding, atol=1e-5)


def test_embed_crops(engine, bush):
    face = engine.faces(bush)[0]
    single = engine.embed_crops(face.crop)                 # one crop, no batch axis
    assert single.shape == (1, engine.embedding_size) and single.dtype == np.float32
    np.testing.assert_allclose(single[0], face.embedding, atol=1e-5)
    many = engine.embed_crops(np.stack([face.crop] * 5), batch_size=2)
    np.testing.assert_allclose(many, np.repeat(single, 5, axis=0), atol=1e-5)


def test_compare_returns_a_comparison(engine, bush, powell):
    result = engine.compare(bush, powell)
    assert isinstance(result, Comparison)
    assert isinstance(result.distance, float) and 0 <= result.distance <= 2.0 + 1e-6
    assert isinstance(result.same, bool) and result.same == (result.distance <= engine.threshold)
    assert isinstance(result.similarity, float) and 0.0 <= result.similarity <= 1.0
    assert result.similarity == pytest.approx(engine.similarity(result.distance))
    assert result.threshold == engine.threshold
    assert isinstance(result.face_a, Face) and isinstance(result.face_b, Face)
    expected = np.linalg.norm(result.face_a.embedding - result.face_b.embedding)
    assert result.distance == pytest.approx(float(expected), abs=1e-6)
    assert result.verdict in VERDICTS and result.verdict == engine.verdict(result.distance)
    assert result.band == engine.verdict_band and isinstance(result.warnings, list)
    swapped = engine.compare(powell, bush)
    assert swapped.distance == pytest.approx(result.distance, abs=1e-6)
    assert swapped.verdict == result.verdict


def test_compare_a_photo_with_itself(engine, bush):
    result = engine.compare(bush, bush)
    assert result.distance == pytest.approx(0.0, abs=1e-5)
    assert result.same is True and result.verdict == "same" and result.warnings == []
    assert result.similarity == pytest.approx(engine.similarity(0.0))


def test_similarity_falls_as_distance_grows(engine):
    values = [engine.similarity(d) for d in np.linspace(0, 2, 21)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False)) and values[0] > values[-1]


def test_no_face_names_which_photo(engine, bush):
    with pytest.raises(NoFaceFound) as exc:
        engine.compare(blank(), bush)
    assert exc.value.which == "first" and "first" in str(exc.value)
    with pytest.raises(NoFaceFound) as exc:
        engine.compare(bush, blank())
    assert exc.value.which == "second" and "second" in str(exc.value)


def test_choosing_a_face(engine, lfw, bush):
    picture, _ = two_faces(lfw)
    faces = engine.faces(picture)
    second = engine.compare(picture, bush, face_a=2)
    assert np.array_equal(second.face_a.box, faces[1].box)
    with pytest.raises(NoFaceFound) as exc:
        engine.compare(bush, picture, face_b=len(faces) + 1)
    assert exc.value.which == "second" and str(len(faces)) in str(exc.value)
    with pytest.raises(BadFaceNumber):  # numbered from 1, as in the app and both CLIs
        engine.compare(picture, bush, face_a=0)


def test_threads_give_the_same_results_as_serial(engine, lfw):
    photos = [load_image(lfw(name, n)) for name, n in
              [("George_W_Bush", 1), ("George_W_Bush", 2), ("Colin_Powell", 1), ("Colin_Powell", 2),
               ("Tony_Blair", 1), ("Tony_Blair", 2), ("Serena_Williams", 1), ("Aaron_Eckhart", 1)]]
    pairs = [(photos[i], photos[(i + 3) % len(photos)]) for i in range(8)]
    serial = [engine.compare(a, b).distance for a, b in pairs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda pair: engine.compare(*pair).distance, pairs))
    np.testing.assert_allclose(parallel, serial, atol=1e-5)


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(ModelNotFound) as exc:
        FaceEngine(weights=tmp_path / "missing.pt", device="cpu")
    message = str(exc.value)
    assert "make train" in message and "missing.pt" in message
    assert isinstance(exc.value, FileNotFoundError)       # callers may catch it either way


def test_model_id_is_stable(engine):
    _, meta = load_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    assert meta["model_id"] == engine.model_id
    state = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)["state_dict"]
    assert model_id_of(state) == engine.model_id            # derived from the weights themselves


def test_model_id_follows_the_weights_not_the_file(tmp_path):
    torch.manual_seed(0)
    model = TwinNet(ModelConfig(channels=(8, 8, 8, 8), embedding_size=16))
    first = save_checkpoint(model, tmp_path / "a.pt", note="one")
    assert save_checkpoint(model, tmp_path / "b.pt", note="other metadata") == first
    engine = FaceEngine(weights=tmp_path / "a.pt", device="cpu")
    assert engine.model_id == first and engine.embedding_size == 16
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    assert save_checkpoint(model, tmp_path / "c.pt") != first
