"""The gallery on Milvus: Milvus Lite (a *.db path, embedded) or a Milvus server or cluster
(milvus://host:19530/collection; https://host/collection for a managed Milvus, with the token
in $TWIN_MILVUS_TOKEN). About 800 lines (ruff-formatted) in one file on purpose: a second store is one new
file (issue 10), and what makes Milvus safe without transactions (below) reads best in one place.

Milvus is the single source of truth. Each entry is one row: id, name, a hash of the name
(filters never quote user text), enrollment time, model id, the thumbnail (PNG, base64 in
65,000-character pieces: Milvus has no byte strings) and its flag, and the embedding. No
state is kept here that two replicas could disagree on: the collection the location names
is an alias over a physical collection `<name>_<token>`; re-embedding, `replace` imports and
vacuum (Milvus Lite) build a new physical collection and switch the alias in one step, so
every reader sees the old entries or the new ones, never a mix. The gallery's model is the
one its rows carry; its embedding size the collection's. Reads use Strong consistency
(`consistency` option): a Gallery sees every change another one (or another replica)
committed before the read started.

Changes. Milvus has no transactions; changes are serialised within a process (one lock per
collection, GalleryBusy after busy_timeout), and across processes these rules keep replicas
consistent: entry ids are milliseconds since 2025 x 4096 + 12 random bits (unique within a
process, ordered across replicas by their clocks, below 2**53 so JavaScript clients keep
them exact); a retried enrollment is looked for before inserting and again after (on a
server, 50 ms after), where all copies of the same photo give way to the smallest id. So two
replicas that take the same retry at the same moment keep one entry, unless one of them
drew its id and then took longer than that to land its insert, or their clocks disagree by
more than the gap between the two requests: without transactions or conditional writes in
Milvus, this narrows the window, it cannot close it. An import that fails part-way deletes what it added; a rename
rewrites the person's rows (upsert, row by row). Re-embedding re-reads entries added while
it ran before it switches; changes that land in the last milliseconds before the switch, on
other replicas, can be lost: run `python -m index reembed` with the other replicas stopped.

Durability: a Milvus server acknowledges an insert or delete once it is in its write-ahead
log (message storage); Milvus Lite writes its log to the OS at every change (it survives
kill -9 of the app) but does not fsync it (a power loss can lose the last changes).

Deleted data: a removal is immediate for every reader (a tombstone), but the bytes stay in
the storage files until compaction rewrites them. On a server, compaction runs in the
background when enough of a segment is deleted, and `vacuum()` (run by `python -m index
remove`) requests it now; the old segment files are then removed from object storage by
Milvus's garbage collection once `dataCoord.gc.dropTolerance` has passed (and data changed
within `common.retentionDuration` is not compacted yet: check both on your server); copies in
backups or a versioned bucket stay until those expire. Milvus Lite drops rows deleted before
they reach a data file, and otherwise compacts only when data files accumulate, so here
`vacuum()` rewrites the collection and deletes the old files at once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .. import checks
from .. import thumbnails as thumbs
from ..errors import GalleryBusy, GalleryCorrupt, GalleryError, InvalidInput
from .base import Caller, Row

log = logging.getLogger(__name__)

TOKEN_ENV = "TWIN_MILVUS_TOKEN"
DEFAULT_COLLECTION = "twin_gallery"
DEFAULT_PORT = 19530
DEFAULT_DIM = 128
ID_EPOCH_MS = 1_735_689_600_000  # 2025-01-01: ids are (ms since then) << 12 | 12 random bits
PIECE = 65_000  # base64 characters per thumbnail piece (VARCHAR: <= 65,535 bytes)
PIECES = math.ceil(thumbs.MAX_BYTES * 4 / 3 / PIECE) + 8
MAX_TOPK = 16_384  # Milvus's limit on one search
REPLICA_SETTLE_S = 0.05  # a server: wait this long before the after-insert retry check
LITE_FLUSH_EVERY = 256  # Milvus Lite: flush after this many changed rows (see _changed)
BATCH = 256
FIELDS = ("id", "name", "name_key", "enrolled", "model_id", "has_thumbnail", "thumbnail", "vector")
ROW_FIELDS = ["id", "name", "enrolled", "model_id", "has_thumbnail", "thumbnail"]


class _QuietLite(logging.Filter):
    """Milvus Lite's gRPC server logs pymilvus's AllocTimestamp call (made while an index is
    built), which it does not implement and pymilvus does without, as an ERROR with a
    traceback; only that line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


