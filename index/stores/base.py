"""What a store is: the VectorStore protocol every gallery backend implements.

The Gallery (index/gallery.py) validates every input, owns the messages and the API; a store
only holds the data: names, enrollment times, model ids, embeddings and thumbnails, and
answers nearest-neighbour searches. Each store applies the same rules, which live in
index/checks.py (the model-id guard, "the same photo" for a retried enrollment), and its own
docstring says what it guarantees about concurrency, durability and deleted data.

Everything a store receives is already clean: names as `checks.clean_name` leaves them,
embeddings as float32 unit vectors of the caller's size, entry ids as positive ints,
thumbnails as PNG bytes re-encoded by index/thumbnails.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

#: (entry id, name, enrolled (epoch seconds), model id, embedding (float32), PNG or None)
Row = tuple[int, str, float, "str | None", np.ndarray, "bytes | None"]


@dataclass
class Caller:
    """The model whose embeddings a Gallery brings: shared by the Gallery and its store (a
    re-embed or an import into an empty gallery changes it)."""

    model_id: str | None
    dim: int


class ExportSource(Protocol):
    """A consistent view of every entry, for an export."""

    model_id: str | None
    dim: int

    def rows(self) -> Iterator[Row]: ...


class ReembedJob(Protocol):
    """One re-embedding of a whole gallery: nothing of it is visible until `finish`, and
    leaving the `with` block without finishing leaves the gallery as it was."""

    total: int
    without_thumbnail: list[int]

    def thumbnails(self, batch: int) -> Iterator[list[tuple[int, bytes]]]: ...

    def update(self, vectors: list[tuple[int, np.ndarray]]) -> None:
        """New embeddings (entry id, float32 unit vector) of the new model."""

    def finish(self, dim: int, drop: list[int]) -> None:
        """Every entry now has the new model's embedding (of size dim); delete `drop`."""


class VectorStore(Protocol):
    """A gallery's data. All methods are thread-safe; reads never wait for a writer."""

    kind: str  # "faiss", "milvus", ...: what `python -m index` and the app report
    location: str  # what the user named: a folder, a *.db path, a milvus:// URL
    directory: Path | None  # the local folder or data directory, None for a server
    closed: bool

    @staticmethod
    def exists(location: str) -> bool:
        """Whether a gallery is at `location` already (checked without creating one)."""

    # -- the model ------------------------------------------------------------------------------
    def check_model(self) -> None:
        """ModelMismatch unless the stored embeddings are the caller's model's (empty: fine)."""

    def stored_model_id(self) -> str | None: ...

    # -- changes (each one durable when it returns; GalleryBusy when it cannot start) -----------
    def add(self, name: str, vector: np.ndarray, png: bytes | None, *, retry_since: float | None) -> int:
        """Store one entry of the caller's model (an empty gallery adopts it; another model's
        gallery raises ModelMismatch). retry_since: when `name` has an entry of this very photo
        enrolled at or after this time, return its id and add nothing."""

    def remove(self, ids: list[int]) -> int:
        """Delete these entries (vectors and thumbnails); returns how many existed."""

    def remove_person(self, name: str) -> list[int]:
        """Delete every entry of `name`; returns their ids (NotFound when there are none)."""

    def rename(self, old: str, new: str, *, merge: bool) -> int: ...

    def vacuum(self) -> None:
        """Make what was deleted physically gone from the store's files, as far as it can."""

    # -- reads ----------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        """(entry id, name, Euclidean distance) of the k nearest entries, nearest first."""

    def vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored embeddings (float32) of these entries; ids not found are left out."""

    def count(self) -> int: ...

    def count_people(self) -> int:
        """How many people (distinct names) are enrolled: without listing them."""

    def people(self) -> list[tuple[str, int, float, float]]:
        """(name, entries, first enrolled, last enrolled) per person."""

    def entries(self, name: str | None) -> list[tuple[int, str, float, str | None, bool]]:
        """(id, name, enrolled, model id, has thumbnail), oldest first."""

    def owner(self, entry_id: int) -> str | None: ...

    def thumbnail(self, entry_id: int) -> bytes | None: ...

    def has_person(self, name: str) -> bool: ...

    def similar_names(self, name: str) -> list[str]:
        """Enrolled names equal to `name` ignoring case (for "did you mean")."""

    # -- transfer (index/transfer.py drives these) ----------------------------------------------
    def export_rows(self, *, thumbnails: bool) -> AbstractContextManager[ExportSource]: ...

    def import_rows(self, model_id: str | None, dim: int, rows: Iterable[Row], *, replace: bool) -> int:
        """Add checked rows (replace: instead of every entry), all or nothing; ModelMismatch
        (checks.check_import) when the gallery is not empty and holds another model."""

    def reembedding(self, model_id: str) -> AbstractContextManager[ReembedJob]:
        """Re-embed every entry with model `model_id`; on finish the caller's model is it."""

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None: ...


#: How a store module is named where stores are chosen (index/stores/__init__.py):
#: a predicate on the location, and "module:Class".
Chooser = tuple[Callable[[str], bool], str]
