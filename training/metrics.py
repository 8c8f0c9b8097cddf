"""Verification metrics on pair distances (small distance = same person)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs judged right when "same" means distance <= threshold."""
    return float(np.mean((distances <= threshold) == same))


def best_threshold_accuracy(distances: np.ndarray, same: np.ndarray, balanced: bool = False) -> tuple[float, float]:
    """The accuracy of the best threshold on these pairs ("same" when distance <= t), and that
    threshold: (accuracy, threshold). The one threshold search of the project.

    balanced: maximise the balanced accuracy instead, the mean of the accuracies on same and on
    different pairs (each kind weighs alike however many there are of it).

    Candidates are midpoints between consecutive sorted distinct distances (and just below the
    smallest, just above the largest); ties go to the smaller.
    """
    distances = np.asarray(distances)
    d = np.sort(np.unique(distances))
    candidates = np.concatenate([[d[0] - 1e-6], (d[:-1] + d[1:]) / 2, [d[-1] + 1e-6]])
    order = np.argsort(distances)
    ds, ss = distances[order], np.asarray(same)[order].astype(bool)
    # for all t at once: how many pairs (all, same) have d <= t
    below = np.searchsorted(ds, candidates, side="right")
    cum_same = np.concatenate([[0], np.cumsum(ss)])
    n_same_below = cum_same[below]
    n_diff_below = below - n_same_below
    n_same, n_diff = int(ss.sum()), int((~ss).sum())
    if balanced:
        # (share of same pairs accepted + share of different pairs rejected) / 2
        acc = (n_same_below / max(n_same, 1) + (1 - n_diff_below / max(n_diff, 1))) / 2
    else:
        # (#same with d <= t + #different with d > t) / n
        acc = (n_same_below + (n_diff - n_diff_below)) / len(ds)
    best = int(np.argmax(acc))
    return float(acc[best]), float(candidates[best])


def roc_auc(distances: np.ndarray, same: np.ndarray) -> float:
    return float(roc_auc_score(same.astype(int), -distances))


def roc(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False accept rate, true accept rate, thresholds (as distances)."""
    far, tar, thr = roc_curve(same.astype(int), -distances)
    return far, tar, -thr


def eer(distances: np.ndarray, same: np.ndarray) -> float:
    far, tar, _ = roc(distances, same)
    frr = 1 - tar
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def tar_at_far(distances: np.ndarray, same: np.ndarray, target_far: float) -> float:
    """The highest true accept rate whose false accept rate is at most target_far."""
    far, tar, _ = roc(distances, same)
    ok = far <= target_far
    return float(tar[ok].max()) if ok.any() else 0.0
