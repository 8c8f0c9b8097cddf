"""The faces the naming fit needs (issue 20), without detecting every training photo again.

Two groups of photos, both from the training sets (celeba_aligned, celeba_wild, att_train), never LFW:

- the validation people the weights' training held out (training.data.split_by_identity over the
  crop caches' labels, with the recipe's fraction and seed: the same people
  training.thresholds.validation_embeddings reads);
- a cohort: one photo each of people the training DID see (engine.identification).

When the full crop caches are there (`make cache`) they are read. Without them, only the photos
that decide who the validation people are get detected, with the crop cache's own detector
policy and alignment (training.data._align_chunk, so the crops are the same): the split depends
on which people have two or more photos with a face found, so both photos of every person with
exactly two are detected (a person with more photos keeps two with a face, as the ~14 of 16,294
training photos with none are scattered), then the validation people's photos and the cohort's.
Crops are cached per photo in .cache/naming/.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np

from engine.detect import crop_cache_key

from .data import (
    ALIGNMENT_VERSION,
    CACHE_DIR,
    CropSet,
    FolderSet,
    _align_chunk,
    crop_cache_file,
    known_sets,
    save_npz_atomic,
    split_by_identity,
)

SETS = ("celeba_aligned", "celeba_wild", "att_train")
#: People in the cohort at most: one photo each (the first in name order) of training people of
#: celeba_aligned.
COHORT_SIZE = 3000


class PhotoCrops:
    """Aligned crops of single photos of one set, cached per photo (or read from the full cache)."""

    def __init__(self, folder: FolderSet):
        self.folder = folder
        key = hashlib.sha256(
            json.dumps([ALIGNMENT_VERSION, crop_cache_key(), folder.pad, folder.pick]).encode()
        ).hexdigest()[:12]
        self.path = CACHE_DIR.parent / "naming" / f"{folder.name}-{key}.npz"
        self.known: dict[str, tuple[np.ndarray, bool]] = {}
        full = crop_cache_file(folder)
        self.complete = full.is_file()
        if self.complete:  # the full cache: photos missing from it had no face
            with np.load(full, allow_pickle=False) as z:
                for p, c in zip(z["paths"], z["crops"], strict=True):
                    self.known[str(p)] = (c, True)
        elif self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                for p, c, f in zip(z["paths"], z["crops"], z["found"], strict=True):
                    self.known[str(p)] = (c, bool(f))

    def get(self, rel_paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Crops and found flags of these photos (relative to the set's root), detected if need be."""
        missing = [p for p in dict.fromkeys(rel_paths) if p not in self.known]
        if self.complete:
            for p in missing:
                self.known[p] = (np.zeros((112, 112, 3), np.uint8), False)
        elif missing:
            crops, found = _align_chunk(self.folder, [self.folder.root / p for p in missing], True)
            for p, c, f in zip(missing, crops, found, strict=True):
                self.known[p] = (c, bool(f))
            paths = list(self.known)
            save_npz_atomic(
                self.path,
                paths=np.array(paths),
                crops=np.stack([self.known[p][0] for p in paths]),
                found=np.array([self.known[p][1] for p in paths]),
            )
        crops = np.stack([self.known[p][0] for p in rel_paths]) if rel_paths else np.zeros((0, 112, 112, 3), np.uint8)
        return crops, np.array([self.known[p][1] for p in rel_paths], bool)


def naming_faces(fraction: float = 0.05, seed: int = 0, cohort_size: int = COHORT_SIZE, data_dir=None):
    """(validation crops, their labels, cohort crops, a description). See the module docstring."""
    known = known_sets(data_dir) if data_dir is not None else known_sets()
    rows: list[tuple[int, str, str]] = []  # (set index, relative path, person key)
    for s, name in enumerate(SETS):
        folder = known[name]
        rows += [(s, str(p.relative_to(folder.root)), f"{name}/{person}") for person, p in folder.files()]
    caches = [PhotoCrops(known[name]) for name in SETS]
    people = sorted({r[2] for r in rows}, key=lambda k: (SETS.index(k.split("/")[0]), k))
    label_of = {p: i for i, p in enumerate(people)}
    labels = np.array([label_of[r[2]] for r in rows], np.int64)

    def found(indices: list[int]) -> np.ndarray:
        out = np.zeros(len(indices), bool)
        for s in range(len(SETS)):
            mine = [j for j, i in enumerate(indices) if rows[i][0] == s]
            if mine:
                _, f = caches[s].get([rows[indices[j]][1] for j in mine])
                out[mine] = f
        return out

    counts = Counter(labels.tolist())
    pairs = [i for i, lab in enumerate(labels) if counts[lab] == 2]
    keep = np.ones(len(rows), bool)
    keep[pairs] = found(pairs)
    kept = np.flatnonzero(keep)
    _, val = split_by_identity(CropSet(None, labels[kept], [], [], None), fraction, seed)  # type: ignore[arg-type]
    val_rows = kept[val]
    val_found = found(list(val_rows))
    val_rows = val_rows[val_found]
    val_people = set(labels[val_rows].tolist())

    def crops_of(indices: np.ndarray) -> np.ndarray:
        out = np.zeros((len(indices), 112, 112, 3), np.uint8)
        for s in range(len(SETS)):
            mine = [j for j, i in enumerate(indices) if rows[i][0] == s]
            if mine:
                c, _ = caches[s].get([rows[indices[j]][1] for j in mine])
                out[mine] = c
        return out

    # the cohort: celeba_aligned people training saw, first photo each; among those with two
    # photos (detected above already) when the full cache is not there
    first: dict[int, int] = {}
    detected = set(pairs) if not caches[0].complete else set(range(len(rows)))
    for i, (s, _, _) in enumerate(rows):
        if s == 0 and keep[i] and labels[i] not in val_people and i in detected:
            first.setdefault(int(labels[i]), i)
    candidates = sorted(first.values())
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(candidates, size=min(cohort_size, len(candidates)), replace=False).tolist())
    cohort_found = found(chosen)
    cohort_rows = np.array(chosen)[cohort_found]
    described = (
        f"validation people held out by training ({len(val_people)} people, {len(val_rows)} photos of "
        f"{'+'.join(SETS)}, recipe seed {seed}; never LFW)"
    )
    return crops_of(val_rows), labels[val_rows], crops_of(cohort_rows), described, [rows[i][1] for i in cohort_rows]
