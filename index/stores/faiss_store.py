"""The embedded default: a folder holding `gallery.db` (SQLite, the truth: index/store.py)
and `vectors.index` (FAISS, a rebuildable cache: faiss_cache.py).

Concurrency: several Gallery objects or processes may share a folder; each takes in the
others' commits (SQLite data_version) before it answers. Reads (search, people, entries,
owner, thumbnail) never wait for a writer, in this process or another: SQLite runs in WAL
mode, searches use the in-memory FAISS index, and a search that would also save the index
file skips the save when another process holds that file. Changes go one at a time through
a second connection; one that cannot start within `busy_timeout` seconds (another program,
say `python -m index import`, or thread is changing the gallery) raises GalleryBusy and
changes nothing. Waiting for that lock does not hold up searches.

Durability and deletion: every change is one SQLite transaction with synchronous=FULL (it
survives kill -9 and power loss once it returned). A removal overwrites the rows with zeros
(secure_delete), gives the pages back to the file system, truncates the write-ahead log, and
rewrites the index file without those vectors before it returns (or, when another process
holds that file, as soon as it can: at the next change or at close).

(About 400 lines: the protocol's two dozen methods, each a few lines over index/store.py,
and the transfer helpers; the index cache is apart, in faiss_cache.py.)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import checks
from ..errors import GalleryBusy, GalleryError
from ..store import BUSY_TIMEOUT_S, Store, is_busy, new_epoch, vector_bytes, vectors_from
from .base import Caller, Row
from .faiss_cache import INDEX_NAME, IndexCache

log = logging.getLogger(__name__)

DB_NAME = "gallery.db"
DEFAULT_EMBEDDING_SIZE = 128
DEFAULT_EXACT_LIMIT = 50_000  # exact search below (about 1 ms a query), IVF above

__all__ = ["FaissStore", "DB_NAME", "INDEX_NAME", "DEFAULT_EXACT_LIMIT"]


class FaissStore:
    """A gallery folder. Options: exact_limit (exact search up to this many entries, IVF
    above), nprobe (IVF lists searched per query), save_every (save the index file after this
    many changes; also on close and after every removal), background (rebuild the index in a
    thread when it changes kind or outgrows its training)."""

    kind = "faiss"

    def __init__(
        self,
        location: str | Path,
        caller: Caller | None = None,
        *,
        model_id: str | None = None,
        embedding_size: int | None = None,
        busy_timeout: float = BUSY_TIMEOUT_S,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        nprobe: int | None = None,
        save_every: int = 1000,
        background: bool = True,
    ):
        self.location = str(location)
        self.directory = Path(location)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # faces are personal data:
        self.db_path = self.directory / DB_NAME  # owner-only, files too
        if not self.db_path.exists():
            self.db_path.touch(mode=0o600)
        self.busy_timeout = float(busy_timeout)
        self.closed = False
        self._lock = threading.RLock()  # the read connection and the in-memory index
        self._write_lock = threading.Lock()  # the write connection: one change at a time
        self._checkpoint_due = False  # a deletion's log not yet truncated
        self._names_counted: tuple[tuple[int, str], int] | None = None
        self._reader = Store(self.db_path, timeout=self.busy_timeout)
        try:
            self._writer = Store(self.db_path, timeout=self.busy_timeout)
        except BaseException:
            self._reader.close()
            raise
        if caller is None:
            caller = Caller(model_id, int(embedding_size or 0))
        self._adopt(caller.model_id, caller.dim or None)
        meta = self._reader.meta()
        caller.model_id = caller.model_id if caller.model_id is not None else meta.get("model_id")
        caller.dim = int(caller.dim or meta.get("dim") or DEFAULT_EMBEDDING_SIZE)
        self.caller = caller
        self.cache = IndexCache(
            self.directory,
            self._reader,
            caller,
            self._lock,
            busy_timeout=self.busy_timeout,
            exact_limit=exact_limit,
            nprobe=nprobe,
            save_every=save_every,
            background=background,
        )

    @staticmethod
    def exists(location: str | Path) -> bool:
        return (Path(location) / DB_NAME).exists()

    def _adopt(self, model_id: str | None, dim: int | None) -> None:
        """An empty gallery takes its first user's model id and embedding size."""

        def updates(store: Store) -> dict:
            meta, wanted = store.meta(), dict[str, Any]()
            if store.count():
                return wanted
            if model_id is not None and meta.get("model_id") != model_id:
                wanted["model_id"] = model_id
            if dim is not None and meta.get("dim") != str(dim):
                wanted["dim"] = dim
            elif not meta.get("dim"):
                wanted["dim"] = DEFAULT_EMBEDDING_SIZE
            return wanted

        if not updates(self._reader):
            return
        try:
            with self._writer.transaction():
                if wanted := updates(self._writer):
                    self._writer.set_meta(**wanted, epoch=new_epoch())
        except GalleryBusy:
            log.warning("%s is busy; it will take this model at its first enrollment.", self.directory)

    # -- the two preambles: every read and every change goes through one of these ----------------
    @contextmanager
    def _reading(self, *, sync: bool = False) -> Iterator[None]:
        """The read connection and the in-memory index, for a moment (sync: first take in other
        connections' commits). In WAL mode SQLite never makes a reader wait for a writer;
        should the file still be in rollback-journal mode (it could not be switched), a read
        that meets a writer is GalleryBusy after busy_timeout."""
        with self._lock:
            self._open_check()
            try:
                if sync:
                    self.cache.sync()
                yield
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise GalleryBusy() from exc
                raise

    @contextmanager
    def _write(self, *, transaction: bool = True, erase: bool = False) -> Iterator[Store]:
        """The write connection, inside one write transaction (transaction=False: without one,
        for VACUUM). Waits at most busy_timeout for another thread's change, then for another
        process's (SQLite's write lock), and raises GalleryBusy past either; holds no lock that
        searches need meanwhile. erase: after the commit, checkpoint the log into the database
        and truncate it, so what was deleted or overwritten is nowhere on disk."""
        self._open_check()
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise GalleryBusy()
        try:
            self._open_check()
            try:
                if transaction:
                    with self._writer.transaction():
                        yield self._writer
                else:
                    yield self._writer
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise GalleryBusy() from exc
                raise
            if erase or self._checkpoint_due:
                self._checkpoint()
        finally:
            self._write_lock.release()

    def _read(self, query: Callable[..., Any], *args: Any) -> Any:
        """One query on the read connection, through the read preamble."""
        with self._reading():
            return query(self._reader, *args)

    def _committed(self, **changes: Any) -> None:
        with self._lock:
            self.cache.committed(**changes)

    def _open_check(self) -> None:
        if self.closed:
            raise GalleryError("The gallery is closed.")

    def _checkpoint(self) -> None:
        """(Holding the write lock.) Truncate the write-ahead log; retried at the next change
        or at close when readers or another writer keep it from completing now."""
        try:
            done = self._writer.checkpoint()
        except sqlite3.Error:
            log.exception("Could not checkpoint the gallery's log.")
            done = False
        self._checkpoint_due = not done
        if not done:
            log.warning("The gallery's log could not be truncated yet (busy); it will be at the next change.")

    def _guard(self, store: Store, meta: dict, *, writing: bool) -> bool:
        """checks.check_model on this store's meta; adopts the caller's model when writing
        into an empty gallery (inside the write transaction)."""
        caller = self.caller
        if meta.get("model_id") == caller.model_id and int(meta.get("dim") or caller.dim) == caller.dim:
            return False
        adopt = checks.check_model(
            meta.get("model_id"),
            int(meta.get("dim") or caller.dim),
            caller.model_id,
            caller.dim,
            empty=store.count() == 0,
            writing=writing,
        )
        if adopt:
            store.set_meta(model_id=caller.model_id, dim=caller.dim, epoch=new_epoch())
        return adopt

    # -- the model ---------------------------------------------------------------------------------
    def check_model(self) -> None:
        with self._reading(sync=True):
            self._guard(self._reader, self.cache.meta, writing=False)

    def stored_model_id(self) -> str | None:
        with self._reading():
            self.cache.pull()
            return self.cache.meta.get("model_id")

    # -- changes -------------------------------------------------------------------------------------
    def add(self, name: str, vector: np.ndarray, png: bytes | None, *, retry_since: float | None) -> int:
        with self._write() as store:
            adopted = self._guard(store, store.meta(), writing=True)
            if retry_since is not None and not adopted:
                rows = store.recent(name, retry_since, self.caller.model_id)
                earlier = checks.same_photo([(i, np.frombuffer(blob, "<f4")) for i, blob in rows], vector)
                if earlier is not None:
                    return earlier
            entry_id = store.insert(name, time.time(), self.caller.model_id, vector_bytes(vector), png)
        self._committed(drop=adopted)
        return entry_id

    def remove(self, ids: list[int]) -> int:
        with self._write(erase=True) as store:
            removed = store.delete(ids)
        if removed:
            self._committed(removed=list(ids))
        return removed

    def remove_person(self, name: str) -> list[int]:
        with self._write(erase=True) as store:
            ids = store.person_ids(name)
            if not ids:
                raise checks.no_such_person(name, store.similar_names(name))
            store.delete(ids)
        self._committed(removed=ids)
        return ids

    def rename(self, old: str, new: str, *, merge: bool) -> int:
        with self._write() as store:
            if not store.has_person(old):
                raise checks.no_such_person(old, store.similar_names(old))
            if old != new and store.has_person(new) and not merge:
                raise checks.already_enrolled(new)
            count = store.rename(old, new)
        self._committed()
        return count

    def vacuum(self) -> None:
        with self._write(transaction=False, erase=True) as store:
            store.vacuum()

    # -- reads ---------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        with self._reading(sync=True):
            self._guard(self._reader, self.cache.meta, writing=False)
            index = self.cache.ensure()
            k = min(k, len(index))
            if k == 0:
                return []
            distances, ids = index.search(vector[None], k)
            found = [(int(i), float(d)) for i, d in zip(ids[0], distances[0], strict=True) if i >= 0]
            names = self._reader.names([i for i, _ in found])
            return [(i, names[i], d) for i, d in found if i in names]

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        found, vectors = self._read(lambda store: store.vectors(self.caller.dim, ids=np.asarray(ids, np.int64)))
        return {int(i): v for i, v in zip(found, vectors, strict=True)}

    def count(self) -> int:
        return self._read(Store.count)

    def count_people(self) -> int:
        return self.count_names("")

    def count_names(self, start: str) -> int:
        """count_people from `start` on; remembered until the gallery changes (SQLite's
        data_version), so a page of a million people does not count them all again."""
        with self._reading():
            version = (self._reader.data_version(), start)
            if self._names_counted is None or self._names_counted[0] != version:
                self._names_counted = (version, self._reader.count_names(start))
            return self._names_counted[1]

    def people(self) -> list[tuple[str, int, float, float]]:
        return self._read(Store.people)

    def people_page(self, start: str, offset: int, limit: int) -> list[tuple[str, int, float, float]]:
        return self._read(Store.people_page, start, offset, limit)

    def entry_ids(self, names: list[str]) -> list[tuple[str, int]]:
        return self._read(Store.entry_ids, names)

    def names_like(self, key: str) -> list[str]:
        return self._read(Store.names_like, key)

    def generation(self) -> int:
        """The deletion counter every process shares (Store.generation): one row read."""
        return self._read(Store.generation)

    def entries(self, name: str | None) -> list[tuple[int, str, float, str | None, bool]]:
        return [(i, n, t, m, bool(h)) for i, n, t, m, h in self._read(Store.entries, name)]

    def owner(self, entry_id: int) -> str | None:
        return self._read(Store.owner, entry_id)

    def thumbnail(self, entry_id: int) -> bytes | None:
        return self._read(Store.thumbnail, entry_id)

    def has_person(self, name: str) -> bool:
        return self._read(Store.has_person, name)

    def similar_names(self, name: str) -> list[str]:
        return self._read(Store.similar_names, name)

    # -- transfer ------------------------------------------------------------------------------------
    @contextmanager
    def export_rows(self, *, thumbnails: bool) -> Iterator[_Snapshot]:
        """A read-only connection of its own, in one read transaction: searches go on."""
        self._open_check()
        source = Store(self.db_path, readonly=True, timeout=self.busy_timeout)
        try:
            with source.snapshot():
                meta = source.meta()
                yield _Snapshot(meta.get("model_id"), int(meta.get("dim") or self.caller.dim), source, thumbnails)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise GalleryBusy() from exc
            raise
        finally:
            source.close()

    def import_rows(self, model_id: str | None, dim: int, rows: Iterable[Row], *, replace: bool) -> int:
        """One transaction: a bad row (InvalidInput from the export's reader) leaves nothing."""
        with self._write(erase=replace) as store:
            meta = store.meta()
            empty = replace or store.count() == 0
            checks.check_import(
                meta.get("model_id"), int(meta.get("dim") or self.caller.dim), model_id, dim, empty=empty
            )
            if replace:
                store.delete(list(store.ids()))
            count = 0
            for _, name, enrolled, _, vector, png in rows:
                store.insert(name, enrolled, model_id, vector_bytes(vector), png)
                count += 1
            if empty:
                store.set_meta(model_id=model_id, dim=dim, epoch=new_epoch())
        if empty:
            self.caller.dim = dim
        self._committed(drop=empty)
        return count

    @contextmanager
    def reembedding(self, model_id: str) -> Iterator[_Reembed]:
        """The whole re-embedding is one write transaction: other writers get GalleryBusy
        meanwhile; searches go on with the old embeddings until it commits."""
        self.cache.wait()
        job = None
        with self._write(erase=True) as store:
            job = _Reembed(store, model_id)
            yield job
        if job.finished:
            self.caller.model_id, self.caller.dim = job.finished
            self._committed(drop=True)

    # -- maintenance and lifecycle ---------------------------------------------------------------------
    @property
    def index_kind(self) -> str | None:
        index = self.cache.index
        return None if index is None else index.kind

    def rebuild(self) -> None:
        with self._reading(sync=True):
            self.cache.rebuild()
            self.cache.save(wait=True)

    def save(self) -> None:
        with self._reading():
            if self.cache.index is not None:
                self.cache.sync()
                self.cache.save(wait=True)

    def wait(self) -> None:
        self.cache.wait()

    def close(self) -> None:
        """Wait for a background rebuild and a change in progress, save the index if it
        changed, close SQLite."""
        self.cache.wait()
        with self._write_lock, self._lock:
            if self.closed:
                return
            try:
                if self._checkpoint_due:
                    self._checkpoint()
                self.cache.close()
            finally:
                self.closed = True
                self._reader.close()
                self._writer.close()


@dataclass
class _Snapshot:
    model_id: str | None
    dim: int
    source: Store
    thumbnails: bool

    def rows(self) -> Iterator[Row]:
        for entry_id, name, enrolled, model, blob, png in self.source.rows(thumbnails=self.thumbnails):
            yield entry_id, name, enrolled, model, vectors_from([blob], self.dim)[0], png


@dataclass
class _Reembed:
    store: Store
    model_id: str
    finished: tuple[str, int] | None = None
    total: int = 0
    without_thumbnail: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.total = self.store.count()
        self.without_thumbnail = self.store.without_thumbnail()

    def thumbnails(self, batch: int) -> Iterator[list[tuple[int, bytes]]]:
        return self.store.thumbnail_batches(batch)

    def update(self, vectors: list[tuple[int, np.ndarray]]) -> None:
        self.store.set_embeddings(self.model_id, [(i, vector_bytes(v)) for i, v in vectors])

    def finish(self, dim: int, drop: list[int]) -> None:
        if drop:
            self.store.delete(drop)
        self.store.set_meta(model_id=self.model_id, dim=dim, epoch=new_epoch())
        self.finished = (self.model_id, dim)
