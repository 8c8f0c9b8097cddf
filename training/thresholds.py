"""Fitting the model card's decision thresholds on the validation people training held out.

Two entries of the model card are fitted here, after training, on the people the weights'
training held out (the recipe's sets, fraction and seed, read from the checkpoint; CelebA +
AT&T people never trained on; never LFW), and written by `python -m training.evaluate
--write-card`. The engine only reads them (engine/verdict.py, engine/identification.py).

The three-state verdict's band (`validation_band`, card entry `verdict_band`): a logistic
P(same | distance) on the validation pairs, and the band is where it lies between BAND_P and
1 - BAND_P (0.1 and 0.9), widened to hold the shipped threshold.

The identification threshold (`fit_identification_threshold`, card entry
`identification_threshold`), on the same validation people:

1. Simulation: `splits` random open-set splits of those people (training.openset): half of them
   enrolled with ONE random photo each, every photo of the other half queried as a stranger.
   `t_sim` is the largest threshold whose false-alarm rate (strangers whose nearest enrolled
   person is within it, pooled over the splits) is at most the target: measured, but only for
   a gallery of `n_sim` people (half the validation people).
2. Model: p(t) = P(impostor distance <= t), the per-comparison rate of a stranger's photo
   against one enrolled photo of another person (all validation photos against every other
   person, each person's photos weighed as one enrolled photo). If the N comparisons were
   independent, FAR(N, t) = 1 - (1 - p(t))^N. `t_model` is the threshold where that reaches the
   target at the reference gallery size (REFERENCE_GALLERY_SIZE people), with two honest
   adjustments: where the model under-predicted the simulation's measured FAR at n_sim (the
   comparisons of one stranger are not independent), the target is scaled down by that
   ratio; and where the needed p(t) is so small that fewer than MIN_PAIRS impostor pairs
   support it, p(t) is extrapolated from its lower tail (t linear in log p, fitted between
   MIN_PAIRS pairs and TAIL_P).
3. The shipped value is min(t_sim, t_model) (a gallery of N_ref >= n_sim people must also meet
   the target measured at n_sim), less DISTANCE_MARGIN (the gallery's float32 arithmetic): the
   card says which one was binding.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.verdict import BAND_P, VerdictBand

from .data import CropSet, crop_cache_file, known_sets, split_by_identity
from .openset import nearest_enrolled, open_set_rates, pairwise_distances, random_open_set_splits, threshold_at_far
from .train import validation_pairs

#: About one stranger in a hundred named as someone.
TARGET_FAR = 0.01
#: The gallery size the shipped value is fitted for: galleries up to 2,000 people (the LFW
#: one-shot benchmark enrolls 1,680). FAR grows with N: smaller galleries have fewer false alarms.
REFERENCE_GALLERY_SIZE = 2000
#: Random open-set splits of the validation people, and the share of them enrolled in each.
SPLITS = 50
ENROLLED_FRACTION = 0.5
#: Below this many impostor pairs the per-comparison rate p(t) is extrapolated from its tail.
MIN_PAIRS = 20
#: The tail of p(t) used for that extrapolation: p from MIN_PAIRS pairs up to this.
TAIL_P = 1e-2
#: The value is placed this far below the distance that would add a false alarm: the gallery's
#: index computes distances in float32 (off by ~1e-7), this fit in float64.
DISTANCE_MARGIN = 1e-4
#: Gallery sizes the card reports the model's FAR and threshold for.
REPORT_SIZES = (10, 100, 1000, 2000, 10000)


# -- the validation people -------------------------------------------------------------------------


def validation_embeddings(
    engine, data_dir=None, fraction: float | None = None, seed: int | None = None, sets: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Embeddings and labels of the validation people the weights' training held out (the
    recipe's sets, fraction and seed, from the checkpoint; their crops from the crop cache),
    with a description of who they are. Both fits read the validation people here, and only here."""
    config = (engine.meta.get("train") or {}).get("config") or {}
    sets = tuple(sets or config.get("sets") or ("celeba_aligned", "celeba_wild", "att_train"))
    fraction = float(fraction if fraction is not None else config.get("val_fraction", 0.05))
    seed = int(seed if seed is not None else config.get("seed", 0))
    if fraction <= 0:
        raise ValueError("the weights' training held out no validation people (val_fraction 0)")
    known = known_sets(data_dir) if data_dir is not None else known_sets()
    labels, offset, files = [], 0, []
    for name in sets:
        path = crop_cache_file(known[name])
        with np.load(path, allow_pickle=False) as z:
            labels.append(z["labels"] + offset)
            offset += len(z["names"])
        files.append((path, len(labels[-1])))
    all_labels = np.concatenate(labels)
    _, val = split_by_identity(CropSet(None, all_labels, [], [], None), fraction, seed)  # type: ignore[arg-type]
    crops, start = [], 0
    for path, n in files:
        rows = val[(val >= start) & (val < start + n)] - start
        if len(rows):
            with np.load(path, allow_pickle=False) as z:
                crops.append(z["crops"][rows])
        start += n
    embeddings = engine.embed_crops(np.concatenate(crops))
    val_labels = all_labels[val]
    described = (
        f"validation people held out by training ({len(np.unique(val_labels))} people, {len(val)} photos of "
        f"{'+'.join(sets)}, recipe seed {seed}; never LFW)"
    )
    return embeddings, val_labels, described


