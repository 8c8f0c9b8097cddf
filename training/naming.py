"""How the product names people (issue 20), chosen and fitted on the validation people only.

    python -m training.naming                 # the study: print the choices and the fit
    python -m training.naming --write         # also write the cohort and the card's `naming` entry

1. The score (engine.identification): the raw distance, AS-norm or a CSLS-style correction
   against a cohort of training faces, each at several K; chosen by the share of enrolled
   people's queries named right at 1% of strangers named (DIR at FAR 1%) over random open-set
   splits of the validation people (half enrolled with one random photo each, the rest
   strangers).
2. Several photos per person: the nearest entry against the mean template, with 1, 2 and 3
   photos enrolled per person (validation people with 4+ photos; the rest query), at 1% of
   strangers named.
3. The naming threshold for a gallery of N people, on the chosen score: the nearest-impostor
   score of a stranger against N people is measured directly (for every validation photo,
   galleries of N other validation people with one random photo each, many draws), its 1%
   quantile is the threshold for N; beyond the pool's size (153 others) the quantile is
   extrapolated by a curve in N whose form (linear in ln N, or in sqrt(ln N)) is chosen by
   how well a fit on N <= 40 predicts the measured N = 80..153.

The cohort is one photo each of up to COHORT_SIZE celeba_aligned people the weights trained on
(training.naming_data). Nothing here reads LFW.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.identification import COHORT_SUFFIX, RERANK, SCORES, as_norm, cohort_path

from .naming_data import naming_faces
from .openset import pairwise_distances, random_open_set_splits, threshold_at_far

TARGET_FAR = 0.01
KS = (10, 25, 50, 100, 200, 400)
SPLITS = 50
DRAWS = 200
#: Gallery sizes the card lists the threshold for (interpolated in ln N between them).
CARD_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000)


def cohort_distances(embeddings: np.ndarray, cohort: np.ndarray) -> np.ndarray:
    """Each row's distances to the cohort, sorted ascending."""
    return np.sort(pairwise_distances(embeddings, cohort), axis=1)


def scores(method: str, k: int, d: np.ndarray, cq: np.ndarray, ce: np.ndarray) -> np.ndarray:
    """Score matrix (lower: more alike) from distances d (Q x E) and both sides' sorted cohort
    distances. The product implements the one chosen (engine.identification)."""
    if method == "raw":
        return d
    if method == "as-norm":
        q = (cq[:, :k].mean(1), np.maximum(cq[:, :k].std(1), 1e-3))
        e = (ce[:, :k].mean(1), np.maximum(ce[:, :k].std(1), 1e-3))
        return as_norm(d, (q[0][:, None], q[1][:, None]), (e[0][None], e[1][None]))
    if method == "csls":
        rq, re = (cq[:, :k] ** 2).mean(1), (ce[:, :k] ** 2).mean(1)
        return d**2 - 0.5 * (rq[:, None] + re[None])
    raise ValueError(method)


