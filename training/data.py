"""Identity-folder data sets, cached aligned crops, a P x K batch sampler and augmentation.

Every photo is detected and aligned once, by the engine's own detect-pick-align
(engine.detect.detect_pick_align, with the detector's crop-cache settings), and the 112 x 112
crops are cached under `.cache/crops/` (git-ignored; TWIN_CACHE). A cache file's name holds a
hash of the alignment version, the detector's crop_cache_key() and the file list, so it is
rebuilt whenever any of them changes and re-used otherwise.

    python -m training.data cache [--sets celeba_aligned celeba_wild att_train lfw] [--workers 2]

Teacher targets (training/teacher.py, run with `make teacher`) are cached beside the crops,
under `.cache/teacher/`, one file per crop cache file, named after a hash of that file's
bytes: a rebuilt crop cache gets new targets. Reading them needs only numpy (this module
never imports the teacher or dlib); `load_teacher_targets` matches them row by row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.align import ALIGNMENT_VERSION, CROP_SIZE, align
from engine.detect import AlignedFaces, Detector, Pick, crop_cache_detector, crop_cache_key, detect_pick_align
from engine.settings import CROP_CACHE_DIR as CACHE_DIR
from engine.settings import DATA_DIR, TEACHER_DIR

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp"}
#: Typical landmark positions in a 250 x 250 LFW frame, used only when no face is detected
#: in an evaluation photo (the pair must still be scored; the miss is counted and reported).
LFW_FALLBACK_LANDMARKS = np.array(
    [[106.0, 113.0], [144.0, 113.0], [125.0, 137.0], [109.0, 160.0], [141.0, 160.0]], dtype=np.float32
)


@dataclass(frozen=True)
class FolderSet:
    """A folder-per-person tree and how to find the face in its photos.

    pad: fraction of the size added as border before detection (tight crops need room).
    pick: "prominent" (largest) or "centre" (nearest the centre, LFW's convention); see
        engine.detect.detect_pick_align.
    fallback: align with fixed landmarks when no face is found (evaluation only).
    """

    name: str
    root: Path
    pad: float = 0.0
    pick: Pick = "prominent"
    fallback: np.ndarray | None = None

    def files(self) -> list[tuple[str, Path]]:
        """(person, path) for every image, in a stable order."""
        items = []
        for person in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for path in sorted(person.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    items.append((person.name, path))
        return items


def known_sets(data_dir: Path = DATA_DIR) -> dict[str, FolderSet]:
    """The data sets of ../shared/data. Training: celeba_*, att_train. Evaluation only: lfw."""
    return {
        "celeba_aligned": FolderSet("celeba_aligned", data_dir / "celeba" / "aligned", pad=0.3),
        "celeba_wild": FolderSet("celeba_wild", data_dir / "celeba" / "wild", pad=0.1),
        "att_train": FolderSet("att_train", data_dir / "att_faces" / "training", pad=0.3),
        "att_test": FolderSet("att_test", data_dir / "att_faces" / "testing", pad=0.3),
        "lfw": FolderSet("lfw", data_dir / "lfw", pick="centre", fallback=LFW_FALLBACK_LANDMARKS),
    }


@dataclass
class CropSet:
    """Cached aligned crops of one folder set: crops[i] shows person names[labels[i]]."""

    crops: np.ndarray  # N x 112 x 112 x 3 uint8
    labels: np.ndarray  # N int64, index into names
    names: list[str]
    paths: list[str]  # relative to the set's root
    found: np.ndarray  # N bool: False where the fixed fallback alignment was used

    def __len__(self) -> int:
        return len(self.crops)

    def index_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def cache_path(folder: FolderSet, files: Sequence[tuple[str, Path]]) -> Path:
    """Where this set's crops live; the name changes when alignment, policy or files change."""
    digest = hashlib.sha256(
        json.dumps(
            [
                ALIGNMENT_VERSION,
                crop_cache_key(),
                folder.pad,
                folder.pick,
                folder.fallback is not None,
                [str(p.relative_to(folder.root)) for _, p in files],
            ]
        ).encode()
    )
    return CACHE_DIR / f"{folder.name}-{digest.hexdigest()[:12]}.npz"


def load_crops(folder: FolderSet, workers: int = 1, progress: bool = True) -> CropSet:
    """The set's aligned crops, from the cache or built now (and cached)."""
    files = folder.files()
    path = cache_path(folder, files)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return CropSet(z["crops"], z["labels"], list(z["names"]), list(z["paths"]), z["found"])
    crops, found = _detect_and_align(folder, [p for _, p in files], workers, progress)
    names = sorted({person for person, _ in files})
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[person] for person, _ in files], dtype=np.int64)
    rel = [str(p.relative_to(folder.root)) for _, p in files]
    keep = found | (folder.fallback is not None)  # training sets drop photos with no face
    result = CropSet(crops[keep], labels[keep], names, [r for r, k in zip(rel, keep) if k], found[keep])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        crops=result.crops,
        labels=result.labels,
        names=np.array(names),
        paths=np.array(result.paths),
        found=result.found,
    )
    os.replace(tmp, path)
    return result


