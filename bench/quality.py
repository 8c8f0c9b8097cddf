"""Face quality against verification accuracy: where should enrollment draw the line?

    python bench/quality.py            # writes bench/results/quality.md (bench/accuracy.py calls it too)

Data (the rules of ../shared/data/README.md: LFW never chooses anything):
- CelebA + AT&T validation people: the 154 people (706 photos) that training holds out
  (training.data.split_by_identity with the shipped recipe's fraction and seed) and their 3,000
  validation pairs (training.pairs.validation_pairs). The quality floor and the verdict band
  are chosen here.
- The same pairs with one photo degraded the way users' photos are: shrunk (the face 12 to
  60 px wide), blurred (Gaussian, radius 0.5% to 8% of the face's width), darkened (x 0.04 to
  x 0.5) or washed out. Natural validation photos are almost all good; the degraded copies
  show what poor ones cost.
- LFW View 2's 6,000 pairs, reported only.

Every photo is detected and aligned as the crop cache does it (training.data: its padding, its
detector policy, its choice of face), keeping what the cache drops: box, score, landmarks.
The measurements and aligned crops are cached in .cache/quality/ (keyed by the alignment, the
detector policy, the photo list and this file's DEGRADE_VERSION, not by the model): measuring
new weights costs only their network pass over the cached crops, about a minute, instead of
detecting every degraded photo again (about 30 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from engine.settings import ROOT  # noqa: E402  (the project root, defined once)

from engine import quality as Q  # noqa: E402
from engine.align import ALIGNMENT_VERSION  # noqa: E402
from engine.detect import crop_cache_detector, crop_cache_key  # noqa: E402
from engine.images import load_image  # noqa: E402
from training.data import (  # noqa: E402
    DATA_DIR,
    FolderSet,
    crop_cache_file,
    detect_for_cache,
    known_sets,
    split_by_identity,
)

RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache" / "quality"
#: Bumped when the degradations or the way photos are measured change (the cache is rebuilt).
DEGRADE_VERSION = 2
MEASURES = ("width_px", "eye_px", "yaw", "pitch", "roll", "sharpness", "brightness", "detector")
#: The training recipe's split (training.config.TrainConfig defaults, as the shipped weights used).
VAL_SETS = ("celeba_aligned", "celeba_wild", "att_train")
VAL_FRACTION, VAL_SEED = 0.05, 0


@dataclass
class Measured:
    """Per photo: found (a face was detected), the raw quality measurements, the embedding, and
    the grey face region of the aligned crop (to try other measures without detecting again)."""

    found: np.ndarray           # N bool
    values: np.ndarray          # N x len(MEASURES) float64 (NaN where not found)
    embeddings: np.ndarray      # N x D float32 (zeros where not found)
    regions: np.ndarray         # N x 68 x 64 float16: engine.quality.face_region_grey of the crop
    boxes: np.ndarray           # N x 4 float32, in the (padded) detection image's pixels
    landmarks: np.ndarray       # N x 5 x 2 float32, same pixels

    def quality(self, i: int) -> Q.Quality | None:
        """Graded from the stored box, landmarks and crop region (engine.quality as it is now:
        its ramps and pose may change without detecting again)."""
        if not self.found[i]:
            return None
        yaw, pitch, roll = Q.pose(self.landmarks[i])
        region = self.regions[i].astype(np.float32)
        return Q.grade(width_px=float(self.boxes[i][2] - self.boxes[i][0]),
                       eye_px=float(np.hypot(*(self.landmarks[i][1] - self.landmarks[i][0]))),
                       yaw=yaw, pitch=pitch, roll=roll, sharpness=Q.sharpness(region),
                       brightness=float(region.mean()), detector=float(self.measure("detector")[i]))

    def qualities(self) -> list[Q.Quality | None]:
        return [self.quality(i) for i in range(len(self.found))]

    def scores(self) -> np.ndarray:
        """The quality score of every photo (0 where no face was found)."""
        return np.array([q.score if q is not None else 0.0 for q in self.qualities()])

    def measure(self, name: str) -> np.ndarray:
        return self.values[:, MEASURES.index(name)]


# -- which photos, which pairs --------------------------------------------------------------------

def validation_split(data_dir: Path = DATA_DIR) -> tuple[list[tuple[FolderSet, str]], np.ndarray, np.ndarray]:
    """The held-out validation photos (set, path in it), their labels, and the validation pairs
    (i, j, y; y = 0 same person), exactly as training draws them (without loading the crops)."""
    from training.data import CropSet
    from training.pairs import validation_pairs
    sets = known_sets(data_dir)
    items: list[tuple[FolderSet, str]] = []
    labels, offset = [], 0
    for name in VAL_SETS:
        with np.load(crop_cache_file(sets[name]), allow_pickle=False) as z:
            labels.append(z["labels"] + offset)
            offset += len(z["names"])
            items += [(sets[name], str(p)) for p in z["paths"]]
    all_labels = np.concatenate(labels)
    _, val = split_by_identity(CropSet(None, all_labels, [], [], None), VAL_FRACTION, VAL_SEED)  # type: ignore[arg-type]
    val_labels = all_labels[val]
    return [items[i] for i in val], val_labels, validation_pairs(val_labels, VAL_SEED)


def lfw_view2(data_dir: Path = DATA_DIR) -> tuple[list[tuple[FolderSet, str]], np.ndarray]:
    """LFW View 2's photos and pairs (i, j, y; y = 0 same person)."""
    from training.evaluate import parse_pairs
    lfw = known_sets(data_dir)["lfw"]
    pairs = parse_pairs(lfw.root / "pairs.txt")
    photos = sorted({p for pair in pairs for p in (pair.a, pair.b)})
    index = {p: i for i, p in enumerate(photos)}
    return [(lfw, p) for p in photos], np.array([(index[p.a], index[p.b], 0 if p.same else 1) for p in pairs])


