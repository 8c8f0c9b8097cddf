"""The FAISS side of the gallery: an inner-product index over unit vectors, keyed by entry id.

Two kinds, picked by size (see `choose_kind`):

- "flat": IndexIDMap2(IndexFlatIP), exact search; removal is physical.
- "ivf":  IndexIVFFlat (inner product, spherical k-means coarse quantiser) with the entry ids
          stored natively; approximate search over `nprobe` of `nlist` lists; removal is
          physical too, so no tombstones are needed (HNSW was measured and rejected: it cannot
          remove ids and builds ~30x slower, see bench/results/index_scale.md).

The index is a cache of SQLite: it is saved to one file (FAISS payload + a JSON trailer with
a SHA-256 of the payload), written to a temporary file, fsynced and renamed into place, and
refused on load when anything about it does not check out. The caller then rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

MAGIC = b"TWINVEC1"
FORMAT = 1
TRAIN_PER_LIST = 40  # k-means wants >= 39 points per centroid
TRAIN_ITERATIONS = 10
LISTS_PER_SQRT_N = 4  # nlist ~ 4 sqrt(n), rounded down to a power of two
PROBE_FRACTION = 1 / 8  # nprobe = nlist / 8, at least 128 lists: recall@1 >= 0.99 on near
MIN_NPROBE = 128  # queries at 100k..1M uniform vectors (bench/index_scale.py; nlist/12
# measured 0.986 at 1M)


class IndexFileError(Exception):
    """The saved index is missing, damaged or does not belong to this gallery."""


def ivf_layout(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for an IVF index over n vectors."""
    target = LISTS_PER_SQRT_N * math.sqrt(max(n, 1))
    nlist = 1 << max(0, int(math.log2(max(target, 1))))
    while nlist > 1 and nlist * TRAIN_PER_LIST > n:
        nlist //= 2
    nprobe = min(nlist, max(MIN_NPROBE, int(round(nlist * PROBE_FRACTION))))
    return nlist, nprobe


def choose_kind(n: int, exact_limit: int, current: str | None = None) -> str:
    """Exact search up to exact_limit vectors, IVF above; back to exact only below half the
    limit, so a gallery hovering around the limit is not rebuilt back and forth."""
    if n > exact_limit:
        return "ivf"
    if current == "ivf" and n > exact_limit // 2:
        return "ivf"
    return "flat"


def to_distance(similarity: np.ndarray) -> np.ndarray:
    """Inner product of unit vectors -> Euclidean distance: d = sqrt(2 - 2 ip)."""
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, 4.0)).astype(np.float32)