# -- the verdict band ------------------------------------------------------------------------------


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


def fit_band(
    distances: np.ndarray, same: np.ndarray, threshold: float, p: float = BAND_P, source: str = ""
) -> tuple[VerdictBand, dict[str, Any]]:
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
        "share_same": float(sure_same.mean()),
        "share_not_sure": float(inside.mean()),
        "share_different": float(sure_diff.mean()),
        "sure_accuracy": float(((sure_same & s) | (sure_diff & ~s)).sum() / max(1, sure.sum())),
        "same_right": float(s[sure_same].mean()) if sure_same.any() else float("nan"),
        "different_right": float((~s[sure_diff]).mean()) if sure_diff.any() else float("nan"),
    }


def validation_band(
    engine,
    threshold: float | None = None,
    data_dir=None,
    fraction: float | None = None,
    seed: int | None = None,
    sets: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The verdict band of an engine's weights, fitted on the validation people its training held
    out (the recipe's sets, fraction and seed, from the checkpoint; the crop cache's crops);
    returns the card entry: low, high, source and the fit's figures.

    threshold: the weights' verification threshold (default engine.threshold, which comes from
    the card already beside the weights: pass the new one when writing a new card).
    """
    config = (engine.meta.get("train") or {}).get("config") or {}
    sets = tuple(sets or config.get("sets") or ("celeba_aligned", "celeba_wild", "att_train"))
    seed = int(seed if seed is not None else config.get("seed", 0))
    embeddings, labels, _ = validation_embeddings(engine, data_dir=data_dir, fraction=fraction, seed=seed, sets=sets)
    pairs = validation_pairs(labels, seed)
    d = np.linalg.norm(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]], axis=1)
    same = pairs[:, 2] == 0
    source = (
        f"validation people held out by training ({len(np.unique(labels))} people of "
        f"{'+'.join(sets)}, {len(pairs)} pairs, never LFW): a logistic P(same | distance) fitted on "
        f"them; the band is where it lies between {BAND_P:.1f} and {1 - BAND_P:.1f}, widened to hold "
        f"the threshold"
    )
    band, stats = fit_band(d, same, engine.threshold if threshold is None else float(threshold), source=source)
    return {**band.as_dict(), "fit": stats}


# -- the identification threshold ----------------------------------------------------------------
# -- the model: FAR(N, t) ~= 1 - (1 - p(t))^N -------------------------------------------------------


def far_at_gallery_size(p: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """1 - (1 - p)^n: the chance that at least one of n independent comparisons, each a false
    match with probability p, falls within the threshold."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(np.asarray(n, np.float64) * np.log1p(-p))


def per_comparison_rate(far: float, n: float) -> float:
    """The p with 1 - (1 - p)^n = far."""
    return float(-np.expm1(np.log1p(-far) / n))


@dataclass
class ImpostorRate:
    """p(t): the weighted share of impostor comparisons (a query photo against one enrolled
    photo of another person) at distance <= t, with its lower tail extrapolated."""

    distances: np.ndarray  # sorted impostor pair distances
    cumulative: np.ndarray  # p at each of them (cumulative weights)
    tail: tuple[float, float] | None = None  # (intercept, slope): t = intercept + slope * ln p
    tail_from: float = 0.0  # below this p, threshold_at() uses the tail

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        """The empirical p(t) (no extrapolation)."""
        k = np.searchsorted(self.distances, np.asarray(t, np.float64), side="right")
        return np.where(k > 0, self.cumulative[np.maximum(k - 1, 0)], 0.0)

    def smooth(self, t: float) -> float:
        """p(t), from the tail's fit where fewer than MIN_PAIRS pairs lie within t."""
        k = int(np.searchsorted(self.distances, t, side="right"))
        if k >= MIN_PAIRS or self.tail is None:
            return float(self(t))
        intercept, slope = self.tail
        return float(min(self.tail_from, math.exp((t - intercept) / slope)))

    def empirical_threshold(self, p: float) -> tuple[float, int]:
        """The largest t with empirical p(t) <= p, and how many pairs lie within it."""
        m = int(np.searchsorted(self.cumulative, p * (1 + 1e-12), side="right"))
        if m >= len(self.distances):
            return float("inf"), m
        return float(np.nextafter(self.distances[m], -np.inf)), m

    def threshold_at(self, p: float) -> tuple[float, bool]:
        """The largest t with p(t) <= p, and whether it was extrapolated from the tail."""
        t, m = self.empirical_threshold(p)
        if m >= MIN_PAIRS or self.tail is None or p >= self.tail_from:
            return t, False
        intercept, slope = self.tail
        return float(intercept + slope * math.log(p)), True