logging.getLogger("grpc._server").addFilter(_QuietLite())

_lock = threading.Lock()
_writers: dict[tuple[str, str], threading.Lock] = {}  # one change at a time per collection, per process
_lite_users: dict[str, int] = {}  # open Gallery objects per Milvus Lite data directory
_unflushed: dict[str, int] = {}  # rows changed since the last flush, per Lite directory
_last_id = 0


@dataclass(frozen=True)
class Target:
    """Where a location points: what MilvusClient connects to, and the collection (alias)."""

    uri: str
    collection: str
    lite: bool


def parse(location: str, collection: str | None = None) -> Target:
    text = location.strip().split("?", 1)[0]  # (options after "?": see location_options)
    parts = urlsplit(text)
    if parts.scheme.lower() in ("milvus", "http", "https") and parts.netloc:
        if parts.username or parts.password:
            raise InvalidInput(
                f"Put the Milvus credentials in ${TOKEN_ENV} (user:password or an API key), "
                "not in the gallery location."
            )
        scheme = "https" if parts.scheme.lower() == "https" else "http"
        port = parts.port or (DEFAULT_PORT if parts.scheme.lower() == "milvus" else None)
        name = collection or parts.path.strip("/") or DEFAULT_COLLECTION
        uri = f"{scheme}://{parts.hostname}" + (f":{port}" if port else "")
        return Target(uri, _collection_name(name), lite=False)
    return Target(str(Path(text).expanduser().resolve()), _collection_name(collection or DEFAULT_COLLECTION), True)


def location_options(location: str) -> dict[str, str]:
    """Store options written into the location, for the app's --gallery and $TWIN_GALLERY:
    milvus://host:19530/faces?index=HNSW&consistency=Bounded."""
    query = location.partition("?")[2]
    options = dict(parse_qsl(query))
    unknown = set(options) - {"index", "consistency"}
    if unknown:
        raise InvalidInput(f"Unknown gallery option(s) {sorted(unknown)} in {location!r}: index, consistency.")
    return options


def _collection_name(name: str) -> str:
    ok = (
        name
        and len(name) <= 200
        and (name[0].isalpha() or name[0] == "_")
        and name.isascii()
        and all(c.isalnum() or c == "_" for c in name)
    )
    if not ok:
        raise InvalidInput(
            f"{name!r} is not a Milvus collection name (letters, digits and _, starting with a letter, at most 200)."
        )
    return name


def new_ids(count: int) -> list[int]:
    """Entry ids: increasing within this process, ordered by time across processes."""
    global _last_id
    with _lock:
        stamp = ((int(time.time() * 1000) - ID_EPOCH_MS) << 12) | secrets.randbits(12)
        first = max(stamp, _last_id + 1)
        _last_id = first + count - 1
    return list(range(first, first + count))


def name_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def pieces(png: bytes | None) -> list[str]:
    text = base64.b64encode(png).decode("ascii") if png else ""
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]


def unpieces(parts: Iterable[str] | None) -> bytes | None:
    text = "".join(parts or [])
    return base64.b64decode(text) if text else None