@dataclass
class VectorIndex:
    kind: str
    dim: int
    index: Any
    trained_on: int = 0  # IVF: how many vectors the coarse quantiser was trained on

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        kind: str,
        dim: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 1234,
    ) -> VectorIndex:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        if kind == "flat":
            made = cls("flat", dim, faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        elif kind == "ivf":
            default_nlist, default_nprobe = ivf_layout(len(ids))
            nlist = nlist or default_nlist
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.spherical = True
            ivf.cp.niter = TRAIN_ITERATIONS
            ivf.cp.seed = seed
            ivf.cp.min_points_per_centroid = 1  # small galleries: few points per list is fine
            sample = vectors
            if len(vectors) > nlist * TRAIN_PER_LIST:
                pick = np.random.default_rng(seed).choice(len(vectors), nlist * TRAIN_PER_LIST, replace=False)
                sample = vectors[np.sort(pick)]
            if len(sample) < nlist:  # nothing to train on yet: one list, i.e. exact search
                raise ValueError(f"IVF with {nlist} lists needs at least {nlist} vectors to train, got {len(sample)}")
            ivf.train(sample)
            ivf.nprobe = min(nlist, nprobe or default_nprobe)
            made = cls("ivf", dim, ivf, trained_on=len(sample))
        else:
            raise ValueError(f"unknown index kind {kind!r} (flat or ivf)")
        made.add(ids, vectors)
        return made

    # -- contents ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def nprobe(self) -> int | None:
        return int(self.index.nprobe) if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.kind == "ivf":
            self.index.nprobe = max(1, min(int(value), int(self.index.nlist)))

    @property
    def nlist(self) -> int | None:
        return int(self.index.nlist) if self.kind == "ivf" else None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if ids.size:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
            self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not ids.size or not len(self):
            return 0
        return int(self.index.remove_ids(ids))

    def ids(self) -> np.ndarray:
        """Every id in the index (unordered), int64."""
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(self.index.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Euclidean distances, ids), each m x k, nearest first; id -1 pads missing results."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if not len(self):
            return (np.full((len(queries), k), np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        similarity, ids = self.index.search(queries, int(k))
        distance = to_distance(similarity)
        distance[ids < 0] = np.inf
        return distance, ids

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path, stamp: dict[str, Any]) -> None:
        """Atomically write the index and its stamp; a crash leaves the old file or the new one."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        digest, size = hashlib.sha256(), 0
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:

                def write(chunk: bytes) -> int:
                    nonlocal size
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                    return len(chunk)

                writer = faiss.PyCallbackIOWriter(write)
                faiss.write_index(self.index, writer)
                del writer  # flushes its buffer
                trailer = json.dumps(
                    {
                        **stamp,
                        "format": FORMAT,
                        "kind": self.kind,
                        "dim": self.dim,
                        "count": len(self),
                        "trained_on": self.trained_on,
                        "payload_bytes": size,
                        "sha256": digest.hexdigest(),
                    }
                ).encode()
                f.write(trailer + struct.pack("<Q", len(trailer)) + MAGIC)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(path.parent)

    @classmethod
    def load(cls, path: str | Path) -> tuple[VectorIndex, dict[str, Any]]:
        """Read a saved index; IndexFileError when it is missing, damaged or inconsistent.

        The payload's checksum is verified before FAISS parses a byte of it."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 16:
                    raise IndexFileError("the index file is truncated")
                f.seek(size - 16)
                (trailer_size,), magic = struct.unpack("<Q", f.read(8)), f.read(8)
                if magic != MAGIC or trailer_size > size - 16:
                    raise IndexFileError("the index file is truncated or not an index file")
                payload_size = size - 16 - trailer_size
                f.seek(payload_size)
                try:
                    stamp = json.loads(f.read(trailer_size))
                except ValueError as exc:
                    raise IndexFileError("the index file's stamp is damaged") from exc
                if (
                    not isinstance(stamp, dict)
                    or stamp.get("format") != FORMAT
                    or stamp.get("payload_bytes") != payload_size
                ):
                    raise IndexFileError("the index file's stamp does not match its contents")
                f.seek(0)
                digest, left = hashlib.sha256(), payload_size
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise IndexFileError("the index file is truncated")
                    digest.update(chunk)
                    left -= len(chunk)
                if digest.hexdigest() != stamp.get("sha256"):
                    raise IndexFileError("the index file is damaged (checksum mismatch)")
                f.seek(0)
                left = payload_size

                def read(n: int) -> bytes:
                    nonlocal left
                    chunk = f.read(min(n, left))
                    left -= len(chunk)
                    return chunk

                reader = faiss.PyCallbackIOReader(read)
                try:
                    index = faiss.read_index(reader)
                finally:
                    del reader
        except FileNotFoundError as exc:
            raise IndexFileError("there is no index file") from exc
        except OSError as exc:
            raise IndexFileError(f"the index file cannot be read: {exc}") from exc
        except RuntimeError as exc:  # FAISS could not parse it
            raise IndexFileError(f"the index file does not parse: {str(exc).splitlines()[0][:200]}") from exc
        kind, dim = str(stamp.get("kind")), stamp.get("dim")
        expected = {"flat": faiss.IndexIDMap2, "ivf": faiss.IndexIVFFlat}.get(kind)
        if (
            expected is None
            or not isinstance(index, expected)
            or index.d != dim
            or index.ntotal != stamp.get("count")
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise IndexFileError("the index file's contents do not match its stamp")
        return cls(kind, int(dim), index, int(stamp.get("trained_on") or 0)), stamp


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary index files left behind by processes that died while saving."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name.split(".")[-3])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
