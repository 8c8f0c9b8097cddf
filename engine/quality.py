"""Face quality: is this face good enough to enroll, or to trust a verdict on?

Everything is measured from what the engine already has for every face, with numpy alone (no
extra network pass): the detector's score, the face's size in the ORIGINAL photo's pixels,
the head pose from the five landmarks, and the sharpness and brightness of the aligned crop.

Each measurement is mapped onto 0..1 by a linear ramp between a "bad" and a "good" value
(below "bad": 0, above "good": 1); the face's score is the lowest of them (a face is as
usable as its worst aspect), and the reason is the one that set it. The ramps and
QUALITY_FLOOR were chosen on the CelebA validation people that training holds out (never on
LFW): see bench/quality.py and bench/results/quality.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detect import QualityTuning, default_quality_tuning

#: A face whose quality score is below this is refused for enrollment, and a verdict on it
#: carries a warning. The lowest score from which pairs on the validation people stay within
#: 5 points of the accuracy of pairs of flawless faces (bench/results/quality.md). With the
#: 80 px weights (twin-986708c38674) that rule reads 0.5, but only on a tie: the 0.5-0.6 bin is
#: right 89.8% of the time against a limit of 94.8 - 5 = 89.8. A refusal floor should not drop
#: on a rounding tie, so it stays 0.6: below it pairs are right 81% of the time, from it up 94%.
QUALITY_FLOOR = 0.6

# The ramps: (bad, good) for each measurement; 0 at `bad` and beyond, 1 at `good` and beyond.
# Each was set on the validation people from copies of their photos made worse one way at a
# time (bench/quality.py); pose from their natural photos.
#: Face width in pixels of the original photo (the detector's box). The network loses nothing
#: down to 24 px; below that the detector itself misses most faces (at 20 px three in four).
#: At the floor: 23.2 px.
SIZE_RAMP = (16.0, 28.0)
#: sharpness() of the aligned crop. Blur of 3% of the face's width costs 1.5 points (0.0034),
#: 6% costs 14 (0.0007); every natural validation photo is above 0.008. At the floor: 0.002.
SHARPNESS_RAMP = (0.0005, 0.003)
#: |yaw| (left-right turn) in degrees from the landmarks (pose()). Validation pairs: to 30
#: degrees 91% right, 30-35 85%, 35-40 78%, beyond 45 65%. At the floor: 35 degrees.
YAW_RAMP = (45.0, 28.0)
#: |pitch| (up-down) in degrees, rough; the natural validation pairs lose little below 30.
PITCH_RAMP = (45.0, 25.0)
#: |roll| (head tilt): the alignment undoes it, so only an extreme tilt counts.
ROLL_RAMP = (60.0, 35.0)
#: Mean grey level (0..255) of the face region. Too dark: 34 costs 2 points, 16 costs 22.
#: Washed out: 196 costs 2 points, 225 costs 23. At the floor: 25 and 214.
DARK_RAMP = (10.0, 35.0)
BRIGHT_RAMP = (235.0, 200.0)
# The detector's confidence and where its landmarks put a frontal nose depend on the detector:
# those constants live with it (engine.detect.QualityTuning; MTCNN's in engine/detectors/mtcnn.py).

#: The face region of the 112 x 112 aligned crop (rows, columns): eyes, nose, mouth, cheeks;
#: little background, none of the black fill that alignment adds beyond the photo's edge.
FACE_REGION = (slice(36, 104), slice(24, 88))

# Nose tip depth in front of the eyes, in inter-ocular distances (an average head).
_NOSE_DEPTH = 0.6


@dataclass(frozen=True)
class Quality:
    """How usable a face is: a 0..1 score, its components, and a reason when it is not ok.

    score: the lowest of the component scores (each 0..1).
    ok: score >= QUALITY_FLOOR.
    reason: None when ok; otherwise one sentence for a person, saying what is wrong and what
        to do ("the face is 24 px wide; use a larger photo").
    The raw measurements: width_px (the face's box width in the original photo), eye_px (the
    distance between the eyes, in the same pixels), yaw / pitch / roll (degrees, rough),
    sharpness (normalised variance of the Laplacian), brightness (mean grey 0..255),
    detector (the detector's confidence). components: name -> 0..1 score of each.
    """

    score: float
    ok: bool
    reason: str | None
    width_px: float
    eye_px: float
    yaw: float
    pitch: float
    roll: float
    sharpness: float
    brightness: float
    detector: float
    components: dict[str, float]

    def as_dict(self) -> dict:
        """A JSON-ready summary (rounded): for APIs and logs."""
        return {
            "score": round(self.score, 3),
            "ok": self.ok,
            "reason": self.reason,
            "width_px": round(self.width_px, 1),
            "eye_px": round(self.eye_px, 1),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
            "sharpness": round(self.sharpness, 4),
            "brightness": round(self.brightness, 1),
            "detector": round(self.detector, 4),
            "components": {k: round(v, 3) for k, v in self.components.items()},
        }


def ramp(value: float, bad: float, good: float) -> float:
    """0 at `bad`, 1 at `good`, linear between (either order), clipped to 0..1."""
    if good == bad:
        return float(value >= good)
    return float(min(1.0, max(0.0, (value - bad) / (good - bad))))


def pose(landmarks: np.ndarray, tuning: QualityTuning | None = None) -> tuple[float, float, float]:
    """Rough (yaw, pitch, roll) in degrees from the five landmarks (eyes, nose, mouth corners).

    Roll: the angle of the eye line. Then, in the frame that undoes the roll: yaw from the
    nose's sideways offset from the face's axis (the line through the middle of the eyes and
    the middle of the mouth), in inter-ocular distances, through a nose depth of 0.6 of that
    distance; pitch from how far the nose sits from its frontal place between the eye line and
    the mouth line. Signs: yaw > 0 when the nose points to the photo's right, pitch > 0 when
    the face looks down. Good to ten degrees or so: enough to tell a turned face from a frontal one.
    tuning: the detector's (where its frontal nose sits); default: the default detector's.
    """
    frontal_nose = (tuning or default_quality_tuning()).frontal_nose
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = p
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    if eye_dist < 1e-6:
        return 90.0, 0.0, roll
    # Rotate so that the eye line is horizontal; unit: the inter-ocular distance.
    c, s = eye_vec / eye_dist
    rot = np.array([[c, s], [-s, c]])
    q = (p - (left_eye + right_eye) / 2) @ rot.T / eye_dist
    eye_mid = np.zeros(2)
    mouth_mid = (q[3] + q[4]) / 2
    axis = mouth_mid - eye_mid
    axis_len = float(np.hypot(*axis))
    if axis_len < 1e-6:
        return 90.0, 0.0, roll
    # Nose offset across the axis (positive: to the right of it).
    across = float((q[2][0] * axis[1] - q[2][1] * axis[0]) / axis_len)
    # The eyes' projected distance shrinks as cos(yaw) and the nose moves by depth * sin(yaw):
    # in inter-ocular units the offset is depth * tan(yaw).
    yaw = math.degrees(math.atan2(across, _NOSE_DEPTH))
    # Nose position along the axis: 0 at the eye line, 1 at the mouth line.
    along = float(np.dot(q[2], axis) / axis_len**2)
    # The nose tip moves along the axis by depth * sin(pitch), against an eye-mouth span of
    # axis_len * cos(pitch): invert for pitch.
    shift = (along - frontal_nose) * axis_len
    pitch = math.degrees(math.atan2(shift, _NOSE_DEPTH))
    return yaw, pitch, roll


def face_region_grey(crop: np.ndarray) -> np.ndarray:
    """The face region of an aligned crop as float grey 0..255 (rescaled for other crop sizes)."""
    crop = np.asarray(crop)
    if crop.ndim == 3:
        grey = crop[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        grey = crop.astype(np.float32)
    side = grey.shape[0]
    if side != 112:
        k = side / 112.0
        rows = slice(int(round(36 * k)), int(round(104 * k)))
        cols = slice(int(round(24 * k)), int(round(88 * k)))
        return grey[rows, cols]
    return grey[FACE_REGION]


def sharpness(grey: np.ndarray) -> float:
    """Fine detail at the network's scale: the variance of the 4-neighbour Laplacian of the grey
    face region averaged 2 x 2 (the 112 px crop at 56 px; the network sees it at 80 px),
    over the variance of its intensity; 0 when flat.

    The plain variance of the Laplacian grows with contrast: a dim but sharp face would look
    blurred. Divided by the intensity's variance it measures how much of the face's detail is
    fine detail, whatever the lighting. At full crop resolution the rounding noise of 8-bit
    pixels reads as detail once a face is strongly blurred; averaged 2 x 2 it does not.
    """
    g = np.asarray(grey, dtype=np.float32)
    h, w = (g.shape[0] // 2) * 2, (g.shape[1] // 2) * 2
    g = g[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    var = float(g.var())
    if var < 1.0:  # a flat patch: no detail at all
        return 0.0
    return float(lap.var()) / var / 20.0  # / 20: white noise scores 1 (its Laplacian has 20x its variance)


def assess(
    box: np.ndarray,
    score: float,
    landmarks: np.ndarray,
    crop: np.ndarray,
    floor: float = QUALITY_FLOOR,
    tuning: QualityTuning | None = None,
) -> Quality:
    """The quality of one face from its box and landmarks (original photo's pixels), the
    detector's score and its aligned crop (112 x 112 x 3 uint8). tuning: the detector's
    quality constants (default: the default detector's)."""
    return grade(**measure(box, score, landmarks, crop, tuning), floor=floor, tuning=tuning)


def measure(
    box: np.ndarray, score: float, landmarks: np.ndarray, crop: np.ndarray, tuning: QualityTuning | None = None
) -> dict[str, float]:
    """The raw measurements of one face (the keyword arguments of grade())."""
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    yaw, pitch, roll = pose(p, tuning)
    grey = face_region_grey(crop)
    return {
        "width_px": float(box[2] - box[0]),
        "eye_px": float(np.hypot(*(p[1] - p[0]))),
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "sharpness": sharpness(grey),
        "brightness": float(grey.mean()),
        "detector": float(score),
    }


def grade(
    width_px: float,
    eye_px: float,
    yaw: float,
    pitch: float,
    roll: float,
    sharpness: float,
    brightness: float,
    detector: float,
    floor: float = QUALITY_FLOOR,
    tuning: QualityTuning | None = None,
) -> Quality:
    """Raw measurements -> component scores, the overall score, ok and the reason (tuning: the
    detector's quality constants; default: the default detector's)."""
    components = {
        "size": ramp(width_px, *SIZE_RAMP),
        "sharpness": ramp(sharpness, *SHARPNESS_RAMP),
        "pose": min(ramp(abs(yaw), *YAW_RAMP), ramp(abs(pitch), *PITCH_RAMP), ramp(abs(roll), *ROLL_RAMP)),
        "darkness": ramp(brightness, *DARK_RAMP),
        "brightness": ramp(brightness, *BRIGHT_RAMP),
        "detector": ramp(detector, *(tuning or default_quality_tuning()).score_ramp),
    }
    worst = min(components, key=components.__getitem__)  # first of equals: the order above
    value = components[worst]
    ok = value >= floor
    reason = None if ok else _reason(worst, width_px, yaw, pitch, roll)
    return Quality(value, ok, reason, width_px, eye_px, yaw, pitch, roll, sharpness, brightness, detector, components)


def min_face_width(floor: float = QUALITY_FLOOR) -> int:
    """The narrowest face, in whole pixels, whose size reaches the floor."""
    bad, good = SIZE_RAMP
    return math.ceil(bad + floor * (good - bad) - 1e-9)


def _reason(component: str, width: float, yaw: float, pitch: float, roll: float) -> str:
    if component == "size":
        return f"the face is {width:.0f} px wide; use a larger photo (the face at least {min_face_width()} px wide)"
    if component == "sharpness":
        return "the face is blurred; use a sharper photo"
    if component == "pose":
        angles = {
            "turned away": abs(yaw) / YAW_RAMP[0],
            "tilted up or down": abs(pitch) / PITCH_RAMP[0],
            "tilted sideways": abs(roll) / ROLL_RAMP[0],
        }
        how = max(angles, key=angles.__getitem__)
        return f"the face is {how}; use a photo facing the camera"
    if component == "darkness":
        return "the photo is too dark; use a brighter photo"
    if component == "brightness":
        return "the photo is too bright (washed out); use a photo with softer light"
    return "the face is hard to make out; use a clearer photo of the face"


def require_quality(quality: Quality | None, floor: float = QUALITY_FLOOR) -> Quality:
    """The quality itself when it reaches the floor; otherwise raise PoorQuality with the reason
    (for enrollment: "The face is 24 px wide; use a larger photo ...")."""
    from .errors import PoorQuality

    if quality is None:
        raise PoorQuality(None, "The face's quality is unknown; it cannot be checked for enrollment.")
    if quality.score < floor:
        reason = quality.reason or _reason(
            min(quality.components, key=quality.components.__getitem__),
            quality.width_px,
            quality.yaw,
            quality.pitch,
            quality.roll,
        )
        raise PoorQuality(quality, f"{reason[:1].upper()}{reason[1:]}.")
    return quality
