"""Speed on CPU: median latency of FaceEngine.faces() and .compare(), and batch throughput,
side by side with face_recognition (dlib) when it is importable.

    python bench/speed.py                       # `make bench-speed`; Twin only (no dlib in .venv)

Side by side with face_recognition, in a separate venv (dlib is not a runtime dependency):

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements.txt -r requirements-bench.txt \\
        && .venv-bench/bin/pip install --no-deps face_recognition && .venv-bench/bin/pip install --no-deps -e .
    (or `make teacher-report`'s venv: `make .venv-bench/.teacher`)
    OMP_NUM_THREADS=1 .venv-bench/bin/python bench/speed.py

Photos are real LFW photos: 250x250 as they are; 512x512 and 1024x768 made by scaling one up
and padding it (one face per photo, so both libraries do the same work). Timings start from a
decoded RGB array (no JPEG decoding). Both sides are timed in alternation, repeat by repeat,
so background load hits them alike. face_recognition runs with its defaults (HOG detector,
upsample 1, 5-point "small" landmarks, 1 jitter) and, for reference, with upsample 0.
The table goes to stdout and to bench/results/speed.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from engine.settings import ROOT  # noqa: E402  (the project root, defined once)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from engine import FaceEngine, load_image  # noqa: E402

from engine.settings import DATA_DIR as DATA  # noqa: E402
LFW = DATA / "lfw"
PAIR = [("George_W_Bush", 1), ("George_W_Bush", 2)]


def lfw_photo(name: str, number: int) -> Image.Image:
    return load_image(LFW / name / f"{name}_{number:04d}.jpg")


def padded(photo: Image.Image, size: tuple[int, int], face_photo_side: int) -> np.ndarray:
    """The photo scaled to face_photo_side and centred on a canvas of `size`, edge colour padding."""
    scaled = photo.resize((face_photo_side, face_photo_side), Image.BICUBIC)
    array = np.asarray(scaled)
    edge = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).mean(axis=0)
    canvas = Image.new("RGB", size, tuple(int(v) for v in edge))
    canvas.paste(scaled, ((size[0] - face_photo_side) // 2, (size[1] - face_photo_side) // 2))
    return np.asarray(canvas)


def test_photos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (photo A, photo B) of the same size, both of George W. Bush."""
    a, b = (lfw_photo(*p) for p in PAIR)
    return {"250x250": (np.asarray(a), np.asarray(b)),
            "512x512": (padded(a, (512, 512), 400), padded(b, (512, 512), 400)),
            "1024x768": (padded(a, (1024, 768), 600), padded(b, (1024, 768), 600))}