def _detect_and_align(folder: FolderSet, paths: list[Path], workers: int, progress: bool):
    chunks = [paths[i::workers] for i in range(workers)]
    if workers <= 1:
        parts = [_align_chunk(folder, paths, progress)]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.starmap(_align_chunk, [(folder, c, progress and i == 0) for i, c in enumerate(chunks)])
    crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    found = np.zeros(len(paths), bool)
    for i, (c, f) in enumerate(parts):
        crops[i::workers] = c
        found[i::workers] = f
    return crops, found


def _align_chunk(folder: FolderSet, paths: list[Path], progress: bool):
    """Detect and align one worker's share of the photos (one torch thread per worker)."""
    from tqdm import tqdm

    from engine.images import load_image

    torch.set_num_threads(1)
    detector = crop_cache_detector()
    crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    found = np.zeros(len(paths), bool)
    for i, path in enumerate(tqdm(paths, desc=folder.name, disable=not progress, mininterval=5)):
        photo = detect_for_cache(detector, folder, load_image(path))
        if photo.crops:
            crops[i] = photo.crops[0]
            found[i] = True
        elif folder.fallback is not None:
            crops[i] = align(photo.image, folder.fallback * (np.array(photo.image.size) / 250.0))
    return crops, found


def detect_for_cache(detector: Detector, folder: FolderSet, image: Image.Image) -> AlignedFaces:
    """One photo of a set as the crop cache sees it: padded by the set's pad, its one face
    chosen by the set's pick (LFW: nearest the centre), aligned. bench/quality.py uses it too."""
    return detect_pick_align(detector, [image], pick=folder.pick, pad=folder.pad)[0]


# -- teacher targets (written by training/teacher.py, read by training) -----------------------


