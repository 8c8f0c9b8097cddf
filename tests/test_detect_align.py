"""engine.detect and engine.detectors.mtcnn (MTCNN with our policy) and engine.align (5-point similarity transform), on
real LFW and AT&T photos."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine import load_image
from engine.align import CROP_SIZE, TEMPLATE_112, align, estimate_transform, template
from engine.detect import Detection, sort_by_prominence, visible_area
from engine.detectors.mtcnn import MTCNNDetector
from engine.settings import MIN_FACE_SIZE

# Photos checked to hold exactly one face, frontal enough for the landmark checks below.
LFW_FACES = [("George_W_Bush", 1), ("Colin_Powell", 1), ("Tony_Blair", 2), ("Aaron_Eckhart", 1)]
ATT_FACES = [("s6", 1), ("s6", 3), ("s7", 2), ("s7", 3)]
EYE_TOLERANCE = 4.0  # pixels of the 112 x 112 crop


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector(device="cpu")


@pytest.fixture(scope="module")
def photo(lfw):
    return load_image(lfw("George_W_Bush", 1))


def canvas(size, colour=(128, 128, 128)) -> Image.Image:
    return Image.new("RGB", size, colour)


def inside(box, region, slack=0.0) -> bool:
    x1, y1, x2, y2 = region
    return (box[0] >= x1 - slack and box[1] >= y1 - slack and box[2] <= x2 + slack and box[3] <= y2 + slack)


# -- detection --------------------------------------------------------------------------------
def test_one_face_with_typed_fields(detector, photo):
    faces = detector.detect(photo)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Detection)
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert isinstance(face.score, float) and 0.9 <= face.score <= 1.0
    x1, y1, x2, y2 = face.box
    assert 40 < x1 < x2 < 210 and 30 < y1 < y2 < 230          # LFW faces sit in the centre
    assert 60 < face.width < 140
    # landmarks inside the box: eyes above the nose above the mouth, left eye on the left
    assert inside(face.box, (0, 0, 250, 250))
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert x1 < lx < rx < x2 and x1 < mlx < mrx < x2
    assert max(ly, ry) < ny < min(mly, mry) < y2


@pytest.mark.parametrize("big_on_left", [True, False])
def test_most_prominent_first_when_two_faces_are_tiled(detector, lfw, big_on_left):
    big = load_image(lfw("Colin_Powell", 1)).resize((300, 300), Image.BILINEAR)
    small = load_image(lfw("Tony_Blair", 2)).resize((160, 160), Image.BILINEAR)
    picture = canvas((700, 400))
    big_at, small_at = ((20, 50), (480, 120)) if big_on_left else ((380, 50), (40, 120))
    picture.paste(big, big_at)
    picture.paste(small, small_at)
    big_region = (*big_at, big_at[0] + 300, big_at[1] + 300)
    small_region = (*small_at, small_at[0] + 160, small_at[1] + 160)
    faces = detector.detect(picture)
    assert len(faces) >= 2
    assert inside(faces[0].box, big_region, slack=10)
    assert any(inside(f.box, small_region, slack=10) for f in faces[1:])
    areas = [visible_area(f.box, picture.size) for f in faces]
    assert areas[0] == max(areas)


def test_prominence_order_rules():
    def det(x, y, side):
        return Detection(np.array([x, y, x + side, y + side], np.float32), 0.99, np.zeros((5, 2), np.float32))
    def ids(found):
        return [id(d) for d in found]
    size = (400, 400)
    for side in (55, 58, 60, 61, 62, 63, 65):                # within 10%: nearest the centre wins,
        centred, corner = det(170, 170, 60), det(0, 0, side)  # whichever is a bit larger
        assert ids(sort_by_prominence([corner, centred], size)) == ids([centred, corner]), side
    centred, larger = det(170, 170, 60), det(0, 0, 80)       # clearly larger wins wherever it is
    assert ids(sort_by_prominence([centred, larger], size)) == ids([larger, centred])
    right, left = det(300, 170, 60), det(10, 170, 60)        # same size: nearer the centre first
    middle = det(175, 175, 50)                                # smaller, though central: last
    assert ids(sort_by_prominence([left, middle, right], size)) == ids([right, left, middle])
    assert sort_by_prominence([], size) == []

    # Faces cut by the border: MTCNN's box runs past the edge; prominence counts the part inside.
    # A wide photo (600 x 300), so that swapping width and height would show.
    wide = (600, 300)
    subject = det(270, 120, 60)                      # 60 x 60, in the middle
    cut_left = det(-60, 100, 90)                     # 90 px box, 30 x 90 inside: side ~52
    cut_bottom = det(100, 250, 90)                   # 90 px box, 90 x 50 inside: side ~67, cut
    big_cut = det(520, 50, 120)                      # 120 px box, 80 x 120 inside: side ~98
    outside = det(650, 20, 80)                       # wholly outside: nothing visible
    assert visible_area(cut_left.box, wide) == 30 * 90
    assert visible_area(cut_bottom.box, wide) == 90 * 50
    assert visible_area(outside.box, wide) == 0
    assert ids(sort_by_prominence([cut_left, subject], wide)) == ids([subject, cut_left])
    # a cut face whose visible part is clearly larger still comes first; nothing visible, last
    assert ids(sort_by_prominence([outside, cut_left, subject, big_cut], wide)) == ids(
        [big_cut, subject, cut_left, outside])
    # measured against the real sides: cut at the bottom of a 300-high photo (in a 300 x 600
    # one it would be whole, and the largest)
    assert ids(sort_by_prominence([subject, cut_bottom], wide))[0] == id(cut_bottom)
    assert visible_area(cut_bottom.box, (300, 600)) == 90 * 90


def test_a_face_cut_by_the_border_is_not_the_most_prominent(detector, lfw):
    """A real photo: the subject in the middle, someone half outside the left edge.

    MTCNN's box for the cut face runs past the border and is the larger box (123 px against
    92); the face a person sees as the photo's subject, and the one that can be aligned, is
    the whole one in the middle: it comes first.
    """
    photo = load_image(lfw("Andre_Agassi", 1))
    faces = detector.detect(photo)
    assert len(faces) == 2
    cut = max(faces, key=lambda f: f.area)
    assert cut.box[0] < 0, "the photo's cut face has a box that runs past the border"
    assert faces[0] is not cut
    assert inside(faces[0].box, (60, 50, 190, 200))
    assert visible_area(cut.box, photo.size) < faces[0].area < cut.area


def test_no_face_in_blank_or_noise(detector):
    assert detector.detect(canvas((640, 480))) == []
    assert detector.detect(canvas((640, 480), (0, 0, 0))) == []
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert detector.detect(noise) == []


def test_tiny_face_is_not_found(detector, photo):
    found = canvas((400, 400))
    found.paste(photo, (75, 75))
    assert len(detector.detect(found)) == 1                   # the control: full size is found
    tiny = canvas((400, 400))
    tiny.paste(photo.resize((30, 30), Image.BILINEAR), (185, 185))   # face about 11 px wide
    assert detector.detect(tiny) == []
    assert MIN_FACE_SIZE >= 15


def test_batch_equals_singles(detector, lfw, photo):
    pictures = [photo, canvas((300, 200)), load_image(lfw("Serena_Williams", 1)),
                load_image(lfw("Colin_Powell", 2)).resize((400, 400))]
    batch = detector.detect_batch(pictures)
    assert len(batch) == len(pictures)
    for picture, found in zip(pictures, batch):
        single = detector.detect(picture)
        assert len(found) == len(single)
        for a, b in zip(found, single):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-5)
    assert detector.detect_batch([]) == []


def test_huge_photo_is_detected_in_full_resolution_coordinates(detector, photo):
    face_photo = photo.resize((1000, 1000), Image.BILINEAR)
    offset = (2400, 1300)
    huge = canvas((4000, 3000))
    huge.paste(face_photo, offset)
    faces = detector.detect(huge)                             # runs on a 1024 x 768 view
    assert len(faces) == 1
    reference = detector.detect(face_photo)[0]                # same face, detected at 1000 px
    expected_box = reference.box + np.array([*offset, *offset], np.float32)
    expected_points = reference.landmarks + np.array(offset, np.float32)
    tolerance = 0.08 * reference.width                        # the view has 1/4 the pixels per side
    assert np.abs(faces[0].box - expected_box).max() < tolerance
    assert np.abs(faces[0].landmarks - expected_points).max() < tolerance
    assert faces[0].width > 250                               # full-res size, not the view's


# -- alignment --------------------------------------------------------------------------------
def eyes_after_redetection(detector, crop: np.ndarray) -> np.ndarray:
    """Detect again on the aligned crop (padded: MTCNN wants some context) -> eye points in crop pixels."""
    pad = CROP_SIZE // 2
    padded = canvas((CROP_SIZE + 2 * pad,) * 2, (0, 0, 0))
    padded.paste(Image.fromarray(crop), (pad, pad))
    found = detector.detect(padded)
    assert found, "no face found again in the aligned crop"
    return found[0].landmarks[:2] - pad


@pytest.mark.parametrize("name, number", LFW_FACES)
def test_alignment_puts_eyes_on_the_template_lfw(detector, lfw, name, number):
    picture = load_image(lfw(name, number))
    face = detector.detect(picture)[0]
    crop = align(picture, face.landmarks)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    moved = estimate_transform(face.landmarks)(face.landmarks)
    assert np.abs(moved[:2] - TEMPLATE_112[:2]).max() < EYE_TOLERANCE
    assert np.abs(eyes_after_redetection(detector, crop) - TEMPLATE_112[:2]).max() < EYE_TOLERANCE


@pytest.mark.parametrize("subject, number", ATT_FACES)
def test_alignment_puts_eyes_on_the_template_att_grey(detector, att, subject, number):
    picture = load_image(att(subject, number))
    assert picture.size == (92, 112)
    faces = detector.detect(picture)
    assert len(faces) == 1
    crop = align(picture, faces[0].landmarks)
    assert np.array_equal(crop[:, :, 0], crop[:, :, 2])      # still grey
    moved = estimate_transform(faces[0].landmarks)(faces[0].landmarks)
    assert np.abs(moved[:2] - TEMPLATE_112[:2]).max() < EYE_TOLERANCE
    assert np.abs(eyes_after_redetection(detector, crop) - TEMPLATE_112[:2]).max() < EYE_TOLERANCE


def test_alignment_of_a_large_face_shrinks_without_aliasing(detector, photo):
    """A face 6x larger takes the box-filter path and gives (nearly) the same crop."""
    face = detector.detect(photo)[0]
    big = photo.resize((1500, 1500), Image.LANCZOS)
    small_crop = align(photo, face.landmarks).astype(np.int16)
    big_crop = align(big, face.landmarks * 6).astype(np.int16)
    assert np.abs(small_crop - big_crop).mean() < 8


def test_alignment_other_sizes_and_degenerate_landmarks(detector, photo):
    face = detector.detect(photo)[0]
    crop = align(photo, face.landmarks, size=64)
    assert crop.shape == (64, 64, 3)
    np.testing.assert_allclose(template(64), TEMPLATE_112 * 64 / 112)
    with pytest.raises(ValueError):
        align(photo, np.zeros((5, 2), np.float32))


def test_describe_names_what_decides_the_boxes(detector):
    """Caches of detections (bench/product_path.py) are keyed by describe(): it must change
    with every setting that moves boxes, and not with anything else."""
    from engine.detectors.mtcnn import DETECTION_VERSION

    described = detector.describe()
    assert described["version"] == DETECTION_VERSION
    assert described["min_face_size"] == MIN_FACE_SIZE and described == MTCNNDetector(device="cpu").describe()
    for change in ({"min_face_size": 40}, {"min_score": 0.95}, {"thresholds": (0.5, 0.7, 0.7)}, {"max_side": 512}):
        assert MTCNNDetector(device="cpu", **change).describe() != described, change


# -- the seam: detectors by name, detect-pick-align ---------------------------------------------------
def test_detectors_by_name():
    from engine.detect import DETECTORS, Detector, detector_class, make_detector

    assert detector_class("mtcnn") is MTCNNDetector and set(DETECTORS) >= {"mtcnn"}
    made = make_detector("mtcnn", device="cpu", min_score=0.95)
    assert isinstance(made, Detector) and made.describe()["min_score"] == 0.95
    assert made.quality is MTCNNDetector.QUALITY
    with pytest.raises(ValueError, match="unknown detector 'yunet'; known: mtcnn"):
        make_detector("yunet")


def test_crop_cache_key_is_the_one_the_caches_were_built_with():
    """The training crop caches (and the teacher's targets, an hour of CPU) are named by this key:
    it must read exactly as training.data's DETECTOR_POLICY did before the detector owned it."""
    import json

    from engine.detect import crop_cache_detector, crop_cache_key

    assert json.dumps(crop_cache_key()) == (
        '{"min_face_size": 20, "min_score": 0.9, "thresholds": [0.6, 0.7, 0.7], "retry_score": 0.5}'
    )
    cache = crop_cache_detector()
    key = crop_cache_key()
    assert (cache.min_face_size, cache.min_score, cache.fallback_score) == (
        key["min_face_size"], key["min_score"], key["retry_score"])
    assert cache.thresholds == key["thresholds"]


def test_fallback_score_only_when_no_face_reaches_the_minimum():
    """The crop caches' detector keeps faces scored 0.5-0.9 only in a photo with none from 0.9."""
    from engine.detect import crop_cache_detector

    cache, product = crop_cache_detector(), MTCNNDetector(device="cpu")
    boxes = np.array([[10, 10, 60, 60], [100, 10, 180, 90]], np.float32)
    points = np.tile(np.array([[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]], np.float32), (2, 1, 1))
    weak = np.array([0.6, 0.4], np.float32)
    assert [d.score for d in cache._to_detections(boxes, weak, points, 1.0, (200, 100))] == pytest.approx([0.6])
    assert product._to_detections(boxes, weak, points, 1.0, (200, 100)) == []
    mixed = np.array([0.6, 0.95], np.float32)
    for detector in (cache, product):
        assert [d.score for d in detector._to_detections(boxes, mixed, points, 1.0, (200, 100))] == pytest.approx(
            [0.95])


def test_detect_pick_align_choices(detector, lfw):
    """One function makes aligned faces for the product, the crop caches and the benches:
    all faces (cut to max_faces, found still counting every face), the most prominent, or the
    one nearest the centre; pad adds a black border first."""
    from engine.detect import detect_pick_align

    big = load_image(lfw("Colin_Powell", 1)).resize((300, 300), Image.BILINEAR)
    small = load_image(lfw("Tony_Blair", 2)).resize((160, 160), Image.BILINEAR)
    picture = canvas((800, 400))
    picture.paste(big, (10, 50))      # large, in a corner
    picture.paste(small, (320, 120))  # small, in the centre
    everyone, = detect_pick_align(detector, [picture])
    assert everyone.found == len(everyone.detections) >= 2 and everyone.image is picture
    for d, crop in zip(everyone.detections, everyone.crops, strict=True):
        assert np.array_equal(crop, align(picture, d.landmarks))
    prominent, centre, none = (detect_pick_align(detector, [picture], pick=p, max_faces=m)[0]
                               for p, m in (("prominent", None), ("centre", None), ("all", 0)))
    assert inside(prominent.detections[0].box, (10, 50, 310, 350), slack=10)
    assert inside(centre.detections[0].box, (320, 120, 480, 280), slack=10)
    assert len(prominent.crops) == len(centre.crops) == 1
    assert none.found == everyone.found and none.detections == [] and none.crops == []
    padded, = detect_pick_align(detector, [picture], pick="prominent", pad=0.25)
    assert padded.image.size == (800 + 400, 400 + 400)
    np.testing.assert_allclose(padded.detections[0].box, prominent.detections[0].box + 200, atol=8)  # another canvas: another pyramid
    blank, = detect_pick_align(detector, [canvas((200, 200))], pick="centre")
    assert blank.found == 0 and blank.detections == [] and blank.crops == []