# -- degradations -----------------------------------------------------------------------------------

#: The degradations of the validation photos: (kind, strength). shrink: the face's width in px
#: after shrinking the photo; blur: Gaussian radius as a fraction of the face's width; dark:
#: brightness factor; bright: the fraction of the way to white.
DEGRADATIONS: tuple[tuple[str, float], ...] = (
    ("shrink", 16), ("shrink", 20), ("shrink", 24), ("shrink", 32),
    ("blur", 0.015), ("blur", 0.03), ("blur", 0.06),
    ("dark", 0.06), ("dark", 0.12), ("dark", 0.25),
    ("bright", 0.5), ("bright", 0.75),
)


def degrade(image: Image.Image, kind: str, strength: float, face_width: float) -> Image.Image:
    """A copy of the photo made worse: shrunk so the face is `strength` px wide, blurred with a
    radius of strength x the face's width, darkened by a factor, or washed towards white."""
    if kind == "shrink":
        factor = min(1.0, strength / max(face_width, 1.0))
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return image.resize(size, Image.BICUBIC, reducing_gap=3.0)
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=strength * face_width))
    if kind == "dark":
        return ImageEnhance.Brightness(image).enhance(strength)
    if kind == "bright":
        return Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), strength)
    raise ValueError(kind)


# -- measuring ------------------------------------------------------------------------------------

class CacheDetector:
    """Detection and the choice of face exactly as the crop cache makes them (training.data)."""

    def __init__(self):
        self.detector = crop_cache_detector()

    def __call__(self, folder: FolderSet, image: Image.Image):
        """(detection, aligned crop) of the set's chosen face, or (None, None)."""
        photo = detect_for_cache(self.detector, folder, image)
        if not photo.detections:
            return None, None
        return photo.detections[0], photo.crops[0]


