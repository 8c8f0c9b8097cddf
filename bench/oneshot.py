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
- Time: enroll and identify throughput end to end from photo files (engine.faces(path) +
  Gallery.enroll / Gallery.identify) on LFW photos.

Accuracy uses the engine's cached detections and alignments (engine.data.load_crops: the same
MTCNN and alignment code the product runs), embeds them with FaceEngine.embed_crops and goes
through a real Gallery in a temporary directory: at LFW scale detecting every photo again would
cost ~40 ms each and measure nothing new. The timing rows are fully end to end.

The protocol (first_photo_split, rank, topk_accuracy, open_set_rates, threshold_at_far) is
engine-independent and imported by tests/test_oneshot.py.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TOP_K = 5
#: AT&T subjects kept out of training (att_faces/testing).
ATT_TESTING = ("s5", "s6", "s7")


# -- the protocol (engine-independent) --------------------------------------------------------

@dataclass
class Split:
    """Indices into a set's photos: the one enrolled photo per person, the queries of enrolled
    people, and the photos of people with a single photo (strangers: never enrolled)."""

    enroll: np.ndarray
    probes: np.ndarray
    strangers: np.ndarray


def first_photo_split(people: Sequence[str], order: Sequence[str] | None = None) -> Split:
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
    as_array = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    return Split(as_array(enroll), as_array(probes), as_array(strangers))


@dataclass
class Ranked:
    """What the gallery answered for each query: the names of its k nearest people, nearest
    first (padded with None), and their distances (padded with +inf)."""

    names: list[list[str | None]]
    distances: np.ndarray   # Q x k

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
        distances[q, :len(matches)] = [m.distance for m in matches]
    return Ranked(names, distances)


def topk_accuracy(ranked: Ranked, truth: Sequence[str], k: int) -> float:
    """Fraction of queries whose true person is among their k nearest people."""
    if not len(truth):
        return float("nan")
    return float(np.mean([t in names[:k] for names, t in zip(ranked.names, truth)]))


