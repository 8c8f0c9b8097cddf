"""Issue 9, item 3 (engine side): the work one photo may cost is bounded.

A photo of 576 small faces (24 x 24 LFW faces, each about 28 pixels wide, built here from
576 different people) used to cost about 44 s of CPU: MTCNN examined ten thousand candidate
boxes, then every face was aligned and embedded before the app kept 20. Now the detector
examines a bounded number of candidates, `max_faces` cuts the faces before alignment and
embedding while `found` still counts them all, and a `deadline` stops a call between stages
with TooMuchWork. Costs are asserted as counts of work done, never as wall time.
"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

import engine.detect as seam
import engine.detectors.mtcnn as detect
from engine import FaceError, FaceList, NoFaceFound, TooMuchWork, load_image
from engine.detectors.mtcnn import MAX_CANDIDATES, MTCNNDetector
from engine.images import DETECTION_MAX_SIDE

GRID, TILE = 24, 42


@pytest.fixture(scope="module")
def crowd(data_dir) -> bytes:
    """A 1008 x 1008 JPEG of 576 faces: the first photo of 576 LFW people, 42 px tiles."""
    people = sorted(p for p in (data_dir / "lfw").iterdir() if (p / f"{p.name}_0001.jpg").is_file())
    assert len(people) >= GRID * GRID
    picture = Image.new("RGB", (GRID * TILE, GRID * TILE), (128, 128, 128))
    for k, person in enumerate(people[:GRID * GRID]):
        with Image.open(person / f"{person.name}_0001.jpg") as im:
            face = im.convert("RGB").crop((50, 50, 200, 200)).resize((TILE, TILE), Image.BILINEAR)
        picture.paste(face, ((k % GRID) * TILE, (k // GRID) * TILE))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bush(lfw):
    return lfw("George_W_Bush", 1)


@pytest.fixture(scope="module")
def pair(lfw) -> Image.Image:
    """Two faces: Colin Powell large on the right, Tony Blair small on the left."""
    picture = Image.new("RGB", (700, 400), (128, 128, 128))
    picture.paste(load_image(lfw("Tony_Blair", 2)).resize((160, 160)), (40, 120))
    picture.paste(load_image(lfw("Colin_Powell", 1)).resize((300, 300)), (380, 50))
    return picture


class Work:
    """Counts what a FaceEngine call really does: photos detected, faces aligned, crops embedded,
    boxes each MTCNN stage examined."""

    def __init__(self, monkeypatch, engine):
        self.detections: list = []
        self.aligned = 0
        self.embedded = 0
        self.stage_boxes: list[int] = []
        real_detect, real_align, real_embed = engine.detector.detect_batch, seam.align, engine.embed_crops
        real_crops = detect._crops

        def detect_batch(images, deadline=None):
            found = real_detect(images, deadline=deadline)
            self.detections.extend(found)
            return found

        def align(*args, **kwargs):
            self.aligned += 1
            return real_align(*args, **kwargs)

        def embed_crops(crops, *args, **kwargs):
            self.embedded += len(np.asarray(crops).reshape(-1, 112, 112, 3))
            return real_embed(crops, *args, **kwargs)

        def crops(imgs, boxes, *args, **kwargs):
            self.stage_boxes.append(len(boxes))
            return real_crops(imgs, boxes, *args, **kwargs)

        monkeypatch.setattr(engine.detector, "detect_batch", detect_batch)
        monkeypatch.setattr(seam, "align", align)
        monkeypatch.setattr(engine, "embed_crops", embed_crops)
        monkeypatch.setattr(detect, "_crops", crops)


# -- max_faces --------------------------------------------------------------------------------------
def test_crowd_is_cut_to_the_cap_before_aligning_and_embedding(engine, crowd, monkeypatch):
    assert len(crowd) < 400_000
    work = Work(monkeypatch, engine)
    faces = engine.faces(crowd, max_faces=20)
    assert isinstance(faces, FaceList) and len(faces) == 20
    assert faces.found > 500 and faces.capped                 # the true count, not the cap
    assert faces.found == len(work.detections[0])
    assert work.aligned == 20 and work.embedded == 20          # was 573 of each
    # the 20 kept are the detector's 20 most prominent, in order, each fully embedded
    for face, detection in zip(faces, work.detections[0][:20]):
        assert np.array_equal(face.box, detection.box)
        assert face.crop.shape == (112, 112, 3)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    # MTCNN's later stages examined a bounded number of boxes (the photo needs 9,700 and 4,100)
    rnet, onet = work.stage_boxes
    assert rnet == MAX_CANDIDATES and onet <= MAX_CANDIDATES // 4


def test_capped_faces_are_the_same_faces(engine, pair, monkeypatch):
    every = engine.faces(pair)
    assert len(every) >= 2 and every.found == len(every) and not every.capped
    work = Work(monkeypatch, engine)
    first = engine.faces(pair, max_faces=1)
    assert len(first) == 1 and first.found == len(every) and first.capped
    assert work.embedded == 1
    np.testing.assert_allclose(first[0].embedding, every[0].embedding, atol=1e-5)
    assert np.array_equal(first[0].box, every[0].box)
    none = engine.faces(pair, max_faces=0)
    assert none == [] and none.found == len(every)
    assert work.embedded == 1                                  # nothing more was embedded


def test_no_cap_behaves_as_before(engine, bush, pair):
    faces = engine.faces(bush)
    assert isinstance(faces, list) and isinstance(faces, FaceList)
    assert len(faces) == 1 and faces.found == 1 and not faces.capped
    assert engine.faces(Image.new("RGB", (300, 300))) == [] and engine.faces(Image.new("RGB", (300, 300))).found == 0
    batch = engine.faces_batch([bush, pair], max_faces=1)
    assert [len(f) for f in batch] == [1, 1] and batch[1].found >= 2


@pytest.mark.parametrize("bad", [-1, 1.5, True, "20"])
def test_max_faces_must_be_a_count(engine, bush, bad):
    with pytest.raises(ValueError):
        engine.faces(bush, max_faces=bad)


def test_numpy_counts_are_counts(engine, pair):
    assert len(engine.faces(pair, max_faces=np.int64(1))) == 1
    chosen = engine.compare(pair, pair, face_a=np.int64(2))
    assert np.array_equal(chosen.face_a.box, engine.faces(pair)[1].box)


def test_compare_embeds_only_the_faces_it_needs(engine, bush, pair, monkeypatch):
    work = Work(monkeypatch, engine)
    engine.compare(pair, bush)
    assert work.embedded == 2                                  # one face per photo
    engine.compare(pair, bush, face_a=2)
    assert work.embedded == 2 + 3
    with pytest.raises(NoFaceFound) as exc:                    # the true count, though only 1 was kept
        engine.compare(bush, pair, face_b=6)
    found = engine.faces(pair).found
    assert f"has {found} face(s)" in str(exc.value) and "number 6" in str(exc.value)


# -- the detector ------------------------------------------------------------------------------------
def test_detector_sees_a_bounded_copy(engine, bush, monkeypatch):
    shapes = []
    real = engine.detector._cascade

    def cascade(images, check):
        shapes.append(images.shape)
        return real(images, check)

    monkeypatch.setattr(engine.detector, "_cascade", cascade)
    huge = Image.new("RGB", (4000, 3000), (128, 128, 128))
    huge.paste(load_image(bush).resize((1000, 1000)), (2400, 1300))
    faces = engine.detector.detect(huge)
    assert shapes == [(1, 768, DETECTION_MAX_SIDE, 3)]
    assert len(faces) == 1 and faces[0].box[0] > 2400           # in the photo's own pixels


def test_detector_cap_binds_and_keeps_the_best(crowd, monkeypatch):
    """A small cap on the crowd: the stages see exactly the cap; the faces found are real faces."""
    picture = load_image(crowd)
    stage_boxes = []
    real = detect._crops
    monkeypatch.setattr(detect, "_crops", lambda imgs, boxes, *a: stage_boxes.append(len(boxes)) or real(imgs, boxes, *a))
    small = MTCNNDetector(max_candidates=400).detect(picture)
    assert stage_boxes[0] == 400 and stage_boxes[1] <= 100
    assert 20 <= len(small) <= 100
    for face in small:                                          # each on one tile, about 28 px wide
        column, row = (face.box[:2] + face.box[2:]) / 2 // TILE
        assert 20 <= face.width <= 2 * TILE and face.score >= 0.9
        assert 0 <= column < GRID and 0 <= row < GRID


def test_bounded_cascade_equals_facenet_pytorch_below_the_cap(lfw, pair):
    """Below the cap the cascade is facenet-pytorch's own: the same faces, boxes and landmarks to
    within 1e-3 px (not to the last bit: on a CPU the networks run channels-last, whose
    convolutions sum in another order)."""
    detector = MTCNNDetector()
    photos = [load_image(lfw(name, n)) for name, n in
              [("George_W_Bush", 1), ("Serena_Williams", 1), ("Aaron_Eckhart", 1), ("Tony_Blair", 2)]]
    photos += [pair, Image.new("RGB", (300, 200), (128, 128, 128))]
    for photo in photos:
        view = np.asarray(photo)[None]
        with torch.inference_mode():
            boxes, scores, points = detector._mtcnn.detect(view, landmarks=True)
            ours, our_points = detector._cascade(view, lambda: None)
        if boxes[0] is None:
            assert len(ours[0]) == 0
            continue
        theirs = np.concatenate([boxes[0], np.asarray(scores[0], np.float32)[:, None]], axis=1)
        order_theirs, order_ours = np.lexsort(theirs[:, :2].T), np.lexsort(ours[0][:, :2].T)
        assert theirs.shape == ours[0].shape
        assert np.allclose(theirs[order_theirs].astype(np.float32), ours[0][order_ours], rtol=0, atol=1e-3)
        assert np.allclose(points[0][order_theirs], our_points[0][order_ours], rtol=0, atol=1e-3)


def test_batched_crops_equal_one_by_one():
    """The crops MTCNN's later stages see, cut in batches of one size: the same as facenet-pytorch's
    loop, box by box; a box wholly outside the image is dropped (facenet-pytorch misaligned them)."""
    from facenet_pytorch.models.utils.detect_face import imresample, pad
    rng = np.random.default_rng(3)
    imgs = torch.as_tensor(rng.integers(0, 256, (2, 3, 90, 120)), dtype=torch.float32)
    corners = rng.uniform(-5, 75, (40, 2))                                 # each overlaps the image
    sides = rng.choice([8.0, 13.0, 30.0, 55.0], 40)
    boxes = torch.as_tensor(np.c_[corners, corners + sides[:, None], rng.uniform(0.6, 1, 40)], dtype=torch.float32)
    boxes[5, :4] = torch.tensor([130.0, 10.0, 150.0, 30.0])            # right of the image
    inds = torch.as_tensor(rng.integers(0, 2, 40))
    kept, kept_inds, crops = detect._crops(imgs, boxes.clone(), inds, 24, 120, 90)
    assert len(kept) == 39 and not (kept[:, 0] >= 130).any()
    y, ey, x, ex = pad(kept, 120, 90)
    for k in range(len(kept)):
        one = imresample(imgs[kept_inds[k], :, y[k] - 1:ey[k], x[k] - 1:ex[k]].unsqueeze(0), (24, 24))
        assert torch.equal(crops[k], one[0])


# -- deadline --------------------------------------------------------------------------------------
def test_deadline_in_the_past_raises_too_much_work(engine, bush, monkeypatch):
    work = Work(monkeypatch, engine)
    with pytest.raises(TooMuchWork) as exc:
        engine.faces(bush, deadline=time.monotonic() - 1)
    assert isinstance(exc.value, FaceError)
    message = str(exc.value)
    assert "too much work in this photo" in message.lower() and "fewer faces" in message
    assert work.aligned == 0 and work.embedded == 0


def test_deadline_passing_after_detection_says_how_many_faces(engine, pair, monkeypatch):
    real = engine.detector.detect_batch
    monkeypatch.setattr(engine.detector, "detect_batch", lambda images, deadline=None: real(images))
    found = len(real([pair])[0])
    with pytest.raises(TooMuchWork) as exc:                    # detection finished; the deadline had passed
        engine.faces(pair, deadline=time.monotonic() - 1)
    assert exc.value.found == found
    assert f"({found} faces found)" in str(exc.value)
    with pytest.raises(TooMuchWork) as exc:
        engine.compare(pair, pair, deadline=time.monotonic() - 1)
    assert "these photos" in str(exc.value)


def test_deadline_during_detection_stops_between_stages(crowd, monkeypatch):
    """The crowd's deadline passes while MTCNN runs: it stops at the next stage boundary,
    before its last stage (checks are counted, not timed)."""
    clock = iter(range(10_000))
    monkeypatch.setattr(detect, "monotonic", lambda: float(next(clock)))
    onet_calls = []
    detector = MTCNNDetector()
    real_onet = detector._mtcnn.onet.forward
    monkeypatch.setattr(detector._mtcnn.onet, "forward", lambda x: onet_calls.append(len(x)) or real_onet(x))
    with pytest.raises(TooMuchWork) as exc:
        detector.detect(load_image(crowd), deadline=1.5)        # passed at the 3rd check: in RNet
    assert exc.value.found is None and onet_calls == []
    assert "too much work" in str(exc.value).lower()


def test_far_deadline_changes_nothing(engine, bush):
    plain = engine.faces(bush)
    timed = engine.faces(bush, deadline=time.monotonic() + 600, max_faces=20)
    assert len(timed) == len(plain) == 1
    np.testing.assert_allclose(timed[0].embedding, plain[0].embedding, atol=1e-6)
