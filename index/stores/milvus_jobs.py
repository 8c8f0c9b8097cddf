"""The two long jobs of the Milvus store, over many rows: an export's consistent read of every
entry, and a re-embedding that fills a new collection and switches the alias to it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .base import Row
from .milvus_rows import unpieces

if TYPE_CHECKING:
    from .milvus_store import MilvusStore

log = logging.getLogger(__name__)


class Export:
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


class Reembed:
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