def batch_photos(count: int) -> list[np.ndarray]:
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    chosen = [p for p in people if (p / f"{p.name}_0001.jpg").is_file()][:: max(1, len(people) // count)][:count]
    return [np.asarray(load_image(p / f"{p.name}_0001.jpg")) for p in chosen]


# -- the two libraries, as callables of the same shape -------------------------------------------
class Twin:
    name = "Twin"

    def __init__(self, device: str):
        self.engine = FaceEngine(device=device)

    def faces(self, photo):
        return self.engine.faces(photo)

    def compare(self, a, b):
        return self.engine.compare(a, b).distance

    def batch(self, photos):
        return self.engine.faces_batch(photos)


class FaceRecognition:
    def __init__(self, face_recognition, upsample: int):
        self.fr = face_recognition
        self.upsample = upsample
        self.name = f"face_recognition (upsample {upsample})"

    def faces(self, photo):
        locations = self.fr.face_locations(photo, number_of_times_to_upsample=self.upsample)
        return self.fr.face_encodings(photo, known_face_locations=locations)

    def compare(self, a, b):
        ea, eb = self.faces(a), self.faces(b)
        if not ea or not eb:
            raise RuntimeError("face_recognition found no face")
        return float(self.fr.face_distance([ea[0]], eb[0])[0])

    def batch(self, photos):
        return [self.faces(p) for p in photos]


def import_face_recognition():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
            import face_recognition
        return face_recognition, None
    except Exception as exc:  # ImportError, or dlib failing to load its models
        return None, f"{type(exc).__name__}: {exc}"


# -- timing -----------------------------------------------------------------------------------
def interleaved(tasks: list[Callable[[], object]], repeats: int, warmup: int = 1) -> list[list[float]]:
    """Run each task `repeats` times in alternation; seconds per run, per task."""
    for task in tasks:
        for _ in range(warmup):
            task()
    times: list[list[float]] = [[] for _ in tasks]
    for _ in range(repeats):
        for i, task in enumerate(tasks):
            start = time.perf_counter()
            task()
            times[i].append(time.perf_counter() - start)
    return times


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measure (median reported)")
    parser.add_argument("--batch", type=int, default=32, help="photos in the throughput batch")
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--no-dlib", action="store_true", help="skip face_recognition even if importable")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    ours = Twin(args.device)
    libs: list = [ours]
    fr, why_not = (None, "skipped (--no-dlib)") if args.no_dlib else import_face_recognition()
    if fr is not None:
        libs += [FaceRecognition(fr, 1), FaceRecognition(fr, 0)]

    photos = test_photos()
    rows: list[tuple[str, str, list[str]]] = []   # measure, photo, one cell per library
    ratios: dict[str, float] = {}

    def measure(label: str, size: str, make_tasks: Callable[[object], Callable[[], object]], unit: str,
                per: int = 1):
        runnable, cells = [], []
        for lib in libs:
            task = make_tasks(lib)
            try:
                task()
                runnable.append((lib, task))
            except Exception as exc:  # a library that finds no face here: say so in its cell
                print(f"  {lib.name}: {label} {size}: {exc}", file=sys.stderr)
        times = interleaved([t for _, t in runnable], args.batch_repeats if per > 1 else args.repeats)
        medians = {lib.name: statistics.median(ts) for (lib, _), ts in zip(runnable, times)}
        for lib in libs:
            if lib.name not in medians:
                cells.append("no face found")
            elif unit == "ms":
                cells.append(f"{medians[lib.name] * 1000:.0f} ms")
            else:
                cells.append(f"{per / medians[lib.name]:.1f} photos/s")
        rows.append((label, size, cells))
        print(f"{label:10s} {size:16s} " + "  ".join(f"{lib.name}: {c}" for lib, c in zip(libs, cells)),
              file=sys.stderr)
        return medians

    for size, (a, b) in photos.items():
        measure("faces()", size, lambda lib, a=a: (lambda: lib.faces(a)), "ms")
    for size, (a, b) in photos.items():
        medians = measure("compare()", size, lambda lib, a=a, b=b: (lambda: lib.compare(a, b)), "ms")
        if len(libs) > 1 and libs[1].name in medians and ours.name in medians:
            ratios[size] = medians[ours.name] / medians[libs[1].name]
    many = batch_photos(args.batch)
    measure("batch", f"{len(many)} LFW 250x250", lambda lib: (lambda: lib.batch(many)), "photos/s", per=len(many))

    header = ["measure", "photo"] + [lib.name for lib in libs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([m, s, *cells]) + " |" for m, s, cells in rows]
    table = "\n".join(lines)

    python = Path(sys.executable)
    python = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = " ".join(shlex.quote(str(x)) for x in
                       [python, "bench/speed.py", *(argv if argv is not None else sys.argv[1:])])
    env_threads = os.environ.get("OMP_NUM_THREADS")
    notes = [
        f"# Speed (CPU)",
        "",
        f"- date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"Python {platform.python_version()}",
        f"- torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
        + (f" (OMP_NUM_THREADS={env_threads})" if env_threads else "") + f", device {ours.engine.device}",
        f"- weights: {ours.engine.model_id} (speed does not depend on what they learned)",
        f"- load average before the run: {load_before[0]:.2f} (1 min), {load_before[2]:.2f} (15 min)",
        f"- command: `{'OMP_NUM_THREADS=' + env_threads + ' ' if env_threads else ''}{command}`",
        f"- median of {args.repeats} runs per latency, {args.batch_repeats} per batch, after one warm-up; "
        "the libraries alternate run by run",
    ]
    if load_before[0] > 0.5 * len(os.sched_getaffinity(0)):
        notes.append("- the machine was busy with other work: absolute times are inflated; the ratios "
                     "between libraries hold better, since their runs alternate")
    if fr is None:
        notes.append(f"- face_recognition: not measured ({why_not})")
    else:
        notes.append(f"- face_recognition {getattr(fr, '__version__', '?')} with dlib "
                     f"{__import__('dlib').__version__}: face_locations (HOG) + face_encodings; compare = "
                     "encode both + face_distance")
    body = "\n".join(notes) + "\n\n" + table + "\n"
    if ratios:
        body += "\n" + "\n".join(
            f"compare two {size} photos: Twin / face_recognition = {r:.2f} ({1 / r:.1f}x faster)"
            if r < 1 else f"compare two {size} photos: Twin / face_recognition = {r:.2f}"
            for size, r in ratios.items()) + "\n"
    print(body)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(body)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
