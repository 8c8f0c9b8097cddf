"""Gallery: one-shot enrollments in SQLite (the truth) with a FAISS index (a rebuildable cache).

    g = Gallery("data/gallery", model_id=engine.model_id, threshold=engine.threshold)
    entry = g.enroll("Ada Lovelace", face.embedding, thumbnail=face.crop)
    g.search(face.embedding, k=5)   -> [Match(name, entry_id, distance)], nearest first
    g.identify(face.embedding)      -> Match | None (None when nothing is within the threshold)

Knows nothing of images beyond storing a thumbnail: embeddings come from the caller.
Thread-safe; several Gallery objects or processes may share a directory: each notices the
others' commits (SQLite data_version) before it answers.

Waiting: reads (search, identify, people, entries, owner, thumbnail) never wait for a writer,
in this process or another: SQLite runs in WAL mode, searches use the in-memory FAISS index,
and a search that would also save the index file skips the save when another process holds
that file. Changes (enroll, remove, rename, import, reembed, vacuum) go one at a time through
a second connection; one that cannot start within `busy_timeout` seconds, because another
program (say `python -m index import`) or thread is changing the gallery, raises GalleryBusy
and changes nothing. Waiting for that lock does not hold up searches.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: the index file is then guarded by the process lock only
    fcntl = None

import numpy as np

from . import thumbnails as thumbs
from .checks import MAX_NAME_LENGTH, clean_name, clean_vector  # noqa: F401 - part of this module's API
from .errors import GalleryBusy, GalleryError, InvalidInput, ModelMismatch, NotFound
from .exports import MAX_IMPORT_ENTRIES, Export
from .store import BUSY_TIMEOUT_S, Store, is_busy, new_epoch, vector_bytes, vectors_from
from .vectors import IndexFileError, VectorIndex, choose_kind, remove_stale_temporaries

log = logging.getLogger(__name__)

DB_NAME = "gallery.db"
INDEX_NAME = "vectors.index"
DEFAULT_EMBEDDING_SIZE = 128
MAX_K = 1000
DEFAULT_EXACT_LIMIT = 50_000    # exact search below (about 1 ms a query), IVF above
DEFAULT_BUSY_TIMEOUT_S = BUSY_TIMEOUT_S   # a change waits this long for another writer, then GalleryBusy
DEFAULT_RETRY_WINDOW_S = 600.0  # enroll: the same photo under the same name within this time is a retry
SAME_PHOTO_DISTANCE = 1e-3      # ... "the same photo": embeddings closer than this
_MAX_ENTRY_ID = 2 ** 63 - 1


@dataclass(frozen=True)
class Match:
    """One search result: an enrolled entry and its Euclidean distance to the query."""

    name: str
    entry_id: int
    distance: float


@dataclass(frozen=True)
class Person:
    name: str
    entries: int
    first_enrolled: datetime
    last_enrolled: datetime


@dataclass(frozen=True)
class Entry:
    entry_id: int
    name: str
    enrolled: datetime
    model_id: str | None
    has_thumbnail: bool


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc)


def _entry_id(value: object) -> int | None:
    """An entry id as SQLite can hold it, or None for anything that cannot be one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != value and not isinstance(value, str):
        return None
    return number if 0 < number <= _MAX_ENTRY_ID else None