def open_set(s: np.ndarray, labels: np.ndarray, splits: int = SPLITS, seed: int = 0) -> dict[str, float]:
    """Top-1, and DIR at FAR 1% and 0.1% (thresholds pooled over the splits), of a square score
    matrix between the photos, over random open-set splits (half the people enrolled)."""
    people = len(np.unique(labels))
    known_s, known_ok, stranger_s = [], [], []
    for split in random_open_set_splits(labels, people // 2, splits, seed):
        for rows, bucket in ((split.probes, "k"), (split.strangers, "s")):
            sub = s[np.ix_(rows, split.enroll)]
            best = sub.argmin(1)
            if bucket == "k":
                known_s.append(sub[np.arange(len(rows)), best])
                known_ok.append(labels[split.enroll][best] == labels[rows])
            else:
                stranger_s.append(sub.min(1))
    ks, ok, ss = np.concatenate(known_s), np.concatenate(known_ok), np.concatenate(stranger_s)
    out = {"top1": float(ok.mean())}
    for far in (0.01, 0.001):
        t = threshold_at_far(ss, far)
        out[f"dir@{far:g}"] = float(np.mean(ok & (ks <= t)))
    return out


def templates_study(emb, labels, cq_fn, score_fn, splits: int = 30, seed: int = 0) -> dict[str, dict[str, float]]:
    """DIR at FAR 1% for nearest-entry and mean-template scoring with m = 1, 2, 3 photos per
    enrolled person: people with 4+ photos, half enrolled per split; strangers: every photo of
    everyone else."""
    rng = np.random.default_rng(seed)
    people, counts = np.unique(labels, return_counts=True)
    rich = people[counts >= 4]
    out: dict[str, dict[str, float]] = {}
    for m in (1, 2, 3):
        for how in ("nearest", "mean"):
            ks, ok, ss = [], [], []
            for _ in range(splits):
                chosen = rng.permutation(rich)[: len(rich) // 2]
                enrolled, probes = [], []
                for p in chosen:
                    photos = rng.permutation(np.flatnonzero(labels == p))
                    enrolled.append(photos[:m])
                    probes += [(i, len(enrolled) - 1) for i in photos[m:]]
                strangers = np.flatnonzero(~np.isin(labels, chosen))
                if how == "mean":
                    t = np.stack([emb[e].mean(0) for e in enrolled])
                    t /= np.linalg.norm(t, axis=1, keepdims=True)
                    person_of = np.arange(len(enrolled))
                else:
                    t = emb[np.concatenate(enrolled)]
                    person_of = np.repeat(np.arange(len(enrolled)), m)
                ct = cq_fn(t)
                for rows, bucket in (([i for i, _ in probes], "k"), (strangers, "s")):
                    rows = np.asarray(rows)
                    sc = score_fn(pairwise_distances(emb[rows], t), cq_fn(emb[rows]), ct)
                    best_per = np.full((len(rows), len(enrolled)), np.inf)
                    for j in range(len(enrolled)):
                        best_per[:, j] = sc[:, person_of == j].min(1)
                    best = best_per.argmin(1)
                    if bucket == "k":
                        ks.append(best_per[np.arange(len(rows)), best])
                        ok.append(best == np.array([p for _, p in probes]))
                    else:
                        ss.append(best_per.min(1))
            k_, o_, s_ = np.concatenate(ks), np.concatenate(ok), np.concatenate(ss)
            t1 = threshold_at_far(s_, TARGET_FAR)
            out[f"{how} m={m}"] = {"top1": float(o_.mean()), "dir@0.01": float(np.mean(o_ & (k_ <= t1)))}
    return out


def nearest_impostor(s: np.ndarray, labels: np.ndarray, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """M[r, i, n-1]: photo i's lowest score against a gallery of n other people (one random photo
    each), in draw r, for n = 1 .. people - 1."""
    rng = np.random.default_rng(seed)
    people, person = np.unique(labels, return_inverse=True)
    photos = [np.flatnonzero(person == p) for p in range(len(people))]
    q, p = len(labels), len(people)
    out = np.empty((draws, q, p - 1), np.float32)
    for r in range(draws):
        pick = np.array([rng.choice(ph) for ph in photos])
        sc = s[:, pick]  # Q x P
        keys = rng.random((q, p))
        keys[np.arange(q), person] = np.inf  # the stranger's own person is never in the gallery
        order = np.argsort(keys, axis=1)[:, : p - 1]
        out[r] = np.minimum.accumulate(np.take_along_axis(sc, order, axis=1), axis=1)
    return out


def fit_by_size(m: np.ndarray, target: float = TARGET_FAR) -> dict[str, Any]:
    """The threshold for N people: measured (the target quantile of the nearest-impostor score)
    up to the pool's size, a curve beyond (see the module docstring)."""
    sizes = np.arange(1, m.shape[2] + 1)
    measured = np.array([threshold_at_far(m[:, :, n - 1].ravel(), target) for n in sizes])
    forms: dict[str, Callable[[np.ndarray], np.ndarray]] = {"ln N": np.log, "sqrt(ln N)": lambda n: np.sqrt(np.log(n))}
    fit_on = (sizes >= 10) & (sizes <= 40)
    check = sizes >= 80
    errors, lines = {}, {}
    for name, f in forms.items():
        b, a = np.polyfit(f(sizes[fit_on]), measured[fit_on], 1)
        errors[name] = float(np.abs(a + b * f(sizes[check]) - measured[check]).mean())
    form = min(errors, key=errors.__getitem__)
    f = forms[form]
    use = sizes >= 10
    b, a = np.polyfit(f(sizes[use]), measured[use], 1)
    lines = {"form": form, "intercept": float(a), "slope": float(b)}
    by_size: dict[str, float] = {}
    for n in CARD_SIZES:
        t = float(measured[n - 1]) if n < 10 else float(a + b * f(np.array([n]))[0])
        by_size[str(n)] = t
    values = list(by_size.values())  # never looser for more people
    for i in range(1, len(values)):
        values[i] = min(values[i], values[i - 1])
    by_size = dict(zip(by_size, values, strict=True))
    return {
        "by_gallery_size": by_size,
        "curve": lines,
        "extrapolation_error": errors,
        "measured": {
            str(n): float(measured[n - 1]) for n in (1, 2, 5, 10, 20, 40, 80, int(sizes[-1])) if n <= sizes[-1]
        },
        "far_by_gallery_size_at_fitted": {
            str(n): float(np.mean(m[:, :, n - 1] <= by_size[str(n)])) for n in (10, 20, 50, 100) if n <= sizes[-1]
        },
    }


def study(engine, weights: Path, write: bool = False) -> dict[str, Any]:
    val_crops, labels, cohort_crops, described, cohort_paths = naming_faces()
    emb = engine.embed_crops(val_crops)
    cohort = engine.embed_crops(cohort_crops)
    print(f"{described}; cohort {len(cohort)} faces", flush=True)
    d = pairwise_distances(emb, emb)
    cd = cohort_distances(emb, cohort)
    results: dict[str, dict[str, float]] = {"raw": open_set(d, labels)}
    for method in ("as-norm", "csls"):
        for k in KS:
            results[f"{method} K={k}"] = open_set(scores(method, k, d, cd, cd), labels)
    for name, r in results.items():
        print(
            f"  {name:16s} top-1 {100 * r['top1']:.1f}%  DIR@1% {100 * r['dir@0.01']:.1f}%  "
            f"DIR@0.1% {100 * r['dir@0.001']:.1f}%",
            flush=True,
        )
    normalised = {k: v for k, v in results.items() if k != "raw"}
    choice = max(normalised, key=lambda k: (normalised[k]["dir@0.01"], normalised[k]["top1"]))
    method, k = choice.split(" K=")[0], int(choice.split("K=")[1])
    print(f"chosen: {choice}", flush=True)
    if method not in SCORES:
        print(f"the product does not implement {method}: implement it first", file=sys.stderr)
        return {"results": results, "choice": choice}

    def score_fn(dist, cq, ce):
        return scores(method, k, dist, cq, ce)

    templates = templates_study(emb, labels, lambda x: cohort_distances(x, cohort), score_fn)
    for name, r in templates.items():
        print(f"  templates {name:12s} top-1 {100 * r['top1']:.1f}%  DIR@1% {100 * r['dir@0.01']:.1f}%", flush=True)
    gain = {m: templates[f"mean m={m}"]["dir@0.01"] - templates[f"nearest m={m}"]["dir@0.01"] for m in (2, 3)}
    template_choice = "mean" if sum(gain.values()) > 0 else "nearest"
    print(f"templates: {template_choice} (mean minus nearest, DIR@1%: {gain})", flush=True)

    s = scores(method, k, d, cd, cd)
    fit = fit_by_size(nearest_impostor(s, labels))
    print(json.dumps(fit, indent=1), flush=True)
    people = len(np.unique(labels))
    entry = {
        "score": method,
        "k": k,
        "rerank": RERANK,
        "templates": template_choice,
        "cohort_file": None,
        "cohort_model_id": engine.model_id,
        "cohort_size": int(len(cohort)),
        "cohort_source": (
            f"one photo each of {len(cohort)} celeba_aligned people the weights trained on (first photo in name "
            "order; people with two photos, training.naming_data), embedded by these weights; never LFW"
        ),
        "choice": {
            "on": described,
            "open_set": results,
            "templates": templates,
            "how": (
                f"{SPLITS} random open-set splits, half of the {people} people enrolled with one random photo each; "
                "the score and K with the highest DIR at 1% of strangers named; templates: people with 4+ photos, "
                "1-3 enrolled, mean template against nearest entry at 1% of strangers named"
            ),
        },
        "threshold": {
            "target_far": TARGET_FAR,
            "reference_gallery_size": 2000,
            **fit,
            "source": (
                f"{described}: for every photo, galleries of N other validation people (one random photo each, "
                f"{DRAWS} draws), the {TARGET_FAR:g} quantile of its nearest-impostor score, measured for N up to "
                f"{people - 1} and extrapolated beyond along a curve linear in {fit['curve']['form']} (the form that "
                "best predicted the measured N = 80+ from N <= 40)"
            ),
            "note": (
                "a gallery of N people names its best candidate only when the normalised score is within the "
                f"threshold for N (about {100 * TARGET_FAR:g}% of strangers named at any N); fitted on people the "
                "model never trained on, never on LFW"
            ),
        },
    }
    if write:
        path = cohort_path(weights)
        np.save(path, cohort.astype(np.float16))
        entry["cohort_file"] = path.name
        card_path = weights.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card["naming"] = entry
        card_path.write_text(json.dumps(card, indent=1, default=float) + "\n")
        print(f"wrote {path} ({path.stat().st_size // 1024} KB) and the card's naming entry", flush=True)
    return {"results": results, "choice": choice, "entry": entry}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: engine/weights/twin.pt")
    parser.add_argument("--write", action="store_true", help=f"write <weights>{COHORT_SUFFIX} and the card entry")
    args = parser.parse_args(argv)
    from engine import FaceEngine
    from engine.model import DEFAULT_WEIGHTS

    weights = args.weights or DEFAULT_WEIGHTS
    study(FaceEngine(weights, device="cpu"), Path(weights), write=args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
