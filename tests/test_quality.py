"""Face quality (issue 12, item 3): engine.quality and Face.quality, on real photos.

A tiny, blurred, dark or washed-out copy of a real LFW photo gets a low score with the right
reason; the photos themselves are ok; every face FaceEngine returns carries its quality, and
a comparison on a poor face says so.
"""
from __future__ import annotations

import ast
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from engine import QUALITY_FLOOR, PoorQuality, Quality, load_image, require_quality
from engine import quality as Q
from engine.align import TEMPLATE_112
from engine.detectors.mtcnn import MTCNNDetector


@pytest.fixture(scope="module")
def bush(lfw):
    return load_image(lfw("George_W_Bush", 2))


@pytest.fixture(scope="module")
def bush_face(engine, bush):
    return engine.faces(bush)[0]


# -- the parts ------------------------------------------------------------------------------------

def test_ramp_either_direction_and_clipped():
    assert Q.ramp(10, 10, 20) == 0 and Q.ramp(15, 10, 20) == 0.5 and Q.ramp(25, 10, 20) == 1
    assert Q.ramp(5, 10, 20) == 0
    assert Q.ramp(40, 45, 25) == pytest.approx(0.25) and Q.ramp(20, 45, 25) == 1 and Q.ramp(90, 45, 25) == 0


def rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = points.mean(axis=0)
    return (points - centre) @ rot.T + centre


def test_pose_from_landmarks():
    frontal = TEMPLATE_112.astype(np.float64).copy()
    frontal[2, 1] = frontal[0, 1] + MTCNNDetector.QUALITY.frontal_nose * (frontal[3, 1] - frontal[0, 1])  # MTCNN's frontal nose
    yaw, pitch, roll = Q.pose(frontal)
    assert abs(yaw) < 2 and abs(pitch) < 2 and abs(roll) < 1
    # roll is the eye line's angle, and does not leak into yaw or pitch
    yaw, pitch, roll = Q.pose(rotate(frontal, 25))
    assert roll == pytest.approx(25, abs=0.5) and abs(yaw) < 2 and abs(pitch) < 2
    # the nose half an eye distance to the right: strongly turned
    turned = frontal.copy()
    turned[2, 0] += 0.5 * (frontal[1, 0] - frontal[0, 0])
    yaw, _, _ = Q.pose(turned)
    assert yaw > 35
    turned[2, 0] -= 1.0 * (frontal[1, 0] - frontal[0, 0])
    assert Q.pose(turned)[0] < -35
    # scale does not matter
    assert Q.pose(frontal * 3)[0] == pytest.approx(Q.pose(frontal)[0], abs=1e-6)


def test_sharpness_falls_with_blur_and_ignores_contrast(bush_face):
    grey = Q.face_region_grey(bush_face.crop)
    sharp = Q.sharpness(grey)
    assert Q.sharpness(np.full((68, 64), 120.0)) == 0.0
    assert Q.sharpness(grey * 0.3 + 20) == pytest.approx(sharp, rel=0.01)  # dimmer, same detail
    blurred = [Q.sharpness(np.asarray(Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.GaussianBlur(r)),
                                      np.float32)) for r in (1, 2, 4)]
    assert sharp > blurred[0] > blurred[1] > blurred[2]


def test_grade_score_is_the_weakest_part_with_its_reason():
    good = dict(width_px=100.0, eye_px=40.0, yaw=0.0, pitch=0.0, roll=0.0, sharpness=0.03, brightness=130.0,
                detector=0.999)
    q = Q.grade(**good)
    assert q.score == 1.0 and q.ok and q.reason is None and set(q.components) == {
        "size", "sharpness", "pose", "darkness", "brightness", "detector"}
    cases = {"width_px": (20.0, "20 px wide; use a larger photo"), "sharpness": (0.0006, "blurred"),
             "yaw": (50.0, "turned away"), "pitch": (60.0, "tilted up or down"), "roll": (80.0, "tilted sideways"),
             "brightness": (12.0, "too dark"), "detector": (0.81, "hard to make out")}
    for key, (value, words) in cases.items():
        q = Q.grade(**{**good, key: value})
        assert not q.ok and q.score < QUALITY_FLOOR and words in q.reason, (key, q)
        assert q.score == min(q.components.values())
    washed = Q.grade(**{**good, "brightness": 240.0})
    assert not washed.ok and "too bright" in washed.reason
    assert f"at least {Q.min_face_width()} px" in Q.grade(**{**good, "width_px": 20.0}).reason
    assert Q.min_face_width() == 24
    # ok exactly at the floor; a custom floor is honoured
    assert Q.grade(**{**good, "width_px": 16 + QUALITY_FLOOR * 12}).ok
    assert not Q.grade(**good, floor=1.01).ok


def test_quality_is_frozen_and_serialisable(bush_face):
    q = bush_face.quality
    assert isinstance(q, Quality)
    with pytest.raises(AttributeError):
        q.score = 0.0  # type: ignore[misc]
    d = q.as_dict()
    assert d["ok"] is True and d["reason"] is None and 0 <= d["score"] <= 1
    assert set(d["components"]) == set(q.components)