class MilvusStore:
    """A gallery in a Milvus collection. Options: index (the vector index type: FLAT, the
    default, exact; HNSW, IVF_FLAT or AUTOINDEX for large collections on a server),
    collection (instead of the one in the location), consistency ("Strong"; "Bounded" trades
    a few seconds of staleness across replicas for latency), timeout (seconds per call)."""

    kind = "milvus"

    def __init__(
        self,
        location: str,
        caller: Caller,
        *,
        busy_timeout: float = 5.0,
        index: str | None = None,
        collection: str | None = None,
        consistency: str | None = None,
        timeout: float = 30.0,
    ):
        from pymilvus import MilvusClient

        self.location = str(location)
        self.target = parse(self.location, collection)
        written = location_options(self.location)
        self.caller = caller
        self.busy_timeout = float(busy_timeout)
        self.index_type = str(index or written.get("index") or "FLAT").upper()
        self.consistency = consistency or written.get("consistency") or "Strong"
        self.timeout = float(timeout)
        self.settle = 0.0 if self.target.lite else REPLICA_SETTLE_S  # Milvus Lite: one process, one lock
        self.closed = False
        self.directory = Path(self.target.uri) if self.target.lite else None
        if caller.model_id is not None and len(caller.model_id.encode()) > 200:
            raise InvalidInput("A model id must be at most 200 bytes.")
        if self.target.lite:
            self._prepare_lite()
        key = (self.target.uri, self.target.collection)
        with _lock:
            self._write_lock = _writers.setdefault(key, threading.Lock())
        try:
            self.client = MilvusClient(uri=self.target.uri, token=os.environ.get(TOKEN_ENV, ""), timeout=self.timeout)
        except Exception as exc:
            self._release_lite()
            raise self._unreachable(exc) from exc
        try:
            self._physical, self._dim = self._resolve(create=True)
            caller.dim = int(caller.dim or self._dim)
            if caller.model_id is None:
                caller.model_id = self._stored()[0]
        except BaseException:
            self.close()
            raise

    # -- where it is -----------------------------------------------------------------------------
    @staticmethod
    def exists(location: str) -> bool:
        target = parse(location)
        if target.lite:
            return Path(target.uri).is_dir()
        from pymilvus import MilvusClient

        client = MilvusClient(uri=target.uri, token=os.environ.get(TOKEN_ENV, ""))
        try:
            return bool(client.has_collection(target.collection))
        finally:
            client.close()

    def _prepare_lite(self) -> None:
        path = Path(self.target.uri)
        if path.is_file():
            with open(path, "rb") as f:
                sqlite = f.read(16) == b"SQLite format 3\x00"
            raise InvalidInput(
                f"{path} is an SQLite file"
                + (" (the database inside a folder gallery: pass its folder)" if sqlite else "")
                + ", not a Milvus Lite gallery."
            )
        if (path / "gallery.db").is_file():
            raise InvalidInput(f"{path} is a folder gallery (SQLite + FAISS); a *.db location means Milvus Lite.")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # faces are personal data: owner only
        with _lock:
            _lite_users[str(path)] = _lite_users.get(str(path), 0) + 1

    def _release_lite(self) -> None:
        if not self.target.lite:
            return
        with _lock:
            users = _lite_users.get(self.target.uri, 0) - 1
            if users > 0:
                _lite_users[self.target.uri] = users
                return
            _lite_users.pop(self.target.uri, None)
        try:  # the last Gallery on it: stop the embedded server, so another process may open it
            from milvus_lite import server_manager_instance

            server_manager_instance.release_server(self.target.uri)
        except Exception:  # noqa: BLE001 - nothing more to do at close
            log.exception("Could not stop Milvus Lite for %s.", self.target.uri)

    def _unreachable(self, exc: BaseException) -> GalleryError:
        if self.target.lite:
            return GalleryError(
                f"Milvus Lite cannot open {self.target.uri}: another program has it open "
                "(Milvus Lite serves one process at a time; use a Milvus server for several) "
                f"({exc})."
            )
        return GalleryError(f"Cannot reach Milvus at {self.target.uri}: {exc}")

    # -- the collection ---------------------------------------------------------------------------
    def _resolve(self, *, create: bool = False) -> tuple[str, int]:
        """(physical collection, embedding size) the alias points at now; made when missing."""
        from pymilvus import MilvusException

        alias = self.target.collection
        known = getattr(self, "_physical", None)
        if known and not create:  # one call when nothing was switched since
            try:
                if self.client.describe_alias(alias=alias)["collection_name"] == known:
                    return known, self._dim
            except MilvusException:
                pass
        if alias in (self.client.list_aliases().get("aliases") or []):
            physical = self.client.describe_alias(alias=alias)["collection_name"]
        else:
            if self.client.has_collection(alias):
                raise GalleryCorrupt(
                    f"Milvus collection {alias!r} is not a Twin gallery (Twin galleries are an "
                    "alias over a collection of their own)."
                ) from None
            if not create:
                raise GalleryError(f"The gallery {alias!r} is gone from Milvus.") from None
            physical = self._create(self.caller.dim or DEFAULT_DIM)
            try:
                self.client.create_alias(collection_name=physical, alias=alias)
            except MilvusException:  # another process made it first: use theirs
                self.client.drop_collection(physical)
                physical = self.client.describe_alias(alias=alias)["collection_name"]
        fields = {f["name"]: f for f in self.client.describe_collection(physical)["fields"]}
        if set(fields) != set(FIELDS):
            raise GalleryCorrupt(f"Milvus collection {physical!r} does not have a Twin gallery's fields.")
        state = str(self.client.get_load_state(physical).get("state"))
        if not state.endswith("Loaded"):
            self.client.load_collection(physical)
        return physical, int(fields["vector"]["params"]["dim"])

    def _create(self, dim: int) -> str:
        from pymilvus import DataType, MilvusClient

        physical = f"{self.target.collection}_{uuid.uuid4().hex[:12]}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("name", DataType.VARCHAR, max_length=4 * checks.MAX_NAME_LENGTH)
        schema.add_field("name_key", DataType.VARCHAR, max_length=64)
        schema.add_field("enrolled", DataType.DOUBLE)
        schema.add_field("model_id", DataType.VARCHAR, max_length=256)
        schema.add_field("has_thumbnail", DataType.BOOL)
        schema.add_field(
            "thumbnail",
            DataType.ARRAY,
            element_type=DataType.VARCHAR,
            max_capacity=PIECES,
            max_length=PIECE,
            mmap_enabled=True,
        )  # on a server: kept on disk, not in memory
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=self.index_type, metric_type="L2")
        index.add_index("name_key", index_type="INVERTED")
        self.client.create_collection(physical, schema=schema, index_params=index, consistency_level=self.consistency)
        return physical

    def _switch(self, physical: str, dim: int) -> None:
        """Point the alias at `physical` (one step for every reader), then drop the old one."""
        old = self._physical
        self.client.alter_alias(collection_name=physical, alias=self.target.collection)
        self._physical, self._dim = physical, dim
        try:
            self.client.drop_collection(old)
        except Exception:  # noqa: BLE001 - the alias has moved; an orphan only costs space
            log.exception("Could not drop the old Milvus collection %s.", old)

    # -- the two preambles --------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[None]:
        self._open_check()
        try:
            yield
        except GalleryError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One change at a time in this process (GalleryBusy past busy_timeout), on the
        collection the alias points at now."""
        self._open_check()
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise GalleryBusy()
        try:
            with self._reading():
                self._physical, self._dim = self._resolve()
                yield
        finally:
            self._write_lock.release()

    def _failure(self, exc: BaseException) -> GalleryError:
        message = " ".join(str(getattr(exc, "message", exc)).split())[:300]
        code = getattr(exc, "code", None)
        if code == 8 or "rate limit" in message.lower():
            return GalleryBusy()
        if "unavailable" in message.lower() or "connect" in message.lower() or "deadline" in message.lower():
            return self._unreachable(exc)
        return GalleryError(f"Milvus refused the request: {message}")

    def _open_check(self) -> None:
        if self.closed:
            raise GalleryError("The gallery is closed.")

    # -- small queries ------------------------------------------------------------------------------
    def _query(self, expr: str, fields: list[str], *, limit: int | None = None, collection: str | None = None):
        kwargs: dict[str, Any] = {"limit": limit} if limit else {}
        return self.client.query(collection or self.target.collection, filter=expr, output_fields=fields, **kwargs)

    def _scan(
        self, expr: str, fields: list[str], *, collection: str | None = None, batch: int = BATCH
    ) -> Iterator[list[dict]]:
        """Every matching row, `batch` at a time, in id order: pages of `id > last` asked for
        the way Milvus's query iterator asks (pages in primary-key order)."""
        last = 0
        while True:
            where = f"id > {last}" + (f" and ({expr})" if expr else "")
            rows = self.client.query(
                collection or self.target.collection,
                filter=where,
                limit=batch,
                output_fields=sorted({"id", *fields}),
                iterator="True",
                reduce_stop_for_best="True",
            )
            rows = sorted(rows, key=lambda r: int(r["id"]))
            if rows:
                yield rows
            if len(rows) < batch:
                return
            last = int(rows[-1]["id"])

    def _count(self, expr: str = "", collection: str | None = None) -> int:
        return int(self._query(expr, ["count(*)"], collection=collection)[0]["count(*)"])

    def _stored(self) -> tuple[str | None, int]:
        """(the model of the stored rows, 1 when there are any, else 0): one query."""
        rows = self._query("id > 0", ["model_id"], limit=1)
        return (rows[0]["model_id"] or None if rows else None), len(rows)  # ("": stored without a model id)

    def _row(
        self, entry_id: int, name: str, enrolled: float, model: str | None, vector: np.ndarray, png: bytes | None
    ) -> dict:
        return {
            "id": int(entry_id),
            "name": name,
            "name_key": name_key(name),
            "enrolled": float(enrolled),
            "model_id": model or "",
            "has_thumbnail": png is not None,
            "thumbnail": pieces(png),
            "vector": np.asarray(vector, np.float32).tolist(),
        }

    def _insert(self, rows: list[dict], collection: str | None = None) -> None:
        for start in range(0, len(rows), BATCH):
            self.client.insert(collection or self.target.collection, rows[start : start + BATCH])
            self._changed(min(BATCH, len(rows) - start), collection)

    def _delete(self, ids: list[int], collection: str | None = None) -> None:
        for start in range(0, len(ids), 1000):
            self.client.delete(collection or self.target.collection, ids=[int(i) for i in ids[start : start + 1000]])
            self._changed(min(1000, len(ids) - start), collection)

    def _changed(self, rows: int, collection: str | None = None) -> None:
        """Milvus Lite keeps changes in a memtable it scans in Python on every query (35 ms
        at 2,000 rows, growing) until 128 MB of them make it flush; so flush every
        LITE_FLUSH_EVERY rows. (A server seals and indexes its growing segments itself.)"""
        if not self.target.lite:
            return
        with _lock:
            count = _unflushed[self.target.uri] = _unflushed.get(self.target.uri, 0) + rows
            if count >= LITE_FLUSH_EVERY:
                _unflushed[self.target.uri] = 0
        if count >= LITE_FLUSH_EVERY:
            self.client.flush(collection or self._physical)

    def _copies(self, key: str, vector: np.ndarray, since: float) -> list[int]:
        """Ids of recent entries of this name and model that are this very photo."""
        rows = self._query(f'name_key == "{key}" and enrolled >= {float(since)!r}', ["id", "model_id", "vector"])
        mine = self.caller.model_id or ""
        return [
            int(r["id"])
            for r in rows
            if r["model_id"] == mine
            and checks.same_photo([(int(r["id"]), np.asarray(r["vector"], np.float32))], vector) is not None
        ]

    # -- the model ------------------------------------------------------------------------------------
    def check_model(self) -> None:
        with self._reading():
            self._physical, self._dim = self._resolve()
            stored, count = self._stored()
            checks.check_model(
                stored, self._dim, self.caller.model_id, self.caller.dim, empty=count == 0, writing=False
            )

    def stored_model_id(self) -> str | None:
        with self._reading():
            return self._stored()[0]

    # -- changes ----------------------------------------------------------------------------------------
    def add(self, name: str, vector: np.ndarray, png: bytes | None, *, retry_since: float | None) -> int:
        caller = self.caller
        with self._writing():
            stored, count = self._stored()
            adopt = checks.check_model(stored, self._dim, caller.model_id, caller.dim, empty=count == 0, writing=True)
            if adopt and self._dim != caller.dim:  # an empty gallery of another size: remade at this one
                self._switch(self._create(caller.dim), caller.dim)
            key = name_key(name)
            if retry_since is not None and count:
                earlier = self._copies(key, vector, retry_since)
                if earlier:
                    return min(earlier)
            row = self._row(0, name, time.time(), caller.model_id, vector, png)
            (entry,) = new_ids(1)  # drawn at the last moment: ids should follow the inserts' order
            row["id"] = entry
            self._insert([row])
            if count == 0:  # two replicas of different models adopting one empty gallery: one gives way
                other = self._query(f"id != {entry}", ["model_id"], limit=1)
                if other and other[0]["model_id"] != (caller.model_id or ""):
                    self._delete([entry])
                    checks.check_model(
                        other[0]["model_id"] or None, self._dim, caller.model_id, caller.dim, empty=False, writing=True
                    )
            if retry_since is not None:  # the same retry taken by another replica at the same moment
                if self.settle:  # (an insert drawn just before ours may land just after)
                    time.sleep(self.settle)
                first = min(self._copies(key, vector, retry_since), default=entry)
                if first != entry:
                    self._delete([entry])
                    return first
            return entry

    def remove(self, ids: list[int]) -> int:
        with self._writing():
            found = [int(r["id"]) for r in self._query(f"id in {[int(i) for i in ids]}", ["id"])]
            self._delete(found)
            return len(found)

    def remove_person(self, name: str) -> list[int]:
        with self._writing():
            ids = [int(r["id"]) for r in self._query(f'name_key == "{name_key(name)}"', ["id"])]
            if not ids:
                raise checks.no_such_person(name, self._similar(name))
            self._delete(ids)
            return ids

    def rename(self, old: str, new: str, *, merge: bool) -> int:
        with self._writing():
            rows = self._query(f'name_key == "{name_key(old)}"', [*ROW_FIELDS, "vector"])
            if not rows:
                raise checks.no_such_person(old, self._similar(old))
            if old != new and not merge and self._query(f'name_key == "{name_key(new)}"', ["id"], limit=1):
                raise checks.already_enrolled(new)
            for start in range(0, len(rows), BATCH):
                self.client.upsert(
                    self.target.collection,
                    [
                        self._row(r["id"], new, r["enrolled"], r["model_id"], r["vector"], unpieces(r["thumbnail"]))
                        for r in rows[start : start + BATCH]
                    ],
                )
                self._changed(min(BATCH, len(rows) - start))
            return len(rows)

    def vacuum(self) -> None:
        with self._writing():
            if not self.target.lite:
                self.client.compact(self._physical)
                return
            copy = self._create(self._dim)
            try:
                for rows in self._scan("", [*ROW_FIELDS, "vector"]):
                    self._insert(
                        [
                            self._row(
                                r["id"], r["name"], r["enrolled"], r["model_id"], r["vector"], unpieces(r["thumbnail"])
                            )
                            for r in rows
                        ],
                        copy,
                    )
            except BaseException:
                self.client.drop_collection(copy)
                raise
            self._switch(copy, self._dim)

    # -- reads --------------------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        with self._reading():
            if len(vector) != self._dim:  # the collection was remade at another size since
                self.check_model()  # ModelMismatch, unless it is empty
                if len(vector) != self._dim:
                    return []
            try:
                hits = self.client.search(
                    self.target.collection,
                    data=[vector.tolist()],
                    limit=min(k, MAX_TOPK),
                    output_fields=["name", "model_id"],
                    search_params={"metric_type": "L2"},
                )[0]
            except Exception:
                self.check_model()  # another size since: ModelMismatch says so; else it was something else
                raise
            models = {h["entity"]["model_id"] for h in hits}
            if models - {self.caller.model_id or ""}:
                self.check_model()
            # Milvus's L2 is the squared distance
            return [(int(h["id"]), h["entity"]["name"], math.sqrt(max(0.0, float(h["distance"])))) for h in hits]

    def count(self) -> int:
        with self._reading():
            return self._count()

    def count_people(self) -> int:
        """Milvus has no count(DISTINCT ...) (and Milvus Lite ignores a query's group_by_fields):
        the distinct name keys, read a page at a time, are counted here. Only the 64-character
        key (and the id) of each entry travels, nothing is summed up per person."""
        with self._reading():
            return len({r["name_key"] for rows in self._scan("", ["name_key"]) for r in rows})

    def people(self) -> list[tuple[str, int, float, float]]:
        with self._reading():
            seen: dict[str, list] = {}
            for rows in self._scan("", ["name", "enrolled"]):
                for r in rows:
                    p = seen.setdefault(r["name"], [0, math.inf, -math.inf])
                    p[0], p[1], p[2] = p[0] + 1, min(p[1], r["enrolled"]), max(p[2], r["enrolled"])
            return [(n, c, a, b) for n, (c, a, b) in seen.items()]

    def entries(self, name: str | None) -> list[tuple[int, str, float, str | None, bool]]:
        fields = ["id", "name", "enrolled", "model_id", "has_thumbnail"]
        with self._reading():
            if name is None:
                rows = [r for batch in self._scan("", fields) for r in batch]
            else:
                rows = self._query(f'name_key == "{name_key(name)}"', fields)
            return sorted(
                (int(r["id"]), r["name"], float(r["enrolled"]), r["model_id"] or None, bool(r["has_thumbnail"]))
                for r in rows
            )

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        if not ids:
            return {}
        with self._reading():
            rows = self._query(f"id in [{','.join(str(int(i)) for i in ids)}]", ["vector"])
            return {int(r["id"]): np.asarray(r["vector"], np.float32) for r in rows}

    def owner(self, entry_id: int) -> str | None:
        with self._reading():
            rows = self._query(f"id == {int(entry_id)}", ["name"])
            return rows[0]["name"] if rows else None

    def thumbnail(self, entry_id: int) -> bytes | None:
        with self._reading():
            rows = self._query(f"id == {int(entry_id)}", ["thumbnail"])
            return unpieces(rows[0]["thumbnail"]) if rows else None

    def has_person(self, name: str) -> bool:
        with self._reading():
            return bool(self._query(f'name_key == "{name_key(name)}"', ["id"], limit=1))

    def similar_names(self, name: str) -> list[str]:
        with self._reading():
            return self._similar(name)

    def _similar(self, name: str) -> list[str]:
        wanted = name.casefold()
        return sorted(
            {
                r["name"]
                for rows in self._scan("", ["name"])
                for r in rows
                if r["name"].casefold() == wanted and r["name"] != name
            }
        )

    # -- transfer -------------------------------------------------------------------------------------------
    @contextmanager
    def export_rows(self, *, thumbnails: bool) -> Iterator[_Export]:
        with self._reading():
            yield _Export(self, self._stored()[0], self._dim, thumbnails)

    def import_rows(self, model_id: str | None, dim: int, rows: Iterable[Row], *, replace: bool) -> int:
        with self._writing():
            stored, count = self._stored()
            checks.check_import(stored, self._dim, model_id, dim, empty=replace or count == 0)
            target = self._create(dim) if replace or (count == 0 and dim != self._dim) else None
            added: list[int] = []
            try:
                batch: list[dict] = []
                for _, name, enrolled, _, vector, png in rows:
                    (entry,) = new_ids(1)
                    batch.append(self._row(entry, name, enrolled, model_id, vector, png))
                    added.append(entry)
                    if len(batch) == BATCH:
                        self._insert(batch, target)
                        batch = []
                self._insert(batch, target)
            except BaseException:  # all or nothing: take back what was added
                if target is not None:
                    self.client.drop_collection(target)
                else:
                    self._delete(added)
                raise
            if target is not None:
                self._switch(target, dim)
            if replace or count == 0:
                self.caller.dim = dim
            return len(added)

    @contextmanager
    def reembedding(self, model_id: str) -> Iterator[_Reembed]:
        with self._writing():
            job = _Reembed(self, model_id)
            try:
                yield job
            except BaseException:
                job.abandon()
                raise

    # -- lifecycle --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Let a change in progress in this process finish (at most busy_timeout), then close."""
        if self.closed:
            return
        waited = self._write_lock.acquire(timeout=self.busy_timeout) if hasattr(self, "_write_lock") else False
        if waited:
            self._write_lock.release()
        if self.target.lite and _unflushed.get(self.target.uri) and getattr(self, "_physical", None):
            try:  # so that the next start does not replay them into the slow memtable
                self.client.flush(self._physical)
                _unflushed[self.target.uri] = 0
            except Exception:  # noqa: BLE001 - they are in Milvus Lite's log anyway
                log.warning("Could not flush Milvus Lite at close; its log keeps the changes.")
        self.closed = True
        try:
            client = getattr(self, "client", None)
            if client is not None:
                client.close()
        finally:
            self._release_lite()


