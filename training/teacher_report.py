"""The teacher's own LFW accuracy through our crops (bench/results/teacher.md; `make teacher-report`).

LFW is evaluated here only to check the teacher's targets; it is never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .dlib_teacher import BOX

if TYPE_CHECKING:
    from .teacher import SetJob


def lfw_report(job: SetJob, lfw_dir: Path) -> dict:
    """LFW View 2 10-fold (and View 1 threshold) for each stored view, via training.evaluate's protocol."""
    from training.evaluate import folds_of, pair_distances, parse_pairs, ten_fold_accuracy
    from training.metrics import accuracy_at, best_threshold_accuracy, roc_auc, tar_at_far

    views = job.partial()
    index = job.crops.index_of()
    view1 = parse_pairs(lfw_dir / "pairsDevTrain.txt") + parse_pairs(lfw_dir / "pairsDevTest.txt")
    view2 = parse_pairs(lfw_dir / "pairs.txt")
    needed = sorted({p for pair in view1 + view2 for p in (pair.a, pair.b)})
    absent = [p for p in needed if p not in index or not views["seen"][index[p]]]
    if absent:
        raise RuntimeError(
            f"{len(absent)} of the {len(needed)} LFW pair photos are not embedded yet "
            f'(e.g. {absent[:2]}); embed them first: make teacher ARGS="--sets lfw" '
            "(python -m training.teacher --sets lfw; hours on CPU)"
        )
    rows = np.array([index[p] for p in needed])
    result: dict[str, Any] = {
        "photos": len(needed),
        "no_face_in_pairs": int((~job.crops.found[rows]).sum()),
        "seconds_per_photo": float(views["seconds"][rows].mean()),
        "seconds_per_photo_all": float(views["seconds"][views["seen"]].mean()),
        "views": {},
    }
    folds = folds_of(lfw_dir / "pairs.txt", len(view2))
    for view in ("embedding", "plain", "raw"):
        embeddings = dict(zip(needed, views[view][rows]))
        d1, s1 = pair_distances(embeddings, view1)
        d2, s2 = pair_distances(embeddings, view2)
        _, threshold = best_threshold_accuracy(d1, s1)
        result["views"][view] = {
            "view2_10fold": ten_fold_accuracy(d2, s2, folds),
            "threshold": threshold,
            "view2_accuracy_at_threshold": accuracy_at(d2, s2, threshold),
            "roc_auc": roc_auc(d2, s2),
            "tar_at_far_1e-3": tar_at_far(d2, s2, 1e-3),
        }
        if view == "raw":
            result["views"][view]["view2_accuracy_at_0.6"] = accuracy_at(d2, s2, 0.6)
    return result


def write_report(result: dict, out: Path, jobs: Sequence[SetJob]) -> None:
    names = {
        "embedding": "mirror-averaged, L2-normalised (the training target)",
        "plain": "the photo alone, L2-normalised",
        "raw": "the photo alone, dlib's raw descriptor",
    }
    lines = [
        "# The teacher (dlib's ResNet encoder) through our crops",
        "",
        "`python -m training.teacher --report`. The teacher sees the engine's own MTCNN-aligned 112x112 crops "
        "from the crop cache (LFW: the evaluation policy, face nearest the centre, fixed landmarks when none is "
        "found), upscaled 2x, dlib's 5-point predictor inside the fixed box (top, right, bottom, left) = "
        f"{BOX} of the crop side, then its encoder on the 150 px chip. LFW is evaluated here only to check "
        "the targets; it is never trained on.",
        "",
        "| view | LFW View 2 10-fold | at the View 1 threshold | ROC AUC | TAR at FAR 1e-3 |",
        "|---|---|---|---|---|",
    ]
    for view, r in result["views"].items():
        v2 = r["view2_10fold"]
        extra = f" (dlib's own 0.6: {r['view2_accuracy_at_0.6'] * 100:.2f}%)" if "view2_accuracy_at_0.6" in r else ""
        lines.append(
            f"| {names[view]} | **{v2['mean'] * 100:.2f}% ± {v2['std'] * 100:.2f}** | "
            f"{r['view2_accuracy_at_threshold'] * 100:.2f}% (threshold {r['threshold']:.3f}){extra} | "
            f"{r['roc_auc']:.4f} | {r['tar_at_far_1e-3'] * 100:.1f}% |"
        )
    lines += [
        "",
        f"Pair photos: {result['photos']}; {result['no_face_in_pairs']} of them had no face found by "
        "MTCNN and were aligned with the fixed fallback landmarks.",
        "",
        "## Cost and coverage",
        "",
        "| set | photos embedded | seconds per photo, wall clock (two views) |",
        "|---|---|---|",
    ]
    for job in jobs:
        done, total = job.progress()
        views = job.partial()
        per = views["seconds"][views["seen"]].mean() if views["seen"].any() else float("nan")
        lines.append(f"| {job.name} | {done} of {total} | {per:.3f} |")
    lines += [
        "",
        "One process, one thread (`nice -n 10`), on a 2-core machine shared with other work; each photo "
        "costs two encoder passes (plain + mirror).",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