def test_quality_module_needs_numpy_only():
    tree = ast.parse(Path(Q.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert imported <= {"__future__", "math", "dataclasses", "numpy"}, imported


def test_assess_is_cheap(bush_face):
    started = time.perf_counter()
    for _ in range(50):
        Q.assess(bush_face.box, bush_face.score, bush_face.landmarks, bush_face.crop)
    assert (time.perf_counter() - started) / 50 < 0.02


# -- real photos ------------------------------------------------------------------------------------

def test_normal_lfw_photos_are_ok(engine, lfw):
    for name, number in (("George_W_Bush", 2), ("Colin_Powell", 1), ("Serena_Williams", 1), ("Tony_Blair", 1)):
        q = engine.faces(lfw(name, number))[0].quality
        assert q.ok and q.reason is None and q.score >= 0.85, (name, q)


def test_a_tiny_face_gets_the_size_reason(engine, bush, bush_face):
    width = float(bush_face.box[2] - bush_face.box[0])
    found = None
    for target in (20, 21, 22, 23):  # the detector finds faces from about 22 px
        k = target / width
        small = bush.resize((round(bush.width * k), round(bush.height * k)), Image.BICUBIC, reducing_gap=3.0)
        faces = engine.faces(small)
        if faces and faces[0].quality.width_px < 23:
            found = faces[0]
            break
    assert found is not None, "no face of about 20 px was found"
    q = found.quality
    assert not q.ok and q.score < QUALITY_FLOOR and q.score < bush_face.quality.score
    assert q.reason.startswith(f"the face is {q.width_px:.0f} px wide; use a larger photo")
    with pytest.raises(PoorQuality, match=r"^The face is \d+ px wide; use a larger photo") as refused:
        require_quality(q)
    assert refused.value.quality is q


def test_a_blurred_copy_scores_lower_with_the_blur_reason(engine, bush, bush_face):
    width = float(bush_face.box[2] - bush_face.box[0])
    blurred = engine.faces(bush.filter(ImageFilter.GaussianBlur(radius=0.07 * width)))[0].quality
    assert blurred.score < bush_face.quality.score and blurred.sharpness < bush_face.quality.sharpness
    assert not blurred.ok and blurred.reason == "the face is blurred; use a sharper photo"
    mild = engine.faces(bush.filter(ImageFilter.GaussianBlur(radius=1)))[0].quality
    assert mild.ok  # a little softness is no reason to refuse


def test_a_darkened_copy_gets_the_dark_reason(engine, bush, bush_face):
    dark = engine.faces(ImageEnhance.Brightness(bush).enhance(0.1))[0].quality
    assert not dark.ok and dark.score < bush_face.quality.score
    assert dark.reason.startswith("the photo is too dark")
    assert engine.faces(ImageEnhance.Brightness(bush).enhance(0.5))[0].quality.ok


def test_a_washed_out_copy_gets_the_bright_reason(engine, bush):
    faces = engine.faces(Image.blend(bush, Image.new("RGB", bush.size, (255, 255, 255)), 0.8))
    assert faces, "the washed-out face was not found"
    assert not faces[0].quality.ok and "too bright" in faces[0].quality.reason


def test_a_turned_face_gets_the_pose_reason(engine, lfw):
    photo = load_image(lfw(*TURNED))
    q = engine.faces(photo)[0].quality
    assert not q.ok and q.reason == "the face is turned away; use a photo facing the camera" and abs(q.yaw) > 35
    mirrored = engine.faces(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT))[0].quality
    assert np.sign(mirrored.yaw) == -np.sign(q.yaw) and abs(mirrored.yaw) > 35 and not mirrored.ok


def test_every_face_carries_its_quality(engine, lfw):
    picture = Image.new("RGB", (700, 400), (128, 128, 128))
    picture.paste(load_image(lfw("Tony_Blair", 2)).resize((160, 160)), (40, 120))
    picture.paste(load_image(lfw("Colin_Powell", 1)).resize((300, 300)), (380, 50))
    faces = engine.faces(picture)
    assert len(faces) >= 2 and all(isinstance(f.quality, Quality) for f in faces)
    for batch in engine.faces_batch([lfw("George_W_Bush", 1), lfw("Tony_Blair", 1)]):
        assert all(isinstance(f.quality, Quality) for f in batch)
    # the quality is the face's own: assess() on its fields gives the same
    f = faces[0]
    assert Q.assess(f.box, f.score, f.landmarks, f.crop) == f.quality


def test_a_comparison_on_a_poor_face_warns(engine, bush):
    good = engine.compare(bush, bush)
    assert good.warnings == [] and good.reliable
    dark = ImageEnhance.Brightness(bush).enhance(0.1)
    result = engine.compare(bush, dark)
    assert not result.reliable and len(result.warnings) == 1
    assert result.warnings[0].startswith("The second photo: the photo is too dark")
    assert "unreliable" in result.warnings[0]
    both = engine.compare(dark, dark)
    assert [w.split(":")[0] for w in both.warnings] == ["The first photo", "The second photo"]


def test_require_quality_passes_good_faces(bush_face):
    assert require_quality(bush_face.quality) is bush_face.quality
    with pytest.raises(PoorQuality):
        require_quality(None)


#: An LFW photo whose (most prominent) face is in three-quarter profile: about 40 degrees of yaw.
TURNED = ("Michelle_Pfeiffer", 1)
