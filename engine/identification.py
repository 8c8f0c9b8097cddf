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
from pathlib import Path
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
    def from_naming(cls, entry: Any) -> IdentificationThreshold | None:
        """The normalised-score threshold of the card's `naming` entry (its `threshold`: the
        score at each fitted gallery size, `by_gallery_size`), or None when it is unusable.
        Scores are not distances: any finite value is allowed."""
        fit = entry.get("threshold") if isinstance(entry, dict) else None
        if not isinstance(fit, dict) or not isinstance(fit.get("by_gallery_size"), dict):
            return None
        by_size: list[tuple[int, float]] = []
        for n, t in fit["by_gallery_size"].items():
            try:
                if int(n) > 0 and math.isfinite(float(t)):
                    by_size.append((int(n), float(t)))
            except (TypeError, ValueError):
                continue
        if not by_size:
            return None
        by_size.sort()
        size = fit.get("reference_gallery_size")
        reference = int(size) if isinstance(size, (int, float)) and size > 0 else by_size[-1][0]
        target = fit.get("target_far")
        threshold = cls(0.0, by_gallery_size=tuple(by_size))
        return cls(
            threshold.for_gallery(reference),
            float(target) if isinstance(target, (int, float)) else None,
            reference,
            str(fit.get("source", "model card")),
            str(fit.get("note", "")),
            by_gallery_size=tuple(by_size),
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


# -- naming: cohort-normalised scores (issue 20) --------------------------------------------------
#
# A raw distance says little on its own when many people are enrolled: some faces (and some
# photos) lie close to many others ("hubs"), so a stranger's nearest enrolled face is often as
# close as a true match. A fixed cohort of training faces (one photo each of CelebA people the
# weights were trained on, never LFW) measures how crowded each face's neighbourhood is, from its
# K nearest cohort distances, and the score of a query q against an enrolled face e corrects the
# distance d for both neighbourhoods (lower: more alike). Two scores, the card's `naming.score`:
#
#     csls:    d^2 - (r_q + r_e) / 2, r = the mean squared distance to the K nearest cohort faces
#     as-norm: ((d - mu_q) / sd_q + (d - mu_e) / sd_e) / 2, mu, sd = mean and spread of those distances
#
# (training/naming.py chooses between them and K on the validation people: CSLS, K = 25, today).
# The cohort ships beside the weights (twin.cohort.npy, float16) and the card's `naming` entry
# names the model id it was embedded with: another model's cohort is refused.
#
# e's statistics are computed at query time for the top raw candidates only (the gallery
# returns their embeddings), not stored with each entry: nothing to migrate in either store,
# nothing stale after a re-embed or an import; the cost is one product with the cohort for the
# query and for each of ~RERANK candidates.

#: Raw nearest entries re-scored per query: a person whose best raw rank is beyond this cannot be
#: named (bench/oneshot.py's LFW figures re-score exactly these).
RERANK = 50
#: The file beside the weights: twin.pt -> twin.cohort.npy.
COHORT_SUFFIX = ".cohort.npy"
#: Standard deviations below this are treated as this (a degenerate cohort neighbourhood).
MIN_SPREAD = 1e-3


def cohort_path(weights: str | Path) -> Path:
    """Where the cohort of these weights lives: beside them, `<stem>.cohort.npy`."""
    weights = Path(weights)
    return weights.with_name(weights.stem + COHORT_SUFFIX)


#: The normalisations the product implements (the card's `naming.score`).
SCORES = ("as-norm", "csls")


@dataclass(frozen=True)
class Cohort:
    """Unit embeddings of cohort faces, how many nearest of them describe a face, and the score
    they normalise ("as-norm" or "csls", see `normalise`)."""

    vectors: np.ndarray  # C x D float32, unit rows
    k: int
    model_id: str
    score: str = "as-norm"

    def nearest(self, embeddings: np.ndarray) -> np.ndarray:
        """Each row's K nearest cohort distances (n x K, unordered)."""
        e = np.atleast_2d(np.asarray(embeddings, np.float32))
        similarity = e @ self.vectors.T
        k = min(self.k, self.vectors.shape[0])
        nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
        return np.sqrt(np.maximum(2.0 - 2.0 * nearest.astype(np.float64), 0.0))

    def stats(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) of each row's K nearest cohort distances."""
        distances = self.nearest(embeddings)
        return distances.mean(axis=1), np.maximum(distances.std(axis=1), MIN_SPREAD)

    def describe(self, embeddings: np.ndarray) -> np.ndarray:
        """What `normalise` needs of each face (n x 2): AS-norm, the mean and spread of its K
        nearest cohort distances; CSLS, the mean of their squares (and 0)."""
        if self.score == "csls":
            radius = (self.nearest(embeddings) ** 2).mean(axis=1)
            return np.stack([radius, np.zeros_like(radius)], axis=1)
        return np.stack(self.stats(embeddings), axis=1)

    def normalise(self, distances: np.ndarray, queries: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """Scores (Q x E; lower: more alike) of distances between Q queries and E entries from
        both sides' `describe`. CSLS: d^2 - (r_q + r_e) / 2, the squared distance less the mean of
        both faces' squared distances to their K nearest cohort faces (a hub's many close
        neighbours raise its r and so its scores); AS-norm: see `as_norm`."""
        d = np.asarray(distances, np.float64)
        q, e = np.atleast_2d(queries), np.atleast_2d(entries)
        if self.score == "csls":
            return d**2 - 0.5 * (q[:, :1] + e[:, 0][None])
        return as_norm(d, (q[:, :1], q[:, 1:2]), (e[:, 0][None], e[:, 1][None]))

    @classmethod
    def load(cls, weights: str | Path, card: dict[str, Any], model_id: str, dim: int) -> Cohort | None:
        """The cohort beside the weights, or None (with a warning) when the card has no `naming`
        entry, the file is missing or unreadable, or it was embedded by other weights."""
        entry = card.get("naming") if isinstance(card, dict) else None
        if not isinstance(entry, dict) or entry.get("score") not in SCORES:
            return None
        path = cohort_path(weights)
        try:
            vectors = np.load(path, allow_pickle=False).astype(np.float32)
            k = int(entry["k"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("naming falls back to raw distances: the cohort %s is unusable (%s)", path, exc)
            return None
        if entry.get("cohort_model_id") != model_id:
            log.warning(
                "naming falls back to raw distances: the cohort %s was embedded by %s, not %s; rebuild it with "
                "python -m training.naming",
                path,
                entry.get("cohort_model_id"),
                model_id,
            )
            return None
        if vectors.ndim != 2 or vectors.shape[1] != dim or len(vectors) < k or k < 1:
            log.warning("naming falls back to raw distances: the cohort %s has shape %s", path, vectors.shape)
            return None
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return cls(vectors / np.maximum(norms, 1e-12), k, model_id, str(entry["score"]))


def as_norm(
    distances: np.ndarray, query_stats: tuple[np.ndarray, np.ndarray], entry_stats: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """AS-norm scores of distances between queries and entries, from both sides' cohort stats
    (broadcasting: queries along the rows, entries along the columns, or both 1-D)."""
    (mq, sq), (me, se) = query_stats, entry_stats
    d = np.asarray(distances, np.float64)
    return 0.5 * ((d - mq) / sq + (d - me) / se)


@dataclass(frozen=True)
class Candidate:
    """One enrolled person as naming scores them."""

    name: str
    entry_id: int
    distance: float  # raw Euclidean distance of the best entry (or of the template)
    score: float  # what the threshold judges: the normalised score, or the distance without a cohort


@dataclass(frozen=True)
class Named:
    """The answer to "who is this?": candidates best first, and the one named (or None)."""

    candidates: list[Candidate]
    match: Candidate | None
    threshold: float
    people: int
    normalised: bool


@dataclass(frozen=True)
class Naming:
    """How the product names someone from a gallery: the score (AS-norm against the cohort, or the
    raw distance when there is none), how several photos of one person combine, and the threshold
    for a gallery of N people. `decide` is the one function every caller goes through (the app,
    `python -m index search`, the benches, via index.naming.identify)."""

    threshold: IdentificationThreshold
    cohort: Cohort | None = None
    #: "mean": one template per person (the mean of their entries' embeddings); "nearest": their best entry.
    templates: str = "nearest"
    #: How many raw nearest entries a gallery hands `decide` for re-scoring.
    rerank: int = RERANK

    @property
    def normalised(self) -> bool:
        return self.cohort is not None

    def threshold_for(self, people: int) -> float:
        """The score within which a gallery of `people` people names its best candidate."""
        return self.threshold.for_gallery(max(1, int(people)))

    def scores(self, query: np.ndarray, vectors: np.ndarray, distances: np.ndarray | None = None) -> np.ndarray:
        """Scores of one query against candidate vectors (lower: more alike)."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        q = np.asarray(query, np.float32)
        if distances is None:
            distances = np.linalg.norm(vectors - q[None], axis=1)
        if self.cohort is None:
            return np.asarray(distances, np.float64)
        return self.cohort.normalise(np.atleast_2d(distances), self.cohort.describe(q), self.cohort.describe(vectors))[
            0
        ]

    def decide(
        self,
        query: np.ndarray,
        entries: list[tuple[int, str, np.ndarray]],
        people: int,
    ) -> Named:
        """Score the candidate entries (entry id, name, embedding) of one query and name the best
        person when their score is within the threshold for a gallery of `people` people."""
        threshold = self.threshold_for(people)
        if not entries:
            return Named([], None, threshold, people, self.normalised)
        q = np.asarray(query, np.float32)
        by_person: dict[str, list[tuple[int, np.ndarray]]] = {}
        for entry_id, name, vector in entries:
            by_person.setdefault(name, []).append((int(entry_id), np.asarray(vector, np.float32)))
        names = list(by_person)
        if self.templates == "mean":
            ids = [by_person[n][0][0] for n in names]
            means = np.stack([np.mean([v for _, v in by_person[n]], axis=0) for n in names])
            vectors = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        else:
            ids = [i for n in names for i, _ in by_person[n]]
            vectors = np.stack([v for n in names for _, v in by_person[n]])
            names = [n for n in names for _ in by_person[n]]
        distances = np.linalg.norm(vectors - q[None], axis=1)
        scores = self.scores(q, vectors, distances)
        best: dict[str, Candidate] = {}
        for name, entry_id, d, s in zip(names, ids, distances, scores, strict=True):
            if name not in best or s < best[name].score:
                best[name] = Candidate(name, entry_id, float(d), float(s))
        ranked = sorted(best.values(), key=lambda c: (c.score, c.distance))
        match = ranked[0] if ranked[0].score <= threshold else None
        return Named(ranked, match, threshold, people, self.normalised)

    @classmethod
    def from_card(
        cls, card: dict[str, Any], weights: str | Path, model_id: str, dim: int, fallback: IdentificationThreshold
    ) -> Naming:
        """The card's `naming` entry with its cohort, else raw distances and `fallback` (the raw
        identification threshold)."""
        entry = card.get("naming") if isinstance(card, dict) else None
        templates = "nearest"
        if isinstance(entry, dict) and entry.get("templates") in ("mean", "nearest"):
            templates = str(entry["templates"])
        cohort = Cohort.load(weights, card, model_id, dim)
        threshold = IdentificationThreshold.from_naming(entry) if cohort is not None else None
        if cohort is None or threshold is None:
            return cls(fallback, None, templates)
        return cls(threshold, cohort, templates)