def impostor_rate(embeddings: np.ndarray, labels: np.ndarray, batch: int = 2048) -> ImpostorRate:
    """p(t) from every query photo against every photo of every other person, weighed so that
    each query photo counts once and each other person counts as one enrolled photo (1/n_j per
    photo of a person with n_j photos): the expectation over which photo gets enrolled."""
    e = np.asarray(embeddings, np.float32)
    _, person, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    m, people = len(e), len(counts)
    if people < 2:
        raise ValueError("impostor distances need at least two people")
    column_weight = 1.0 / counts[person] / (people - 1) / m
    ds, ws = [], []
    for s in range(0, m, batch):
        d = pairwise_distances(e[s : s + batch], e)
        other = person[s : s + batch, None] != person[None, :]
        ds.append(d[other].astype(np.float32))
        ws.append(np.broadcast_to(column_weight[None, :], d.shape)[other])
    d, w = np.concatenate(ds), np.concatenate(ws)
    order = np.argsort(d, kind="stable")
    rate = ImpostorRate(d[order].astype(np.float64), np.cumsum(w[order]))
    # the tail: t against ln p on a log-spaced grid of p, from MIN_PAIRS pairs up to TAIL_P
    if len(rate.distances) > MIN_PAIRS:
        low = float(rate.cumulative[MIN_PAIRS - 1])
        if low < TAIL_P:
            grid = np.geomspace(low, TAIL_P, 16)
            ts = np.array([rate.empirical_threshold(float(p))[0] for p in grid])
            ok = np.isfinite(ts)
            if ok.sum() >= 3:
                slope, intercept = np.polyfit(np.log(grid[ok]), ts[ok], 1)
                if slope > 0:
                    rate.tail, rate.tail_from = (float(intercept), float(slope)), low
    return rate


# -- the fit --------------------------------------------------------------------------------------