class Gallery:
    """Named face embeddings in a directory: `gallery.db` (SQLite) and `vectors.index` (FAISS).

    model_id:       the model whose embeddings this caller brings (engine.model_id). A gallery
                    holding another model's embeddings refuses enroll/search/identify with
                    ModelMismatch until `reembed` (python -m index reembed); an empty one adopts it.
    threshold:      default Euclidean threshold for identify (engine.threshold).
    embedding_size: expected vector length (engine.embedding_size); default: the stored one, or 128.
    thumbnails:     keep the aligned crop given to enroll (PNG in SQLite). False: never store one.
    exact_limit:    exact search up to this many entries, approximate (IVF) above.
    nprobe:         IVF lists searched per query (default: max(128, nlist / 8), vectors.ivf_layout).
    save_every:     save the FAISS file after this many changes (it is also saved on close and
                    after every removal); SQLite is durable at every call regardless.
    background:     rebuild the index in a background thread when it changes kind or outgrows
                    its training (searches keep using the old one meanwhile).
    busy_timeout:   seconds a change waits for another writer (process or thread) before it
                    raises GalleryBusy. Reads never wait for writers.
    retry_window:   seconds within which enrolling the same photo (distance < 1e-3) under the
                    same name again returns the first entry instead of adding a duplicate
                    (a client that retried after a lost reply); 0 turns this off.
    """

    def __init__(self, directory: str | Path, model_id: str | None = None, *, threshold: float | None = None,
                 embedding_size: int | None = None, thumbnails: bool = True,
                 exact_limit: int = DEFAULT_EXACT_LIMIT, nprobe: int | None = None,
                 save_every: int = 1000, background: bool = True,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S, retry_window: float = DEFAULT_RETRY_WINDOW_S):
        busy_timeout, retry_window = float(busy_timeout), float(retry_window)
        if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
            raise InvalidInput(f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}.")
        if not (math.isfinite(retry_window) and retry_window >= 0):
            raise InvalidInput(f"retry_window must be a number of seconds >= 0, not {retry_window!r}.")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)   # faces are personal data:
        self.db_path = self.directory / DB_NAME                          # owner-only, files too
        if not self.db_path.exists():
            self.db_path.touch(mode=0o600)
        self.index_path = self.directory / INDEX_NAME
        self.threshold = None if threshold is None else float(threshold)
        self.keep_thumbnails = bool(thumbnails)
        self.exact_limit = int(exact_limit)
        self.nprobe = nprobe
        self.save_every = max(1, int(save_every))
        self.background = background
        self.busy_timeout = busy_timeout
        self.retry_window = retry_window
        self._lock = threading.RLock()          # the read connection and the in-memory index
        self._write_lock = threading.Lock()     # the write connection: one change at a time
        self._store = Store(self.db_path, timeout=busy_timeout)    # reads
        try:
            self._writer = Store(self.db_path, timeout=busy_timeout)   # changes
        except BaseException:
            self._store.close()
            raise
        self._index: VectorIndex | None = None
        self._index_epoch: str | None = None
        self._index_removals: str | None = None    # meta 'removals' as the index reflects it
        self._n = self._sum = self._max_id = 0     # what the in-memory index holds
        self._dirty = 0                            # changes since the index file was saved
        self._checkpoint_due = False               # a deletion's log not yet truncated
        self._erase_due = False                    # a removal not yet saved to the index file
        self._rebuilder: threading.Thread | None = None
        self._closed = False
        remove_stale_temporaries(self.index_path)
        meta = self._store.meta()
        if self._adoption(meta, model_id, embedding_size):
            try:
                with self._writer.transaction():  # an empty gallery takes this caller's model and size
                    updates = self._adoption(self._writer.meta(), model_id, embedding_size, self._writer)
                    if updates:
                        self._writer.set_meta(**updates, epoch=new_epoch())
            except GalleryBusy:
                log.warning("%s is busy; it will take this model at its first enrollment.", self.directory)
            meta = self._store.meta()
        self.model_id = model_id if model_id is not None else meta.get("model_id")
        self.embedding_size = int(embedding_size or meta.get("dim") or DEFAULT_EMBEDDING_SIZE)
        self._meta = meta
        self._seen_version = self._store.data_version()

    def _adoption(self, meta: dict, model_id: str | None, embedding_size: int | None,
                  store: Store | None = None) -> dict:
        """What an empty gallery should take from its new user: model id and embedding size."""
        updates: dict = {}
        if (store or self._store).count():
            return updates
        if model_id is not None and meta.get("model_id") != model_id:
            updates["model_id"] = model_id
        if embedding_size is not None and meta.get("dim") != str(embedding_size):
            updates["dim"] = embedding_size
        elif not meta.get("dim"):
            updates["dim"] = DEFAULT_EMBEDDING_SIZE
        return updates

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Wait for a background rebuild and for a change in progress, save the index if it
        changed, close SQLite."""
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join()
        with self._write_lock, self._lock:
            if self._closed:
                return
            try:
                if self._checkpoint_due:
                    self._checkpoint()
                if self._index is not None:
                    self._pull()
                    if self._dirty:   # waits for another process's save only if vectors must go
                        self._save(wait=self._erase_due)
            finally:
                self._closed = True
                self._store.close()
                self._writer.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.directory)!r}, model_id={self.model_id!r})"

    # -- writing ----------------------------------------------------------------------------
    def enroll(self, name: str, embedding: np.ndarray, thumbnail: np.ndarray | bytes | None = None, *,
               retry_window: float | None = None) -> int:
        """Store one face of `name`; returns its entry id. Durable when it returns.

        A retry is not a duplicate: when `name` already has an entry of this very face (the
        same photo: distance < SAME_PHOTO_DISTANCE) enrolled less than `retry_window` seconds
        ago (default: the gallery's, 10 minutes), that entry's id is returned and nothing is
        added. So a client that lost the reply to a committed enrollment can simply send it again.

        Raises InvalidInput (a ValueError) for a bad name, embedding or thumbnail, ModelMismatch
        when the gallery holds another model's embeddings, GalleryBusy when another program
        has been changing the gallery for longer than busy_timeout; nothing is stored then.
        """
        name = clean_name(name)
        vector = clean_vector(embedding, self.embedding_size)
        window = self.retry_window if retry_window is None else float(retry_window)
        if not (math.isfinite(window) and window >= 0):
            raise InvalidInput(f"retry_window must be a number of seconds >= 0, not {retry_window!r}.")
        png = thumbs.encode(thumbnail) if (thumbnail is not None and self.keep_thumbnails) else None
        with self._write() as store:
            adopted = self._check_model(store.meta(), writing=True, store=store)
            now = time.time()
            if window > 0 and not adopted:
                earlier = self._same_photo(store, name, vector, now - window)
                if earlier is not None:
                    return earlier
            entry_id = store.insert(name, now, self.model_id, vector_bytes(vector), png)
        self._refresh(drop=adopted)
        return entry_id

    def remove_entry(self, entry_id: int) -> None:
        """Delete one entry, its vector and its thumbnail, for good. NotFound if there is none."""
        number = _entry_id(entry_id)
        if number is None:
            raise NotFound(f"There is no entry {entry_id!r}.")
        with self._write(erase=True) as store:
            if not store.delete([number]):
                raise NotFound(f"There is no entry {entry_id}.")
        self._refresh(removed=[number])

    def remove_person(self, name: str) -> int:
        """Delete every entry of `name` (vectors and thumbnails, for good); returns how many."""
        name = clean_name(name)
        with self._write(erase=True) as store:
            ids = store.person_ids(name)
            if not ids:
                raise NotFound(self._no_such_person(name, store))
            store.delete(ids)
        self._refresh(removed=ids)
        return len(ids)

    def rename_person(self, old: str, new: str, *, merge: bool = False) -> int:
        """Rename a person (all their entries); returns how many entries. Renaming onto a name
        already enrolled merges the two only with merge=True."""
        old, new = clean_name(old), clean_name(new)
        with self._write() as store:
            if not store.has_person(old):
                raise NotFound(self._no_such_person(old, store))
            if old != new and store.has_person(new) and not merge:
                raise InvalidInput(f"{new!r} is already enrolled; pass merge=True to merge the two.")
            count = store.rename(old, new)
        self._refresh()
        return count

    def vacuum(self) -> None:
        """Rebuild the SQLite file from scratch (VACUUM). Removal already zeroes deleted data and
        returns freed pages to the file system; this also compacts what remains."""
        with self._write(transaction=False, erase=True) as store:
            store.vacuum()

    # -- reading ----------------------------------------------------------------------------
    def search(self, embedding: np.ndarray, k: int = 5, *, per_person: bool = False) -> list[Match]:
        """The k nearest entries, nearest first (per_person: the nearest entry of each of the
        k nearest people). Approximate above exact_limit entries. Never waits for a writer."""
        vector = clean_vector(embedding, self.embedding_size)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be a whole number from 1 to {MAX_K}, not {k!r}.")
        with self._reading():
            self._sync()
            self._check_model(self._meta, writing=False)
            index = self._ensure_index()
            fetch = k
            while True:
                fetch = min(fetch, len(index))
                if fetch == 0:
                    return []
                distances, ids = index.search(vector[None], fetch)
                found = [(int(i), float(d)) for i, d in zip(ids[0], distances[0]) if i >= 0]
                names = self._store.names([i for i, _ in found])
                matches = [Match(names[i], i, d) for i, d in found if i in names]
                if per_person:
                    best: dict[str, Match] = {}
                    for m in matches:
                        best.setdefault(m.name, m)
                    matches = list(best.values())
                if len(matches) >= k or fetch >= len(index):
                    return matches[:k]
                fetch *= 4

    def identify(self, embedding: np.ndarray, threshold: float | None = None) -> Match | None:
        """The nearest entry if it is within the threshold (distance <= threshold), else None."""
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold is None or not math.isfinite(threshold):
            raise InvalidInput("identify needs a threshold: pass threshold= here or to Gallery(...).")
        best = self.search(embedding, k=1)
        return best[0] if best and best[0].distance <= threshold else None

    def people(self) -> list[Person]:
        """Everyone enrolled: name, number of entries, first and last enrollment (UTC)."""
        with self._reading():
            rows = self._store.people()
        return sorted((Person(n, c, _when(a), _when(b)) for n, c, a, b in rows),
                      key=lambda p: (p.name.casefold(), p.name))

    def entries(self, name: str | None = None) -> list[Entry]:
        """Every entry (or those of one person: one indexed query), oldest first."""
        name = None if name is None else clean_name(name)
        with self._reading():
            rows = self._store.entries(name)
        return [Entry(i, n, _when(t), m, bool(h)) for i, n, t, m, h in rows]

    def owner(self, entry_id: int) -> str | None:
        """The name an entry is enrolled under, or None when there is no such entry (one
        primary-key lookup)."""
        number = _entry_id(entry_id)
        if number is None:
            return None
        with self._reading():
            return self._store.owner(number)

    def thumbnail(self, entry_id: int) -> bytes | None:
        """The stored PNG of an entry, or None: thumbnails off, none given, no such entry, or a
        stored thumbnail that does not decode as a PNG within the size limits (logged as a
        warning: one bad row must not break a page that shows many)."""
        number = _entry_id(entry_id)
        if number is None:
            return None
        with self._reading():
            png = self._store.thumbnail(number)
        if png is None:
            return None
        try:
            return thumbs.check(png)
        except InvalidInput as exc:
            log.warning("The thumbnail of entry %d is unusable and is not shown: %s", number, exc)
            return None

    def __len__(self) -> int:
        with self._reading():
            return self._store.count()

    def __contains__(self, name: object) -> bool:
        try:
            name = clean_name(name)
        except InvalidInput:
            return False
        with self._reading():
            return self._store.has_person(name)

    @property
    def model_mismatch(self) -> str | None:
        """None when enroll/search work; else the message ModelMismatch would carry."""
        with self._reading():
            self._sync()
            try:
                self._check_model(self._meta, writing=False)
            except ModelMismatch as exc:
                return str(exc)
            return None

    @property
    def stored_model_id(self) -> str | None:
        """The model whose embeddings the gallery holds now (None: not recorded)."""
        with self._reading():
            self._pull()
            return self._meta.get("model_id")

    @property
    def index_kind(self) -> str | None:
        """'flat' or 'ivf' once the index is loaded, else None."""
        index = self._index
        return None if index is None else index.kind

    # -- index maintenance ------------------------------------------------------------------
    def rebuild(self) -> None:
        """Rebuild the FAISS index from SQLite now (and save it)."""
        with self._reading():
            self._sync()
            self._build_from_store()
            self._save(wait=True)

    def save(self) -> None:
        """Save the FAISS index file now (it is a cache: SQLite alone is enough to recover)."""
        with self._reading():
            if self._index is not None:
                self._sync()
                self._save(wait=True)

    def wait(self) -> None:
        """Wait until a background rebuild (if any) has finished."""
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join()

    # -- model upgrades ---------------------------------------------------------------------
    def reembed(self, embed: Callable[[np.ndarray], np.ndarray], model_id: str, *,
                drop_missing: bool = False, batch_size: int = 128,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every entry from its stored thumbnail with a new model; returns how many.

        embed: uint8 crops (N x H x W x 3) -> N embeddings (engine.embed_crops). Entries without
        a thumbnail cannot be re-embedded: refused, unless drop_missing deletes them. One
        transaction: either every entry moves to the new model, or none does. Other writers
        get GalleryBusy meanwhile; searches go on with the old embeddings until it commits."""
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput("reembed needs the new model's id.")
        self.wait()
        with self._write(erase=True) as store:
            conn = store.conn
            total = store.count()
            missing = [r[0] for r in conn.execute(
                "SELECT id FROM entries WHERE id NOT IN (SELECT entry_id FROM thumbnails)")]
            if missing and not drop_missing:
                raise GalleryError(f"{len(missing)} of {total} entries have no thumbnail and cannot be "
                                   "re-embedded: re-enroll them, or drop them (drop_missing=True, "
                                   "--drop-missing).")
            done, new_dim = 0, None
            cursor = conn.execute("SELECT t.entry_id, t.png FROM thumbnails t ORDER BY t.entry_id")
            while rows := cursor.fetchmany(batch_size):
                groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
                for entry_id, png in rows:
                    try:
                        crop = thumbs.decode(png)
                    except InvalidInput as exc:
                        raise GalleryError(f"The thumbnail of entry {entry_id} is unusable ({exc}): remove "
                                           "that entry, then re-embed.") from exc
                    groups.setdefault(crop.shape, []).append((entry_id, crop))
                for members in groups.values():
                    vectors = np.asarray(embed(np.stack([c for _, c in members])))
                    if vectors.ndim != 2 or len(vectors) != len(members):
                        raise GalleryError("The embedding function returned the wrong shape.")
                    new_dim = new_dim or vectors.shape[1]
                    updates = [(vector_bytes(clean_vector(v, new_dim)), model_id, eid)
                               for (eid, _), v in zip(members, vectors)]
                    conn.executemany("UPDATE entries SET embedding = ?, model_id = ? WHERE id = ?", updates)
                    done += len(updates)
                if progress:
                    progress(done, total - len(missing))
            if missing:
                store.delete(missing)
            store.set_meta(model_id=model_id, dim=new_dim or self.embedding_size, epoch=new_epoch())
        self.model_id = model_id
        self.embedding_size = int(new_dim or self.embedding_size)
        self._refresh(drop=True)
        return done

    # -- export and import ------------------------------------------------------------------
    def export(self, path: str | Path, *, thumbnails: bool = True) -> int:
        """Write the whole gallery to one file (an SQLite database); returns how many entries.

        The file holds names, times, embeddings and (unless thumbnails=False) thumbnails: it is
        as private as the gallery itself. Read through its own connection: searches go on."""
        self._open_check()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=0o600)
        try:
            source = Store(self.db_path, readonly=True, timeout=self.busy_timeout)
            try:
                dest = sqlite3.connect(tmp, isolation_level=None)
                try:
                    source.conn.backup(dest)
                    dest.execute("PRAGMA journal_mode = DELETE")   # one self-contained file
                    dest.execute("PRAGMA secure_delete = ON")
                    if not thumbnails:
                        dest.execute("DELETE FROM thumbnails")
                    dest.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('exported', ?)", (repr(time.time()),))
                    dest.execute("VACUUM")
                    count = dest.execute("SELECT count(*) FROM entries").fetchone()[0]
                finally:
                    dest.close()
            finally:
                source.close()
            tmp.replace(path)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise GalleryBusy() from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return int(count)

    def import_from(self, path: str | Path, *, replace: bool = False,
                    max_entries: int = MAX_IMPORT_ENTRIES) -> int:
        """Add every entry of an exported gallery (replace=True: instead of the current ones);
        returns how many.

        The export is not trusted (index/exports.py): it is opened read-only; only real tables
        are read; more than max_entries entries are refused before any is read; every row is
        checked as enroll checks it (name, embedding size, finiteness and length, time, model)
        and every thumbnail is decoded, size-checked and re-encoded by the code that makes
        thumbnails. All or nothing, in one transaction: a file that is not a gallery export,
        or holds one bad row, is refused with InvalidInput naming the problem, and nothing
        changes. A non-empty gallery refuses an export of another model (ModelMismatch); an
        empty one takes the export's model. Searches go on meanwhile; other changes get
        GalleryBusy after busy_timeout."""
        self._open_check()
        with Export(path, max_entries=max_entries) as source:
            src_model, src_dim = source.model_id, source.dim
            with self._write(erase=replace) as store:
                meta = store.meta()
                empty = replace or store.count() == 0
                if not empty and (src_model != meta.get("model_id") or src_dim != self.embedding_size):
                    raise ModelMismatch(
                        f"The export holds embeddings of model {src_model!r}, this gallery those of "
                        f"{meta.get('model_id')!r}: import it into an empty gallery, then run "
                        "`python -m index reembed` there.", stored=meta.get("model_id"), wanted=src_model)
                if replace:
                    store.delete(list(store.ids()))
                count = 0
                for row in source.rows(thumbnails=self.keep_thumbnails):
                    store.insert(row.name, row.enrolled, src_model, vector_bytes(row.vector), row.png)
                    count += 1
                if empty:
                    store.set_meta(model_id=src_model, dim=src_dim, epoch=new_epoch())
        if empty:
            self.embedding_size = src_dim
        self._refresh(drop=empty)
        return count

    # -- internals: reading and writing -----------------------------------------------------
    def _open_check(self) -> None:
        if self._closed:
            raise GalleryError("The gallery is closed.")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The read connection and the in-memory index, for a moment. In WAL mode SQLite never
        makes a reader wait for a writer; should the file still be in rollback-journal mode (it
        could not be switched), a read that meets a writer is GalleryBusy after busy_timeout."""
        with self._lock:
            self._open_check()
            try:
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

    def _same_photo(self, store: Store, name: str, vector: np.ndarray, since: float) -> int | None:
        """(Inside the write transaction.) The newest entry of `name` enrolled since `since`
        whose embedding is within SAME_PHOTO_DISTANCE of `vector`, or None."""
        rows = store.recent(name, since, self.model_id)
        if not rows:
            return None
        try:
            stored = vectors_from([blob for _, blob in rows], self.embedding_size)
        except ValueError:   # embeddings of another size: not this face
            return None
        distances = np.linalg.norm(stored - vector[None], axis=1)
        best = int(np.argmin(distances))
        return int(rows[best][0]) if distances[best] < SAME_PHOTO_DISTANCE else None

    def _refresh(self, *, removed: list[int] | None = None, drop: bool = False) -> None:
        """After this object committed a change: bring the in-memory index (and, after a
        removal, the index file) up to date with SQLite."""
        with self._lock:
            if self._closed:
                return
            try:
                if drop:   # embeddings replaced wholesale (adoption, import into an empty gallery, reembed)
                    self._meta = self._store.meta()
                    self._drop_index()
                if removed:
                    if self._index is None:
                        self._unlink_index()   # the old file still holds those vectors
                    else:
                        self._index.remove(np.asarray(removed, np.int64))
                        self._recount()
                        self._dirty += len(removed)
                self._pull()
                self._after_change(save_now=bool(removed))
            except Exception:  # the change is committed: report success, rebuild the cache later
                log.exception("The gallery index could not take in a change; it will be rebuilt from SQLite.")
                self._drop_index(unlink=False)
                if removed or drop:
                    try:
                        self._unlink_index()
                    except OSError:
                        log.exception("Could not delete the gallery index file.")

    def _unlink_index(self) -> None:
        with self._file_lock(wait=True) as locked:
            if locked:
                self.index_path.unlink(missing_ok=True)
            else:
                log.warning("Could not delete the gallery's index file (another program holds it); "
                            "it will be rewritten or refused later.")

    def _no_such_person(self, name: str, store: Store | None = None) -> str:
        similar = (store or self._store).similar_names(name)
        hint = f" Did you mean {similar[0]!r}?" if similar else ""
        return f"No one named {name!r} is enrolled.{hint}"

    def _check_model(self, meta: dict, *, writing: bool, store: Store | None = None) -> bool:
        """Raise ModelMismatch unless the stored embeddings are this caller's model's; when
        writing into an empty gallery, adopt the caller's model instead (returns True). An empty
        gallery never mismatches a reader."""
        stored = meta.get("model_id")
        stored_dim = int(meta.get("dim") or self.embedding_size)
        if stored == self.model_id and stored_dim == self.embedding_size:
            return False
        store = store or self._store
        if store.count() == 0:
            if not writing:
                return False
            store.set_meta(model_id=self.model_id, dim=self.embedding_size, epoch=new_epoch())  # (in the transaction)
            return True
        if stored == self.model_id:
            problem = f"holds {stored_dim}-number embeddings, not {self.embedding_size}"
        else:
            problem = (f"holds embeddings of model {stored!r}" if stored else "holds embeddings of an unrecorded model")
            problem += f", not of {self.model_id!r}" if self.model_id else ""
        raise ModelMismatch(f"This gallery {problem}: they cannot be compared. Re-embed it from its "
                            "thumbnails with `python -m index reembed` (or use a new gallery).",
                            stored=stored, wanted=self.model_id)

    # -- internals: consistency between SQLite and the index --------------------------------
    def _pull(self) -> bool:
        """Catch up with commits made by other connections (threads, processes, Gallery
        objects); True when there were any."""
        version = self._store.data_version()
        if version == self._seen_version:
            return False
        self._seen_version = version
        self._meta = self._store.meta()
        if self._index is not None and self._meta.get("epoch") != self._index_epoch:
            self._drop_index(unlink=False)  # embeddings were replaced wholesale elsewhere
        self._catch_up()
        return True

    def _sync(self) -> None:
        if self._pull():
            self._after_change()

    def _catch_up(self, *, full: bool = False) -> None:
        """Bring the in-memory index to SQLite's ids: the new ones (ids only grow, so those
        above the highest known: one indexed query), then, when something was deleted since
        (meta 'removals' moved) or full=True, a comparison of (count, id sum) fingerprints and
        the full reconciliation if they differ. So an enrollment, here or elsewhere, costs
        O(new entries), not O(gallery)."""
        if self._index is None:
            return
        removals = self._meta.get("removals")
        ids, vectors = self._store.vectors(self.embedding_size, after=self._max_id)
        if len(ids):
            self._add_to_index(ids, vectors)
        if full or removals != self._index_removals:
            if self._store.count_sum() != (self._n, self._sum):
                self._reconcile()
            self._index_removals = removals

    def _reconcile(self) -> None:
        """Make the index hold exactly SQLite's ids: add the missing, remove the extra."""
        index = self._index
        with self._store.snapshot():
            stored = self._store.ids()
            present = index.ids()
            missing = np.setdiff1d(stored, present, assume_unique=True)
            extra = np.setdiff1d(present, stored, assume_unique=True)
            ids, vectors = (self._store.vectors(self.embedding_size, ids=missing) if missing.size
                            else (np.zeros(0, np.int64), None))
        if extra.size:
            index.remove(extra)
            self._dirty += len(extra)
        if ids.size:
            index.add(ids, vectors)
            self._dirty += len(ids)
        self._recount()

    def _recount(self) -> None:
        ids = self._index.ids()
        self._n, self._sum = int(ids.size), int(ids.sum()) if ids.size else 0
        self._max_id = max(self._max_id, int(ids.max()) if ids.size else 0)

    def _add_to_index(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add(ids, vectors)
        self._n += len(ids)
        self._sum += int(np.sum(ids))
        self._max_id = max(self._max_id, int(np.max(ids)))
        self._dirty += len(ids)

    def _after_change(self, *, save_now: bool = False) -> None:
        if self._index is None:
            return
        if self._needs_rebuild():
            self._schedule_rebuild()
        if save_now or self._erase_due or self._dirty >= max(self.save_every, self._n // 10):
            self._save(wait=save_now)   # after a removal the file must lose those vectors now

    def _needs_rebuild(self) -> bool:
        index = self._index
        kind = choose_kind(len(index), self.exact_limit, index.kind)
        if kind != index.kind:
            return True
        return kind == "ivf" and len(index) > self.exact_limit and len(index) > 8 * max(index.trained_on, 1)

    def _ensure_index(self) -> VectorIndex:
        """The in-memory index: loaded from its file when that checks out, else built from SQLite."""
        if self._index is not None:
            return self._index
        meta = self._meta
        try:
            index, stamp = VectorIndex.load(self.index_path)
            if stamp.get("epoch") != meta.get("epoch") or stamp.get("model_id") != meta.get("model_id") \
                    or index.dim != self.embedding_size:
                raise IndexFileError("the index file belongs to older embeddings")
        except IndexFileError as exc:
            if self.index_path.exists():
                log.warning("Rebuilding the gallery index from SQLite: %s.", exc)
            self._build_from_store()
            self._save(wait=False)
            return self._index
        self._install(index, meta.get("epoch"), None)
        if self.nprobe:
            index.nprobe = self.nprobe
        self._dirty = 0
        self._catch_up(full=True)   # a stale file (say, after kill -9) only lacks the latest changes
        self._after_change()
        return self._index

    def _install(self, index: VectorIndex, epoch: str | None, removals: str | None) -> None:
        self._index, self._index_epoch, self._max_id = index, epoch, 0
        self._index_removals = removals
        self._recount()

    def _build_from_store(self, store: Store | None = None) -> tuple[VectorIndex, str | None, str | None]:
        """Build an index from SQLite; installed unless built on another connection (`store`,
        for the background thread, which installs it itself)."""
        source = store or self._store
        with source.snapshot():
            meta = source.meta()
            epoch, removals = meta.get("epoch"), meta.get("removals")
            ids, vectors = source.vectors(self.embedding_size)
        current = self._index.kind if self._index is not None else None
        kind = choose_kind(len(ids), self.exact_limit, current)
        if kind == "ivf" and len(ids) < 2:
            kind = "flat"
        index = VectorIndex.build(kind, self.embedding_size, ids, vectors, nprobe=self.nprobe)
        if store is None:
            self._install(index, epoch, removals)
            self._dirty = max(self._dirty, 1)
        return index, epoch, removals

    def _schedule_rebuild(self) -> None:
        if not self.background:
            self._build_from_store()
            return
        if self._rebuilder is not None and self._rebuilder.is_alive():
            return
        self._rebuilder = threading.Thread(target=self._rebuild_in_background, name="gallery-rebuild", daemon=True)
        self._rebuilder.start()

    def _rebuild_in_background(self) -> None:
        try:
            reader = Store(self.db_path, readonly=True, timeout=self.busy_timeout)
            try:
                index, epoch, removals = self._build_from_store(reader)
            finally:
                reader.close()
            with self._lock:
                if self._closed:
                    return
                self._pull()
                if epoch != self._meta.get("epoch") or self._index is None:
                    return  # replaced wholesale meanwhile: the next search builds afresh
                self._install(index, epoch, removals)
                self._reconcile()   # what was enrolled or removed while it was being built
                self._dirty = max(self._dirty, 1)
                self._save(wait=False)
        except Exception:
            log.exception("Background rebuild of the gallery index failed; the old index stays in use.")

    def _drop_index(self, unlink: bool = True) -> None:
        self._index, self._index_epoch = None, None
        self._n = self._sum = self._max_id = 0
        self._dirty = 0
        if unlink:
            self._unlink_index()   # (a stale file would be refused anyway: its epoch differs)

    def _save(self, *, wait: bool) -> None:
        """Write the index file. Under a lock shared with other processes, and only after taking
        in their commits: no process can write back vectors another one has just deleted.
        wait=False (searches, routine saves): when another process holds the file, skip; the
        index stays dirty and is saved later. wait=True (after a removal, save(), rebuild(),
        and close() while a removal is still unsaved): wait for it, at most busy_timeout."""
        if self._index is None:
            return
        try:
            with self._file_lock(wait=wait) as locked:
                if not locked:
                    if wait:
                        self._erase_due = True
                        log.warning("Could not save the gallery index: another program holds its file. "
                                    "It will be saved at the next change.")
                    return
                self._pull()
                if self._index is None:
                    return
                self._index.save(self.index_path, {"model_id": self._meta.get("model_id"),
                                                   "epoch": self._index_epoch, "saved": time.time()})
            self._dirty = 0
            self._erase_due = False
        except OSError:
            log.exception("Could not save the gallery index (SQLite holds everything; it will be rebuilt).")

    @contextmanager
    def _file_lock(self, *, wait: bool) -> Iterator[bool]:
        """An advisory lock between processes around writing or deleting the index file; yields
        whether it was obtained. wait=False: only if free now; wait=True: waiting at most
        busy_timeout (never forever: a hung process must not hang this one)."""
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