def measure_photos(engine, items: Sequence[tuple[FolderSet, str]], name: str,
                   transform: Callable[[int, Image.Image, CacheDetector, FolderSet], Image.Image] | None = None,
                   key: Any = None, progress: bool = True) -> Measured:
    """Detect, align, measure and embed every photo (optionally transformed first). The crops and
    measurements are cached without the model; the embeddings are made now, by this engine."""
    digest = hashlib.sha256(json.dumps([ALIGNMENT_VERSION, crop_cache_key(), DEGRADE_VERSION,
                                        [(f.name, p) for f, p in items], key], default=str).encode()).hexdigest()[:12]
    path = CACHE / f"{name}-{digest}.npz"
    if path.is_file():
        with np.load(path) as z:
            found, crops = z["found"], z["crops"]
            rest = [z[k] for k in ("values", "regions", "boxes", "landmarks")]
        return Measured(found, rest[0], embed_found(engine, crops, found), *rest[1:])
    detect = CacheDetector()
    found = np.zeros(len(items), bool)
    values = np.full((len(items), len(MEASURES)), np.nan)
    crops = np.zeros((len(items), 112, 112, 3), np.uint8)
    regions = np.zeros((len(items), *Q.face_region_grey(crops[0]).shape), np.float16)
    boxes = np.zeros((len(items), 4), np.float32)
    landmarks = np.zeros((len(items), 5, 2), np.float32)
    started = time.time()
    for i, (folder, rel) in enumerate(items):
        image = load_image(folder.root / rel)
        if transform is not None:
            image = transform(i, image, detect, folder)
        detection, crop = detect(folder, image)
        if detection is not None:
            m = Q.measure(detection.box, detection.score, detection.landmarks, crop)
            values[i] = [m[k] for k in MEASURES]
            crops[i] = crop
            regions[i] = Q.face_region_grey(crop)
            boxes[i], landmarks[i] = detection.box, detection.landmarks
            found[i] = True
        if progress and (i + 1) % 500 == 0:
            print(f"  {name}: {i + 1}/{len(items)} photos, {time.time() - started:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, found=found, values=values, crops=crops, regions=regions, boxes=boxes, landmarks=landmarks)
    tmp.replace(path)
    embeddings = embed_found(engine, crops, found)
    return Measured(found, values, embeddings, regions, boxes, landmarks)


def embed_found(engine, crops: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The engine's embeddings of the crops where a face was found (zeros elsewhere)."""
    embeddings = np.zeros((len(crops), engine.embedding_size), np.float32)
    if found.any():
        embeddings[found] = engine.embed_crops(crops[found])
    return embeddings


def degraded_transform(kind: str, strength: float):
    def transform(i: int, image: Image.Image, detect: CacheDetector, folder: FolderSet) -> Image.Image:
        detection, _ = detect(folder, image)
        width = detection.width if detection is not None else 0.4 * image.width
        return degrade(image, kind, strength, width)
    return transform


def measure_validation(engine, progress: bool = True):
    """(items, labels, pairs, clean, {(kind, strength): degraded}) of the validation people."""
    items, labels, pairs = validation_split()
    clean = measure_photos(engine, items, "val", progress=progress)
    degraded = {}
    for kind, strength in DEGRADATIONS:
        degraded[(kind, strength)] = measure_photos(engine, items, f"val-{kind}-{strength}",
                                                    transform=degraded_transform(kind, strength),
                                                    key=(kind, strength), progress=progress)
        if progress:
            print(f"  val {kind} {strength}: {degraded[(kind, strength)].found.mean() * 100:.0f}% found", flush=True)
    return items, labels, pairs, clean, degraded


# -- tables -----------------------------------------------------------------------------------------

def pair_distances(a: Measured, b: Measured, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distances, same, usable) of pairs whose photo i comes from `a` and photo j from `b`."""
    usable = a.found[pairs[:, 0]] & b.found[pairs[:, 1]]
    d = np.linalg.norm(a.embeddings[pairs[:, 0]] - b.embeddings[pairs[:, 1]], axis=1)
    return d, pairs[:, 2] == 0, usable


@dataclass
class PairSet:
    """Scored pairs: the lower quality of the two faces, whether the shipped threshold got the
    pair right, same or not, and the worse face's weakest component."""

    min_quality: np.ndarray
    correct: np.ndarray
    same: np.ndarray
    weakest: np.ndarray
    distance: np.ndarray

    @classmethod
    def of(cls, a: Measured, b: Measured, pairs: np.ndarray, threshold: float) -> PairSet:
        d, same, usable = pair_distances(a, b, pairs)
        qa, qb = a.qualities(), b.qualities()
        lows, weakest = [], []
        for i, j in pairs[usable, :2]:
            worse = qa[i] if qa[i].score <= qb[j].score else qb[j]
            lows.append(worse.score)
            weakest.append(min(worse.components, key=worse.components.__getitem__) if worse.score < 1 else "")
        d, same = d[usable], same[usable]
        return cls(np.array(lows), (d <= threshold) == same, same, np.array(weakest, dtype=object), d)

    @classmethod
    def concat(cls, parts: Sequence[PairSet]) -> PairSet:
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("min_quality", "correct", "same", "weakest", "distance")))

    def __len__(self) -> int:
        return len(self.correct)


#: Bins of the pair's lower quality score: [lo, hi), and the faces with no flaw (exactly 1).
BINS = tuple(round(0.1 * k, 1) for k in range(11))