class _Export:
    def __init__(self, store: MilvusStore, model_id: str | None, dim: int, thumbnails: bool):
        self.store, self.model_id, self.dim, self.thumbnails = store, model_id, dim, thumbnails

    def rows(self) -> Iterator[Row]:
        fields = ["id", "name", "enrolled", "model_id", "vector"] + (["thumbnail"] if self.thumbnails else [])
        for rows in self.store._scan("", fields):
            for r in rows:
                yield (
                    int(r["id"]),
                    r["name"],
                    float(r["enrolled"]),
                    r["model_id"] or None,
                    np.asarray(r["vector"], np.float32),
                    unpieces(r.get("thumbnail")),
                )


class _Reembed:
    """Re-embedded rows go into a new collection; `finish` switches the alias to it."""

    def __init__(self, store: MilvusStore, model_id: str):
        self.store, self.model_id = store, model_id
        self.total = store._count()
        self.without_thumbnail = sorted(
            int(r["id"]) for rows in store._scan("has_thumbnail == false", ["id"]) for r in rows
        )
        self.target: str | None = None
        self.rows: dict[int, dict] = {}
        self.seen: set[int] = set(self.without_thumbnail)

    def thumbnails(self, batch: int) -> Iterator[list[tuple[int, bytes]]]:
        fields = ["id", "name", "enrolled", "thumbnail"]
        for rows in self.store._scan("has_thumbnail == true", fields, batch=batch):
            yield self._take(rows)
        while True:  # entries another replica added meanwhile
            late = [
                int(r["id"])
                for rows in self.store._scan("has_thumbnail == true", ["id"])
                for r in rows
                if int(r["id"]) not in self.seen
            ]
            if not late:
                return
            for start in range(0, len(late), batch):
                yield self._take(self.store._query(f"id in {late[start : start + batch]}", fields))

    def _take(self, rows: list[dict]) -> list[tuple[int, bytes]]:
        self.rows = {int(r["id"]): r for r in rows}
        self.seen.update(self.rows)
        return [(i, unpieces(r["thumbnail"]) or b"") for i, r in self.rows.items()]

    def update(self, vectors: list[tuple[int, np.ndarray]]) -> None:
        if self.target is None:
            self.target = self.store._create(len(vectors[0][1]))
        self.store._insert(
            [
                self.store._row(
                    i,
                    self.rows[i]["name"],
                    self.rows[i]["enrolled"],
                    self.model_id,
                    v,
                    unpieces(self.rows[i]["thumbnail"]),
                )
                for i, v in vectors
            ],
            self.target,
        )

    def finish(self, dim: int, drop: list[int]) -> None:
        store = self.store
        if self.target is None:
            self.target = store._create(dim)
        kept = {int(r["id"]) for rows in store._scan("", ["id"]) for r in rows}
        made = {int(r["id"]) for rows in store._scan("", ["id"], collection=self.target) for r in rows}
        store._delete(sorted(made - kept), self.target)  # removed meanwhile
        lost = kept - made - set(drop)
        if lost:
            log.warning(
                "%d entries added without a thumbnail during the re-embedding were not carried over: %s",
                len(lost),
                sorted(lost)[:20],
            )
        store._switch(self.target, dim)
        self.target = None
        store.caller.model_id, store.caller.dim = self.model_id, dim

    def abandon(self) -> None:
        if self.target is not None:
            self.store.client.drop_collection(self.target)
