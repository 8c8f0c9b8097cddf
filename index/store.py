"""SQLite: the gallery's source of truth (entries, names, times, model id, embeddings, thumbnails).

Durability, concurrency and privacy settings, chosen once here:
- every write is one transaction (BEGIN IMMEDIATE ... COMMIT) with synchronous=FULL in WAL
  mode: a commit that returned survives kill -9 and power loss; a write cut short leaves
  nothing (its frames are never committed to the log);
- WAL: readers never wait for a writer (a search goes on while another process imports a
  100,000 entries), and a writer waits for another writer at most `timeout` seconds, then
  GalleryBusy (nothing changed; try again);
- ids are AUTOINCREMENT, never reused: an id in a stale FAISS file can never point at
  someone enrolled later;
- secure_delete=ON overwrites deleted rows with zeros and auto_vacuum=FULL gives freed pages
  back to the file system; after a deletion the log is checkpointed into the database and
  truncated to zero bytes (`checkpoint`), so deleted embeddings and thumbnails linger neither
  in the database nor in the -wal file (`vacuum()` rebuilds the file completely).

Every SQL statement on a gallery's database is in this file (the folder store,
index/stores/faiss_store.py, calls it; exports.py reads foreign export files with its own,
guarded SQL). It is a little over 350 lines for that reason: one place to read for the schema,
the locking and every query.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .checks import name_key
from .errors import GalleryBusy, GalleryCorrupt, GalleryError

log = logging.getLogger(__name__)

APPLICATION_ID = 0x5457494E  # "TWIN" in the SQLite header: marks gallery files and exports
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0  # how long a change waits for another writer before GalleryBusy
CHECKPOINT_TIMEOUT_S = 2.0  # how long a checkpoint after a deletion waits for readers
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS entries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL CHECK (length(name) > 0),
    enrolled  REAL NOT NULL,
    model_id  TEXT,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_name ON entries (name);
CREATE TABLE IF NOT EXISTS thumbnails (
    entry_id INTEGER PRIMARY KEY REFERENCES entries (id) ON DELETE CASCADE,
    png      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS name_keys (
    name TEXT PRIMARY KEY,
    key  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS name_keys_by_key ON name_keys (key);
"""
#: name_keys: every enrolled name and its confusable skeleton (checks.name_key), so "is a name
#: that looks like this one enrolled?" is one indexed lookup however many people there are.
#: Galleries made before it get the table (filled from their names) when first opened.
NAME_KEYS = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS name_keys") :]


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked / busy" errors (another connection holds a lock)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def read_only_uri(path: str | Path) -> str:
    """A `file:` URI that opens `path` read-only (any character in the path is escaped)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def new_epoch() -> str:
    """A fresh token for meta 'epoch': changes whenever embeddings are replaced wholesale."""
    return uuid.uuid4().hex


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def vectors_from(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class Store:
    """One SQLite connection to a gallery database. Not thread-safe: the Gallery serialises.

    timeout: how long a statement waits for a lock another connection holds (in WAL mode only
    writers and checkpoints ever wait); past it, a write transaction raises GalleryBusy."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = float(timeout)
        try:
            if readonly:
                self.conn = sqlite3.connect(
                    read_only_uri(self.path),
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                self.conn = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA secure_delete = ON")
            if not readonly:
                self.conn.execute("PRAGMA synchronous = FULL")
                self._create()
            self._check()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            if is_busy(exc):
                raise GalleryBusy() from exc
            raise GalleryCorrupt(f"{self.path} is not a readable gallery database ({exc}).") from exc
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self.conn.close()

    # -- schema -----------------------------------------------------------------------------
    def _create(self) -> None:
        conn = self.conn
        if conn.execute("PRAGMA application_id").fetchone()[0] not in (0, APPLICATION_ID):
            raise GalleryCorrupt(f"{self.path} is an SQLite database of some other program.")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables == 0:
                conn.execute("PRAGMA auto_vacuum = FULL")  # only takes effect before the first table
        self._use_wal()
        if conn.execute("PRAGMA user_version").fetchone()[0] != 0:
            self._add_name_keys()  # an existing gallery: no write needed to open it (once it has them)
            return
        with self.transaction():
            if conn.execute("PRAGMA application_id").fetchone()[0] not in (0, APPLICATION_ID):
                raise GalleryCorrupt(f"{self.path} is an SQLite database of some other program.")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):  # not executescript: it would commit first
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("epoch", new_epoch()), ("created", repr(time.time()))],
                )

    def _add_name_keys(self) -> None:
        """Give a gallery made before name_keys existed its table, filled from its names."""
        if self._has_name_keys():
            return
        with self.transaction():
            if self._has_name_keys():
                return
            for statement in NAME_KEYS.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            names = [r[0] for r in self.conn.execute("SELECT DISTINCT name FROM entries")]
            self.conn.executemany(
                "INSERT OR IGNORE INTO name_keys (name, key) VALUES (?, ?)", [(n, name_key(n)) for n in names]
            )

    def _has_name_keys(self) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'name_keys'").fetchone()
            is not None
        )

    def _use_wal(self) -> None:
        """Switch the file to WAL (once; it is stored in the file). When another program holds
        it open in the old mode the switch waits `timeout`, then the gallery works on in the
        rollback-journal mode (correct, but then readers wait while another process writes)."""
        conn = self.conn
        conn.execute("PRAGMA journal_size_limit = 0")  # a reset log is cut back to nothing
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            mode = "busy"
        if mode != "wal":
            log.warning(
                "%s stays in rollback-journal mode for now (%s): readers may wait for writers.", self.path, mode
            )

    def _check(self) -> None:
        app, version = (
            self.conn.execute("PRAGMA application_id").fetchone()[0],
            self.conn.execute("PRAGMA user_version").fetchone()[0],
        )
        if app != APPLICATION_ID:
            raise GalleryCorrupt(f"{self.path} is not a Twin gallery.")
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path} was written by a newer version of Twin (schema {version}); "
                f"this one reads schema {SCHEMA_VERSION}."
            )

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: takes the write lock at once (waiting at most `timeout` for
        another writer, then GalleryBusy); commits, or rolls back on error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise GalleryBusy() from exc
            raise
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees the same state."""
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database file and truncate the log to zero bytes
        (after a deletion: the deleted rows then exist nowhere, not even as old log frames).
        False when a reader or a writer kept it from completing; it can be retried."""
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(1000 * min(self.timeout, CHECKPOINT_TIMEOUT_S))}")
            try:
                busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {int(1000 * self.timeout)}")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return False
            raise
        return busy == 0

    def data_version(self) -> int:
        """Changes when another connection (thread or process) committed something."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- meta -------------------------------------------------------------------------------
    def meta(self) -> dict[str, str | None]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, **values: Any) -> None:
        self.conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(k, None if v is None else str(v)) for k, v in values.items()],
        )

    # -- entries ----------------------------------------------------------------------------
    def insert(
        self,
        name: str,
        enrolled: float,
        model_id: str | None,
        embedding: bytes,
        png: bytes | None,
        *,
        entry_id: int | None = None,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO entries (id, name, enrolled, model_id, embedding) VALUES (?, ?, ?, ?, ?)",
            (entry_id, name, enrolled, model_id, embedding),
        )
        new_id = int(cur.lastrowid or 0)
        self.conn.execute("INSERT OR IGNORE INTO name_keys (name, key) VALUES (?, ?)", (name, name_key(name)))
        if png is not None:
            self.conn.execute("INSERT INTO thumbnails (entry_id, png) VALUES (?, ?)", (new_id, png))
        return new_id

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def count_sum(self) -> tuple[int, int]:
        """(number of entries, sum of their ids): a cheap fingerprint of the id set."""
        n, total = self.conn.execute("SELECT count(*), coalesce(sum(id), 0) FROM entries").fetchone()
        return int(n), int(total)

    def ids(self) -> np.ndarray:
        rows = self.conn.execute("SELECT id FROM entries ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(
        self, dim: int, *, ids: np.ndarray | None = None, after: int | None = None, chunk: int = 50_000
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, embeddings) of all entries, of the given ids, or of those with id > after."""
        if ids is not None:
            found_ids, blobs = [], []
            wanted = [int(i) for i in ids]
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                rows = self.conn.execute(
                    f"SELECT id, embedding FROM entries WHERE id IN ({','.join('?' * len(part))})", part
                ).fetchall()
                found_ids += [r[0] for r in rows]
                blobs += [r[1] for r in rows]
            return np.asarray(found_ids, np.int64), vectors_from(blobs, dim)
        cur = self.conn.execute(
            "SELECT id, embedding FROM entries WHERE id > ? ORDER BY id", (-1 if after is None else int(after),)
        )
        id_parts, vec_parts = [], []
        while rows := cur.fetchmany(chunk):
            id_parts.append(np.fromiter((r[0] for r in rows), np.int64, count=len(rows)))
            vec_parts.append(vectors_from([r[1] for r in rows], dim))
        if not id_parts:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    def names(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT id, name FROM entries WHERE id IN ({','.join('?' * len(ids))})", [int(i) for i in ids]
        ).fetchall()
        return dict(rows)

    def count_people(self) -> int:
        """How many people (distinct names): read from the name index, no row is fetched."""
        return int(self.conn.execute("SELECT count(DISTINCT name) FROM entries").fetchone()[0])

    def people(self) -> list[tuple[str, int, float, float]]:
        return self.conn.execute(
            "SELECT name, count(*), min(enrolled), max(enrolled) FROM entries GROUP BY name"
        ).fetchall()

    def people_page(self, start: str, offset: int, limit: int) -> list[tuple[str, int, float, float]]:
        """One page of people in name order (code points), from the first name >= `start`:
        the page's names are read from the name_keys index (skipping `offset` of them costs
        an index walk, no row), then only their entries are summed up."""
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM name_keys WHERE name >= ? ORDER BY name LIMIT ? OFFSET ?",
                (start, int(limit), int(offset)),
            )
        ]
        if not names:
            return []
        rows = self.conn.execute(
            "SELECT name, count(*), min(enrolled), max(enrolled) FROM entries "
            f"WHERE name IN ({','.join('?' * len(names))}) GROUP BY name ORDER BY name",
            names,
        ).fetchall()
        return rows

    def entry_ids(self, names: list[str]) -> list[tuple[str, int]]:
        """(name, entry id) of every entry of these names, oldest first: one indexed query."""
        if not names:
            return []
        return self.conn.execute(
            f"SELECT name, id FROM entries WHERE name IN ({','.join('?' * len(names))}) ORDER BY id", names
        ).fetchall()

    def count_names(self, start: str = "") -> int:
        """How many people have a name >= `start` (count_people when start is "")."""
        return int(self.conn.execute("SELECT count(*) FROM name_keys WHERE name >= ?", (start,)).fetchone()[0])

    def entries(self, name: str | None = None) -> list[tuple[int, str, float, str | None, int]]:
        sql = (
            "SELECT e.id, e.name, e.enrolled, e.model_id, t.entry_id IS NOT NULL FROM entries e "
            "LEFT JOIN thumbnails t ON t.entry_id = e.id"
        )
        if name is None:
            return self.conn.execute(sql + " ORDER BY e.id").fetchall()
        return self.conn.execute(sql + " WHERE e.name = ? ORDER BY e.id", (name,)).fetchall()

    def recent(self, name: str, since: float, model_id: str | None, limit: int = 1000) -> list[tuple[int, bytes]]:
        """(id, embedding) of `name`'s entries of this model enrolled at or after `since`, newest first."""
        return self.conn.execute(
            "SELECT id, embedding FROM entries WHERE name = ? AND enrolled >= ? "
            "AND model_id IS ? ORDER BY id DESC LIMIT ?",
            (name, float(since), model_id, int(limit)),
        ).fetchall()

    def owner(self, entry_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM entries WHERE id = ?", (int(entry_id),)).fetchone()
        return None if row is None else row[0]

    def thumbnail(self, entry_id: int) -> bytes | None:
        row = self.conn.execute("SELECT png FROM thumbnails WHERE entry_id = ?", (int(entry_id),)).fetchone()
        return None if row is None else bytes(row[0])

    def has_person(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM entries WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

    def similar_names(self, name: str) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT name FROM entries WHERE name = ? COLLATE NOCASE", (name,))
        return [r[0] for r in rows]

    def person_ids(self, name: str) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM entries WHERE name = ?", (name,))]

    def delete(self, ids: list[int]) -> int:
        """Delete entries (and their thumbnails) for good. (Inside a write transaction.) Counts
        the deletion in meta 'removals', which tells every Gallery that entries are gone (new
        ones are found cheaply: ids only grow)."""
        removed = 0
        names: set[str] = set()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            names.update(
                r[0] for r in self.conn.execute(f"SELECT DISTINCT name FROM entries WHERE id IN ({marks})", part)
            )
            self.conn.execute(f"DELETE FROM thumbnails WHERE entry_id IN ({marks})", part)
            removed += self.conn.execute(f"DELETE FROM entries WHERE id IN ({marks})", part).rowcount
        self._forget_names(names)
        if removed:
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('removals', '1') ON CONFLICT (key) "
                "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
            )
        return removed

    def rename(self, old: str, new: str) -> int:
        count = self.conn.execute("UPDATE entries SET name = ? WHERE name = ?", (new, old)).rowcount
        self.conn.execute("INSERT OR IGNORE INTO name_keys (name, key) VALUES (?, ?)", (new, name_key(new)))
        self._forget_names({old} - {new})
        return count

    def _forget_names(self, names: set[str]) -> None:
        """(Inside a write transaction.) Drop the keys of these names once nobody has them."""
        self.conn.executemany(
            "DELETE FROM name_keys WHERE name = ? AND NOT EXISTS (SELECT 1 FROM entries WHERE name = ?)",
            [(n, n) for n in names],
        )

    def names_like(self, key: str) -> list[str]:
        """The enrolled names whose confusable skeleton is `key` (one indexed lookup)."""
        return [r[0] for r in self.conn.execute("SELECT name FROM name_keys WHERE key = ? LIMIT 100", (key,))]

    def generation(self) -> int:
        """How many deletions this gallery has seen (meta 'removals'): any process reading a
        larger number than it last read knows that something it shows may be gone."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'removals'").fetchone()
        return int(row[0]) if row and row[0] else 0

    def vacuum(self) -> None:
        self.conn.execute("VACUUM")

    # -- re-embedding and export --------------------------------------------------------------
    def without_thumbnail(self) -> list[int]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM entries WHERE id NOT IN (SELECT entry_id FROM thumbnails) ORDER BY id"
            )
        ]

    def thumbnail_batches(self, size: int) -> Iterator[list[tuple[int, bytes]]]:
        """(entry id, png) of every entry with a thumbnail, oldest first, `size` at a time."""
        cursor = self.conn.execute("SELECT entry_id, png FROM thumbnails ORDER BY entry_id")
        while rows := cursor.fetchmany(size):
            yield [(int(i), bytes(png)) for i, png in rows]

    def set_embeddings(self, model_id: str, updates: list[tuple[int, bytes]]) -> None:
        """(Inside a write transaction.) New embeddings (entry id, bytes), all of `model_id`."""
        self.conn.executemany(
            "UPDATE entries SET embedding = ?, model_id = ? WHERE id = ?",
            [(blob, model_id, int(i)) for i, blob in updates],
        )

    def rows(self, *, thumbnails: bool, chunk: int = 256) -> Iterator[tuple]:
        """(id, name, enrolled, model_id, embedding bytes, png or None) of every entry, oldest first."""
        png = "t.png" if thumbnails else "NULL"
        cursor = self.conn.execute(
            f"SELECT e.id, e.name, e.enrolled, e.model_id, e.embedding, {png} FROM entries e "
            "LEFT JOIN thumbnails t ON t.entry_id = e.id ORDER BY e.id"
        )
        while batch := cursor.fetchmany(chunk):
            yield from batch


def write_export(path: str | Path, model_id: str | None, dim: int, rows: Iterable[tuple]) -> int:
    """Write an export file: the gallery's own schema, every row as given (id, name, enrolled,
    model_id, embedding bytes, png or None), in one self-contained file in rollback-journal
    mode (exports.Export refuses WAL files). Returns how many entries it holds."""
    store = Store(path)
    try:
        count = 0
        with store.transaction():
            for entry_id, name, enrolled, model, blob, png in rows:
                store.insert(name, enrolled, model, blob, png, entry_id=entry_id)
                count += 1
            store.set_meta(model_id=model_id, dim=dim, exported=repr(time.time()))
        store.conn.execute("PRAGMA journal_mode = DELETE")
        store.conn.execute("VACUUM")
    finally:
        store.close()
    return count