def bin_rows(pairs: PairSet, bins: Sequence[float] = BINS) -> list[dict[str, Any]]:
    """Per bin of the lower quality score: pairs, same-person pairs, accuracy at the threshold,
    and the commonest weakest component."""
    rows = []
    for lo, hi in list(zip(bins[:-1], bins[1:], strict=True)) + [(1.0, None)]:
        inside = pairs.min_quality >= lo if hi is None else (pairs.min_quality >= lo) & (pairs.min_quality < hi)
        weak = [w for w in pairs.weakest[inside] if w]
        common = max(set(weak), key=weak.count) if weak else ""
        rows.append({"lo": lo, "hi": hi, "pairs": int(inside.sum()), "same": int(pairs.same[inside].sum()),
                     "accuracy": float(pairs.correct[inside].mean()) if inside.any() else float("nan"),
                     "weakest": common})
    return rows


def suggest_floor(rows: list[dict[str, Any]], tolerance: float = 0.05, min_pairs: int = 100) -> float:
    """The lowest bin edge from which every bin (of at least min_pairs pairs) stays within
    `tolerance` of the accuracy on pairs of flawless faces (the last row)."""
    reference = rows[-1]["accuracy"]
    floor = 1.0
    for row in reversed(rows[:-1]):
        if row["pairs"] >= min_pairs and row["accuracy"] < reference - tolerance:
            break
        floor = row["lo"]
    return floor


def pct(x: float) -> str:
    return "-" if x != x else f"{x * 100:.1f}%"


def table(rows: list[dict[str, Any]], floor: float) -> list[str]:
    out = ["| lower quality of the pair | pairs | same-person pairs | accuracy | commonest weakest part |",
           "|---|---|---|---|---|"]
    for r in rows:
        label = "1.0 (no flaw)" if r["hi"] is None else f"{r['lo']:.1f} - {r['hi']:.1f}"
        if r["hi"] is not None and abs(r["lo"] - floor) < 1e-9:
            label = f"**{label}** (the floor)"
        out.append(f"| {label} | {r['pairs']} | {r['same']} | {pct(r['accuracy'])} | {r['weakest'] or '-'} |")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-lfw", action="store_true", help="skip the LFW report (about 30 minutes on 2 "
                                                                "busy cores the first time; cached after)")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from engine.pipeline import FaceEngine
    engine = FaceEngine(device="cpu")
    print(run(engine, lfw=not args.no_lfw)["markdown"])
    return 0


