"""Full training runs side by side: the from-scratch recipe, the teacher-guided ones.

    python bench/recipes.py --runs shipped=runs/shipped-contrastive/twin.pt teacher=engine/weights/twin.pt ...

For each weights file: what training recorded (recipe, steps, minutes, the held-out CelebA
validation pairs), LFW through the protocol path (the cached evaluation crops, threshold from
View 1, training.evaluate) and LFW through the product path (`FaceEngine.faces()` on the
original photo, most prominent face: bench/product_path.py), both 10-fold on View 2 and at
the model's own View 1 threshold. Validation is what chose between recipes; LFW chose nothing.
Writes bench/results/recipes.md.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from product_path import view2_scores

from engine import FaceEngine
from engine.settings import LFW_DIR, ROOT
from training.evaluate import evaluate

RESULTS = ROOT / "bench" / "results"


def measure(label: str, weights: Path, recipe: str | None = None) -> dict[str, Any]:
    """recipe: the configs/ file that reproduces a checkpoint which recorded none (trained by
    command-line options before recipes were files)."""
    started = time.monotonic()
    engine = FaceEngine(weights, device="cpu")
    train = engine.meta.get("train", {})
    config = train.get("config", {})
    protocol = evaluate(engine, LFW_DIR, plots=None)
    product = view2_scores(engine, protocol["threshold"])
    return {"label": label, "weights": weights, "model_id": engine.model_id,
            "recipe": (f"`{config['recipe']}`" if config.get("recipe")
                       else f"`{recipe}` (recorded afterwards)" if recipe else "(command line)"),
            "init": train.get("initialised_from"), "steps": train.get("steps"), "minutes": train.get("minutes"),
            "val": train.get("val", {}), "protocol": protocol, "product": product,
            "seconds": time.monotonic() - started}


def teacher_validation() -> dict[str, float]:
    """The teacher's own figure on the same validation pairs the student runs report: its cached
    targets of the held-out CelebA people (mirror-averaged, as training sees them; no LFW)."""
    from training.config import TrainConfig
    from training.data import split_by_identity
    from training.inputs import load_targets, load_training_data
    from training.validation import score_pairs, validation_pairs

    config = TrainConfig()
    data, targets = load_training_data(config), load_targets(config)
    _, val_idx = split_by_identity(data, config.val_fraction, config.seed)
    return score_pairs(targets[val_idx], validation_pairs(data.labels[val_idx], config.seed))


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | recipe | from | steps / minutes | validation acc / AUC | LFW protocol 10-fold | "
             "at View 1 threshold | LFW product path 10-fold | at View 1 threshold |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, q, v = r["protocol"], r["product"], r["val"]
        lines.append(
            f"| {r['label']} ({r['model_id']}) | {r['recipe']} | {r['init'] or 'scratch'} | "
            f"{r['steps']} / {r['minutes']} | {v.get('val_acc', float('nan')):.3f} / {v.get('val_auc', float('nan')):.3f} | "
            f"{p['view2_10fold']['mean']:.4f} ± {p['view2_10fold']['std']:.4f} | "
            f"{p['view2_accuracy_at_threshold']:.4f} ({p['threshold']:.3f}) | "
            f"{q['tenfold']['mean']:.4f} ± {q['tenfold']['std']:.4f} | {q['at_threshold']:.4f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="LABEL=WEIGHTS[@RECIPE]")
    parser.add_argument("--out", type=Path, default=RESULTS / "recipes.md")
    parser.add_argument("--teacher", action="store_true", help="also the teacher's validation figure (its targets)")
    args = parser.parse_args(argv)
    rows = []
    for text in args.runs:
        label, _, rest = text.partition("=")
        weights, _, recipe = rest.partition("@")
        rows.append(measure(label, Path(weights), recipe or None))
    teacher = teacher_validation() if args.teacher else None
    lines = ["# Full training runs side by side", "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"command: `python bench/recipes.py --runs {' '.join(args.runs)}`",
             "- validation: 3,000 pairs of the 154 CelebA people training holds out (what compares recipes); "
             "LFW (never trained on, chose nothing): View 2 10-fold, and accuracy at the model's own View 1 "
             "threshold; the product path detects and aligns every original photo with `FaceEngine.faces()`.",
             "", *table(rows), ""]
    if teacher:
        lines += [f"The teacher (dlib's encoder, training only) on the same validation pairs: "
                  f"{teacher['val_acc']:.3f} / AUC {teacher['val_auc']:.3f} (its cached targets of those photos).", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
