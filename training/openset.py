"""One-shot identification, open set: the protocol and its measures (numpy only).

Enroll ONE photo per person in a gallery, then ask it about every other photo: queries of
enrolled people should be named right, strangers (never enrolled) should not be named at all.
At a distance threshold t (a match when distance <= t):

- DIR(t), detection and identification rate: enrolled people's queries whose nearest person
  is the right one AND within t;
- FAR(t), false-alarm rate: strangers' queries whose nearest person (anyone) is within t, so
  that they would be named as someone.

Used by bench/oneshot.py (LFW, AT&T through a real index.Gallery), by
training.thresholds (fitting the identification threshold on the validation people) and by
the tests. Nothing here imports scikit-learn or dev packages; `run_oneshot` imports
index.Gallery when called.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOP_K = 5


@dataclass
class Split:
    """Indices into a set's photos: the one enrolled photo per person, the queries of enrolled
    people, and the photos of people who are never enrolled (strangers)."""

    enroll: np.ndarray
    probes: np.ndarray
    strangers: np.ndarray


def first_photo_split(people: Sequence[str], order: Sequence[Any] | None = None) -> Split:
    """Enroll each person's first photo (first in `order`, e.g. the relative paths, else as
    given); the rest of their photos are queries. People with one photo are strangers."""
    people = list(people)
    keys = list(order) if order is not None else list(range(len(people)))
    groups: dict[str, list[int]] = {}
    for i in sorted(range(len(people)), key=lambda i: keys[i]):
        groups.setdefault(people[i], []).append(i)
    enroll, probes, strangers = [], [], []
    for person in sorted(groups):
        members = groups[person]
        if len(members) == 1:
            strangers.append(members[0])
        else:
            enroll.append(members[0])
            probes.extend(members[1:])
    return Split(_indices(enroll), _indices(probes), _indices(strangers))


def random_open_set_splits(
    labels: Sequence[Any] | np.ndarray, enrolled: int, splits: int, seed: int = 0
) -> list[Split]:
    """`splits` random open-set splits of labelled photos: each draws `enrolled` people, enrolls
    one random photo of each (their other photos are queries), and makes every photo of every
    other person a stranger. Deterministic for a seed."""
    people, person_of = np.unique(np.asarray(labels), return_inverse=True)
    if not 1 <= enrolled < len(people):
        raise ValueError(f"enrolled must leave at least one stranger: 1 <= {enrolled} < {len(people)} people")
    photos = [np.flatnonzero(person_of == p) for p in range(len(people))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        order = rng.permutation(len(people))
        chosen, others = order[:enrolled], order[enrolled:]
        enroll = np.array([rng.choice(photos[p]) for p in chosen], np.int64)
        members = np.concatenate([photos[p] for p in chosen])
        probes = np.setdiff1d(members, enroll)
        strangers = np.sort(np.concatenate([photos[p] for p in others]))
        out.append(Split(enroll, probes.astype(np.int64), strangers.astype(np.int64)))
    return out


def nearest_enrolled(
    embeddings: np.ndarray, labels: Sequence[Any] | np.ndarray, split: Split, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact nearest-neighbour answers of a split, without a gallery (the same arithmetic as
    an exact index): the probes' distance to their nearest enrolled photo, whether that photo
    is of the right person, and the strangers' distance to their nearest enrolled photo."""
    e = np.asarray(embeddings, np.float32)
    truth = np.asarray(labels)
    gallery = e[split.enroll]

    def nearest(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, arg = np.empty(len(rows)), np.empty(len(rows), np.int64)
        for s in range(0, len(rows), batch):
            d = pairwise_distances(e[rows[s : s + batch]], gallery)
            arg[s : s + batch] = d.argmin(axis=1)
            dist[s : s + batch] = d[np.arange(len(d)), arg[s : s + batch]]
        return dist, arg

    known_d, known_arg = nearest(split.probes)
    stranger_d, _ = nearest(split.strangers)
    known_ok = truth[split.enroll][known_arg] == truth[split.probes]
    return known_d, known_ok, stranger_d


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and b (unit vectors or not), float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def open_set_rates(
    known_distance: np.ndarray, known_correct: np.ndarray, stranger_distance: np.ndarray, thresholds: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """DIR and FAR at each threshold (distance <= t counts as a match).

    DIR: enrolled people's queries whose top-1 is the right person and within t.
    FAR: strangers' queries whose top-1 (anyone) is within t."""
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    kd, kc, sd = (np.asarray(a) for a in (known_distance, known_correct, stranger_distance))
    dir_ = (
        ((kd[None, :] <= t[:, None]) & kc[None, :].astype(bool)).mean(axis=1) if kd.size else np.full(t.shape, np.nan)
    )
    far = (sd[None, :] <= t[:, None]).mean(axis=1) if sd.size else np.full(t.shape, np.nan)
    return dir_, far


def threshold_at_far(stranger_distance: np.ndarray, target: float) -> float:
    """The largest threshold whose FAR is at most `target` (ties broken towards fewer alarms)."""
    d = np.sort(np.asarray(stranger_distance, dtype=np.float64))
    allowed = int(np.floor(target * len(d) + 1e-9))
    if allowed >= len(d):
        return float("inf")
    return float(np.nextafter(d[allowed], -np.inf))


# -- through a real gallery ---------------------------------------------------------------------


@dataclass
class Ranked:
    """What the gallery answered for each query: the names of its k nearest people, nearest
    first (padded with None), and their distances (padded with +inf)."""

    names: list[list[str | None]]
    distances: np.ndarray  # Q x k

    @property
    def top1(self) -> list[str | None]:
        return [n[0] for n in self.names]

    @property
    def top1_distance(self) -> np.ndarray:
        return self.distances[:, 0]


def rank(gallery: Any, embeddings: np.ndarray, k: int = TOP_K) -> Ranked:
    """Ask the gallery for each query's k nearest people (Gallery.search, per person)."""
    names, distances = [], np.full((len(embeddings), k), np.inf)
    for q, e in enumerate(embeddings):
        matches = gallery.search(e, k=k, per_person=True)
        names.append([m.name for m in matches] + [None] * (k - len(matches)))
        distances[q, : len(matches)] = [m.distance for m in matches]
    return Ranked(names, distances)


def topk_accuracy(ranked: Ranked, truth: Sequence[str], k: int) -> float:
    """Fraction of queries whose true person is among their k nearest people."""
    if not len(truth):
        return float("nan")
    return float(np.mean([t in names[:k] for names, t in zip(ranked.names, truth, strict=True)]))


@dataclass
class OneShotResult:
    """Everything one run of the protocol produced, per query."""

    people: list[str]  # person of every photo
    split: Split
    known: Ranked  # answers for split.probes
    strangers: Ranked  # answers for split.strangers
    threshold: float
    enrolled: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def truth(self, idx: np.ndarray) -> list[str]:
        return [self.people[i] for i in idx]

    @property
    def known_correct(self) -> np.ndarray:
        return np.array(
            [a == t for a, t in zip(self.known.top1, self.truth(self.split.probes), strict=True)], dtype=bool
        )

    def summary(
        self, select: np.ndarray | None = None, k: int = TOP_K, threshold: float | None = None
    ) -> dict[str, float]:
        """Top-1, top-k, DIR and misidentification at the threshold (default: the run's), over all
        enrolled people's queries or those with `select` (a bool mask over split.probes)."""
        t = self.threshold if threshold is None else float(threshold)
        select = np.ones(len(self.split.probes), bool) if select is None else np.asarray(select, bool)
        truth = [p for p, s in zip(self.truth(self.split.probes), select, strict=True) if s]
        ranked = Ranked([n for n, s in zip(self.known.names, select, strict=True) if s], self.known.distances[select])
        correct = self.known_correct[select]
        within = ranked.top1_distance <= t
        nan = float("nan")
        return {
            "queries": int(select.sum()),
            "top1": topk_accuracy(ranked, truth, 1),
            "topk": topk_accuracy(ranked, truth, k),
            "dir": float(np.mean(correct & within)) if len(truth) else nan,
            "wrong_within": float(np.mean(~correct & within)) if len(truth) else nan,
            "rejected": float(np.mean(~within)) if len(truth) else nan,
        }

    def far(self, threshold: float | None = None) -> float:
        t = self.threshold if threshold is None else threshold
        d = self.strangers.top1_distance
        return float(np.mean(d <= t)) if len(d) else float("nan")


def run_oneshot(
    embeddings: np.ndarray,
    people: Sequence[str],
    split: Split,
    directory: str | Path,
    model_id: str,
    threshold: float,
    k: int = TOP_K,
) -> OneShotResult:
    """Enroll split.enroll in a fresh index.Gallery at `directory`, then search every probe and
    stranger through it. Embeddings: unit vectors, one per photo."""
    from index import Gallery

    people = list(people)
    embeddings = np.asarray(embeddings, np.float32)
    seconds = {}
    with Gallery(
        directory,
        model_id=model_id,
        threshold=threshold,
        embedding_size=embeddings.shape[1],
        thumbnails=False,
        background=False,
    ) as gallery:
        if len(gallery):
            raise ValueError(f"{directory} is not an empty gallery")
        start = time.perf_counter()
        for i in split.enroll:
            gallery.enroll(people[i], embeddings[i])
        seconds["enroll"] = time.perf_counter() - start
        start = time.perf_counter()
        known = rank(gallery, embeddings[split.probes], k)
        strangers = rank(gallery, embeddings[split.strangers], k)
        seconds["search"] = time.perf_counter() - start
        enrolled = len(gallery)
    return OneShotResult(people, split, known, strangers, float(threshold), enrolled, seconds)


def _indices(values: Sequence[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)
