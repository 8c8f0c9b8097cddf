"""Gallery backends, chosen by where the gallery is (its location):

    a folder                       -> faiss_store.FaissStore: SQLite + FAISS, embedded (the default)
    a path ending in .db           -> milvus_store.MilvusStore on Milvus Lite (embedded, one process)
    milvus://host:19530/collection -> milvus_store.MilvusStore on a Milvus server or cluster
    https://host[:port]/collection -> the same on a managed Milvus (token: $TWIN_MILVUS_TOKEN)

A new store is one module implementing base.VectorStore plus one line in STORES. Stores are
imported only when chosen, so the default gallery never imports pymilvus.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Caller, Chooser, ExportSource, ReembedJob, Row, VectorStore

__all__ = [
    "Caller",
    "ExportSource",
    "ReembedJob",
    "Row",
    "VectorStore",
    "STORES",
    "store_for",
    "open_store",
    "gallery_exists",
]


def _milvus(location: str) -> bool:
    lowered = location.lower().split("?", 1)[0]
    return lowered.startswith(("milvus://", "http://", "https://")) or lowered.rstrip("/\\").endswith(".db")


#: The first store whose predicate accepts the location holds the gallery.
STORES: list[Chooser] = [
    (_milvus, "index.stores.milvus_store:MilvusStore"),
    (lambda location: True, "index.stores.faiss_store:FaissStore"),
]


def store_for(location: str) -> Any:
    """The store class for a gallery location (imported on first use)."""
    for accepts, target in STORES:
        if accepts(location):
            module, _, name = target.partition(":")
            return getattr(importlib.import_module(module), name)
    raise LookupError(f"no store accepts {location!r}")  # unreachable: the last one accepts all


def open_store(location: str, caller: Caller, **options: Any) -> VectorStore:
    return store_for(location)(location, caller, **options)


def gallery_exists(location: str) -> bool:
    """Whether a gallery is already there (reading commands do not create one)."""
    return bool(store_for(location).exists(location))
