"""The identification threshold: when a gallery may name someone (issue 13, item 5).

Two thresholds, two questions. The verification threshold (`FaceEngine.threshold`, fitted on
LFW View 1) answers "are these two photos the same person?". Naming someone from a gallery
of N people asks N such questions at once: a stranger has N chances to fall within a
threshold, so the identification threshold must be stricter, and it depends on N.

The value is fitted at training time on the validation people the weights' training held out
(training/thresholds.py; `python -m training.evaluate --write-card` writes it into the model
card as `identification_threshold`: value, target_far, reference_gallery_size, source, note,
fit). This module only reads it: FaceEngine.identification_threshold. A card without it gets
`fallback_for()`: the lower end of the verdict band (where a verification says a sure
"same"), with a warning: that value controls no false-alarm rate.

Numpy only: nothing here fits, reads data sets or imports training code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentificationThreshold:
    """Name the nearest enrolled person only when their distance is <= value."""

    value: float
    target_far: float | None = None
    reference_gallery_size: int | None = None
    source: str = ""
    note: str = ""
    fallback: bool = False
    #: (gallery size N, the threshold holding the target FAR at N), from the card's fit; sorted by N.
    by_gallery_size: tuple[tuple[int, float], ...] = ()

    def for_gallery(self, people: int) -> float:
        """The threshold that keeps the target false-alarm rate with `people` enrolled.

        A stranger has N chances to be named, so a small gallery can afford a looser threshold
        than the reference one: interpolated in log N between the card's fitted sizes, never
        looser than its smallest size's, never stricter than its largest's. Without those
        figures: `value`, whatever the size."""
        if not self.by_gallery_size:
            return self.value
        sizes = np.log([max(1, n) for n, _ in self.by_gallery_size])
        values = [t for _, t in self.by_gallery_size]
        return float(np.interp(math.log(max(1, int(people))), sizes, values))

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "target_far": self.target_far,
            "reference_gallery_size": self.reference_gallery_size,
            "source": self.source,
            "note": self.note,
        }

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> IdentificationThreshold | None:
        """The card's `identification_threshold`, or None when it is missing or unusable (not a
        number, or not a distance between unit vectors: 0 < value <= 2)."""
        entry = card.get("identification_threshold") if isinstance(card, dict) else None
        if not isinstance(entry, dict):
            return None
        try:
            value = float(entry["value"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (math.isfinite(value) and 0 < value <= 2):
            return None
        target = entry.get("target_far")
        size = entry.get("reference_gallery_size")
        fitted = ((entry.get("fit") or {}).get("model") or {}).get("threshold_by_gallery_size_at_target") or {}
        by_size: list[tuple[int, float]] = []
        for n, t in fitted.items() if isinstance(fitted, dict) else ():
            try:
                if int(n) > 0 and math.isfinite(float(t)) and 0 < float(t) <= 2:
                    by_size.append((int(n), float(t)))
            except (TypeError, ValueError):
                continue
        return cls(
            value,
            float(target) if isinstance(target, (int, float)) else None,
            int(size) if isinstance(size, (int, float)) else None,
            str(entry.get("source", "model card")),
            str(entry.get("note", "")),
            by_gallery_size=tuple(sorted(by_size)),
        )

    @classmethod
    def fallback_for(cls, threshold: float, band_low: float | None = None) -> IdentificationThreshold:
        """For a card without an identification threshold: the lower end of the verdict band (a
        sure "same" for one pair of photos), or the verification threshold when there is no band
        below it. It controls no false-alarm rate: with many people enrolled, strangers will be
        named. Logs a warning."""
        usable = band_low is not None and math.isfinite(band_low) and 0 < band_low < threshold
        value = float(band_low) if usable else float(threshold)  # type: ignore[arg-type]
        what = "the lower end of the verdict band" if usable else "the verification threshold"
        log.warning(
            "the model card has no identification_threshold: naming people from a gallery uses %s "
            "(%.3f), which controls no false-alarm rate; run python -m training.evaluate --write-card",
            what,
            value,
        )
        return cls(
            value,
            None,
            None,
            f"fallback: {what} (the model card has no identification_threshold)",
            "not fitted for identification: the share of strangers named is unknown and grows with the "
            "number of people enrolled",
            fallback=True,
        )
