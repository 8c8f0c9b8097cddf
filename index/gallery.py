"""Gallery: one-shot enrollments in SQLite (the truth) with a FAISS index (a rebuildable cache).

    g = Gallery("data/gallery", model_id=engine.model_id, threshold=engine.threshold)
    entry = g.enroll("Ada Lovelace", face.embedding, thumbnail=face.crop)
    g.search(face.embedding, k=5)   -> [Match(name, entry_id, distance)], nearest first
    g.identify(face.embedding)      -> Match | None (None when nothing is within the threshold)

Knows nothing of images beyond storing a thumbnail: embeddings come from the caller.
Thread-safe (one lock per Gallery); several Gallery objects or processes may share a
directory: each notices the others' commits (SQLite data_version) before it answers.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import unicodedata
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
from .errors import GalleryError, InvalidInput, ModelMismatch, NotFound
from .store import Store, new_epoch, vector_bytes
from .vectors import IndexFileError, VectorIndex, choose_kind, remove_stale_temporaries

log = logging.getLogger(__name__)

DB_NAME = "gallery.db"
INDEX_NAME = "vectors.index"
DEFAULT_EMBEDDING_SIZE = 128
MAX_NAME_LENGTH = 100
MAX_K = 1000
DEFAULT_EXACT_LIMIT = 50_000    # exact search below (about 1 ms a query), IVF above
_BANNED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, surrogates, unassigned, line breaks


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


def clean_name(name: object) -> str:
    """The stored form of a name: NFC text without surrounding space. Raises InvalidInput."""
    if not isinstance(name, str):
        raise InvalidInput(f"A name must be text, not {type(name).__name__}.")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidInput("The name is empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"The name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}.")
    if any(unicodedata.category(c) in _BANNED_CATEGORIES for c in name):
        raise InvalidInput("The name contains control characters, line breaks or invalid characters.")
    return name


def clean_vector(embedding: object, dim: int) -> np.ndarray:
    """A float32 unit vector of length dim. Raises InvalidInput for anything else."""
    try:
        vector = np.asarray(embedding, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("An embedding must be a vector of numbers.") from exc
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1:
        raise InvalidInput(f"An embedding must be one vector, not an array of shape {vector.shape}.")
    if vector.size != dim:
        raise InvalidInput(f"An embedding must have {dim} numbers (the size this gallery's model makes), "
                           f"not {vector.size}.")
    if not np.isfinite(vector).all():
        raise InvalidInput("The embedding contains NaN or infinite values.")
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise InvalidInput("The embedding is a zero vector: it has no direction to compare.")
    return (vector / norm).astype(np.float32)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc)


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
    """

    def __init__(self, directory: str | Path, model_id: str | None = None, *, threshold: float | None = None,
                 embedding_size: int | None = None, thumbnails: bool = True,
                 exact_limit: int = DEFAULT_EXACT_LIMIT, nprobe: int | None = None,
                 save_every: int = 1000, background: bool = True):
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
        self._lock = threading.RLock()
        self._store = Store(self.db_path)
        self._index: VectorIndex | None = None
        self._index_epoch: str | None = None
        self._n = self._sum = self._max_id = 0     # what the in-memory index holds
        self._dirty = 0                            # changes since the index file was saved
        self._rebuilder: threading.Thread | None = None
        self._closed = False
        remove_stale_temporaries(self.index_path)
        meta = self._store.meta()
        if self._adoption(meta, model_id, embedding_size):
            with self._store.transaction():  # an empty gallery takes this caller's model and size
                meta = self._store.meta()
                updates = self._adoption(meta, model_id, embedding_size)
                if updates:
                    self._store.set_meta(**updates, epoch=new_epoch())
            meta = self._store.meta()
        self.model_id = model_id if model_id is not None else meta.get("model_id")
        self.embedding_size = int(embedding_size or meta.get("dim") or DEFAULT_EMBEDDING_SIZE)
        self._meta = meta
        self._seen_version = self._store.data_version()

    def _adoption(self, meta: dict, model_id: str | None, embedding_size: int | None) -> dict:
        """What an empty gallery should take from its new user: model id and embedding size."""
        updates: dict = {}
        if self._store.count():
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
        """Wait for a background rebuild, save the index if it changed, close SQLite."""
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join()
        with self._lock:
            if self._closed:
                return
            try:
                if self._index is not None:
                    self._pull()
                    if self._dirty:
                        self._save()
            finally:
                self._closed = True
                self._store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.directory)!r}, model_id={self.model_id!r})"

    # -- writing ----------------------------------------------------------------------------
    def enroll(self, name: str, embedding: np.ndarray, thumbnail: np.ndarray | bytes | None = None) -> int:
        """Store one face of `name`; returns its entry id. Durable when it returns.

        Raises InvalidInput (a ValueError) for a bad name, embedding or thumbnail, and
        ModelMismatch when the gallery holds another model's embeddings; nothing is stored then.
        """
        name = clean_name(name)
        vector = clean_vector(embedding, self.embedding_size)
        png = thumbs.encode(thumbnail) if (thumbnail is not None and self.keep_thumbnails) else None
        with self._lock:
            self._open_check()
            self._sync()
            with self._store.transaction():
                adopted = self._check_model(self._store.meta(), writing=True)
                entry_id = self._store.insert(name, time.time(), self.model_id, vector_bytes(vector), png)
            if adopted:  # the gallery was empty and took this model: start a fresh index
                self._meta = self._store.meta()
                self._drop_index()
            if self._index is not None:
                try:
                    self._add_to_index(np.array([entry_id]), vector[None])
                except Exception:  # the entry is safe in SQLite; the index will be rebuilt
                    log.exception("could not add entry %d to the index; it will be rebuilt", entry_id)
                    self._index = None
                else:
                    self._after_change()
            return entry_id

    def remove_entry(self, entry_id: int) -> None:
        """Delete one entry, its vector and its thumbnail, for good. NotFound if there is none."""
        with self._lock:
            self._open_check()
            self._sync()
            with self._store.transaction():
                if not self._store.delete([int(entry_id)]):
                    raise NotFound(f"There is no entry {entry_id}.")
            self._removed([int(entry_id)])

    def remove_person(self, name: str) -> int:
        """Delete every entry of `name` (vectors and thumbnails, for good); returns how many."""
        name = clean_name(name)
        with self._lock:
            self._open_check()
            self._sync()
            with self._store.transaction():
                ids = self._store.person_ids(name)
                if not ids:
                    raise NotFound(self._no_such_person(name))
                self._store.delete(ids)
            self._removed(ids)
            return len(ids)

    def rename_person(self, old: str, new: str, *, merge: bool = False) -> int:
        """Rename a person (all their entries); returns how many entries. Renaming onto a name
        already enrolled merges the two only with merge=True."""
        old, new = clean_name(old), clean_name(new)
        with self._lock:
            self._open_check()
            with self._store.transaction():
                if not self._store.has_person(old):
                    raise NotFound(self._no_such_person(old))
                if old != new and self._store.has_person(new) and not merge:
                    raise InvalidInput(f"{new!r} is already enrolled; pass merge=True to merge the two.")
                return self._store.rename(old, new)

    def vacuum(self) -> None:
        """Rebuild the SQLite file from scratch (VACUUM). Removal already zeroes deleted data and
        returns freed pages to the file system; this also compacts what remains."""
        with self._lock:
            self._open_check()
            self._store.vacuum()

    # -- reading ----------------------------------------------------------------------------
    def search(self, embedding: np.ndarray, k: int = 5, *, per_person: bool = False) -> list[Match]:
        """The k nearest entries, nearest first (per_person: the nearest entry of each of the
        k nearest people). Approximate above exact_limit entries."""
        vector = clean_vector(embedding, self.embedding_size)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be a whole number from 1 to {MAX_K}, not {k!r}.")
        with self._lock:
            self._open_check()
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
        with self._lock:
            self._open_check()
            rows = self._store.people()
        return sorted((Person(n, c, _when(a), _when(b)) for n, c, a, b in rows),
                      key=lambda p: (p.name.casefold(), p.name))

    def entries(self, name: str | None = None) -> list[Entry]:
        """Every entry (or those of one person), oldest first."""
        with self._lock:
            self._open_check()
            rows = self._store.entries(None if name is None else clean_name(name))
        return [Entry(i, n, _when(t), m, bool(h)) for i, n, t, m, h in rows]

    def owner(self, entry_id: int) -> str | None:
        """The name an entry is enrolled under, or None when there is no such entry."""
        with self._lock:
            self._open_check()
            return self._store.names([int(entry_id)]).get(int(entry_id))

    def thumbnail(self, entry_id: int) -> bytes | None:
        """The stored PNG of an entry, or None (thumbnails off, or none given)."""
        with self._lock:
            self._open_check()
            return self._store.thumbnail(entry_id)

    def __len__(self) -> int:
        with self._lock:
            self._open_check()
            return self._store.count()

    def __contains__(self, name: object) -> bool:
        try:
            name = clean_name(name)
        except InvalidInput:
            return False
        with self._lock:
            self._open_check()
            return self._store.has_person(name)

    @property
    def model_mismatch(self) -> str | None:
        """None when enroll/search work; else the message ModelMismatch would carry."""
        with self._lock:
            self._open_check()
            self._sync()
            try:
                self._check_model(self._meta, writing=False)
            except ModelMismatch as exc:
                return str(exc)
            return None

    @property
    def index_kind(self) -> str | None:
        """'flat' or 'ivf' once the index is loaded, else None."""
        index = self._index
        return None if index is None else index.kind

    # -- index maintenance ------------------------------------------------------------------
    def rebuild(self) -> None:
        """Rebuild the FAISS index from SQLite now (and save it)."""
        with self._lock:
            self._open_check()
            self._sync()
            self._build_from_store()
            self._save()

    def save(self) -> None:
        """Save the FAISS index file now (it is a cache: SQLite alone is enough to recover)."""
        with self._lock:
            self._open_check()
            if self._index is not None:
                self._sync()
                self._save()

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
        wait meanwhile."""
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput("reembed needs the new model's id.")
        self.wait()
        with self._lock:
            self._open_check()
            with self._store.transaction() as conn:
                total = self._store.count()
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
                        crop = thumbs.decode(png)
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
                    self._store.delete(missing)
                self._store.set_meta(model_id=model_id, dim=new_dim or self.embedding_size, epoch=new_epoch())
            self.model_id = model_id
            self.embedding_size = int(new_dim or self.embedding_size)
            self._meta = self._store.meta()
            self._drop_index()
            return done

    # -- export and import ------------------------------------------------------------------
    def export(self, path: str | Path, *, thumbnails: bool = True) -> int:
        """Write the whole gallery to one file (an SQLite database); returns how many entries.

        The file holds names, times, embeddings and (unless thumbnails=False) thumbnails: it is
        as private as the gallery itself."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with self._lock:
            self._open_check()
            tmp.unlink(missing_ok=True)
            tmp.touch(mode=0o600)
            try:
                dest = sqlite3.connect(tmp, isolation_level=None)
                try:
                    self._store.conn.backup(dest)
                    dest.execute("PRAGMA secure_delete = ON")
                    if not thumbnails:
                        dest.execute("DELETE FROM thumbnails")
                    dest.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('exported', ?)", (repr(time.time()),))
                    dest.execute("VACUUM")
                    count = dest.execute("SELECT count(*) FROM entries").fetchone()[0]
                finally:
                    dest.close()
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        return int(count)

    def import_from(self, path: str | Path, *, replace: bool = False) -> int:
        """Add every entry of an exported gallery (replace=True: instead of the current ones).

        All or nothing: a file that is not a gallery export, or holds a bad name or embedding,
        is refused with InvalidInput and nothing changes. A non-empty gallery refuses an export
        of another model (ModelMismatch); an empty one takes the export's model."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file.")
        try:
            source = Store(path, readonly=True)
        except GalleryError as exc:
            raise InvalidInput(f"{path} is not a Twin gallery export.") from exc
        try:
            try:
                src_meta = source.meta()
                src_model = src_meta.get("model_id")
                src_dim = int(src_meta.get("dim") or DEFAULT_EMBEDDING_SIZE)
                rows = source.conn.execute(
                    "SELECT e.name, e.enrolled, e.embedding, t.png FROM entries e "
                    "LEFT JOIN thumbnails t ON t.entry_id = e.id ORDER BY e.id")
            except Exception as exc:
                raise InvalidInput(f"{path} is not a readable Twin gallery export ({exc}).") from exc
            with self._lock:
                self._open_check()
                self._sync()
                with self._store.transaction():
                    meta = self._store.meta()
                    empty = replace or self._store.count() == 0
                    if not empty and (src_model != meta.get("model_id") or src_dim != self.embedding_size):
                        raise ModelMismatch(
                            f"The export holds embeddings of model {src_model!r}, this gallery those of "
                            f"{meta.get('model_id')!r}: import it into an empty gallery, then run "
                            "`python -m index reembed` there.", stored=meta.get("model_id"), wanted=src_model)
                    if replace:
                        self._store.delete(list(self._store.ids()))
                    count = 0
                    try:
                        for name, enrolled, blob, png in rows:
                            clean = clean_name(name)
                            vector = clean_vector(np.frombuffer(blob, dtype="<f4"), src_dim)
                            if png is not None and not bytes(png).startswith(thumbs.PNG_SIGNATURE):
                                raise InvalidInput("a thumbnail is not a PNG")
                            self._store.insert(clean, float(enrolled), src_model, vector_bytes(vector),
                                               bytes(png) if (png is not None and self.keep_thumbnails) else None)
                            count += 1
                    except (InvalidInput, TypeError, ValueError, sqlite3.DatabaseError) as exc:
                        raise InvalidInput(f"{path} holds an entry the gallery refuses ({exc}); "
                                           "nothing was imported.") from exc
                    if empty:
                        self._store.set_meta(model_id=src_model, dim=src_dim, epoch=new_epoch())
                self._meta = self._store.meta()
                if empty:
                    self.embedding_size = src_dim
                    self._drop_index()
                else:
                    self._catch_up()
                    self._after_change()
                return count
        finally:
            source.close()

    # -- internals: consistency between SQLite and the index --------------------------------
    def _open_check(self) -> None:
        if self._closed:
            raise GalleryError("The gallery is closed.")

    def _no_such_person(self, name: str) -> str:
        similar = self._store.similar_names(name)
        hint = f" Did you mean {similar[0]!r}?" if similar else ""
        return f"No one named {name!r} is enrolled.{hint}"

    def _check_model(self, meta: dict, *, writing: bool) -> bool:
        """Raise ModelMismatch unless the stored embeddings are this caller's model's; when
        writing into an empty gallery, adopt the caller's model instead (returns True)."""
        stored = meta.get("model_id")
        stored_dim = int(meta.get("dim") or self.embedding_size)
        if stored == self.model_id and stored_dim == self.embedding_size:
            return False
        if writing and self._store.count() == 0:  # (inside the write transaction)
            self._store.set_meta(model_id=self.model_id, dim=self.embedding_size, epoch=new_epoch())
            return True
        if stored == self.model_id:
            problem = f"holds {stored_dim}-number embeddings, not {self.embedding_size}"
        else:
            problem = (f"holds embeddings of model {stored!r}" if stored else "holds embeddings of an unrecorded model")
            problem += f", not of {self.model_id!r}" if self.model_id else ""
        raise ModelMismatch(f"This gallery {problem}: they cannot be compared. Re-embed it from its "
                            "thumbnails with `python -m index reembed` (or use a new gallery).",
                            stored=stored, wanted=self.model_id)

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

    def _catch_up(self) -> None:
        """Bring the in-memory index to SQLite's ids: the new ones first (cheap), then a full
        comparison if the (count, id sum) fingerprints still differ."""
        if self._index is None:
            return
        count, total = self._store.count_sum()
        if (count, total) == (self._n, self._sum):
            return
        ids, vectors = self._store.vectors(self.embedding_size, after=self._max_id)
        if len(ids):
            self._add_to_index(ids, vectors)
        if self._store.count_sum() != (self._n, self._sum):
            self._reconcile()

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

    def _removed(self, ids: list[int]) -> None:
        """After a deletion: drop the vectors from memory and from disk at once (privacy)."""
        if self._index is None:
            with self._file_lock():
                self.index_path.unlink(missing_ok=True)  # the old file still holds those vectors
            return
        self._index.remove(np.asarray(ids, np.int64))
        self._recount()
        self._dirty += len(ids)
        self._after_change(save_now=True)

    def _after_change(self, *, save_now: bool = False) -> None:
        if self._index is None:
            return
        if self._needs_rebuild():
            self._schedule_rebuild()
        if save_now or self._dirty >= max(self.save_every, self._n // 10):
            self._save()

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
            self._save()
            return self._index
        self._install(index, meta.get("epoch"))
        if self.nprobe:
            index.nprobe = self.nprobe
        self._dirty = 0
        self._catch_up()      # a stale file (say, after kill -9) only lacks the latest changes
        self._after_change()
        return self._index

    def _install(self, index: VectorIndex, epoch: str | None) -> None:
        self._index, self._index_epoch, self._max_id = index, epoch, 0
        self._recount()

    def _build_from_store(self, store: Store | None = None) -> tuple[VectorIndex, str | None]:
        """Build an index from SQLite; installed unless built on another connection (`store`,
        for the background thread, which installs it itself)."""
        source = store or self._store
        with source.snapshot():
            epoch = source.meta().get("epoch")
            ids, vectors = source.vectors(self.embedding_size)
        current = self._index.kind if self._index is not None else None
        kind = choose_kind(len(ids), self.exact_limit, current)
        if kind == "ivf" and len(ids) < 2:
            kind = "flat"
        index = VectorIndex.build(kind, self.embedding_size, ids, vectors, nprobe=self.nprobe)
        if store is None:
            self._install(index, epoch)
            self._dirty = max(self._dirty, 1)
        return index, epoch

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
            reader = Store(self.db_path, readonly=True)
            try:
                index, epoch = self._build_from_store(reader)
            finally:
                reader.close()
            with self._lock:
                if self._closed:
                    return
                self._pull()
                if epoch != self._meta.get("epoch") or self._index is None:
                    return  # replaced wholesale meanwhile: the next search builds afresh
                self._install(index, epoch)
                self._reconcile()   # what was enrolled or removed while it was being built
                self._save()
        except Exception:
            log.exception("Background rebuild of the gallery index failed; the old index stays in use.")

    def _drop_index(self, unlink: bool = True) -> None:
        self._index, self._index_epoch = None, None
        self._n = self._sum = self._max_id = 0
        self._dirty = 0
        if unlink:
            with self._file_lock():
                self.index_path.unlink(missing_ok=True)

    def _save(self) -> None:
        """Write the index file. Under a lock shared with other processes, and only after taking
        in their commits: no process can write back vectors another one has just deleted."""
        if self._index is None:
            return
        try:
            with self._file_lock():
                self._pull()
                if self._index is None:
                    return
                self._index.save(self.index_path, {"model_id": self._meta.get("model_id"),
                                                   "epoch": self._index_epoch, "saved": time.time()})
            self._dirty = 0
        except OSError:
            log.exception("Could not save the gallery index (SQLite holds everything; it will be rebuilt).")

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An advisory lock between processes around writing or deleting the index file."""
        if fcntl is None:
            yield
            return
        fd = os.open(self.directory / ".index.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
