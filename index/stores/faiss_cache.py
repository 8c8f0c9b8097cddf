"""The folder store's FAISS index: an in-memory copy of SQLite's embeddings, saved to
`vectors.index` as a cache (SQLite stays the truth; a missing, stale or damaged file is
rebuilt from it).

What this process knows of SQLite (its meta and `data_version`) lives here too: each read
first takes in other connections' commits (`pull`), so several Gallery objects or processes
on one folder see each other's enrollments and removals. Catching up costs O(new entries)
(ids only grow); a removal elsewhere is noticed through meta 'removals' and reconciled with a
(count, id sum) fingerprint. The index is exact up to `exact_limit` entries, IVF above
(index/vectors.py), rebuilt in a background thread when it changes kind or outgrows its
training, and saved under a lock shared with other processes, after taking in their commits,
so no process writes back vectors another has just deleted.

Every method runs under the store's lock except `_rebuild_in_background`'s build.

(A little over 350 lines: the cache's whole life, open, check, sync, rebuild, save, in one
place, because the crash-safety argument reads across all of it.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: the index file is then guarded by the process lock only
    fcntl = None  # type: ignore[assignment]

import numpy as np

from ..store import Store
from ..vectors import IndexFileError, VectorIndex, choose_kind, remove_stale_temporaries
from .base import Caller

log = logging.getLogger(__name__)

INDEX_NAME = "vectors.index"


class IndexCache:
    def __init__(
        self,
        directory: Path,
        reader: Store,
        caller: Caller,
        lock: threading.RLock,
        *,
        busy_timeout: float,
        exact_limit: int,
        nprobe: int | None,
        save_every: int,
        background: bool,
    ):
        self.directory = directory
        self.path = directory / INDEX_NAME
        self.reader = reader
        self.caller = caller
        self.lock = lock
        self.busy_timeout = busy_timeout
        self.exact_limit = int(exact_limit)
        self.nprobe = nprobe
        self.save_every = max(1, int(save_every))
        self.background = background
        self.index: VectorIndex | None = None
        self.epoch: str | None = None  # meta 'epoch' the index was built from
        self.removals: str | None = None  # meta 'removals' as the index reflects it
        self.n = self.sum = self.max_id = 0  # what the in-memory index holds
        self.dirty = 0  # changes since the file was saved
        self.erase_due = False  # a removal not yet saved to the file
        self.rebuilder: threading.Thread | None = None
        self.closed = False
        remove_stale_temporaries(self.path)
        self.meta = reader.meta()
        self.seen_version = reader.data_version()

    # -- following SQLite -----------------------------------------------------------------------
    def pull(self) -> bool:
        """Take in commits made by other connections (threads, processes, Gallery objects);
        True when there were any."""
        version = self.reader.data_version()
        if version == self.seen_version:
            return False
        self.seen_version = version
        self.meta = self.reader.meta()
        if self.index is not None and self.meta.get("epoch") != self.epoch:
            self.drop(unlink=False)  # embeddings were replaced wholesale elsewhere
        self._catch_up()
        return True

    def sync(self) -> None:
        if self.pull():
            self._after_change()

    def committed(self, *, removed: list[int] | None = None, drop: bool = False) -> None:
        """After this process committed a change: bring the index (and, after a removal, its
        file) up to date. Never raises: the change is committed, the cache is rebuilt later."""
        if self.closed:
            return
        try:
            if drop:  # embeddings replaced wholesale (adoption, import into an empty gallery, reembed)
                self.meta = self.reader.meta()
                self.drop()
            if removed:
                if self.index is None:
                    self._unlink()  # the old file still holds those vectors
                else:
                    self.index.remove(np.asarray(removed, np.int64))  # type: ignore[union-attr]
                    self._recount()
                    self.dirty += len(removed)
            self.pull()
            self._after_change(save_now=bool(removed))
        except Exception:
            log.exception("The gallery index could not take in a change; it will be rebuilt from SQLite.")
            self.drop(unlink=False)
            if removed or drop:
                try:
                    self._unlink()
                except OSError:
                    log.exception("Could not delete the gallery index file.")

    def _catch_up(self, *, full: bool = False) -> None:
        """Bring the index to SQLite's ids: the new ones (ids only grow: those above the highest
        known, one indexed query), then, when something was deleted since (meta 'removals'
        moved) or full=True, compare (count, id sum) fingerprints and reconcile if they differ."""
        index = self.index
        if index is None:
            return
        removals = self.meta.get("removals")
        ids, vectors = self.reader.vectors(self.caller.dim, after=self.max_id)
        if len(ids):
            index.add(ids, vectors)
            self.n += len(ids)
            self.sum += int(np.sum(ids))
            self.max_id = max(self.max_id, int(np.max(ids)))
            self.dirty += len(ids)
        if full or removals != self.removals:
            if self.reader.count_sum() != (self.n, self.sum):
                self._reconcile()
            self.removals = removals

    def _reconcile(self) -> None:
        """Make the index hold exactly SQLite's ids: add the missing, remove the extra."""
        index = self.index
        assert index is not None
        with self.reader.snapshot():
            stored = self.reader.ids()
            present = index.ids()
            missing = np.setdiff1d(stored, present, assume_unique=True)
            extra = np.setdiff1d(present, stored, assume_unique=True)
            ids, vectors = (
                self.reader.vectors(self.caller.dim, ids=missing)
                if missing.size
                else (np.zeros(0, np.int64), np.zeros((0, self.caller.dim), np.float32))
            )
        if extra.size:
            index.remove(extra)
            self.dirty += len(extra)
        if ids.size:
            index.add(ids, vectors)
            self.dirty += len(ids)
        self._recount()

    def _recount(self) -> None:
        assert self.index is not None
        ids = self.index.ids()
        self.n, self.sum = int(ids.size), int(ids.sum()) if ids.size else 0
        self.max_id = max(self.max_id, int(ids.max()) if ids.size else 0)

    def _after_change(self, *, save_now: bool = False) -> None:
        if self.index is None:
            return
        if self._needs_rebuild():
            self._schedule_rebuild()
        if save_now or self.erase_due or self.dirty >= max(self.save_every, self.n // 10):
            self.save(wait=save_now)  # after a removal the file must lose those vectors now

    # -- the index ------------------------------------------------------------------------------
    def ensure(self) -> VectorIndex:
        """The in-memory index: loaded from its file when that checks out, else built from SQLite."""
        if self.index is not None:
            return self.index
        try:
            index, stamp = VectorIndex.load(self.path)
            if (
                stamp.get("epoch") != self.meta.get("epoch")
                or stamp.get("model_id") != self.meta.get("model_id")
                or index.dim != self.caller.dim
            ):
                raise IndexFileError("the index file belongs to older embeddings")
        except IndexFileError as exc:
            if self.path.exists():
                log.warning("Rebuilding the gallery index from SQLite: %s.", exc)
            index = self._build_from(None)[0]
            self.save(wait=False)
            return index
        self._install(index, self.meta.get("epoch"), None)
        if self.nprobe:
            index.nprobe = self.nprobe
        self.dirty = 0
        self._catch_up(full=True)  # a stale file (say, after kill -9) only lacks the latest changes
        self._after_change()
        return self.index if self.index is not None else self.ensure()  # (dropped by a wholesale change)

    def _needs_rebuild(self) -> bool:
        index = self.index
        assert index is not None
        kind = choose_kind(len(index), self.exact_limit, index.kind)
        if kind != index.kind:
            return True
        return kind == "ivf" and len(index) > self.exact_limit and len(index) > 8 * max(index.trained_on, 1)

    def _install(self, index: VectorIndex, epoch: str | None, removals: str | None) -> None:
        self.index, self.epoch, self.max_id = index, epoch, 0
        self.removals = removals
        self._recount()

    def _build_from(self, store: Store | None) -> tuple[VectorIndex, str | None, str | None]:
        """Build an index from SQLite; installed unless built on another connection (`store`,
        for the background thread, which installs it itself)."""
        source = store or self.reader
        with source.snapshot():
            meta = source.meta()
            epoch, removals = meta.get("epoch"), meta.get("removals")
            ids, vectors = source.vectors(self.caller.dim)
        current = self.index.kind if self.index is not None else None
        kind = choose_kind(len(ids), self.exact_limit, current)
        if kind == "ivf" and len(ids) < 2:
            kind = "flat"
        index = VectorIndex.build(kind, self.caller.dim, ids, vectors, nprobe=self.nprobe)
        if store is None:
            self._install(index, epoch, removals)
            self.dirty = max(self.dirty, 1)
        return index, epoch, removals

    def rebuild(self) -> None:
        self._build_from(None)

    def _schedule_rebuild(self) -> None:
        if not self.background:
            self._build_from(None)
            return
        if self.rebuilder is not None and self.rebuilder.is_alive():
            return
        self.rebuilder = threading.Thread(target=self._rebuild_in_background, name="gallery-rebuild", daemon=True)
        self.rebuilder.start()

    def _rebuild_in_background(self) -> None:
        try:
            reader = Store(self.reader.path, readonly=True, timeout=self.busy_timeout)
            try:
                index, epoch, removals = self._build_from(reader)
            finally:
                reader.close()
            with self.lock:
                if self.closed:
                    return
                self.pull()
                if epoch != self.meta.get("epoch") or self.index is None:
                    return  # replaced wholesale meanwhile: the next search builds afresh
                self._install(index, epoch, removals)
                self._reconcile()  # what was enrolled or removed while it was being built
                self.dirty = max(self.dirty, 1)
                self.save(wait=False)
        except Exception:
            log.exception("Background rebuild of the gallery index failed; the old index stays in use.")

    def wait(self) -> None:
        """Wait until a background rebuild (if any) has finished."""
        rebuilder = self.rebuilder
        if rebuilder is not None:
            rebuilder.join()

    def drop(self, unlink: bool = True) -> None:
        self.index, self.epoch = None, None
        self.n = self.sum = self.max_id = 0
        self.dirty = 0
        if unlink:
            self._unlink()  # (a stale file would be refused anyway: its epoch differs)

    # -- the file ---------------------------------------------------------------------------------
    def save(self, *, wait: bool) -> None:
        """Write the index file, under a lock shared with other processes, after taking in their
        commits. wait=False (searches, routine saves): skip when another process holds the
        file; the index stays dirty and is saved later. wait=True (after a removal, save(),
        rebuild(), close() while a removal is unsaved): wait for it, at most busy_timeout."""
        if self.index is None:
            return
        try:
            with self._file_lock(wait=wait) as locked:
                if not locked:
                    if wait:
                        self.erase_due = True
                        log.warning(
                            "Could not save the gallery index: another program holds its file. "
                            "It will be saved at the next change."
                        )
                    return
                self.pull()
                if self.index is None:
                    return
                self.index.save(
                    self.path, {"model_id": self.meta.get("model_id"), "epoch": self.epoch, "saved": time.time()}
                )
            self.dirty = 0
            self.erase_due = False
        except OSError:
            log.exception("Could not save the gallery index (SQLite holds everything; it will be rebuilt).")

    def close(self) -> None:
        """Save the index if it changed (waiting for another process's save only when a
        removal must still leave the file)."""
        if self.index is not None:
            self.pull()
            if self.dirty:
                self.save(wait=self.erase_due)
        self.closed = True

    def _unlink(self) -> None:
        with self._file_lock(wait=True) as locked:
            if locked:
                self.path.unlink(missing_ok=True)
            else:
                log.warning(
                    "Could not delete the gallery's index file (another program holds it); "
                    "it will be rewritten or refused later."
                )

    @contextmanager
    def _file_lock(self, *, wait: bool) -> Iterator[bool]:
        """An advisory lock between processes around writing or deleting the index file; yields
        whether it was obtained. wait=False: only if free now; wait=True: at most busy_timeout
        (never forever: a hung process must not hang this one)."""
        if fcntl is None:
            yield True
            return
        fd = os.open(self.directory / ".index.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + (self.busy_timeout if wait else 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        locked = False
                        break
                    time.sleep(0.01)
            yield locked
        finally:
            os.close(fd)
