"""The three-state verdict: "same", "not sure", "different", from a band of distances.

A distance at or below `low` is a sure "same", above `high` a sure "different", and between
them "not sure". The band always holds the shipped threshold, so the verdict never contradicts
`Comparison.same` (distance <= threshold): "same" implies same, "different" implies not same.

The shipped band is fitted on the validation people training holds out (CelebA + AT&T, never
LFW): a logistic P(same | distance) on their pairs, and the band is where it lies between
BAND_P and 1 - BAND_P (between 0.1 and 0.9): outside the band, nine pairs in ten at that
distance are what the verdict says. training.thresholds.validation_band() fits it for a set
of weights at training time; `python -m training.evaluate --write-card` writes it into the
model card (`verdict_band`), and FaceEngine reads it from there: this module only reads. A
card without a band gets `band_from_calibration()`: the shipped threshold plus or minus the
distance over which the card's calibration goes from 0.5 to 0.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
    return VerdictBand(
        threshold - margin,
        threshold + margin,
        f"fallback: the shipped threshold -+ {margin:.3f}, where the card's calibration "
        f"is {1 - p:.1f} sure (the card has no verdict_band)",
    )
