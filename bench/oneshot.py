"""N-way one-shot identification, as the product does it: enroll ONE photo per person in a real
index.Gallery, then identify every other photo.

    python bench/oneshot.py                          # `make bench-oneshot`: --sets att lfw
    python bench/oneshot.py --sets att --limit 10    # a quick look: the first 10 people of each set
    python bench/oneshot.py --timing-photos 0        # accuracy only

- AT&T, 40-way: all 40 subjects enrolled with their first photo; the other 9 photos of each
  are queries. The 3 testing subjects (s5-s7, never seen in training) are reported apart from
  the 37 training subjects.
- LFW, open set, as the product names (bench/oneshot_naming.py): every photo through
  `FaceEngine.faces()`, Name_0001 of the 1,680 people with 2+ photos enrolled, their other
  photos queried, the 4,069 people with one photo as strangers; raw distances (today) beside the
  cohort normalisation (engine.naming), top-1/top-5, named at 1% and 0.1% of strangers named
  (thresholds read off LFW: reporting only), and what the app does at its own threshold for
  galleries of N = 10, 100, 1,000 and 1,680; nearest entry against mean template with 1-3
  photos per person.
- Time: enroll and name throughput end to end from photo files (engine.faces(path) +
  Gallery.enroll / Gallery.name) on LFW photos.

AT&T uses the engine's cached detections and alignments (training.data.load_crops) and raw
distances through a real Gallery (run_oneshot).

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
    thumbnail, as the app stores it), then engine.faces(path) + Gallery.name. A warm-up
    photo (not counted) goes through both paths first."""
    from index import Gallery
    out: dict[str, Any] = {"enroll_photos": len(enroll), "identify_photos": len(identify),
                           "enroll_no_face": 0, "identify_no_face": 0, "identified": 0, "identified_right": 0}
    with Gallery(directory, model_id=engine.model_id, threshold=identification_threshold(engine),
                 embedding_size=engine.embedding_size) as gallery:
        warm = engine.faces(enroll[0][1])
        if warm:
            gallery.name(warm[0].embedding, engine.naming)
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
            match = gallery.name(faces[0].embedding, engine.naming).match
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
             f"{int((~found).sum())} of {len(found)} photos had no detected face. Raw distances, at the raw "
             f"identification threshold for a gallery of {n_way} people: {result.threshold:.3f} (the app names by "
             "the cohort-normalised score: see LFW below).", "",
             f"| queries from | queries | top-1 | top-{TOP_K} | identified at threshold (DIR) "
             "| wrong person within threshold | rejected (unknown) |",
             "|---|---|---|---|---|---|---|"]
    for label, s in rows:
        if s["queries"]:
            lines.append(f"| {label} | {s['queries']} | {pct(s['top1'])} | {pct(s['topk'])} | {pct(s['dir'])} | "
                         f"{pct(s['wrong_within'])} | {pct(s['rejected'])} |")
    lines.append("")
    return lines, {"result": result, "embed_s": embed_s, "photos": len(crops)}


def identification_threshold(engine, people: int | None = None) -> float:
    """The engine's raw identification threshold (its verification threshold for an engine without
    one); with `people`, the one for a gallery of that size (for_gallery). The AT&T rows use it:
    raw distances through run_oneshot."""
    identification = getattr(engine, "identification", None)
    if people is not None and hasattr(identification, "for_gallery"):
        return float(identification.for_gallery(people))
    return float(getattr(engine, "identification_threshold", None) or engine.threshold)


def timing_section(engine, count: int, tmp: Path) -> tuple[list[str], dict[str, Any]]:
    from engine.settings import DATA_DIR
    enroll, identify = timing_photos(DATA_DIR / "lfw", count)
    t = time_end_to_end(engine, enroll, identify, tmp / "timing")
    lines = ["### Time, end to end from the photo file", "",
             f"{len(enroll)} LFW photos enrolled (engine.faces(path) + Gallery.enroll with the crop as thumbnail), "
             f"then {len(identify)} other photos of the same people identified (engine.faces(path) + "
             f"Gallery.name) against that gallery of {t['gallery_size']}; one photo at a time, after one warm-up "
             f"photo. Device {engine.device}, {torch_threads()} torch thread(s).", "",
             "| step | photos | seconds | photos/s | no face found |", "|---|---|---|---|---|",
             f"| enroll | {t['enroll_photos']} | {t['enroll_seconds']:.2f} | {t['enroll_per_s']:.1f} | {t['enroll_no_face']} |",
             f"| identify | {t['identify_photos']} | {t['identify_seconds']:.2f} | {t['identify_per_s']:.1f} | {t['identify_no_face']} |",
             "", f"(identify named {t['identified']} of them, {t['identified_right']} rightly, by `engine.naming` "
             f"(threshold {engine.naming.threshold_for(t['gallery_size']):.3f} for {t['gallery_size']} people).)", ""]
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
    ident = identification_threshold(engine)
    naming = engine.naming
    if naming.normalised:
        what = {"csls": "CSLS", "as-norm": "AS-norm"}.get(naming.cohort.score, naming.cohort.score)
        naming_line = (f"- **naming** (`engine.naming`, what the app and `python -m index search` do): {what} scores "
                       f"against a cohort of {len(naming.cohort.vectors)} training faces (K = {naming.cohort.k}), "
                       f"{naming.templates} scoring of several photos, the threshold for N people fitted on the "
                       f"validation people (never LFW): N = 10: {naming.threshold_for(10):.2f}, 100: "
                       f"{naming.threshold_for(100):.2f}, 1,000: {naming.threshold_for(1000):.2f}")
    else:
        naming_line = "- **naming**: raw distances (the weights have no cohort)"
    command = " ".join(["python", "bench/oneshot.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started = time.time()
    lines = ["# One-shot identification", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `{command}`",
             f"- weights: `{rel(weights)}`, model id `{engine.model_id}`; distances are Euclidean between unit "
             "embeddings, a match when distance <= threshold",
             naming_line,
             f"- raw identification threshold {ident:.3f} (today's naming, and the AT&T rows): fitted on the "
             "validation people for 1% of strangers at N = 2,000 with independent comparisons",
             f"- verification threshold {engine.threshold:.3f} (two photos, same person? fitted on LFW View 1): "
             "shown for contrast; a stranger has N chances to fall within it",
             f"- machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
             f"device {engine.device}, {torch_threads()} thread(s); load average at the start "
             f"{load_average()} (the machine is shared: the time rows and the time taken depend on it)",
             "- protocol: enroll ONE photo per person (the first) and name every other photo; LFW through "
             "`FaceEngine.faces()` on the original photos (bench/oneshot_naming.py), AT&T through the cached "
             "crops; the timing rows are fully end to end from the photo files.",
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
            from bench.oneshot_naming import lfw_naming
            section, report["lfw"] = lfw_naming(engine)
            lines += section
            print("\n".join(section), flush=True)
        if args.timing_photos > 0:
            section, report["timing"] = timing_section(engine, args.timing_photos, tmp)
            lines += section
            print("\n".join(section), flush=True)
    lines.append(f"Total run time {(time.time() - started) / 60:.1f} min (load average at the end {load_average()}).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {rel(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
