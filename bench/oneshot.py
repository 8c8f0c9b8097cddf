"""N-way one-shot identification, as the product does it: enroll ONE photo per person in a real
index.Gallery, then identify every other photo.

    python bench/oneshot.py                          # `make bench-oneshot`: --sets att lfw
    python bench/oneshot.py --sets att --limit 10    # a quick look: the first 10 people of each set
    python bench/oneshot.py --timing-photos 0        # accuracy only

- AT&T, 40-way: all 40 subjects enrolled with their first photo; the other 9 photos of each
  are queries. The 3 testing subjects (s5-s7, never seen in training) are reported apart from
  the 37 training subjects.
- LFW, closed set: the 1,680 people with 2+ photos, first photo (Name_0001) enrolled, the rest
  queried; top-1 and top-5.
- LFW, open set: the photos of the 4,069 people with a single photo query the same gallery as
  strangers. At a threshold t: DIR(t) = enrolled people's queries whose top-1 is right AND
  within t; FAR(t) = strangers whose top-1 is within t (they would be named as someone).
  Reported at the shipped IDENTIFICATION threshold (FaceEngine.identification_threshold, from
  the model card: fitted on the held-out validation people, never LFW; training.thresholds),
  at the verification threshold for contrast, and at thresholds chosen ON LFW for FAR 0.1%, 1%,
  5%, 10% (labelled so: reporting only, never shipped).
- LFW, FAR against the number of people enrolled N: random N-person subsets of the 1,680
  (Name_0001 enrolled) against all the strangers, at the identification threshold, beside
  1 - (1 - p)^N predicted from the validation fit (the card) and from LFW's own p(t).
- Time: enroll and identify throughput end to end from photo files (engine.faces(path) +
  Gallery.enroll / Gallery.identify) on LFW photos.

Accuracy uses the engine's cached detections and alignments (training.data.load_crops: the same
MTCNN and alignment code the product runs), embeds them with FaceEngine.embed_crops and goes
through a real Gallery in a temporary directory: at LFW scale detecting every photo again would
cost ~40 ms each and measure nothing new. The timing rows are fully end to end.

The protocol (Split, first_photo_split, rank, topk_accuracy, open_set_rates, threshold_at_far,
run_oneshot) lives in training/openset.py (numpy only), shared with training.thresholds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: AT&T subjects kept out of training (att_faces/testing).
ATT_TESTING = ("s5", "s6", "s7")


# The protocol lives in training.openset (numpy only), shared with the fitting of the
# identification threshold (training.thresholds) and the tests; re-exported here.
from training.openset import (  # noqa: E402,F401
    TOP_K,
    OneShotResult,
    Ranked,
    Split,
    first_photo_split,
    open_set_rates,
    pairwise_distances,
    rank,
    run_oneshot,
    threshold_at_far,
    topk_accuracy,
)

# -- end to end timing ----------------------------------------------------------------------

def time_end_to_end(engine: Any, enroll: Sequence[tuple[str, Path]], identify: Sequence[tuple[str, Path]],
                    directory: str | Path) -> dict[str, Any]:
    """Photos per second from the file: engine.faces(path) + Gallery.enroll (with the crop as
    thumbnail, as the app stores it), then engine.faces(path) + Gallery.identify. A warm-up
    photo (not counted) goes through both paths first."""
    from index import Gallery
    out: dict[str, Any] = {"enroll_photos": len(enroll), "identify_photos": len(identify),
                           "enroll_no_face": 0, "identify_no_face": 0, "identified": 0, "identified_right": 0}
    with Gallery(directory, model_id=engine.model_id, threshold=identification_threshold(engine),
                 embedding_size=engine.embedding_size) as gallery:
        warm = engine.faces(enroll[0][1])
        if warm:
            gallery.identify(warm[0].embedding)
        start = time.perf_counter()
        for name, path in enroll:
            faces = engine.faces(path)
            if not faces:
                out["enroll_no_face"] += 1
                continue
            gallery.enroll(name, faces[0].embedding, thumbnail=faces[0].crop)
        out["enroll_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        for name, path in identify:
            faces = engine.faces(path)
            if not faces:
                out["identify_no_face"] += 1
                continue
            match = gallery.identify(faces[0].embedding)
            if match is not None:
                out["identified"] += 1
                out["identified_right"] += int(match.name == name)
        out["identify_seconds"] = time.perf_counter() - start
        out["gallery_size"] = len(gallery)
    out["enroll_per_s"] = len(enroll) / out["enroll_seconds"] if out["enroll_seconds"] else float("nan")
    out["identify_per_s"] = len(identify) / out["identify_seconds"] if out["identify_seconds"] else float("nan")
    return out


def timing_photos(lfw_root: Path, count: int) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """`count` LFW people with 2+ photos, spread over the alphabet: their first photo to enroll,
    their second to identify."""
    people = sorted(p for p in lfw_root.iterdir() if p.is_dir() and (p / f"{p.name}_0002.jpg").is_file())
    chosen = people[:: max(1, len(people) // max(count, 1))][:count]
    return ([(p.name, p / f"{p.name}_0001.jpg") for p in chosen],
            [(p.name, p / f"{p.name}_0002.jpg") for p in chosen])


# -- the script -------------------------------------------------------------------------------

def load_set(names: Sequence[str], limit: int | None):
    """Cached crops of one or more training.data sets, merged: crops, person of each photo, paths
    (prefixed with the set's name), found. `limit`: the first N people of each set."""
    from training.data import known_sets, load_crops
    sets = known_sets()
    crops, people, paths, found = [], [], [], []
    for name in names:
        data = load_crops(sets[name], workers=2)
        person = np.array(data.names)[data.labels]
        keep = np.ones(len(data), bool)
        if limit:
            keep = np.isin(data.labels, np.arange(limit))
        crops.append(data.crops[keep])
        people += list(person[keep])
        paths += [f"{name}/{p}" for p, k in zip(data.paths, keep) if k]
        found.append(data.found[keep])
    return np.concatenate(crops), people, paths, np.concatenate(found)


def pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def att_section(engine, limit: int | None, tmp: Path) -> tuple[list[str], dict[str, Any]]:
    crops, people, paths, found = load_set(["att_train", "att_test"], limit)
    # paths like "att_train/s1/1.pgm": the first photo of a person is 1.pgm in natural order
    order = [(p.split("/")[1], int(Path(p).stem)) if Path(p).stem.isdigit() else (p, 0) for p in paths]
    split = first_photo_split(people, order)
    start = time.perf_counter()
    embeddings = engine.embed_crops(crops)
    embed_s = time.perf_counter() - start
    result = run_oneshot(embeddings, people, split, tmp / "att", engine.model_id,
                         identification_threshold(engine, len(split.enroll)))
    testing = np.array([people[i] in ATT_TESTING for i in split.probes])
    n_test = len({people[i] for i in split.enroll if people[i] in ATT_TESTING})
    rows = [(f"{n_test} testing subjects (s5-s7, unseen in training)", result.summary(testing)),
            (f"{len(split.enroll) - n_test} training subjects", result.summary(~testing)),
            ("all", result.summary())]
    n_way = len(split.enroll)
    lines = [f"### AT&T, {n_way}-way one-shot", "",
             f"{n_way} people enrolled with one photo each (1.pgm); the other photos of each are the queries. "
             f"{int((~found).sum())} of {len(found)} photos had no detected face. At the identification "
             f"threshold the app uses for a gallery of {n_way} people: {result.threshold:.3f}.", "",
             f"| queries from | queries | top-1 | top-{TOP_K} | identified at threshold (DIR) "
             "| wrong person within threshold | rejected (unknown) |",
             "|---|---|---|---|---|---|---|"]
    for label, s in rows:
        if s["queries"]:
            lines.append(f"| {label} | {s['queries']} | {pct(s['top1'])} | {pct(s['topk'])} | {pct(s['dir'])} | "
                         f"{pct(s['wrong_within'])} | {pct(s['rejected'])} |")
    lines.append("")
    return lines, {"result": result, "embed_s": embed_s, "photos": len(crops)}


def lfw_section(engine, limit: int | None, tmp: Path, plot: Path) -> tuple[list[str], dict[str, Any]]:
    crops, people, paths, found = load_set(["lfw"], limit)
    split = first_photo_split(people, paths)
    start = time.perf_counter()
    embeddings = engine.embed_crops(crops)
    embed_s = time.perf_counter() - start
    result = run_oneshot(embeddings, people, split, tmp / "lfw", engine.model_id, engine.threshold)
    s = result.summary()
    n_people, n_strangers = len(split.enroll), len(split.strangers)
    lines = [f"### LFW, closed set: {n_people}-way one-shot", "",
             f"{n_people} people with 2+ photos, Name_0001 enrolled, {len(split.probes)} other photos queried. "
             f"{int((~found).sum())} of {len(found)} LFW photos had no detected face and were aligned with "
             "fixed landmarks (as training.evaluate does).", "",
             f"| queries | top-1 | top-{TOP_K} |", "|---|---|---|",
             f"| {s['queries']} | {pct(s['top1'])} | {pct(s['topk'])} |", ""]

    ident, verif = identification_threshold(engine), engine.threshold
    known_d, known_ok, stranger_d = result.known.top1_distance, result.known_correct, result.strangers.top1_distance
    lines += [f"### LFW, open set: {n_people} enrolled, {n_strangers} strangers", "",
              f"Queries: the {len(split.probes)} photos of enrolled people and the {n_strangers} photos of the "
              "people with a single photo (never enrolled). DIR: enrolled people's queries named right and "
              "within the threshold; FAR: strangers named as anyone (top-1 within the threshold).", "",
              "| threshold | chosen on | DIR | FAR (strangers) | enrolled named wrongly within threshold |",
              "|---|---|---|---|---|"]
    wrong = lambda t: float(np.mean(~known_ok & (known_d <= t))) if len(known_d) else float("nan")  # noqa: E731

    def row(t: float, label: str, chosen: str, bold: bool = False) -> tuple[float, float]:
        d_t, f_t = open_set_rates(known_d, known_ok, stranger_d, t)
        b = "**" if bold else ""
        lines.append(f"| {b}{t:.3f} {label}{b} | {chosen} | {b}{pct(d_t[0])}{b} | {b}{pct(f_t[0])}{b} | "
                     f"{pct(wrong(t))} |")
        return float(d_t[0]), float(f_t[0])

    shipped = row(ident, "(shipped identification threshold)", "validation people (never LFW)", bold=True)
    row(verif, "(verification threshold: not for naming)", "LFW View 1")
    operating = {}
    if len(stranger_d):
        for target in (0.001, 0.01, 0.05, 0.1):
            t = threshold_at_far(stranger_d, target)
            if not np.isfinite(t):
                continue
            d_t, f_t = row(t, f"(FAR <= {100 * target:g}% on LFW)", "**LFW itself: reporting only**")
            operating[target] = (t, d_t, f_t)
    lines += ["", "The rows chosen on LFW show what the model could reach at those false-alarm rates; they are "
              "never shipped (LFW chooses nothing but the View 1 verification threshold).", ""]
    growth_lines, growth = far_by_gallery_size(engine, embeddings, people, split, result, ident, tmp)
    lines += growth_lines
    lines += [f"![DIR and FAR over the threshold, and FAR against N]({plot.name})", "",
              f"(Gallery work alone: {result.enrolled} enrollments in {result.seconds['enroll']:.1f} s, "
              f"{len(split.probes) + n_strangers} searches in {result.seconds['search']:.1f} s; embedding the "
              f"{len(crops)} cached crops took {embed_s:.0f} s.)", ""]
    plot_open_set(known_d, known_ok, stranger_d, ident, verif, growth, plot, engine.model_id, n_people, n_strangers)
    return lines, {"result": result, "embed_s": embed_s, "photos": len(crops), "operating": operating,
                   "shipped": shipped, "growth": growth}


#: Gallery sizes for the FAR-against-N table, and how many random subsets of the enrolled people
#: each is measured on (the full gallery is the run above).
GROWTH_SIZES = ((10, 50), (100, 20), (1000, 5))


def far_by_gallery_size(engine, embeddings: np.ndarray, people: Sequence[str], split: Split, full: OneShotResult,
                        threshold: float, tmp: Path, seed: int = 0) -> tuple[list[str], list[dict[str, Any]]]:
    """FAR and DIR at the identification threshold for galleries of N people: random N-person
    subsets of the enrolled people (their enrolled photo; their other photos are the known
    queries) searched by every stranger through a real Gallery; the full gallery is `full`.
    Beside them, 1 - (1 - p)^N from the validation fit in the card, and from LFW's own
    per-comparison rate p (every stranger against every enrolled photo)."""
    from training.thresholds import far_at_gallery_size
    people = list(people)
    n_all = len(split.enroll)
    stranger_e, enrolled_e = embeddings[split.strangers], embeddings[split.enroll]
    p_lfw = float("nan")
    if len(stranger_e) and n_all:
        within = 0
        for s in range(0, len(stranger_e), 1024):
            within += int((pairwise_distances(stranger_e[s:s + 1024], enrolled_e) <= threshold).sum())
        p_lfw = within / (len(stranger_e) * n_all)
    fit = ((engine.card.get("identification_threshold") or {}).get("fit") or {}).get("model") or {}
    p_val, correction = fit.get("per_comparison_rate_at_value"), fit.get("correction") or 1.0
    rng = np.random.default_rng(seed)
    person_photos: dict[str, list[int]] = {}
    for i in split.probes:
        person_photos.setdefault(people[i], []).append(int(i))
    rows = []
    sizes = [(n, r) for n, r in GROWTH_SIZES if n < n_all] + [(n_all, 1)]
    for n, repeats in sizes:
        t_app = identification_threshold(engine, n)  # what the app names within for n people (demo.service)
        fars, dirs, app_fars, app_dirs = [], [], [], []
        for r in range(repeats):
            if n == n_all:
                far, dir_ = full.far(threshold), full.summary(threshold=threshold)["dir"]
                app_far, app_dir = full.far(t_app), full.summary(threshold=t_app)["dir"]
            else:
                chosen = np.sort(rng.choice(n_all, size=n, replace=False))
                enroll = split.enroll[chosen]
                probes = np.array(sorted(i for e in enroll for i in person_photos.get(people[e], [])), np.int64)
                sub = run_oneshot(embeddings, people, Split(enroll, probes, split.strangers),
                                  tmp / f"growth-{n}-{r}", engine.model_id, threshold, k=1)
                far, dir_ = sub.far(threshold), sub.summary(k=1)["dir"]
                app_far, app_dir = sub.far(t_app), sub.summary(k=1, threshold=t_app)["dir"]
            fars.append(far)
            dirs.append(dir_)
            app_fars.append(app_far)
            app_dirs.append(app_dir)
        rows.append({"n": n, "repeats": repeats, "far": float(np.mean(fars)), "far_min": float(np.min(fars)),
                     "far_max": float(np.max(fars)), "dir": float(np.mean(dirs)), "app_threshold": t_app,
                     "app_far": float(np.mean(app_fars)), "app_far_max": float(np.max(app_fars)),
                     "app_dir": float(np.mean(app_dirs)),
                     "pred_validation": (float(min(1.0, far_at_gallery_size(p_val, n) / correction))
                                         if p_val is not None else float("nan")),
                     "pred_lfw": float(far_at_gallery_size(p_lfw, n)) if np.isfinite(p_lfw) else float("nan")})
    ref = (engine.card.get("identification_threshold") or {}).get("reference_gallery_size")
    lines = [f"### LFW: how FAR grows with the number of people enrolled (identification threshold {threshold:.3f})",
             "",
             f"Galleries of N people: random N-person subsets of the {n_all} (their Name_0001 enrolled), searched by "
             f"all {len(split.strangers)} strangers through a real Gallery; N = {n_all} is the full gallery above. "
             "A stranger has N chances to fall within the threshold: with independent comparisons "
             "FAR(N) = 1 - (1 - p)^N, p the chance that one comparison does. Predicted from the validation fit "
             f"(the card, {'fitted for N = ' + str(ref) if ref else 'no fit in the card'}) and from LFW's own p "
             f"(every stranger against every enrolled photo: p = {p_lfw:.2e}).", "",
             "| people enrolled N | galleries | FAR measured (min-max) | DIR measured | FAR predicted, validation fit "
             "| FAR predicted, LFW's p | the app's threshold for N | FAR there (max) | DIR there |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in rows:
        spread = f" ({pct_fine(g['far_min'])}-{pct_fine(g['far_max'])})" if g["repeats"] > 1 else ""
        lines.append(f"| {g['n']} | {g['repeats']} | {pct_fine(g['far'])}{spread} | {pct(g['dir'])} | "
                     f"{pct2(g['pred_validation'])} | {pct2(g['pred_lfw'])} | {g['app_threshold']:.3f} | "
                     f"{pct_fine(g['app_far'])} ({pct_fine(g['app_far_max'])}) | {pct(g['app_dir'])} |")
    lines += ["", "The last three columns are what the app does: it names within the threshold fitted for its own "
              "gallery's size (`IdentificationThreshold.for_gallery`, the card's fit interpolated in log N), "
              "looser for a small gallery.", ""]
    return lines, rows


def pct_fine(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


def pct2(x: float) -> str:
    """Small rates with two significant figures."""
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2g}%"


def identification_threshold(engine, people: int | None = None) -> float:
    """The engine's identification threshold (its verification threshold for an engine without
    one); with `people`, the one the app uses for a gallery of that size (for_gallery)."""
    identification = getattr(engine, "identification", None)
    if people is not None and hasattr(identification, "for_gallery"):
        return float(identification.for_gallery(people))
    return float(getattr(engine, "identification_threshold", None) or engine.threshold)


def plot_open_set(known_d, known_ok, stranger_d, threshold, verification, growth, path: Path, model_id: str,
                  n_people: int, n_strangers: int) -> None:
    """DIR and FAR over the threshold; DIR against FAR; FAR against N at the identification threshold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    finite = np.concatenate([known_d[np.isfinite(known_d)], stranger_d[np.isfinite(stranger_d)], [threshold]])
    grid = np.linspace(0.0, max(2.0, float(finite.max()) * 1.02), 801)
    dir_, far = open_set_rates(known_d, known_ok, stranger_d, grid)
    d_at, f_at = open_set_rates(known_d, known_ok, stranger_d, threshold)
    d_v, f_v = open_set_rates(known_d, known_ok, stranger_d, verification)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4.8))
    left.plot(grid, dir_, label="DIR (enrolled: right person, within threshold)", color="tab:blue")
    left.plot(grid, far, label="FAR (strangers matched within threshold)", color="tab:red")
    left.axvline(threshold, color="black", ls="--", lw=1)
    left.annotate(f"identification {threshold:.3f}\nDIR {100 * d_at[0]:.1f}%  FAR {100 * f_at[0]:.1f}%",
                  (threshold, 0.62), xytext=(-6, 0), textcoords="offset points", fontsize=8, ha="right")
    left.axvline(verification, color="grey", ls=":", lw=1)
    left.annotate(f"verification {verification:.3f}\nFAR {100 * f_v[0]:.0f}%", (verification, 0.35),
                  xytext=(6, 0), textcoords="offset points", fontsize=8)
    left.set_xlabel("threshold (Euclidean distance between unit embeddings)")
    left.set_ylabel("rate")
    left.set_ylim(-0.02, 1.02)
    left.legend(loc="upper left", fontsize=7)
    left.set_title("DIR and FAR over the threshold")
    keep = far > 0
    middle.plot(far[keep], dir_[keep], color="tab:purple")
    low = max(1.0 / max(n_strangers, 1), 1e-4) / 1.5
    middle.scatter([max(f_at[0], low)], [d_at[0]], color="black", zorder=3,
                   label=f"identification threshold {threshold:.3f}")
    middle.scatter([max(f_v[0], low)], [d_v[0]], color="grey", marker="s", zorder=3,
                   label=f"verification threshold {verification:.3f}")
    for target in (0.001, 0.01):
        middle.axvline(target, color="tab:red", lw=0.6, alpha=0.5)
    middle.set_xscale("log")
    middle.set_xlim(low / 1.2, 1.0)
    middle.set_ylim(-0.02, 1.02)
    middle.set_xlabel("FAR (strangers)")
    middle.set_ylabel("DIR (enrolled people)")
    middle.grid(True, which="both", alpha=0.3)
    middle.legend(loc="upper left", fontsize=7)
    middle.set_title("DIR against FAR")
    ns = np.array([g["n"] for g in growth], float)
    if len(ns):
        curve = np.geomspace(1, max(ns.max(), 2) * 1.5, 100)
        from training.thresholds import far_at_gallery_size
        for key, label, style in (("pred_validation", "1-(1-p)^N, p from the validation fit", "tab:green"),
                                  ("pred_lfw", "1-(1-p)^N, p from LFW's pairs", "tab:orange")):
            p_n = np.array([g[key] for g in growth], float)
            if np.isfinite(p_n).any():
                # recover p from the first row: FAR(N) = 1 - (1 - p)^N (the validation one scaled by its correction)
                i = int(np.flatnonzero(np.isfinite(p_n))[-1])
                p = -np.expm1(np.log1p(-min(p_n[i], 1 - 1e-12)) / ns[i])
                right.plot(curve, far_at_gallery_size(p, curve), color=style, lw=1.2, label=label)
        right.errorbar(ns, [g["far"] for g in growth],
                       yerr=[[g["far"] - g["far_min"] for g in growth], [g["far_max"] - g["far"] for g in growth]],
                       fmt="o", color="black", capsize=3, label="measured on LFW (mean, min-max)")
        right.axhline(0.01, color="tab:red", lw=0.6, alpha=0.6)
        right.set_xscale("log")
        right.set_yscale("symlog", linthresh=1e-4)
        right.set_ylim(0, 1.05)
        right.legend(loc="upper left", fontsize=7)
    right.set_xlabel("people enrolled N")
    right.set_ylabel("FAR (strangers named)")
    right.grid(True, which="both", alpha=0.3)
    right.set_title(f"FAR against N at the identification threshold {threshold:.3f}")
    fig.suptitle(f"LFW open-set one-shot identification: {n_people} enrolled, {n_strangers} strangers ({model_id})",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timing_section(engine, count: int, tmp: Path) -> tuple[list[str], dict[str, Any]]:
    from engine.settings import DATA_DIR
    enroll, identify = timing_photos(DATA_DIR / "lfw", count)
    t = time_end_to_end(engine, enroll, identify, tmp / "timing")
    lines = ["### Time, end to end from the photo file", "",
             f"{len(enroll)} LFW photos enrolled (engine.faces(path) + Gallery.enroll with the crop as thumbnail), "
             f"then {len(identify)} other photos of the same people identified (engine.faces(path) + "
             f"Gallery.identify) against that gallery of {t['gallery_size']}; one photo at a time, after one warm-up "
             f"photo. Device {engine.device}, {torch_threads()} torch thread(s).", "",
             "| step | photos | seconds | photos/s | no face found |", "|---|---|---|---|---|",
             f"| enroll | {t['enroll_photos']} | {t['enroll_seconds']:.2f} | {t['enroll_per_s']:.1f} | {t['enroll_no_face']} |",
             f"| identify | {t['identify_photos']} | {t['identify_seconds']:.2f} | {t['identify_per_s']:.1f} | {t['identify_no_face']} |",
             "", f"(identify named {t['identified']} of them, {t['identified_right']} rightly, at the identification "
             f"threshold {identification_threshold(engine):.3f}.)", ""]
    return lines, t


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="N-way one-shot identification through the engine and gallery.")
    parser.add_argument("--sets", nargs="+", choices=["att", "lfw"], default=["att", "lfw"])
    parser.add_argument("--limit", type=int, help="only the first N people of each data set (a quick look)")
    parser.add_argument("--timing-photos", type=int, default=100, help="photos to enroll and to identify end to end (0: skip)")
    parser.add_argument("--weights", type=Path, help="default: engine/weights/twin.pt")
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "oneshot.md")
    args = parser.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from engine import FaceEngine
    from engine.model import DEFAULT_WEIGHTS
    weights = args.weights or DEFAULT_WEIGHTS
    engine = FaceEngine(weights, device=args.device)
    plot = args.out.with_name(args.out.stem + "_openset.png")
    ident = identification_threshold(engine)
    card_entry = engine.card.get("identification_threshold") if isinstance(engine.card, dict) else None
    if isinstance(card_entry, dict) and card_entry.get("target_far") is not None:
        ident_source = (f"fitted for FAR <= {100 * card_entry['target_far']:g}% at N = "
                        f"{card_entry.get('reference_gallery_size')} people enrolled, on the validation people "
                        "training held out (never LFW); see the model card")
    else:
        ident_source = getattr(getattr(engine, "identification", None), "source", "not in the model card")
    command = " ".join(["python", "bench/oneshot.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started = time.time()
    lines = ["# One-shot identification", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `{command}`",
             f"- weights: `{rel(weights)}`, model id `{engine.model_id}`; distances are Euclidean between unit "
             "embeddings, a match when distance <= threshold",
             f"- **identification threshold {ident:.3f}** (naming someone from the gallery: "
             f"`FaceEngine.identification_threshold`): {ident_source}",
             f"- verification threshold {engine.threshold:.3f} (two photos, same person? fitted on LFW View 1): "
             "shown for contrast; a stranger has N chances to fall within it",
             f"- machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
             f"device {engine.device}, {torch_threads()} thread(s); load average at the start "
             f"{load_average()} (the machine is shared: the time rows and the time taken depend on it)",
             "- protocol: enroll ONE photo per person (the first) into a real `index.Gallery` (temporary "
             "directory, exact FAISS search), identify every other photo with `Gallery.search` (top-k, one "
             "entry per person) and the identification threshold.",
             "- accuracy rows use the engine's cached detections and alignments (`training.data.load_crops`: the "
             "same MTCNN and alignment code `FaceEngine.faces` runs), embedded with `FaceEngine.embed_crops` "
             "(flip-averaged, as the product does), then enrolled and searched through the Gallery. The timing "
             "rows are fully end to end from the photo files.",
             ]
    if args.limit:
        lines.append(f"- **limited run**: only the first {args.limit} people of each data set (not the benchmark)")
    lines.append("")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="twin-oneshot-") as tmp:
        tmp = Path(tmp)
        if "att" in args.sets:
            section, report["att"] = att_section(engine, args.limit, tmp)
            lines += section
            print("\n".join(section), flush=True)
        if "lfw" in args.sets:
            section, report["lfw"] = lfw_section(engine, args.limit, tmp, plot)
            lines += section
            print("\n".join(section), flush=True)
        if args.timing_photos > 0:
            section, report["timing"] = timing_section(engine, args.timing_photos, tmp)
            lines += section
            print("\n".join(section), flush=True)
    lines.append(f"Total run time {(time.time() - started) / 60:.1f} min (load average at the end {load_average()}).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {rel(args.out)}" + (f" and {rel(plot)}" if "lfw" in args.sets else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
