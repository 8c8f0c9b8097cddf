"""LFW accuracy on the path users take: `FaceEngine.faces()` on the original photo.

    python bench/product_path.py [--weights engine/weights/twin.pt ...] [--out bench/results/product_path.md]

The protocol figures (engine/evaluate.py) embed the cached evaluation crops, where the face
nearest the centre was aligned (fixed landmarks when none is found). Here every photo of the
LFW pairs goes through the product as a user's photo would: `FaceEngine.faces(path)`, the
most prominent face (largest inside the photo, then nearest the centre), no fallback. A photo with no face
found makes its pairs count as answered "different". View 2 10-fold accuracy, and accuracy at
the model's own shipped threshold (fitted on View 1). Several weights are measured side by
side in one run; the crops faces() returns are cached once (they do not depend on the weights),
so measuring another model costs only its network pass.
face_recognition (dlib) on the same pairs, from the accuracy issue's own measurement (not rerun
here: it needs .venv-bench): 0.984 ± 0.005 10-fold, 0.9825 at its 0.6 threshold.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine import FaceEngine
from engine.align import ALIGNMENT_VERSION
from engine.settings import CACHE_ROOT, LFW_DIR, ROOT
from training.evaluate import folds_of, parse_pairs, ten_fold_accuracy
from training.metrics import accuracy_at, roc_auc

RESULTS = ROOT / "bench" / "results"
CHUNK = 8
DLIB_REFERENCE = "0.984 ± 0.005 (from the accuracy issue's side-by-side run; 0.9825 at its 0.6 threshold)"


def detection_key(engine: FaceEngine) -> str:
    """Names the crops faces() makes: the detector's version and settings, and the alignment's
    version (engine.detectors.mtcnn.DETECTION_VERSION, engine.align.ALIGNMENT_VERSION). Built from
    declared versions, not from source bytes, so reformatting the code keeps the cache; a
    change that moves boxes or landmarks bumps a version. The network and the picker of
    faces() do not change the crop of the most prominent face."""
    described = json.dumps([engine.detector.describe(), ALIGNMENT_VERSION], sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()[:12]


def product_crops(engine: FaceEngine, photos: list[str], tag: str = "faces") -> tuple[np.ndarray, np.ndarray]:
    """Each photo's most prominent face as `FaceEngine.faces()` aligns it: crops, found mask.

    The crop does not depend on the weights (the picker uses the detector's boxes only), so
    it is cached once per version of the detection code (.cache/product/faces-KEY.npz) and
    every model is measured by embedding these crops exactly as faces() does. `tag` names the
    list of photos (View 2's "faces"; bench/oneshot.py caches every LFW photo as "lfw-all").
    """
    cache = CACHE_ROOT / "product" / f"{tag}-{detection_key(engine)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            if list(data["names"]) == photos:
                return data["crops"], data["found"]
    crops = np.zeros((len(photos), 112, 112, 3), np.uint8)
    found = np.zeros(len(photos), bool)
    started = time.monotonic()
    # faces_batch() = faces() on each photo, the photos detected side by side on the engine's threads.
    for start in range(0, len(photos), CHUNK):
        batch = engine.faces_batch([LFW_DIR / p for p in photos[start:start + CHUNK]], max_faces=1)
        for i, faces in enumerate(batch, start):
            if faces:
                crops[i], found[i] = faces[0].crop, True
        done = min(start + CHUNK, len(photos))
        if done % 496 == 0 or done == len(photos):
            rate = done / (time.monotonic() - started)
            print(f"  faces(): {done}/{len(photos)} photos, {rate:.1f}/s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache.with_suffix(".tmp.npz"), names=np.array(photos), crops=crops, found=found)
    cache.with_suffix(".tmp.npz").replace(cache)
    return crops, found


def embed_all(engine: FaceEngine, photos: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each photo's most prominent face through FaceEngine.faces(); the photos with none."""
    crops, found = product_crops(engine, photos)
    vectors = engine.embed_crops(crops[found]) if found.any() else np.zeros((0, engine.embedding_size))
    kept = [p for p, f in zip(photos, found, strict=True) if f]
    return dict(zip(kept, vectors, strict=True)), [p for p, f in zip(photos, found, strict=True) if not f]


def view2_scores(engine: FaceEngine, threshold: float) -> dict:
    """LFW View 2 through faces(): 10-fold, accuracy at `threshold`, AUC; a photo without a
    face makes its pairs "different" (distance 99)."""
    view2 = parse_pairs(LFW_DIR / "pairs.txt")
    photos = sorted({p for pair in view2 for p in (pair.a, pair.b)})
    vectors, missing = embed_all(engine, photos)
    distances = np.array(
        [np.linalg.norm(vectors[p.a] - vectors[p.b]) if p.a in vectors and p.b in vectors else 99.0 for p in view2]
    )
    same = np.array([p.same for p in view2])
    return {"tenfold": ten_fold_accuracy(distances, same, folds_of(LFW_DIR / "pairs.txt", len(view2))),
            "at_threshold": accuracy_at(distances, same, threshold), "auc": roc_auc(distances, same),
            "no_face": len(missing), "photos": len(photos)}


def measure(weights: Path) -> dict:
    engine = FaceEngine(weights, device="cpu")
    started = time.monotonic()
    scores = view2_scores(engine, engine.threshold)
    return {"weights": str(weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights),
            "model_id": engine.model_id, "threshold": engine.threshold, **scores,
            "seconds": time.monotonic() - started}


def record_in_card(weights: Path, row: dict) -> None:
    """lfw.product_path in the card beside the weights (skipped when there is no card)."""
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        return
    card = json.loads(card_path.read_text())
    card.setdefault("lfw", {})["product_path"] = {
        "mean": row["tenfold"]["mean"], "std": row["tenfold"]["std"], "at_threshold": row["at_threshold"],
        "auc": row["auc"], "no_face_photos": row["no_face"], "photos": row["photos"],
        "how": "View 2 10-fold through FaceEngine.faces() on the original photos, most prominent face "
               "(bench/product_path.py)"}
    card_path.write_text(json.dumps(card, indent=1, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+", default=[ROOT / "engine" / "weights" / "twin.pt"])
    parser.add_argument("--out", type=Path, default=RESULTS / "product_path.md")
    parser.add_argument("--write-card", action="store_true",
                        help="record each model's product-path figure in its model card (WEIGHTS.json), "
                             "where the About tab shows it")
    args = parser.parse_args(argv)
    rows = [measure(w) for w in args.weights]
    if args.write_card:
        for weights, r in zip(args.weights, rows, strict=True):
            record_in_card(weights, r)
    lines = ["# LFW through the product path", "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `python bench/product_path.py --weights {' '.join(r['weights'] for r in rows)}`",
             "- every photo of LFW View 2's pairs through `FaceEngine.faces(path)` (the app's own detector "
             "settings), the most prominent face; no face found = that pair answered \"different\".",
             "", "| weights | model id | View 2 10-fold | at its shipped threshold | AUC | photos without a face |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['weights']} | {r['model_id']} | {r['tenfold']['mean']:.4f} ± {r['tenfold']['std']:.4f} | "
                     f"{r['at_threshold']:.4f} (threshold {r['threshold']:.3f}) | {r['auc']:.4f} | "
                     f"{r['no_face']} of {r['photos']} |")
    lines += ["", f"face_recognition (dlib) on the same pairs: {DLIB_REFERENCE}."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
