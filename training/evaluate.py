"""Evaluate a twin network on LFW with the standard protocol, and fit its threshold and calibration.

    python -m training.evaluate                         # engine/weights/twin.pt
    python -m training.evaluate --weights runs/x/model.pt --write-card

View 2 (pairs.txt): 10 folds in file order; for each fold the threshold is fitted on the other
nine and tested on it; mean +- std. The shipped threshold is fitted on View 1 (pairsDevTrain +
pairsDevTest) only, and its accuracy reported on View 2. The 0..1 similarity is a logistic fit
of P(same | distance) on View 1. LFW is never used for training or model selection.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.settings import RESULTS_DIR

from .metrics import accuracy_at, best_threshold_accuracy, eer, roc, roc_auc, tar_at_far

RESULTS = RESULTS_DIR


#: What the model card says of the teacher when the weights were trained with distillation.
TEACHER_CARD = {
    "model": "dlib's ResNet face encoder (dlib_face_recognition_resnet_model_v1, from the face_recognition_models "
    "package), by Davis King",
    "licence": "public domain or CC0 1.0 Universal (dlib-models, Davis King); the face_recognition_models package "
    "that ships it: MIT",
    "use": "training only: its embeddings of the training photos (training/teacher.py) were soft targets for the "
    "distillation terms; it is not part of these weights, and the engine never runs it",
    "its_training_data": "about 3M faces of 7,485 people (VGG, FaceScrub and web photos), LFW identities excluded "
    "by its author",
}


@dataclass
class Pair:
    a: str  # path relative to the LFW root: Name/Name_0001.jpg
    b: str
    same: bool


def lfw_path(name: str, number: str | int) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def parse_pairs(path: str | Path) -> list[Pair]:
    """Read an LFW pairs file (View 1 or View 2), in file order; the header line is skipped."""
    pairs = []
    lines = Path(path).read_text().splitlines()
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 3:
            pairs.append(Pair(lfw_path(parts[0], parts[1]), lfw_path(parts[0], parts[2]), True))
        elif len(parts) == 4:
            pairs.append(Pair(lfw_path(parts[0], parts[1]), lfw_path(parts[2], parts[3]), False))
        elif parts:
            raise ValueError(f"{path}: cannot read pair line {line!r}")
    return pairs


def folds_of(path: str | Path, n_pairs: int) -> list[np.ndarray]:
    """View 2's folds: consecutive blocks in file order, sized by the header "folds pairs-per-class"."""
    header = Path(path).read_text().splitlines()[0].split()
    n_folds = int(header[0]) if len(header) == 2 else 1
    size = n_pairs // n_folds
    return [np.arange(k * size, (k + 1) * size) for k in range(n_folds)]


def ten_fold_accuracy(distances: np.ndarray, same: np.ndarray, folds: Sequence[np.ndarray]) -> dict[str, Any]:
    """Fit the threshold on all folds but one, test on that one; mean and std over folds."""
    accs, thresholds = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        _, t = best_threshold_accuracy(distances[train], same[train])
        accs.append(accuracy_at(distances[test], same[test], t))
        thresholds.append(t)
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "folds": accs, "thresholds": thresholds}


