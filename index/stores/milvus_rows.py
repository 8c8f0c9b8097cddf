"""A Twin gallery's rows in Milvus: the collection's schema, one entry as a row, and the ids.

Each entry is one row: id, name, a hash of the name (filters never quote user text),
enrollment time, model id, the thumbnail (PNG, base64 in 65,000-character pieces: Milvus has
no byte strings) and its flag, and the embedding.

Ids are below 2**53, so JavaScript clients keep them exact. An enrollment that may be a retry
(the Gallery's retry window) gets the id `enrollment_id` derives from what identifies it, so
the same request taken by two replicas is one row (written with upsert); one that is always
new (retry_window=0), an import or a fallback gets `new_ids`: milliseconds since 2025 x 4096
+ 12 random bits, increasing within a process and ordered by time across processes.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import checks
from .. import thumbnails as thumbs

DEFAULT_DIM = 128
ID_EPOCH_MS = 1_735_689_600_000  # 2025-01-01: ids are (ms since then) << 12 | 12 random bits
ID_CELLS = 16  # enrollment_id: embedding cells per unit (a re-computation's noise is ~1e-7)
PIECE = 65_000  # base64 characters per thumbnail piece (VARCHAR: <= 65,535 bytes)
PIECES = math.ceil(thumbs.MAX_BYTES * 4 / 3 / PIECE) + 8
FIELDS = ("id", "name", "name_key", "enrolled", "model_id", "has_thumbnail", "thumbnail", "vector")
ROW_FIELDS = ["id", "name", "enrolled", "model_id", "has_thumbnail", "thumbnail"]

_lock = threading.Lock()
_last_id = 0


def schema(dim: int) -> Any:
    from pymilvus import DataType, MilvusClient

    made = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    made.add_field("id", DataType.INT64, is_primary=True)
    made.add_field("name", DataType.VARCHAR, max_length=4 * checks.MAX_NAME_LENGTH)
    made.add_field("name_key", DataType.VARCHAR, max_length=64)
    made.add_field("enrolled", DataType.DOUBLE)
    made.add_field("model_id", DataType.VARCHAR, max_length=256)
    made.add_field("has_thumbnail", DataType.BOOL)
    made.add_field(
        "thumbnail",
        DataType.ARRAY,
        element_type=DataType.VARCHAR,
        max_capacity=PIECES,
        max_length=PIECE,
        mmap_enabled=True,
    )  # on a server: kept on disk, not in memory
    made.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
    return made


def row(entry_id: int, name: str, enrolled: float, model: str | None, vector: np.ndarray, png: bytes | None) -> dict:
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


def scalar_index_for(version: str) -> str:
    """ "v2.3.5", "v2.3.5-lite" (the `milvus` package) -> "Trie"; "v2.4.0", "v2.6.1",
    "milvus_lite-3.2.2" (Milvus Lite, which has INVERTED) -> "INVERTED"."""
    found = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if found and (int(found[1]), int(found[2])) < (2, 4):
        return "Trie"
    return "INVERTED"


#: Build parameters a Milvus 2.3 server requires (it refuses HNSW or IVF without them); later
#: servers and Milvus Lite default to these same values when none are given.
INDEX_PARAMS_2_3 = {"HNSW": {"M": 30, "efConstruction": 360}, "IVF_FLAT": {"nlist": 128}}


def index_params_for(version: str, index_type: str) -> dict:
    """The vector index's build parameters to send: none, except what a 2.3 server requires."""
    return dict(INDEX_PARAMS_2_3.get(index_type, {})) if scalar_index_for(version) == "Trie" else {}


def new_ids(count: int) -> list[int]:
    """Entry ids: increasing within this process, ordered by time across processes."""
    global _last_id
    with _lock:
        stamp = ((int(time.time() * 1000) - ID_EPOCH_MS) << 12) | secrets.randbits(12)
        first = max(stamp, _last_id + 1)
        _last_id = first + count - 1
    return list(range(first, first + count))


def enrollment_id(key: str, model_id: str | None, vector: np.ndarray, generation: int) -> int:
    """The id of an enrollment, from what identifies it: the name (its key), the model, the
    photo (its embedding, in cells of 1/ID_CELLS per dimension, so that the float noise of a
    re-computation on another machine rarely changes it) and how many earlier enrollments of
    this photo under this name lie outside the retry window (so a deliberate re-enrollment
    after the window is a new entry). Two replicas that take the same retry compute the same
    id and upsert the same row. Below 2**53, like new_ids."""
    cells = np.floor(np.asarray(vector, np.float32) * ID_CELLS).astype(np.int8).tobytes()
    digest = hashlib.sha256(f"{key}\0{model_id or ''}\0{int(generation)}\0".encode() + cells).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) or 1


def name_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def pieces(png: bytes | None) -> list[str]:
    text = base64.b64encode(png).decode("ascii") if png else ""
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]


def unpieces(parts: Iterable[str] | None) -> bytes | None:
    text = "".join(parts or [])
    return base64.b64decode(text) if text else None
