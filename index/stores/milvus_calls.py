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
from .milvus_rows import DEFAULT_DIM, FIELDS, enrollment_id, new_ids, scalar_index_for

log = logging.getLogger(__name__)

BATCH = 256
#: What a server that is down, starting or stopping answers (connection refused, a deadline
#: passed, "find no available rootcoord" while its coordinators stop, "not ready" while they start)
DOWN = ("unavailable", "connect", "deadline", "no available", "not ready", "not healthy", "node not match", "stopping")


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
    _scalar_index: str | None

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
        index.add_index("vector", index_type=self.index_type, metric_type="L2")
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
        if self._scalar_index is None:
            self._scalar_index = scalar_index_for(str(self.client.get_server_version(timeout=self.timeout)))
        return self._scalar_index

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
    def _query(self, expr: str, fields: list[str], *, limit: int | None = None, collection: str | None = None):
        kwargs: dict[str, Any] = {"limit": limit} if limit else {}
        return self.client.query(
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
        """The id every replica gives this enrollment (see enrollment_id), unless an unrelated
        entry already has it (2**-53 per pair): then a fresh one."""
        entry = enrollment_id(key, self.caller.model_id, vector, generation)
        if self._query(f"id == {entry}", ["id"], limit=1):
            (entry,) = new_ids(1)
        return entry