def fit_calibration(distances: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Logistic P(same | d) = 1 / (1 + exp(slope * (d - midpoint)))."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4).fit(distances.reshape(-1, 1), same.astype(int))
    w, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return {"slope": -w, "midpoint": -b / w}


def pair_distances(embeddings: dict[str, np.ndarray], pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
    a = np.stack([embeddings[p.a] for p in pairs])
    b = np.stack([embeddings[p.b] for p in pairs])
    return np.linalg.norm(a - b, axis=1), np.array([p.same for p in pairs])


def evaluate(engine, lfw_dir: Path, plots: Path | None = RESULTS) -> dict[str, Any]:
    """All LFW figures for one engine (its model, flip-averaged embeddings, as the product runs)."""
    from .data import known_sets, load_crops

    crops = load_crops(known_sets(lfw_dir.parent)["lfw"])
    view1 = parse_pairs(lfw_dir / "pairsDevTrain.txt") + parse_pairs(lfw_dir / "pairsDevTest.txt")
    view2 = parse_pairs(lfw_dir / "pairs.txt")
    needed = sorted({p for pair in view1 + view2 for p in (pair.a, pair.b)})
    index = crops.index_of()
    missing = [p for p in needed if p not in index]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} LFW photos of the pairs files are not in the crop cache, e.g. {missing[:3]}"
        )
    rows = np.array([index[p] for p in needed])
    vectors = engine.embed_crops(crops.crops[rows])
    embeddings = dict(zip(needed, vectors))

    d1, s1 = pair_distances(embeddings, view1)
    d2, s2 = pair_distances(embeddings, view2)
    view1_acc, threshold = best_threshold_accuracy(d1, s1)
    folds = folds_of(lfw_dir / "pairs.txt", len(view2))
    result = {
        "view2_10fold": ten_fold_accuracy(d2, s2, folds),
        "threshold": threshold,
        "view1_accuracy_at_threshold": view1_acc,
        "view2_accuracy_at_threshold": accuracy_at(d2, s2, threshold),
        "roc_auc": roc_auc(d2, s2),
        "eer": eer(d2, s2),
        "tar_at_far_1e-2": tar_at_far(d2, s2, 1e-2),
        "tar_at_far_1e-3": tar_at_far(d2, s2, 1e-3),
        "calibration": fit_calibration(d1, s1),
        "no_face_photos": int((~crops.found).sum()),
        "photos": len(crops),
        "no_face_rate": float((~crops.found).mean()),
        "no_face_in_pairs": int(sum(not crops.found[index[p]] for p in needed)),
        "flip_average": bool(engine.flip_average),
        "model_id": engine.model_id,
    }
    if plots is not None:
        plot(d2, s2, threshold, plots)
    return result