def open_set_rates(known_distance: np.ndarray, known_correct: np.ndarray, stranger_distance: np.ndarray,
                   thresholds: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """DIR and FAR at each threshold (distance <= t counts as a match).

    DIR: enrolled people's queries whose top-1 is the right person and within t.
    FAR: strangers' queries whose top-1 (anyone) is within t."""
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    kd, kc, sd = (np.asarray(a) for a in (known_distance, known_correct, stranger_distance))
    dir_ = ((kd[None, :] <= t[:, None]) & kc[None, :].astype(bool)).mean(axis=1) if kd.size else np.full(t.shape, np.nan)
    far = (sd[None, :] <= t[:, None]).mean(axis=1) if sd.size else np.full(t.shape, np.nan)
    return dir_, far


def threshold_at_far(stranger_distance: np.ndarray, target: float) -> float:
    """The largest threshold whose FAR is at most `target` (ties broken towards fewer alarms)."""
    d = np.sort(np.asarray(stranger_distance, dtype=np.float64))
    allowed = int(np.floor(target * len(d) + 1e-9))
    if allowed >= len(d):
        return float("inf")
    return float(np.nextafter(d[allowed], -np.inf))


@dataclass
class OneShotResult:
    """Everything one run of the protocol produced, per query."""

    people: list[str]                # person of every photo
    split: Split
    known: Ranked                    # answers for split.probes
    strangers: Ranked                # answers for split.strangers
    threshold: float
    enrolled: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def truth(self, idx: np.ndarray) -> list[str]:
        return [self.people[i] for i in idx]

    @property
    def known_correct(self) -> np.ndarray:
        return np.array([a == t for a, t in zip(self.known.top1, self.truth(self.split.probes))], dtype=bool)

    def summary(self, select: np.ndarray | None = None, k: int = TOP_K) -> dict[str, float]:
        """Top-1, top-k, DIR and misidentification at the threshold, over all enrolled people's
        queries or those with `select` (a bool mask over split.probes)."""
        select = np.ones(len(self.split.probes), bool) if select is None else np.asarray(select, bool)
        truth = [t for t, s in zip(self.truth(self.split.probes), select) if s]
        ranked = Ranked([n for n, s in zip(self.known.names, select) if s], self.known.distances[select])
        correct = self.known_correct[select]
        within = ranked.top1_distance <= self.threshold
        return {"queries": int(select.sum()), "top1": topk_accuracy(ranked, truth, 1),
                "topk": topk_accuracy(ranked, truth, k),
                "dir": float(np.mean(correct & within)) if len(truth) else float("nan"),
                "wrong_within": float(np.mean(~correct & within)) if len(truth) else float("nan"),
                "rejected": float(np.mean(~within)) if len(truth) else float("nan")}

    def far(self, threshold: float | None = None) -> float:
        t = self.threshold if threshold is None else threshold
        d = self.strangers.top1_distance
        return float(np.mean(d <= t)) if len(d) else float("nan")


def run_oneshot(embeddings: np.ndarray, people: Sequence[str], split: Split, directory: str | Path,
                model_id: str, threshold: float, k: int = TOP_K) -> OneShotResult:
    """Enroll split.enroll in a fresh Gallery at `directory`, then search every probe and
    stranger through it. Embeddings: unit vectors, one per photo."""
    from index import Gallery
    people = list(people)
    embeddings = np.asarray(embeddings, np.float32)
    seconds = {}
    with Gallery(directory, model_id=model_id, threshold=threshold, embedding_size=embeddings.shape[1],
                 thumbnails=False, background=False) as gallery:
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


# -- end to end timing ----------------------------------------------------------------------

def time_end_to_end(engine: Any, enroll: Sequence[tuple[str, Path]], identify: Sequence[tuple[str, Path]],
                    directory: str | Path) -> dict[str, Any]:
    """Photos per second from the file: engine.faces(path) + Gallery.enroll (with the crop as
    thumbnail, as the app stores it), then engine.faces(path) + Gallery.identify. A warm-up
    photo (not counted) goes through both paths first."""
    from index import Gallery
    out: dict[str, Any] = {"enroll_photos": len(enroll), "identify_photos": len(identify),
                           "enroll_no_face": 0, "identify_no_face": 0, "identified": 0, "identified_right": 0}
    with Gallery(directory, model_id=engine.model_id, threshold=engine.threshold,
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
    """Cached crops of one or more engine.data sets, merged: crops, person of each photo, paths
    (prefixed with the set's name), found. `limit`: the first N people of each set."""
    from engine.data import known_sets, load_crops
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
    result = run_oneshot(embeddings, people, split, tmp / "att", engine.model_id, engine.threshold)
    testing = np.array([people[i] in ATT_TESTING for i in split.probes])
    n_test = len({people[i] for i in split.enroll if people[i] in ATT_TESTING})
    rows = [(f"{n_test} testing subjects (s5-s7, unseen in training)", result.summary(testing)),
            (f"{len(split.enroll) - n_test} training subjects", result.summary(~testing)),
            ("all", result.summary())]
    n_way = len(split.enroll)
    lines = [f"### AT&T, {n_way}-way one-shot", "",
             f"{n_way} people enrolled with one photo each (1.pgm); the other photos of each are the queries. "
             f"{int((~found).sum())} of {len(found)} photos had no detected face.", "",
             f"| queries from | queries | top-1 | top-{TOP_K} | identified at threshold (DIR) | wrong person within threshold | rejected (no match) |",
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
             "fixed landmarks (as engine.evaluate does).", "",
             f"| queries | top-1 | top-{TOP_K} |", "|---|---|---|",
             f"| {s['queries']} | {pct(s['top1'])} | {pct(s['topk'])} |", ""]

    thr = engine.threshold
    lines += [f"### LFW, open set: {n_people} enrolled, {n_strangers} strangers", "",
              f"Queries: the {len(split.probes)} photos of enrolled people and the {n_strangers} photos of the "
              "people with a single photo (never enrolled). DIR: enrolled people's queries named right and "
              "within the threshold; FAR: strangers named as anyone (top-1 within the threshold).", "",
              "| threshold | DIR | FAR (strangers) | enrolled named wrongly within threshold |", "|---|---|---|---|"]
    known_d, known_ok, stranger_d = result.known.top1_distance, result.known_correct, result.strangers.top1_distance
    wrong = lambda t: float(np.mean(~known_ok & (known_d <= t))) if len(known_d) else float("nan")  # noqa: E731
    d_at, f_at = open_set_rates(known_d, known_ok, stranger_d, thr)
    lines.append(f"| **{thr:.3f} (shipped)** | **{pct(d_at[0])}** | **{pct(f_at[0])}** | {pct(wrong(thr))} |")
    operating = {}
    if len(stranger_d):
        for target in (0.001, 0.01, 0.05, 0.1):
            t = threshold_at_far(stranger_d, target)
            if not np.isfinite(t):
                continue
            d_t, f_t = open_set_rates(known_d, known_ok, stranger_d, t)
            operating[target] = (t, float(d_t[0]), float(f_t[0]))
            lines.append(f"| {t:.3f} (FAR <= {100 * target:g}%) | {pct(d_t[0])} | {pct(f_t[0])} | {pct(wrong(t))} |")
    lines += ["", f"![DIR and FAR over the threshold]({plot.name})", "",
              f"(Gallery work alone: {result.enrolled} enrollments in {result.seconds['enroll']:.1f} s, "
              f"{len(split.probes) + n_strangers} searches in {result.seconds['search']:.1f} s; embedding the "
              f"{len(crops)} cached crops took {embed_s:.0f} s.)", ""]
    plot_open_set(known_d, known_ok, stranger_d, thr, plot, engine.model_id, n_people, n_strangers)
    return lines, {"result": result, "embed_s": embed_s, "photos": len(crops), "operating": operating}


def plot_open_set(known_d, known_ok, stranger_d, threshold, path: Path, model_id: str, n_people: int,
                  n_strangers: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    finite = np.concatenate([known_d[np.isfinite(known_d)], stranger_d[np.isfinite(stranger_d)], [threshold]])
    grid = np.linspace(0.0, max(2.0, float(finite.max()) * 1.02), 801)
    dir_, far = open_set_rates(known_d, known_ok, stranger_d, grid)
    d_at, f_at = open_set_rates(known_d, known_ok, stranger_d, threshold)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    left.plot(grid, dir_, label="DIR (enrolled: right person, within threshold)", color="tab:blue")
    left.plot(grid, far, label="FAR (strangers matched within threshold)", color="tab:red")
    left.axvline(threshold, color="grey", ls="--", lw=1)
    left.annotate(f"shipped {threshold:.3f}\nDIR {100 * d_at[0]:.1f}%  FAR {100 * f_at[0]:.1f}%",
                  (threshold, 0.82), xytext=(6, 0), textcoords="offset points", fontsize=9)
    left.set_xlabel("threshold (Euclidean distance between unit embeddings)")
    left.set_ylabel("rate")
    left.set_ylim(-0.02, 1.02)
    left.legend(loc="lower right", fontsize=8)
    left.set_title("DIR and FAR over the threshold")
    keep = far > 0
    right.plot(far[keep], dir_[keep], color="tab:purple")
    right.scatter([max(f_at[0], 1e-4)], [d_at[0]], color="black", zorder=3, label=f"shipped threshold {threshold:.3f}")
    right.set_xscale("log")
    right.set_xlim(max(1.0 / max(n_strangers, 1), 1e-4) / 1.5, 1.0)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("FAR (strangers)")
    right.set_ylabel("DIR (enrolled people)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(loc="upper left", fontsize=8)
    right.set_title("DIR against FAR")
    fig.suptitle(f"LFW open-set one-shot identification: {n_people} enrolled, {n_strangers} strangers ({model_id})",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timing_section(engine, count: int, tmp: Path) -> tuple[list[str], dict[str, Any]]:
    from engine.data import DATA_DIR
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
             "", f"(identify named {t['identified']} of them, {t['identified_right']} rightly, at the shipped threshold.)", ""]
    return lines, t


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
    command = " ".join(["python", "bench/oneshot.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started = time.time()
    lines = ["# One-shot identification", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `{command}`",
             f"- weights: `{rel(weights)}`, model id `{engine.model_id}`, shipped threshold "
             f"{engine.threshold:.3f} (Euclidean distance between unit embeddings; a match when distance <= threshold)",
             f"- machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
             f"device {engine.device}, {torch_threads()} thread(s)",
             "- protocol: enroll ONE photo per person (the first) into a real `index.Gallery` (temporary "
             "directory, exact FAISS search), identify every other photo with `Gallery.search` (top-k, one "
             "entry per person) and the shipped threshold.",
             "- accuracy rows use the engine's cached detections and alignments (`engine.data.load_crops`: the "
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
    lines.append(f"Total run time {(time.time() - started) / 60:.1f} min.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {rel(args.out)}" + (f" and {rel(plot)}" if "lfw" in args.sets else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