def run(engine, lfw: bool = True, out: Path | None = RESULTS / "quality.md") -> dict[str, Any]:
    """Measure everything (or read the cache), write the report to `out` (None: do not write).

    Returns {"markdown": the report, "summary": a few lines for accuracy.md (the main table),
    "floor": the floor the rule suggests, "rows": the main table's rows}.
    """
    from training.thresholds import band_stats
    items, labels, pairs, clean, degraded = measure_validation(engine)
    threshold = engine.threshold
    natural = PairSet.of(clean, clean, pairs, threshold)
    worse = {key: PairSet.of(m, clean, pairs, threshold) for key, m in degraded.items()}
    pooled = PairSet.concat([natural, *worse.values()])
    rows = bin_rows(pooled)
    floor = suggest_floor(rows)
    clean_q = [q for q in clean.qualities() if q is not None]
    refused = [q for q in clean_q if q.score < Q.QUALITY_FLOOR]
    lines = [
        "# Face quality and verification accuracy",
        "",
        f"Made by `python bench/quality.py` (also run by `make bench-accuracy`) on {time.strftime('%Y-%m-%d')}. "
        f"Model `{engine.model_id}`, accuracy at its shipped threshold {threshold:.4f}. The quality score "
        "(engine/quality.py) is the lowest of its parts, each a 0..1 ramp: face size in the photo's pixels, "
        "sharpness of the aligned crop, pose from the five landmarks, darkness, brightness and the detector's "
        "confidence. A pair is as good as its worse face: pairs are binned by the lower of the two scores.",
        "",
        "## Choosing the floor: the validation people training holds out",
        "",
        f"{len(items)} photos of the {len(np.unique(labels))} CelebA + AT&T people the training "
        f"split holds out, their {len(pairs)} validation pairs as training draws them, and the same pairs with "
        "the first photo degraded the way users' photos are (shrunk, blurred, darkened, washed out; "
        f"{len(DEGRADATIONS)} versions, below). Natural validation photos are nearly all good: the degraded copies "
        "show what poor ones cost. LFW chose nothing here.",
        "",
        *table(rows, Q.QUALITY_FLOOR),
        "",
        f"Rule: the floor is the lowest bin edge from which every bin of 100 pairs or more stays within 5 points "
        f"of the accuracy on pairs of flawless faces ({pct(rows[-1]['accuracy'])}). It gives **{floor:.1f}**; "
        f"`engine.quality.QUALITY_FLOOR` is **{Q.QUALITY_FLOOR}**"
        + (" (the same)." if abs(floor - Q.QUALITY_FLOOR) < 1e-9 else " (they differ: rerun and reconsider).")
        + f" Below it, pairs are right {pct(float(pooled.correct[pooled.min_quality < Q.QUALITY_FLOOR].mean()))} "
        f"of the time; from it up, {pct(float(pooled.correct[pooled.min_quality >= Q.QUALITY_FLOOR].mean()))}. "
        f"Of the {len(clean_q)} natural validation photos, {len(refused)} "
        f"({len(refused) / max(1, len(clean_q)) * 100:.1f}%) fall below the floor"
        + _reasons_note(refused) + ".",
        "",
        "### Natural validation pairs only",
        "",
        *table(bin_rows(natural), Q.QUALITY_FLOOR),
        "",
        "### Each degradation (the first photo of every validation pair)",
        "",
        "What each part's ramp was set from. Faces found: by the crop cache's detector policy; accuracy over the "
        "pairs whose degraded photo still has a face.",
        "",
        "| degradation | faces found | median measure | median part score | below the floor | accuracy |",
        "|---|---|---|---|---|---|",
        f"| none | {clean.found.mean() * 100:.0f}% | width {np.nanmedian(clean.measure('width_px')):.0f} px | - | "
        f"{len(refused) / max(1, len(clean_q)) * 100:.1f}% | {pct(float(natural.correct.mean()))} |",
    ]
    parts = {"shrink": ("size", "width", lambda q: q.width_px, "{:.0f} px"),
             "blur": ("sharpness", "sharpness", lambda q: q.sharpness, "{:.4f}"),
             "dark": ("darkness", "brightness", lambda q: q.brightness, "{:.0f}"),
             "bright": ("brightness", "brightness", lambda q: q.brightness, "{:.0f}")}
    what = {"shrink": "shrunk: face {} px wide", "blur": "Gaussian blur, radius {} x face width",
            "dark": "darkened x {}", "bright": "washed out {} of the way to white"}
    for (kind, strength), m in degraded.items():
        part, label, value, fmt = parts[kind]
        qs = [q for q in m.qualities() if q is not None]
        p = worse[(kind, strength)]
        if qs:
            measure = f"{label} {fmt.format(float(np.median([value(q) for q in qs])))}"
            score = f"{np.median([q.components[part] for q in qs]):.2f}"
            below = f"{np.mean([q.score < Q.QUALITY_FLOOR for q in qs]) * 100:.0f}%"
        else:
            measure = score = below = "-"
        lines.append(f"| {what[kind].format(strength)} | {m.found.mean() * 100:.0f}% | {measure} | {score} | {below} | "
                     f"{pct(float(p.correct.mean())) if len(p) else '-'} |")
    yaw = np.abs(np.array([q.yaw for q in clean.qualities()]))
    pair_yaw = np.maximum(yaw[pairs[:, 0]], yaw[pairs[:, 1]])
    natural_all = pair_distances(clean, clean, pairs)
    correct_all = (natural_all[0] <= threshold) == natural_all[1]
    yaw_rows = []
    for lo, hi in ((0, 30), (30, 35), (35, 40), (40, 45), (45, 180)):
        inside = (pair_yaw >= lo) & (pair_yaw < hi)
        yaw_rows.append(f"| {f'{lo} - {hi}' if hi < 180 else f'{lo} and more'} | {int(inside.sum())} | "
                        f"{pct(float(correct_all[inside].mean())) if inside.any() else '-'} | "
                        f"{Q.ramp(float(lo), *Q.YAW_RAMP):.2f} - {Q.ramp(float(min(hi, 90)), *Q.YAW_RAMP):.2f} |")
    lines += [
        "",
        "Pose has no degradation to make: its ramps come from the natural validation pairs, by the larger yaw "
        "(degrees, estimated from the landmarks) of the two faces:",
        "",
        "| yaw | pairs | accuracy | pose score |",
        "|---|---|---|---|",
        *yaw_rows,
        "",
        "Size matters little to this network down to 24 px (it learned from small CelebA faces, with "
        "low-resolution augmentation): the size ramp sits where detection itself gives out (shrunk to 20 px, "
        "a quarter of the faces are still found; at 24 px all of them). That is cautious: the faces shrunk to "
        "about 24 px that came out at 22-23 px are refused though their pairs lose nothing, a fair price for an "
        "enrollment that stays in the gallery for good. Natural sharpness varies with the face "
        "(smooth skin, soft light) as much as with focus: the sharpness ramp sits below every natural validation "
        "photo, where real blur costs accuracy, so that no sharp photo of a smooth face is called blurred.",
    ]
    if lfw:
        lfw_items, lfw_pairs = lfw_view2()
        measured = measure_photos(engine, lfw_items, "lfw-view2")
        lfw_set = PairSet.of(measured, measured, lfw_pairs, threshold)
        lfw_q = [q for q in measured.qualities() if q is not None]
        lfw_refused = [q for q in lfw_q if q.score < Q.QUALITY_FLOOR]
        below = lfw_set.min_quality < Q.QUALITY_FLOOR
        lines += [
            "",
            "## LFW View 2 (reported, chose nothing)",
            "",
            f"The {len(lfw_set)} pairs of View 2, photos as the crop cache detects them (the face nearest the centre).",
            "",
            *table(bin_rows(lfw_set), Q.QUALITY_FLOOR),
            "",
            f"Pairs with a face below the floor: {int(below.sum())}, right {pct(float(lfw_set.correct[below].mean()))} "
            f"of the time; the others {pct(float(lfw_set.correct[~below].mean()))}. Of {len(lfw_q)} LFW photos, "
            f"{len(lfw_refused)} ({len(lfw_refused) / max(1, len(lfw_q)) * 100:.1f}%) fall below the floor"
            + _reasons_note(lfw_refused) + ".",
        ]
    band = engine.verdict_band
    val_stats = band_stats(band, natural.distance, natural.same)
    lines += [
        "",
        "## The verdict band",
        "",
        f"`same` when the distance is at most {band.low:.4f}, `different` above {band.high:.4f}, `not sure` "
        f"between (the threshold {threshold:.4f} inside). Source: {band.source}.",
        "",
        "| pairs | same | not sure | different | sure verdicts right | same right | different right |",
        "|---|---|---|---|---|---|---|",
        _band_row("validation (chose the band)", val_stats),
    ]
    if lfw:
        lines.append(_band_row("LFW View 2 (reported)", band_stats(band, lfw_set.distance, lfw_set.same)))
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    below = pooled.min_quality < Q.QUALITY_FLOOR
    summary = [
        f"Verification accuracy at the shipped threshold by the lower quality score of the pair, on the "
        f"validation people training holds out ({len(pairs)} pairs, natural and with one photo shrunk, blurred, "
        f"darkened or washed out; LFW chose nothing). Enrollment refuses faces below "
        f"`QUALITY_FLOOR` = {Q.QUALITY_FLOOR}: pairs below it are right {pct(float(pooled.correct[below].mean()))} "
        f"of the time, the others {pct(float(pooled.correct[~below].mean()))}. Details, each degradation, LFW "
        f"and the verdict band: [quality.md](quality.md).",
        "",
        *table(rows, Q.QUALITY_FLOOR),
    ]
    return {"markdown": text, "summary": summary, "floor": floor, "rows": rows}


def _band_row(name: str, stats: dict[str, Any]) -> str:
    return (f"| {name}: {stats['pairs']} | {pct(stats['share_same'])} | {pct(stats['share_not_sure'])} | "
            f"{pct(stats['share_different'])} | {pct(stats['sure_accuracy'])} | {pct(stats['same_right'])} | "
            f"{pct(stats['different_right'])} |")


def _reasons_note(qualities: list[Q.Quality]) -> str:
    if not qualities:
        return ""
    return " (weakest part: " + ", ".join(f"{r} {n}" for r, n in _count_reasons(qualities)) + ")"


def _count_reasons(qualities: list[Q.Quality]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for q in qualities:
        key = min(q.components, key=q.components.__getitem__)
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


if __name__ == "__main__":
    sys.exit(main())