def fit_identification_threshold(
    embeddings: np.ndarray,
    labels: np.ndarray,
    target_far: float = TARGET_FAR,
    reference_gallery_size: int = REFERENCE_GALLERY_SIZE,
    splits: int = SPLITS,
    enrolled_fraction: float = ENROLLED_FRACTION,
    seed: int = 0,
    described_as: str = "",
) -> dict[str, Any]:
    """The identification threshold for these people's embeddings (see the module's docstring):
    the card entry (value, target_far, reference_gallery_size, source, note, fit)."""
    labels = np.asarray(labels)
    people = len(np.unique(labels))
    if people < 3:
        raise ValueError(f"fitting an identification threshold needs at least 3 people, not {people}")
    n_sim = min(max(1, int(round(people * enrolled_fraction))), people - 1)
    simulated = random_open_set_splits(labels, n_sim, splits, seed)
    answers = [nearest_enrolled(embeddings, labels, s) for s in simulated]
    known_d = np.concatenate([a[0] for a in answers])
    known_ok = np.concatenate([a[1] for a in answers])
    stranger_d = np.concatenate([a[2] for a in answers])
    t_sim = threshold_at_far(stranger_d, target_far)

    rate = impostor_rate(embeddings, labels)
    far_sim = float(np.mean(stranger_d <= t_sim)) if np.isfinite(t_sim) else 1.0
    far_model_sim = float(far_at_gallery_size(rate(t_sim), n_sim)) if np.isfinite(t_sim) else 1.0
    # the model's under-prediction where both are known (only ever makes the value stricter)
    correction = min(1.0, far_model_sim / far_sim) if far_sim > 0 else 1.0
    p_needed = per_comparison_rate(target_far * correction, reference_gallery_size)
    t_model, extrapolated = rate.threshold_at(p_needed)

    value, binding = t_model, f"model at N = {reference_gallery_size}"
    if reference_gallery_size >= n_sim and t_sim < t_model:
        value, binding = t_sim, f"simulation at N = {n_sim}"
    if not np.isfinite(value):
        raise ValueError("no finite threshold: too few strangers to measure the target false-alarm rate")
    value = float(value) - DISTANCE_MARGIN
    dir_at, far_at = open_set_rates(known_d, known_ok, stranger_d, value)
    p_value = rate.smooth(value)
    # the model's FAR at this value, divided by the correction (as it under-predicted at n_sim)
    far_by_size = {str(n): float(np.minimum(1.0, far_at_gallery_size(p_value, n) / correction)) for n in REPORT_SIZES}
    threshold_by_size = {
        str(n): rate.threshold_at(per_comparison_rate(target_far * correction, n))[0] for n in REPORT_SIZES
    }
    fit = {
        "people": people,
        "photos": int(len(labels)),
        "splits": splits,
        "seed": seed,
        "simulation": {
            "gallery_size": n_sim,
            "stranger_queries": int(len(stranger_d)),
            "known_queries": int(len(known_d)),
            "threshold_at_target": t_sim,
            "far_at_that": far_sim,
            "far_at_value": float(far_at[0]),
            "dir_at_value": float(dir_at[0]),
            "top1": float(known_ok.mean()) if len(known_ok) else float("nan"),
            "model_far_at_that": far_model_sim,
        },
        "model": {
            "impostor_pairs": int(len(rate.distances)),
            "correction": correction,
            "per_comparison_rate_at_value": p_value,
            "per_comparison_rate_needed": p_needed,
            "threshold_at_target": t_model,
            "extrapolated": extrapolated,
            "tail": None
            if rate.tail is None
            else {"intercept": rate.tail[0], "slope_per_ln_p": rate.tail[1], "below_p": rate.tail_from},
            "far_by_gallery_size_at_value": far_by_size,
            "threshold_by_gallery_size_at_target": threshold_by_size,
        },
        "binding": binding,
    }
    who = described_as or f"{people} people, {len(labels)} photos"
    source = (
        f"{who}: {splits} random open-set splits (half the people enrolled with one random photo each, "
        f"the rest strangers) and the per-comparison impostor rate p(t) of the same people; "
        f"the largest threshold whose false-alarm rate is at most {target_far:g} both as measured at "
        f"N = {n_sim} and as 1 - (1 - p(t))^N predicts at N = {reference_gallery_size}"
        f"{f' (corrected by the model/measured ratio {correction:.2f})' if correction < 1 else ''}; "
        f"binding: {binding}"
    )
    note = (
        "a gallery names its nearest person only within this distance, else 'unknown'. The false-alarm "
        "rate (strangers named as someone) grows with the number of people enrolled N: predicted at this "
        "value "
        + ", ".join(f"N={n}: {100 * far_by_size[str(n)]:.2g}%" for n in REPORT_SIZES)
        + f". Measured on the validation people at N={n_sim}: FAR {100 * far_at[0]:.2g}%, DIR "
        f"{100 * dir_at[0]:.2g}%. "
        + (
            "p(t) at this value lies below the impostor pairs measured and is extrapolated from their tail. "
            if extrapolated and binding.startswith("model")
            else ""
        )
        + "Fitted on people the model never trained on, never on LFW."
    )
    return {
        "value": float(value),
        "target_far": float(target_far),
        "reference_gallery_size": int(reference_gallery_size),
        "source": source,
        "note": note,
        "fit": fit,
    }


def validation_identification_threshold(
    engine, target_far: float = TARGET_FAR, reference_gallery_size: int = REFERENCE_GALLERY_SIZE, **where: Any
) -> dict[str, Any]:
    """The card entry for an engine's weights, fitted on their validation people."""
    embeddings, labels, described = validation_embeddings(engine, **where)
    seed = int(((engine.meta.get("train") or {}).get("config") or {}).get("seed", 0))
    return fit_identification_threshold(
        embeddings, labels, target_far, reference_gallery_size, seed=seed, described_as=described
    )


def identification_card_entry(engine) -> dict[str, Any] | None:
    """For training.evaluate --write-card: the entry, or None (FaceEngine then falls back, with a
    warning) when the validation people or their cached crops are not there."""
    try:
        entry = validation_identification_threshold(engine)
    except (OSError, KeyError, ValueError) as exc:
        print(
            f"identification threshold not fitted ({exc}); the engine will fall back to the verdict band's lower end",
            file=sys.stderr,
        )
        return None
    sim = entry["fit"]["simulation"]
    print(
        f"identification threshold: {entry['value']:.4f} for FAR <= {entry['target_far']:g} at N = "
        f"{entry['reference_gallery_size']} ({entry['fit']['binding']}); validation N = {sim['gallery_size']}: "
        f"FAR {100 * sim['far_at_value']:.2f}%, DIR {100 * sim['dir_at_value']:.1f}%"
    )
    return entry
