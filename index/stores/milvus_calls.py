"""What the Milvus store says to Milvus: the collection behind a gallery's alias (made when
missing, with the scalar index the server's version has; checked, loaded, switched in one
step), the queries, scans and writes, and what the server's errors mean.

Servers: Milvus 2.3 to 2.6 and Milvus Lite. The differences that matter here are detected,
not assumed: 2.3 has no INVERTED index on VARCHAR (it refuses it; a Trie is used instead,
chosen from get_server_version). Every query and search names its consistency level (Strong
unless the `consistency` option says otherwise): left to the server, 2.3's default (Bounded)
does not show a replica what another one has just written (tests/test_milvus_server.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import checks
from ..errors import GalleryBusy, GalleryCorrupt, GalleryError, GalleryUnavailable
from . import milvus_lite as lite
from . import milvus_rows
from .base import Caller
from .milvus_location import Target
from .milvus_rows import DEFAULT_DIM, FIELDS, enrollment_id, index_params_for, new_ids, scalar_index_for

log = logging.getLogger(__name__)


class _OneLine(logging.Filter):
    """pymilvus logs each failed call with its stack (in the message and as exc_info): while a
    server is down that is a traceback per request in the app's log. The store logs what it
    did about it; pymilvus's line is kept, its stack dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Traceback" in message or record.exc_info:
            record.msg, record.args = message.split("\nTraceback", 1)[0], ()
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("pymilvus.decorators", "pymilvus.client.connection_manager"):
    logging.getLogger(_name).addFilter(_OneLine())

BATCH = 256
#: What a server that is down, starting or stopping answers (connection refused, a deadline
#: passed, "find no available rootcoord" while its coordinators stop, "not ready" while they start)
DOWN = (
    "unavailable",
    "connect",
    "deadline",
    "no available",
    "not ready",
    "not healthy",
    "node not match",
    "stopping",
    "not loaded",
)