def plot(distances: np.ndarray, same: np.ndarray, threshold: float, out_dir: Path) -> None:
    """ROC curve (log false-accept axis) and same/different distance histograms, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    far, tar, _ = roc(distances, same)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.plot(np.maximum(far, 1e-4), tar)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"LFW View 2 ROC (AUC {roc_auc(distances, same):.3f})")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "roc.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    bins = np.linspace(0, max(2.0, float(distances.max())), 60).tolist()
    ax.hist(distances[same], bins=bins, alpha=0.6, label="same person")
    ax.hist(distances[~same], bins=bins, alpha=0.6, label="different people")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("Euclidean distance between embeddings")
    ax.set_ylabel("pairs")
    ax.set_title("LFW View 2 distances")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "distances.png")
    plt.close(fig)


INTENDED_USE = (
    "Research and demonstration of one-shot face verification and identification. Not for decisions "
    "about people. Verification accuracy on LFW and the false-alarm rates of identification are in the "
    "card's figures; both fall with small, blurred, dark or turned faces."
)


def _recipe_text(name: str | None) -> dict[str, Any] | None:
    """The recipe file as it was when the card was written (its name alone could change meaning)."""
    if not name:
        return None
    from .recipes import recipe_path

    try:
        return json.loads(recipe_path(name).read_text())
    except (OSError, ValueError):
        return None


def write_card(weights: Path, result: dict[str, Any], meta: dict[str, Any]) -> Path:
    """The model card next to the weights: what it is, what it learned from, how good it is."""
    train = meta.get("train", {})
    config = train.get("config", {})
    card = {
        "model_id": result["model_id"],
        "architecture": config.get("model", {}),
        "input": "MTCNN (facenet-pytorch) 5 landmarks -> similarity transform onto the 112x112 template -> "
        f"resized to {config.get('model', {}).get('input_size', '?')} px; "
        "embeddings flip-averaged, L2-normalised",
        "training_data": {
            "sets": config.get("sets"),
            "images": train.get("train_images"),
            "people": train.get("train_people"),
            "licence": "CelebA: non-commercial research use only (these weights inherit that). AT&T (ORL) faces: "
            "research data set. LFW (evaluation only, never trained on): research data set.",
        },
        "recipe": {
            k: config.get(k)
            for k in (
                "pairs",
                "margin",
                "p",
                "k",
                "optimizer",
                "lr",
                "weight_decay",
                "warmup_steps",
                "minutes",
                "augment",
                "seed",
                "val_fraction",
                "distill_weight",
                "relational_weight",
                "distill_target",
                "distill_projection",
                "distill_centre",
                "singles_per_batch",
            )
        },
        "recipe_name": config.get("recipe"),
        "recipe_file": _recipe_text(config.get("recipe")),
        "initialised_from": train.get("initialised_from"),
        "training_command": (
            f"make train RECIPE={config.get('recipe')}"
            if config.get("recipe")
            else "python -m training.train (see recipe)"
        ),
        "intended_use": INTENDED_USE,
        "teacher": TEACHER_CARD if (config.get("distill_weight") or config.get("relational_weight")) else None,
        "training_time_minutes": train.get("minutes"),
        "training_steps": train.get("steps"),
        "training_images_seen": train.get("images_seen"),
        "training_device": f"{train.get('device')} ({train.get('threads')} threads)",
        "validation": train.get("val"),
        "lfw": {
            k: result[k]
            for k in (
                "view2_10fold",
                "view2_accuracy_at_threshold",
                "view1_accuracy_at_threshold",
                "roc_auc",
                "eer",
                "tar_at_far_1e-2",
                "tar_at_far_1e-3",
                "no_face_photos",
                "photos",
                "no_face_rate",
            )
        },
        "threshold": result["threshold"],
        "threshold_source": "LFW View 1 (pairsDevTrain + pairsDevTest), best accuracy",
        "calibration": result["calibration"],
        "calibration_note": "similarity = 1 / (1 + exp(slope * (distance - midpoint))), fitted on LFW View 1",
        "verdict_band": result.get("verdict_band"),
        "verdict_band_note": 'verdict: "same" when distance <= low, "different" when distance > high, '
        '"not sure" between; low <= threshold <= high (engine/verdict.py)',
        "identification_threshold": result.get("identification_threshold"),
    }
    path = weights.with_suffix(".json")
    path.write_text(json.dumps(card, indent=1, default=float) + "\n")
    return path


def fit_verdict_band(engine, threshold: float) -> dict[str, Any] | None:
    """The three-state verdict's band for the card (training.thresholds.validation_band: fitted on the
    validation people training held out, never LFW); None, and FaceEngine falls back to a band
    from the calibration, when those people or their cached crops are not there."""
    from .thresholds import validation_band

    try:
        band = validation_band(engine, threshold=threshold)
    except (OSError, KeyError, ValueError) as exc:
        print(f"verdict band not fitted ({exc}); the engine will derive one from the calibration", file=sys.stderr)
        return None
    print(
        f"verdict band: not sure in ({band['low']:.4f}, {band['high']:.4f}], "
        f"{band['fit']['share_not_sure'] * 100:.1f}% of the validation pairs"
    )
    return band


def main(argv: Sequence[str] | None = None) -> int:
    from engine.model import DEFAULT_WEIGHTS
    from engine.pipeline import FaceEngine

    from .data import DATA_DIR

    parser = argparse.ArgumentParser(description="LFW evaluation (standard protocol) of a twin network.")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--lfw", type=Path, default=DATA_DIR / "lfw")
    parser.add_argument("--no-flip", action="store_true", help="embed without flip averaging")
    parser.add_argument("--plots", type=Path, default=None, help="folder for roc.png / distances.png")
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="write threshold, calibration and figures into the model card next to the weights",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    engine = FaceEngine(args.weights, flip_average=not args.no_flip)
    result = evaluate(engine, args.lfw, plots=args.plots)
    v2 = result["view2_10fold"]
    print(f"LFW View 2 10-fold accuracy: {v2['mean'] * 100:.2f}% +- {v2['std'] * 100:.2f}")
    print(
        f"shipped threshold (View 1): {result['threshold']:.4f} -> View 2 accuracy "
        f"{result['view2_accuracy_at_threshold'] * 100:.2f}%"
    )
    print(
        f"ROC AUC {result['roc_auc']:.4f}  EER {result['eer'] * 100:.2f}%  TAR@FAR1e-2 "
        f"{result['tar_at_far_1e-2'] * 100:.2f}%  TAR@FAR1e-3 {result['tar_at_far_1e-3'] * 100:.2f}%"
    )
    print(
        f"no face found: {result['no_face_photos']} of {result['photos']} LFW photos "
        f"({result['no_face_rate'] * 100:.2f}%)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.write_card:
        result["verdict_band"] = fit_verdict_band(engine, result["threshold"])
        from .thresholds import identification_card_entry  # fitted on the validation people, never LFW

        result["identification_threshold"] = identification_card_entry(engine)
        print("model card:", write_card(args.weights, result, engine.meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
