"""The gallery on Milvus: Milvus Lite (a *.db path, embedded) or a Milvus server or cluster
(milvus://host:19530/collection; https://host/collection for a managed Milvus, with the token
in $TWIN_MILVUS_TOKEN). Servers: Milvus 2.3 to 2.6 (the tests run on 2.3.5, the `milvus`
package, and on Milvus Lite; what differs between versions is detected: milvus_calls.py).
Beside this file: milvus_location (where), milvus_lite (the embedded server's process),
milvus_rows (schema, rows, ids), milvus_calls (what is said to Milvus), milvus_jobs (export,
re-embed).

Milvus is the single source of truth: one row per entry (milvus_rows), no state here that two
replicas could disagree on. The collection the location names is an alias over a physical
collection `<name>_<token>`; re-embedding, `replace` imports and vacuum (Milvus Lite) build a
new one and switch the alias in one step, so every reader sees the old entries or the new
ones, never a mix. Reads are Strong (`consistency` option): a Gallery sees every change
another one (or another replica) acknowledged before the read started.

Changes. Milvus has no transactions; changes are serialised within a process (one lock per
collection, GalleryBusy after busy_timeout). Across replicas, an enrollment that may be a
retry has an id derived from what identifies it (name, model, photo: milvus_rows.
enrollment_id) and is written with upsert, so the same request taken by two replicas at
once is one row wherever it lands. Two embeddings of one photo that fall in different cells
(computed on different hardware) get different ids; then the check after the write (on a
server, 50 ms after) keeps the smallest id of the copies. An import that fails part-way
deletes what it added; a rename rewrites the person's rows (upsert). Re-embedding re-reads
entries added while it ran before it switches; changes that land in the last milliseconds
before the switch, on other replicas, can be lost: run `python -m index reembed` with the
other replicas stopped.

Faults: a server that does not answer (stopped, restarting, unreachable) makes each call
fail with GalleryUnavailable ("try again") within the client's timeout; the client reconnects
by itself when the server is back. Durability: a server acknowledges an insert or delete once
it is in its write-ahead log (kill -9 of the server loses nothing acknowledged: measured by
bench/milvus_faults.py); Milvus Lite writes its log to the OS at every change (it survives
kill -9 of the app) but does not fsync it.

Deleted data: a removal is immediate for every reader (a tombstone); the bytes stay in the
storage files until compaction. On a server `vacuum()` (run by `python -m index remove`)
requests one; Milvus's garbage collection then removes the old segment files once
`dataCoord.gc.dropTolerance` has passed (data changed within `common.retentionDuration` is
not compacted yet; backups keep their copies). Milvus Lite compacts only when data files
accumulate, so there `vacuum()` rewrites the collection and deletes the old files at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import checks
from ..errors import GalleryBusy, GalleryError, InvalidInput
from . import milvus_lite as lite
from .base import Caller, Row
from .milvus_calls import BATCH, MilvusCalls
from .milvus_jobs import Export, Reembed
from .milvus_location import DEFAULT_COLLECTION, DEFAULT_PORT, TOKEN_ENV, Target, location_options, parse, token
from .milvus_rows import ROW_FIELDS, name_key, new_ids, unpieces

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "MilvusStore",
    "Target",
    "location_options",
    "name_key",
    "new_ids",
    "parse",
]

log = logging.getLogger(__name__)

MAX_TOPK = 16_384  # Milvus's limit on one search
REPLICA_SETTLE_S = 0.05  # a server: wait this long before the after-insert retry check
LITE_FLUSH_EVERY = lite.FLUSH_EVERY

_lock = threading.Lock()
_writers: dict[tuple[str, str], threading.Lock] = {}  # one change at a time per collection, per process


class MilvusStore(MilvusCalls):
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
        self._server_version: str | None = None
        self.directory = Path(self.target.uri) if self.target.lite else None
        if caller.model_id is not None and len(caller.model_id.encode()) > 200:
            raise InvalidInput("A model id must be at most 200 bytes.")
        if self.target.lite:
            lite.open_directory(Path(self.target.uri))
        key = (self.target.uri, self.target.collection)
        with _lock:
            self._write_lock = _writers.setdefault(key, threading.Lock())
        try:
            self.client = MilvusClient(uri=self.target.uri, token=token(), timeout=self.timeout)
        except Exception as exc:
            self._release_lite()
            raise self._unreachable(exc, opening=True) from exc
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

        client = MilvusClient(uri=target.uri, token=token())
        try:
            return bool(client.has_collection(target.collection))
        finally:
            client.close()

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

    def _open_check(self) -> None:
        if self.closed:
            raise GalleryError("The gallery is closed.")

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
            row = self._row(0, name, time.time(), caller.model_id, vector, png)
            if retry_since is None:  # always a new entry
                (entry,) = new_ids(1)
                row["id"] = entry
                self._insert([row])
            else:
                copies = self._copies(key, vector, 0.0) if count else {}
                earlier = [i for i, enrolled in copies.items() if enrolled >= retry_since]
                if earlier:
                    return min(earlier)
                entry = self._enrollment_id(key, vector, generation=len(copies))
                row["id"] = entry
                self._upsert([row])  # a retry on another replica writes this same row
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
                first = min((i for i, t in self._copies(key, vector, retry_since).items()), default=entry)
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
                hits = self._read(
                    "search",
                    self.target.collection,
                    data=[vector.tolist()],
                    limit=min(k, MAX_TOPK),
                    output_fields=["name", "model_id"],
                    search_params={"metric_type": "L2"},
                    consistency_level=self.consistency,
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
            found = [
                (int(r["id"]), r["name"], float(r["enrolled"]), r["model_id"] or None, bool(r["has_thumbnail"]))
                for r in rows
            ]
            return sorted(found, key=lambda e: (e[2], e[0]))  # oldest first (ids of retries are hashes)

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
    def export_rows(self, *, thumbnails: bool) -> Iterator[Export]:
        with self._reading():
            yield Export(self, self._stored()[0], self._dim, thumbnails)

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
    def reembedding(self, model_id: str) -> Iterator[Reembed]:
        with self._writing():
            job = Reembed(self, model_id)
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
        if self.target.lite and lite.unflushed(self.target.uri) and getattr(self, "_physical", None):
            try:  # so that the next start does not replay them into the slow memtable
                self.client.flush(self._physical)
                lite.flushed(self.target.uri)
            except Exception:  # noqa: BLE001 - they are in Milvus Lite's log anyway
                log.warning("Could not flush Milvus Lite at close; its log keeps the changes.")
        self.closed = True
        try:
            client = getattr(self, "client", None)
            if client is not None:
                client.close()
        finally:
            self._release_lite()

    def _release_lite(self) -> None:
        if self.target.lite:
            lite.release(self.target.uri)