def file_digest(path: Path, memo: Path | None = None) -> str:
    """sha256 of a file's bytes (first 16 hex digits); memoised by (name, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = memo or TEACHER_DIR / "digests.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    known[key] = digest.hexdigest()[:16]
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=0))
        os.replace(tmp, memo)
    except OSError:
        pass
    return known[key]


def crop_cache_file(folder: FolderSet) -> Path:
    """The crop cache file of a set (it may not exist yet)."""
    return cache_path(folder, folder.files())


def teacher_targets_path(crop_file: Path) -> Path:
    """Where the teacher targets of one crop cache file live: named after the file's bytes."""
    crop_file = Path(crop_file)
    set_name = crop_file.name.rsplit("-", 1)[0]
    return TEACHER_DIR / f"{set_name}-{file_digest(crop_file)}.npz"


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """np.savez to a temporary name, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class TeacherTargetsMissing(FileNotFoundError):
    """Distillation was asked for but the teacher targets of a training set are not cached."""


def load_teacher_targets(folder: FolderSet, crops: CropSet | None = None, kind: str = "embedding") -> np.ndarray:
    """The teacher's L2-normalised embeddings of a set's cached crops, row for row (N x 128).

    crops: the set's CropSet, to check the rows against (default: the crop cache's own list).

    kind: "embedding" (mirror-averaged: the mean of the photo's and its mirror image's
    embeddings, renormalised) or "plain" (the photo alone).
    """
    crop_file = crop_cache_file(folder)
    if not crop_file.is_file():
        raise TeacherTargetsMissing(f"no crop cache for {folder.name} at {crop_file}: run `make cache` first")
    path = teacher_targets_path(crop_file)
    if not path.is_file():
        raise TeacherTargetsMissing(
            f"distillation needs the teacher's targets for {folder.name}, expected at {path} (for the crop cache "
            f"{crop_file.name}); build them with `make teacher` (dlib in .venv-bench, see requirements-bench.txt), "
            f"or train without distillation (distill_weight = relational_weight = 0)"
        )
    with np.load(path, allow_pickle=False) as z:
        if kind not in z.files:
            raise KeyError(f"{path} has no {kind!r} targets (has {z.files})")
        targets, paths = z[kind].astype(np.float32), [str(p) for p in z["paths"]]
    if crops is None:
        with np.load(crop_file, allow_pickle=False) as z:
            expected = [str(p) for p in z["paths"]]
    else:
        expected = list(crops.paths)
    if paths != expected:
        raise ValueError(f"{path} does not match the crops of {folder.name} row for row; rebuild with `make teacher`")
    return targets


# -- training-time helpers ---------------------------------------------------------------------


def merge(sets: Sequence[CropSet]) -> CropSet:
    """Concatenate crop sets; identities of different sets stay distinct."""
    crops, labels, names, paths, found, offset = [], [], [], [], [], 0
    for s in sets:
        crops.append(s.crops)
        labels.append(s.labels + offset)
        names += s.names
        paths += s.paths
        found.append(s.found)
        offset += len(s.names)
    return CropSet(np.concatenate(crops), np.concatenate(labels), names, paths, np.concatenate(found))


def split_by_identity(data: CropSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, validation): validation people never appear in training."""
    rng = np.random.default_rng(seed)
    people, counts = np.unique(data.labels, return_counts=True)
    eligible = people[counts >= 2]
    held = set(rng.choice(eligible, size=int(round(len(eligible) * fraction)), replace=False).tolist())
    is_val = np.array([label in held for label in data.labels])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class PKSampler:
    """Batches of P people x K photos each, so every batch holds positives and negatives.

    People are drawn with probability proportional to sqrt(photo count): people with many
    photos (CelebA in the wild) are seen more often, without drowning out the rest.
    People with fewer than K photos repeat photos (augmentation makes the copies differ).
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0, min_photos: int = 2):
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)
        groups: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            groups.setdefault(int(label), []).append(i)
        self.groups = [np.array(v) for v in groups.values() if len(v) >= min_photos]
        if len(self.groups) < p:
            raise ValueError(f"need at least {p} people with {min_photos}+ photos, have {len(self.groups)}")
        weights = np.sqrt([len(g) for g in self.groups])
        self.weights = weights / weights.sum()
        self.batches_per_epoch = max(1, sum(len(g) for g in self.groups) // (p * k))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(self.batches_per_epoch):
            yield self.sample()

    def __len__(self) -> int:
        return self.batches_per_epoch

    def sample(self) -> np.ndarray:
        """One batch of indices, grouped person by person (P x K)."""
        people = self.rng.choice(len(self.groups), size=self.p, replace=False, p=self.weights)
        batch = []
        for person in people:
            members = self.groups[person]
            batch.append(self.rng.choice(members, size=self.k, replace=len(members) < self.k))
        return np.concatenate(batch)


@dataclass
class Augment:
    """Batched augmentation on aligned crops, on tensors (fast enough to run beside training)."""

    flip: float = 0.5
    scale: float = 0.1  # +-10% zoom
    rotate: float = 10.0  # +-degrees
    shift: float = 0.06  # +-fraction of the crop
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    grey: float = 0.2
    blur: float = 0.2  # probability of a low-resolution / blur pass

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: N x 3 x H x W float 0..255 -> augmented, same shape."""
        n = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (hi - lo) + lo

        angle = uniform(-self.rotate, self.rotate) * math.pi / 180
        zoom = uniform(1 - self.scale, 1 + self.scale)
        flip = torch.where(torch.rand(n, generator=generator) < self.flip, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
        theta[:, 0, 2] = uniform(-self.shift, self.shift) * 2
        theta[:, 1, 2] = uniform(-self.shift, self.shift) * 2
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        sat = uniform(1 - self.saturation, 1 + self.saturation).view(n, 1, 1, 1)
        sat = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < self.grey, torch.zeros_like(sat), sat)
        x = grey + (x - grey) * sat
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + (x - mean) * uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1)
        x = x * uniform(1 - self.brightness, 1 + self.brightness).view(n, 1, 1, 1)

        if self.blur > 0:
            pick = torch.rand(n, generator=generator) < self.blur
            if pick.any():
                side = x.shape[-1]
                low = int(side * float(uniform(0.25, 0.6)[0]))
                small = F.interpolate(x[pick], size=(low, low), mode="bilinear", antialias=True, align_corners=False)
                x[pick] = F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)
        return x.clamp(0, 255)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the caches of aligned face crops.")
    parser.add_argument("command", choices=["cache"])
    parser.add_argument("--sets", nargs="+", default=["celeba_aligned", "celeba_wild", "att_train", "att_test", "lfw"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sets = known_sets()
    for name in args.sets:
        crops = load_crops(sets[name], workers=args.workers)
        print(
            f"{name}: {len(crops)} crops, {len(crops.names)} people, "
            f"{int((~crops.found).sum())} without a detected face",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
