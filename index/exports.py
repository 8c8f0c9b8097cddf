"""Reading a gallery export without trusting it (Gallery.import_from, `python -m index import`).

An export is an SQLite file written by Gallery.export, but whoever hands one over may have
made it by hand, so every part of it is checked before the gallery takes anything:

- the file: a regular file whose 100-byte SQLite header says rollback-journal mode (a WAL-mode
  file would make SQLite create -wal and -shm files beside it) and carries the Twin
  application id; opened read-only (`mode=ro`), with `trusted_schema` off, `query_only` on,
  no attached databases, a limit on the size of any one value, and a deadline on every batch
  of rows (the progress handler interrupts a statement that runs past it);
- the structure: `meta`, `entries` and `thumbnails` must be real tables (type 'table' in
  sqlite_master, not a VIEW, say a recursive CTE that turns 110 KB into 300,000 rows, not a
  virtual table), with exactly the columns an export has, no generated or hidden columns,
  and integer primary keys (so reading them is a walk through two b-trees);
- the size: entries are counted first, and more than `max_entries` are refused before any
  row is read;
- every row, with the rules enroll applies: the name (`clean_name`), the embedding (bytes of
  exactly the stated size, finite, unit length), the enrollment time, the model, and the
  thumbnail, decoded and size-checked by the code that makes thumbnails (index/thumbnails.py:
  a decompression bomb, junk after the PNG signature or a 9000 x 9000 image is refused
  before its pixels are decompressed) and re-encoded.

A refusal is an InvalidInput that names the file, the entry and the problem.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import thumbnails as thumbs
from .checks import clean_name, clean_vector
from .errors import InvalidInput
from .store import APPLICATION_ID, SCHEMA_VERSION, is_busy, read_only_uri

MAX_IMPORT_ENTRIES = 1_000_000  # default for max_entries: refuse bigger exports before reading a row
MAX_DIM = 4096
MAX_MODEL_ID_LENGTH = 200
NORM_TOLERANCE = 1e-3  # an exported embedding is a float32 unit vector: |norm - 1| ~ 1e-7
LATEST_TIME = 4102444800.0  # 2100-01-01: an enrollment time past it is not a time
DEADLINE_S = 30.0  # for any one statement or batch of rows
BATCH = 256
SQLITE_MAGIC = b"SQLite format 3\x00"
COLUMNS = {
    "meta": {"key": "TEXT", "value": "TEXT"},
    "entries": {"id": "INTEGER", "name": "TEXT", "enrolled": "REAL", "model_id": "TEXT", "embedding": "BLOB"},
    "thumbnails": {"entry_id": "INTEGER", "png": "BLOB"},
}
PRIMARY_KEYS = {"meta": "key", "entries": "id", "thumbnails": "entry_id"}


@dataclass(frozen=True)
class Row:
    """One checked entry of an export, ready to insert."""

    source_id: int
    name: str
    enrolled: float
    vector: np.ndarray  # float32 unit vector
    png: bytes | None  # re-encoded PNG, or None


class Export:
    """An export file opened for reading and checked (file, structure, meta, size).

    with Export(path, max_entries=1000) as source:
        source.model_id, source.dim, source.count
        for row in source.rows(): ...     # each row checked; InvalidInput at the first bad one
    """

    def __init__(self, path: str | Path, *, max_entries: int = MAX_IMPORT_ENTRIES):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise InvalidInput(f"max_entries must be a whole number >= 0, not {max_entries!r}.")
        self.path = Path(path)
        self.max_entries = max_entries
        self._deadline = math.inf
        self.conn: sqlite3.Connection | None = None
        self._check_file()
        try:
            self.conn = self._open()
            self._check_tables()
            self.model_id, self.dim = self._read_meta()
            self.count = self._count()
        except sqlite3.Error as exc:
            self.close()
            raise self._unreadable(exc) from exc
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            raise InvalidInput(f"{self.path}: the export is closed.")
        return self.conn

    def _refuse(self, why: str) -> InvalidInput:
        return InvalidInput(f"{self.path} is not a Twin gallery export ({why}).")

    def _unreadable(self, exc: sqlite3.Error) -> InvalidInput:
        if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
            why = f"reading it took more than {DEADLINE_S:g} s"
        elif is_busy(exc):
            why = "another program is writing it"
        elif "too big" in str(exc):
            why = f"a value in it is larger than {thumbs.MAX_BYTES} bytes"
        else:
            why = f"SQLite: {exc}"
        return self._refuse(why)

    def _check_file(self) -> None:
        if not self.path.is_file():  # also refuses devices, pipes and directories
            raise InvalidInput(f"{self.path} is not a file.")
        with open(self.path, "rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
            raise self._refuse("not an SQLite database")
        if header[18] != 1 or header[19] != 1:
            raise self._refuse("a database in WAL mode: make an export with `python -m index export`")
        (version,) = struct.unpack(">I", header[60:64])
        (application,) = struct.unpack(">I", header[68:72])
        if application != APPLICATION_ID:
            raise self._refuse("an SQLite database of some other program")
        if not 1 <= version <= SCHEMA_VERSION:
            raise self._refuse(f"schema version {version}; this Twin reads version {SCHEMA_VERSION}")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            read_only_uri(self.path), uri=True, timeout=1.0, isolation_level=None, check_same_thread=False
        )
        limits = {
            sqlite3.SQLITE_LIMIT_LENGTH: thumbs.MAX_BYTES + 4096,
            sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
            sqlite3.SQLITE_LIMIT_COLUMN: 100,
            sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
            sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 8,
            sqlite3.SQLITE_LIMIT_ATTACHED: 0,
            sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
            sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
        }
        for category, limit in limits.items():
            conn.setlimit(category, limit)
        for pragma in ("trusted_schema = OFF", "query_only = ON", "cell_size_check = ON", "mmap_size = 0"):
            conn.execute(f"PRAGMA {pragma}")
        conn.set_progress_handler(lambda: 1 if time.monotonic() > self._deadline else 0, 10_000)
        return conn

    def _run(self, sql: str, params: tuple = ()) -> list:
        self._deadline = time.monotonic() + DEADLINE_S
        try:
            return self._connection().execute(sql, params).fetchall()
        finally:
            self._deadline = math.inf

    def _check_tables(self) -> None:
        objects = self._run(
            "SELECT type, lower(name), sql FROM sqlite_master WHERE lower(name) IN ('meta', 'entries', 'thumbnails')"
        )
        for table, columns in COLUMNS.items():
            found = [(kind, sql) for kind, name, sql in objects if name == table]
            if len(found) != 1:
                raise self._refuse(f"it has no table {table!r}")
            kind, sql = found[0]
            if kind != "table":
                raise self._refuse(f"{table!r} is a {kind}, not a table")
            if not isinstance(sql, str) or not " ".join(sql.split()).upper().startswith("CREATE TABLE"):
                raise self._refuse(f"{table!r} is not a plain table")
            info = self._run(f"PRAGMA table_xinfo({table})")
            have = {name: (str(decl).upper(), pk, hidden) for _, name, decl, _, _, pk, hidden in info}
            if set(have) != set(columns):
                raise self._refuse(f"table {table!r} has the columns {sorted(have)}, not {sorted(columns)}")
            for name, decl in columns.items():
                declared, pk, hidden = have[name]
                if hidden:
                    raise self._refuse(f"column {table}.{name} is generated or hidden")
                if declared != decl:
                    raise self._refuse(f"column {table}.{name} is {declared or 'untyped'}, not {decl}")
            if [n for n, (_, pk, _) in have.items() if pk] != [PRIMARY_KEYS[table]]:
                raise self._refuse(f"table {table!r} is not keyed by {PRIMARY_KEYS[table]!r}")

    def _read_meta(self) -> tuple[str | None, int]:
        meta = {k: v for k, v in self._run("SELECT key, value FROM meta LIMIT 1000") if isinstance(k, str)}
        model_id = meta.get("model_id")
        if model_id is not None and (
            not isinstance(model_id, str) or not 0 < len(model_id) <= MAX_MODEL_ID_LENGTH or not model_id.isprintable()
        ):
            raise self._refuse("its model id is not a short line of text")
        dim = meta.get("dim")
        if dim is None:
            return model_id, 128
        text = str(dim)
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_DIM):
            raise self._refuse(f"its embedding size {text[:20]!r} is not a number from 1 to {MAX_DIM}")
        return model_id, int(text)

    def _count(self) -> int:
        ((count,),) = self._run("SELECT count(*) FROM entries")
        if count > self.max_entries:
            raise InvalidInput(
                f"{self.path} holds {count:,} entries; at most {self.max_entries:,} are imported "
                "at once (max_entries, --max-entries). Nothing was imported."
            )
        return int(count)

    # -- reading ----------------------------------------------------------------------------
    def rows(self, *, thumbnails: bool = True) -> Iterator[Row]:
        """Every entry, checked, oldest first; thumbnails=False leaves thumbnails unread (None).
        InvalidInput at the first entry the gallery refuses."""
        png_column = "t.png" if thumbnails else "NULL"
        self._deadline = time.monotonic() + DEADLINE_S
        try:
            cursor = self._connection().execute(
                f"SELECT e.id, e.name, e.enrolled, e.model_id, e.embedding, {png_column} FROM entries e "
                "LEFT JOIN thumbnails t ON t.entry_id = e.id ORDER BY e.id"
            )
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc
        finally:
            self._deadline = math.inf
        seen, last = 0, None
        try:
            while True:
                self._deadline = time.monotonic() + DEADLINE_S
                try:
                    batch = cursor.fetchmany(BATCH)
                finally:
                    self._deadline = math.inf
                if not batch:
                    return
                for source_id, name, enrolled, model_id, blob, png in batch:
                    seen += 1
                    if seen > self.count or not isinstance(source_id, int) or (last is not None and source_id <= last):
                        raise self._refuse("its entries changed while it was read, or repeat")
                    last = source_id
                    try:
                        row = self._row(source_id, name, enrolled, model_id, blob, png)
                    except InvalidInput as exc:
                        raise InvalidInput(
                            f"{self.path} holds an entry the gallery refuses (entry {source_id}: "
                            f"{str(exc).rstrip('.')}); nothing was imported."
                        ) from exc
                    yield row
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc
        finally:
            cursor.close()

    def _row(self, source_id: int, name: object, enrolled: object, model_id: object, blob: object, png: object) -> Row:
        name = clean_name(name)
        if (
            isinstance(enrolled, bool)
            or not isinstance(enrolled, (int, float))
            or not math.isfinite(enrolled)
            or not 0 <= enrolled <= LATEST_TIME
        ):
            raise InvalidInput(f"its enrollment time {enrolled!r:.40} is not a time")
        if model_id != self.model_id:
            raise InvalidInput(f"it was made by model {model_id!r:.60}, not the export's {self.model_id!r}")
        if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
            size = f"{len(blob)} bytes" if isinstance(blob, (bytes, str)) else type(blob).__name__
            raise InvalidInput(f"its embedding is {size}, not {self.dim} float32 numbers ({4 * self.dim} bytes)")
        raw = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        if not np.isfinite(raw).all():
            raise InvalidInput("its embedding contains NaN or infinite values")
        norm = float(np.linalg.norm(raw))
        if abs(norm - 1.0) > NORM_TOLERANCE:
            raise InvalidInput(f"its embedding has length {norm:.4g}, not 1 (embeddings are unit vectors)")
        vector = clean_vector(raw, self.dim)
        if png is not None:
            if not isinstance(png, bytes):
                raise InvalidInput(f"its thumbnail is {type(png).__name__}, not PNG bytes")
            png = thumbs.encode(png, formats=("PNG",))
        return Row(source_id, name, float(enrolled), vector, png)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