class MilvusCalls:
    """The calls; MilvusStore (milvus_store.py) builds the gallery's operations from them."""

    client: Any
    target: Target
    caller: Caller
    consistency: str
    index_type: str
    timeout: float
    _physical: str
    _dim: int
    _server_version: str | None

    def _unreachable(self, exc: BaseException, *, opening: bool = False) -> GalleryError:
        """Opening: whoever starts the app or the CLI is told where and why; a request's
        answer (shown to users) is the plain UNAVAILABLE_MESSAGE and the details are logged."""
        if self.target.lite:
            return lite.busy(self.target.uri, exc)
        if opening:
            return GalleryUnavailable(f"The gallery is unavailable: cannot reach Milvus at {self.target.uri} ({exc}).")
        log.warning("Milvus at %s does not answer: %s", self.target.uri, exc)
        return GalleryUnavailable()

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

        physical = f"{self.target.collection}_{uuid.uuid4().hex[:12]}"
        schema = milvus_rows.schema(dim)
        index = self.client.prepare_index_params()
        params = index_params_for(self._version(), self.index_type)
        index.add_index("vector", index_type=self.index_type, metric_type="L2", params=params)
        index.add_index("name_key", index_type=self._name_index())
        try:
            self.client.create_collection(
                physical, schema=schema, index_params=index, consistency_level=self.consistency, timeout=self.timeout
            )
        except BaseException:  # made, then refused an index: leave no half-made collection behind
            try:
                self.client.drop_collection(physical, timeout=self.timeout)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                log.warning("Could not drop the half-made Milvus collection %s.", physical)
            raise
        return physical

    def _name_index(self) -> str:
        """The scalar index on name_key this server has: INVERTED from Milvus 2.4 (and in
        Milvus Lite); Milvus 2.3 indexes VARCHAR with a Trie and refuses INVERTED."""
        return scalar_index_for(self._version())

    def _version(self) -> str:
        """The server's version ("v2.3.5", "milvus_lite-3.2.2"), asked once."""
        if self._server_version is None:
            self._server_version = str(self.client.get_server_version(timeout=self.timeout))
        return self._server_version

    def _switch(self, physical: str, dim: int) -> None:
        """Point the alias at `physical` (one step for every reader), then drop the old one."""
        old = self._physical
        self.client.alter_alias(collection_name=physical, alias=self.target.collection)
        self._physical, self._dim = physical, dim
        try:
            self.client.drop_collection(old)
        except Exception:  # noqa: BLE001 - the alias has moved; an orphan only costs space
            log.exception("Could not drop the old Milvus collection %s.", old)

    def _failure(self, exc: BaseException) -> GalleryError:
        message = " ".join(str(getattr(exc, "message", exc)).split())[:300]
        code = getattr(exc, "code", None)
        if code == 8 or "rate limit" in message.lower():
            return GalleryBusy()
        if any(sign in message.lower() for sign in DOWN):
            return self._unreachable(exc)
        return GalleryError(f"Milvus refused the request: {message}")

    # -- small queries ------------------------------------------------------------------------------
    def _read(self, method: str, collection: str, *args: Any, **kwargs: Any) -> Any:
        """A query or search; a collection the server has not loaded (after a restart it reloads
        them in its own time) is loaded now, within the timeout, and asked again once."""
        call = getattr(self.client, method)
        try:
            return call(collection, *args, **kwargs)
        except Exception as exc:
            if "not loaded" not in str(exc).lower():
                raise
            log.warning("Milvus collection %s is not loaded (the server restarted?): loading it.", collection)
            physical = self._physical if collection == self.target.collection else collection
            self.client.load_collection(physical, timeout=max(self.timeout, 60.0))
            return call(collection, *args, **kwargs)

    def _query(self, expr: str, fields: list[str], *, limit: int | None = None, collection: str | None = None):
        kwargs: dict[str, Any] = {"limit": limit} if limit else {}
        return self._read(
            "query",
            collection or self.target.collection,
            filter=expr,
            output_fields=fields,
            consistency_level=self.consistency,
            **kwargs,
        )

    def _scan(
        self, expr: str, fields: list[str], *, collection: str | None = None, batch: int = BATCH
    ) -> Iterator[list[dict]]:
        """Every matching row, `batch` at a time, in id order: pages of `id > last` asked for
        the way Milvus's query iterator asks (pages in primary-key order). (pymilvus sends an
        iterator's pages at the collection's consistency level, which `_create` sets to the
        store's: Strong unless the `consistency` option says otherwise.)"""
        last = 0
        while True:
            where = f"id > {last}" + (f" and ({expr})" if expr else "")
            rows = self._read(
                "query",
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
        return milvus_rows.row(entry_id, name, enrolled, model, vector, png)

    def _insert(self, rows: list[dict], collection: str | None = None) -> None:
        for start in range(0, len(rows), BATCH):
            self.client.insert(collection or self.target.collection, rows[start : start + BATCH])
            self._changed(min(BATCH, len(rows) - start), collection)

    def _upsert(self, rows: list[dict]) -> None:
        self.client.upsert(self.target.collection, rows)
        self._changed(len(rows))

    def _delete(self, ids: list[int], collection: str | None = None) -> None:
        for start in range(0, len(ids), 1000):
            self.client.delete(collection or self.target.collection, ids=[int(i) for i in ids[start : start + 1000]])
            self._changed(min(1000, len(ids) - start), collection)

    def _changed(self, rows: int, collection: str | None = None) -> None:
        """Milvus Lite: flush every LITE_FLUSH_EVERY changed rows (see milvus_lite.changed). A
        server seals and indexes its growing segments itself."""
        if self.target.lite and lite.changed(self.target.uri, rows):
            self.client.flush(collection or self._physical)

    def _copies(self, key: str, vector: np.ndarray, since: float) -> dict[int, float]:
        """{id: enrolled} of the entries of this name and model since `since` that are this very photo."""
        rows = self._query(
            f'name_key == "{key}" and enrolled >= {float(since)!r}', ["id", "enrolled", "model_id", "vector"]
        )
        mine = self.caller.model_id or ""
        return {
            int(r["id"]): float(r["enrolled"])
            for r in rows
            if r["model_id"] == mine
            and checks.same_photo([(int(r["id"]), np.asarray(r["vector"], np.float32))], vector) is not None
        }

    def _enrollment_id(self, key: str, vector: np.ndarray, *, generation: int) -> int:
        """The id every replica gives this enrollment (see enrollment_id). A row may hold it
        already: this very enrollment, written by another replica since our look for copies
        (then it is the same row: keep the id), or, with odds of 2**-53 per pair, an unrelated
        entry (then a fresh id, rather than overwrite it)."""
        entry = enrollment_id(key, self.caller.model_id, vector, generation)
        found = self._query(f"id == {entry}", ["name_key", "model_id", "vector"], limit=1)
        if found:
            held = found[0]
            same = (
                held["name_key"] == key
                and held["model_id"] == (self.caller.model_id or "")
                and checks.same_photo([(entry, np.asarray(held["vector"], np.float32))], vector) is not None
            )
            if not same:
                (entry,) = new_ids(1)
        return entry
