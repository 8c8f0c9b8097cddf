"""Teacher targets: dlib's ResNet face encoder run once over the cached crops, in resumable shards.

    python -m training.teacher                      # the training sets (what distillation needs); resumes
    python -m training.teacher --sets lfw           # LFW too (hours on CPU): --report needs it
    python -m training.teacher --sets att_train     # some sets only
    python -m training.teacher --shard 0/2          # every 2nd shard (run 1/2 beside it)
    python -m training.teacher --sample 50          # time the teacher on 50 crops, cache nothing
    python -m training.teacher --status             # how far each set has got
    python -m training.teacher --report             # LFW View 2 through these crops -> bench/results/teacher.md
                                                    # (after --sets lfw; `make teacher-report`)

The teacher itself (dlib's encoder on our aligned crops, and what it sees) is
training/dlib_teacher.py; its LFW report training/teacher_report.py. This module is the job
that runs it over the crop caches.

Targets live in .cache/teacher/SET-DIGEST.npz, DIGEST a hash of the crop cache file's bytes
(training.data.teacher_targets_path): a rebuilt crop cache gets new targets. Work is done in
shards of a few hundred photos, each written atomically under .cache/teacher/parts/, so a
killed run resumes where it stopped and several processes (--shard i/n) can share a set;
the last shard to finish assembles the set's file. The encoder (dlib) runs in .venv-bench
(requirements-bench.txt): `make teacher`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engine.settings import RESULTS_DIR
from training.data import (
    DATA_DIR,
    TEACHER_DIR,
    CropSet,
    FolderSet,
    crop_cache_file,
    known_sets,
    load_crops,
    save_npz_atomic,
    teacher_targets_path,
)

from .dlib_teacher import RECIPE, DlibTeacher, Encoder, recipe_digest, targets_of, unit
from .teacher_report import lfw_report, write_report

TRAIN_SETS = ("celeba_aligned", "celeba_wild", "att_train")
#: What `make teacher` embeds: the training sets, all that distillation needs. LFW (evaluation
#: only, for --report: the teacher's own accuracy) takes hours on CPU: `--sets lfw`.
DEFAULT_SETS = TRAIN_SETS
SHARD_SIZE = 256
DIM = 128

# -- which photos, in which order ---------------------------------------------------------------


def lfw_pair_photos(lfw_dir: Path) -> set[str]:
    """Every photo named in LFW View 1 and View 2 (the protocol's own parser)."""
    from training.evaluate import parse_pairs

    pairs = []
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        if (lfw_dir / name).is_file():
            pairs += parse_pairs(lfw_dir / name)
    return {p for pair in pairs for p in (pair.a, pair.b)}


def row_order(set_name: str, crops: CropSet, data_dir: Path = DATA_DIR) -> np.ndarray:
    """Rows in the order they are embedded: for LFW, the photos of the pairs files first."""
    rows = np.arange(len(crops))
    if set_name == "lfw":
        needed = lfw_pair_photos(data_dir / "lfw")
        first = np.array([p in needed for p in crops.paths], bool)
        rows = np.concatenate([rows[first], rows[~first]])
    return rows


def shards_of(order: np.ndarray, size: int = SHARD_SIZE) -> list[np.ndarray]:
    return [order[s : s + size] for s in range(0, len(order), size)]


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/n" -> (i, n): this process takes shards i, i+n, i+2n, ..."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants i/n, e.g. 0/2, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return i, n


# -- one set -----------------------------------------------------------------------------------


class SetJob:
    """The teacher's work on one set: its shards on disk, what is left, the assembled file."""

    def __init__(
        self,
        set_name: str,
        folder: FolderSet,
        crops: CropSet,
        crop_file: Path,
        shard_size: int = SHARD_SIZE,
        data_dir: Path = DATA_DIR,
    ):
        self.name, self.folder, self.crops = set_name, folder, crops
        self.final = teacher_targets_path(crop_file)
        self.crop_file = crop_file
        self.parts = TEACHER_DIR / "parts" / f"{self.final.stem}-{recipe_digest()}-s{shard_size}"
        self.shards = shards_of(row_order(set_name, crops, data_dir), shard_size)

    def part(self, k: int) -> Path:
        return self.parts / f"{k:05d}.npz"

    def done(self) -> bool:
        if not self.final.is_file():
            return False
        with np.load(self.final, allow_pickle=False) as z:
            return "recipe" in z.files and json.loads(str(z["recipe"])) == RECIPE

    def missing(self) -> list[int]:
        return [k for k in range(len(self.shards)) if not self.part(k).is_file()]

    def run(
        self, encoder: Encoder, shard: tuple[int, int] = (0, 1), log=print, stop_after: float | None = None
    ) -> bool:
        """Embed this process's missing shards; assemble when none is missing. True when done."""
        if self.done():
            log(f"{self.name}: done ({self.final})")
            return True
        lock = self.lock(shard)
        if lock is None:
            log(f"{self.name}: shard set {shard[0]}/{shard[1]} is being embedded by another process; skipped")
            return False
        try:
            return self._run(encoder, shard, log, stop_after)
        finally:
            lock.unlink(missing_ok=True)
            if self.final.is_file() and not self.missing_any():
                try:
                    self.parts.rmdir()
                except OSError:
                    pass

    def missing_any(self) -> bool:
        """Whether any shard file or lock is still in the parts folder."""
        return self.parts.is_dir() and any(self.parts.iterdir())

    def lock(self, shard: tuple[int, int]) -> Path | None:
        """Take the lock of this shard set (i/n), or None when a live process holds it."""
        self.parts.mkdir(parents=True, exist_ok=True)
        path = self.parts / f"lock-{shard[0]}-{shard[1]}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    os.kill(int(path.read_text() or 0), 0)
                    return None  # alive
                except (ProcessLookupError, ValueError):
                    path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                except PermissionError:
                    return None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return path
        return None

    def _run(self, encoder: Encoder, shard: tuple[int, int], log, stop_after: float | None) -> bool:
        todo = [k for k in self.missing() if k % shard[1] == shard[0]]
        total = sum(len(self.shards[k]) for k in todo)
        log(
            f"{self.name}: {len(self.crops)} crops, {len(self.shards)} shards, {len(todo)} to embed here "
            f"({total} photos) -> {self.parts}"
        )
        spent, photos = 0.0, 0
        for k in todo:
            if stop_after is not None and time.time() > stop_after:
                log(f"{self.name}: stopping (time limit); resume by running again")
                return False
            if self.part(k).is_file():  # another process took it meanwhile
                continue
            rows = self.shards[k]
            started = time.time()
            raw, raw_mirror = encoder(self.crops.crops[rows])
            seconds = time.time() - started
            save_npz_atomic(self.part(k), rows=rows, raw=raw, raw_mirror=raw_mirror, seconds=np.float64(seconds))
            spent += seconds
            photos += len(rows)
            left = total - photos
            log(
                f"{self.name}: shard {k + 1}/{len(self.shards)} {len(rows)} photos in {seconds:.0f} s "
                f"({seconds / len(rows):.3f} s/photo); {left} photos left here, ETA "
                f"{left * spent / photos / 60:.0f} min"
            )
        return self.assemble(log)

    def assemble(self, log=print) -> bool:
        missing = self.missing()
        if missing:
            log(f"{self.name}: {len(missing)} shards still missing (other processes?)")
            return False
        n = len(self.crops)
        raw = np.zeros((n, DIM), np.float32)
        raw_mirror = np.zeros((n, DIM), np.float32)
        seconds = np.zeros(n, np.float64)
        seen = np.zeros(n, bool)
        for k in range(len(self.shards)):
            with np.load(self.part(k), allow_pickle=False) as z:
                rows = z["rows"]
                raw[rows], raw_mirror[rows] = z["raw"], z["raw_mirror"]
                seconds[rows] = float(z["seconds"]) / len(rows)
                seen[rows] = True
        if not seen.all():
            raise RuntimeError(f"{self.name}: the shards cover {int(seen.sum())} of {n} rows")
        save_npz_atomic(
            self.final,
            paths=np.array(self.crops.paths),
            found=self.crops.found,
            seconds=seconds,
            recipe=np.array(json.dumps(RECIPE)),
            crop_file=np.array(self.crop_file.name),
            **targets_of(raw, raw_mirror),
        )
        for k in range(len(self.shards)):
            self.part(k).unlink(missing_ok=True)
        try:
            self.parts.rmdir()  # stays while another process holds a lock in it
        except OSError:
            pass
        log(
            f"{self.name}: assembled {self.final} ({n} photos, {seconds.sum() / 60:.1f} min, "
            f"{seconds.mean():.3f} s/photo)"
        )
        return True

    def progress(self) -> tuple[int, int]:
        """(photos embedded, photos in the set)."""
        if self.done():
            return len(self.crops), len(self.crops)
        return sum(len(self.shards[k]) for k in range(len(self.shards)) if self.part(k).is_file()), len(self.crops)

    def partial(self) -> dict[str, np.ndarray]:
        """What is embedded so far, as stored views for the rows seen (report before the end)."""
        if self.done():
            with np.load(self.final, allow_pickle=False) as z:
                return {k: z[k] for k in ("embedding", "plain", "raw", "raw_mirror", "seconds")} | {
                    "seen": np.ones(len(self.crops), bool)
                }
        n = len(self.crops)
        raw, raw_mirror = np.zeros((n, DIM), np.float32), np.zeros((n, DIM), np.float32)
        seconds, seen = np.zeros(n), np.zeros(n, bool)
        for k in range(len(self.shards)):
            if self.part(k).is_file():
                with np.load(self.part(k), allow_pickle=False) as z:
                    rows = z["rows"]
                    raw[rows], raw_mirror[rows] = z["raw"], z["raw_mirror"]
                    seconds[rows] = float(z["seconds"]) / len(rows)
                    seen[rows] = True
        return targets_of(raw, raw_mirror) | {"seconds": seconds, "seen": seen}


def job_for(set_name: str, shard_size: int = SHARD_SIZE, data_dir: Path = DATA_DIR, build: bool = True) -> SetJob:
    folder = known_sets(data_dir)[set_name]
    crop_file = crop_cache_file(folder)
    if not crop_file.is_file() and not build:
        raise FileNotFoundError(f"no crop cache for {set_name} ({crop_file}): run `make cache` first")
    crops = load_crops(folder, workers=1, progress=False)
    return SetJob(set_name, folder, crops, crop_cache_file(folder), shard_size, data_dir)


# -- command line ----------------------------------------------------------------------------


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def _status(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """--status: how far each set has got; --report: the teacher's LFW accuracy."""
    jobs = []
    for name in args.sets:
        try:
            jobs.append(job_for(name, args.shard_size, build=False))
        except FileNotFoundError as error:
            log(f"{name}: {error}")
    for job in jobs:
        done, total = job.progress()
        log(f"{job.name}: {done} of {total} photos embedded{' (assembled)' if job.done() else ''}")
    if args.report:
        lfw = next((j for j in jobs if j.name == "lfw"), None) or job_for("lfw", args.shard_size, build=False)
        result = lfw_report(lfw, DATA_DIR / "lfw")
        write_report(result, args.out, jobs)
        for view, r in result["views"].items():
            log(
                f"LFW View 2 10-fold ({view}): {r['view2_10fold']['mean'] * 100:.2f}% "
                f"+- {r['view2_10fold']['std'] * 100:.2f}"
            )
        log(f"wrote {args.out}")
    return 0


def _sample(args: argparse.Namespace, encoder: Encoder, log: Callable[[str], None]) -> int:
    """--sample N: time the teacher on N crops of the first set; cache nothing."""
    crops = load_crops(known_sets()[args.sets[0]], workers=1, progress=False)
    pick = np.random.default_rng(0).choice(len(crops), size=min(args.sample, len(crops)), replace=False)
    started = time.time()
    raw, raw_mirror = encoder(crops.crops[pick])
    seconds = time.time() - started
    t = targets_of(raw, raw_mirror)
    same = crops.labels[pick][:, None] == crops.labels[pick][None]
    d = np.linalg.norm(t["embedding"][:, None] - t["embedding"][None], axis=2)
    off = ~np.eye(len(pick), dtype=bool)
    log(
        f"{args.sets[0]}: {len(pick)} crops in {seconds:.1f} s ({seconds / len(pick):.3f} s/photo, two views); "
        f"mean distance same person {d[same & off].mean() if (same & off).any() else float('nan'):.3f}, "
        f"different {d[~same].mean():.3f}; plain vs mirror cosine "
        f"{float((t['plain'] * unit(raw_mirror)).sum(1).mean()):.3f}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed the cached crops with dlib's encoder (teacher targets).")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=sorted(known_sets()))
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="i/n: take every n-th shard from the i-th")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    parser.add_argument("--minutes", type=float, help="stop (resumably) after this long")
    parser.add_argument("--sample", type=int, help="time the teacher on this many crops; cache nothing")
    parser.add_argument("--status", action="store_true", help="how far each set has got")
    parser.add_argument("--report", action="store_true", help="the teacher's LFW accuracy -> bench/results/teacher.md")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "teacher.md")
    args = parser.parse_args(argv)

    if args.status or args.report:
        return _status(args, _log)
    encoder = DlibTeacher()
    if args.sample:
        return _sample(args, encoder, _log)
    stop_after = time.time() + args.minutes * 60 if args.minutes else None
    all_done = True
    for name in args.sets:
        job = job_for(name, args.shard_size)
        all_done &= job.run(encoder, args.shard, _log, stop_after)
        if stop_after is not None and time.time() > stop_after:
            break
    _log("all sets done" if all_done else "not all sets are done yet")
    return 0 if all_done else 3


if __name__ == "__main__":
    sys.exit(main())
