"""The three-state verdict: "same", "not sure", "different", from a band of distances.

A distance at or below `low` is a sure "same", above `high` a sure "different", and between
them "not sure". The band always holds the shipped threshold, so the verdict never contradicts
`Comparison.same` (distance <= threshold): "same" implies same, "different" implies not same.

The shipped band is fitted on the validation people training holds out (CelebA + AT&T, never
LFW): a logistic P(same | distance) on their pairs, and the band is where it lies between
BAND_P and 1 - BAND_P (between 0.1 and 0.9): outside the band, nine pairs in ten at that
distance are what the verdict says. `validation_band()` does it for a set of weights;
engine.evaluate writes it into the model card (`verdict_band`), and FaceEngine reads it
from there. A card without a band gets `band_from_calibration()`: the shipped threshold plus
or minus the distance over which the card's calibration goes from 0.5 to 0.9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SAME, NOT_SURE, DIFFERENT = "same", "not sure", "different"
#: The three verdicts, from the closest distances to the farthest.
VERDICTS = (SAME, NOT_SURE, DIFFERENT)
#: Outside the band P(same | distance) on the validation pairs is below this or above 1 - this.
BAND_P = 0.1


@dataclass(frozen=True)
class VerdictBand:
    """Distances in (low, high] are "not sure"; <= low "same"; > high "different"."""

    low: float
    high: float
    source: str = ""

    def verdict(self, distance: float) -> str:
        d = float(distance)
        if math.isnan(d):
            return NOT_SURE
        if d <= self.low:
            return SAME
        if d > self.high:
            return DIFFERENT
        return NOT_SURE

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "source": self.source}

    @classmethod
    def from_card(cls, card: dict[str, Any], threshold: float) -> VerdictBand | None:
        """The card's `verdict_band`, or None when it is missing or unusable (not numbers, or
        not holding the threshold)."""
        band = card.get("verdict_band") if isinstance(card, dict) else None
        if not isinstance(band, dict):
            return None
        try:
            low, high = float(band["low"]), float(band["high"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(low) and math.isfinite(high) and low <= threshold <= high):
            return None
        return cls(low, high, str(band.get("source", "model card")))


def band_from_calibration(threshold: float, slope: float, p: float = BAND_P) -> VerdictBand:
    """The fallback: threshold -+ ln((1 - p) / p) / slope, the distance over which the card's
    logistic calibration moves from 0.5 to 1 - p (its own steepness sets the width)."""
    slope = float(slope)
    margin = math.log((1 - p) / p) / slope if slope > 0 and math.isfinite(slope) else 0.15
    return VerdictBand(threshold - margin, threshold + margin,
                       f"fallback: the shipped threshold -+ {margin:.3f}, where the card's calibration "
                       f"is {1 - p:.1f} sure (the card has no verdict_band)")


def fit_logistic(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(slope, midpoint) of P(same | d) = 1 / (1 + exp(slope * (d - midpoint))), by maximum
    likelihood (Newton's method; numpy only)."""
    d = np.asarray(distances, np.float64)
    y = np.asarray(same, bool).astype(np.float64)
    centre, scale = float(d.mean()), float(d.std()) or 1.0
    x = np.stack([np.ones_like(d), (d - centre) / scale], axis=1)
    w = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (y - p) - 1e-6 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    b0, b1 = w
    slope = -b1 / scale
    midpoint = centre - b0 * scale / b1
    return float(slope), float(midpoint)


def fit_band(distances: np.ndarray, same: np.ndarray, threshold: float, p: float = BAND_P,
             source: str = "") -> tuple[VerdictBand, dict[str, Any]]:
    """The band where a logistic P(same | d) fitted on these pairs lies in [p, 1 - p], widened
    if need be to hold the threshold; with what it does on these pairs."""
    slope, midpoint = fit_logistic(distances, same)
    margin = math.log((1 - p) / p) / slope
    low, high = min(midpoint - margin, threshold), max(midpoint + margin, threshold)
    band = VerdictBand(float(low), float(high), source)
    return band, {"slope": slope, "midpoint": midpoint, "p": p, **band_stats(band, distances, same)}


def band_stats(band: VerdictBand, distances: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    """How a band splits these pairs: the share of each verdict, how often a sure verdict is
    right, and the accuracy of the plain threshold on the pairs inside the band."""
    d = np.asarray(distances, np.float64)
    s = np.asarray(same, bool)
    sure_same, sure_diff = d <= band.low, d > band.high
    inside = ~(sure_same | sure_diff)
    sure = sure_same | sure_diff
    return {
        "pairs": int(len(d)),
        "share_same": float(sure_same.mean()), "share_not_sure": float(inside.mean()),
        "share_different": float(sure_diff.mean()),
        "sure_accuracy": float(((sure_same & s) | (sure_diff & ~s)).sum() / max(1, sure.sum())),
        "same_right": float(s[sure_same].mean()) if sure_same.any() else float("nan"),
        "different_right": float((~s[sure_diff]).mean()) if sure_diff.any() else float("nan"),
    }


def validation_band(engine, threshold: float | None = None, data_dir=None, fraction: float | None = None,
                    seed: int | None = None, sets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The verdict band of an engine's weights, fitted on the validation people its training held
    out (the recipe's sets, fraction and seed, from the checkpoint; the crop cache's crops);
    returns the card entry: low, high, source and the fit's figures.

    threshold: the weights' verification threshold (default engine.threshold, which comes from
    the card already beside the weights: pass the new one when writing a new card).
    """
    from .identification import validation_embeddings  # the one reader of the validation people's crops
    from .train import validation_pairs
    config = (engine.meta.get("train") or {}).get("config") or {}
    sets = tuple(sets or config.get("sets") or ("celeba_aligned", "celeba_wild", "att_train"))
    seed = int(seed if seed is not None else config.get("seed", 0))
    embeddings, labels, _ = validation_embeddings(engine, data_dir=data_dir, fraction=fraction, seed=seed, sets=sets)
    pairs = validation_pairs(labels, seed)
    d = np.linalg.norm(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]], axis=1)
    same = pairs[:, 2] == 0
    source = (f"validation people held out by training ({len(np.unique(labels))} people of "
              f"{'+'.join(sets)}, {len(pairs)} pairs, never LFW): a logistic P(same | distance) fitted on "
              f"them; the band is where it lies between {BAND_P:.1f} and {1 - BAND_P:.1f}, widened to hold "
              f"the threshold")
    band, stats = fit_band(d, same, engine.threshold if threshold is None else float(threshold), source=source)
    return {**band.as_dict(), "fit": stats}
