"""Gallery: one-shot enrollments, searched by face embedding. The API and its input checks;
the data lives in a store chosen by the gallery's location (index/stores/):

    Gallery("data/gallery")                    a folder: SQLite + FAISS, embedded (the default)
    Gallery("data/gallery.db")                 Milvus Lite, embedded (one process at a time)
    Gallery("milvus://host:19530/faces")       a Milvus server or cluster (several app replicas)
    Gallery("https://host/faces")              a managed Milvus; token from $TWIN_MILVUS_TOKEN

    g = open_gallery("data/gallery", engine)   # for this engine's model, threshold and size
    entry = g.enroll("Ada Lovelace", face.embedding, thumbnail=face.crop)
    g.search(face.embedding, k=5)   -> [Match(name, entry_id, distance)], nearest first
    g.identify(face.embedding)      -> Match | None (None when nothing is within the threshold)

Knows nothing of images beyond storing a thumbnail: embeddings come from the caller. Every
input is checked here (index/checks.py) before a store sees it; the stores apply the same
model-id guard and retried-enrollment rule, and each says in its docstring what it
guarantees about concurrency, durability and deleted data. Thread-safe; several Gallery
objects (or processes, where the store allows) may share one gallery and see each other's
changes. Reads never wait for a writer; a change that cannot start within `busy_timeout`
raises GalleryBusy and changes nothing.

(About 390 lines: the public API, a few lines each over the store, plus the input checks that
guard it; the storage itself is in index/store.py and index/stores/.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import checks, transfer
from . import thumbnails as thumbs
from .checks import MAX_NAME_LENGTH, RETRY_DISTANCE, clean_name, clean_vector  # noqa: F401
from .errors import GalleryError, InvalidInput, ModelMismatch, NotFound
from .exports import MAX_IMPORT_ENTRIES
from .store import BUSY_TIMEOUT_S
from .stores import Caller, VectorStore, open_store
from .stores.faiss_store import DB_NAME, DEFAULT_EMBEDDING_SIZE, DEFAULT_EXACT_LIMIT, INDEX_NAME  # noqa: F401

log = logging.getLogger(__name__)

MAX_K = 1000
DEFAULT_BUSY_TIMEOUT_S = BUSY_TIMEOUT_S  # a change waits this long for another writer, then GalleryBusy
DEFAULT_RETRY_WINDOW_S = 600.0  # enroll: the same photo under the same name within this time is a retry


@dataclass(frozen=True)
class Match:
    """One search result: an enrolled entry and its Euclidean distance to the query."""

    name: str
    entry_id: int
    distance: float


@dataclass(frozen=True)
class Person:
    name: str
    entries: int
    first_enrolled: datetime
    last_enrolled: datetime


@dataclass(frozen=True)
class Entry:
    entry_id: int
    name: str
    enrolled: datetime
    model_id: str | None
    has_thumbnail: bool


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def _seconds(value: float, what: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InvalidInput(f"{what} must be a number of seconds >= 0, not {value!r}.")
    return value


class Gallery:
    """Named face embeddings at `location` (a folder, a *.db path or a Milvus URL).

    model_id:       the model whose embeddings this caller brings (engine.model_id). A gallery
                    holding another model's embeddings refuses enroll/search/identify with
                    ModelMismatch until `reembed` (python -m index reembed); an empty one adopts it.
    threshold:      default Euclidean threshold for identify (open_gallery passes the engine's
                    identification_threshold, else its verification threshold).
    embedding_size: expected vector length (engine.embedding_size); default: the stored one, or 128.
    thumbnails:     keep the aligned crop given to enroll (as PNG). False: never store one.
    busy_timeout:   seconds a change waits for another writer before it raises GalleryBusy.
    retry_window:   seconds within which enrolling the same embedding (RETRY_DISTANCE) under the
                    same name again returns the first entry instead of adding a duplicate
                    (a client that retried after a lost reply); 0 turns this off.
    options:        the store's own: for a folder exact_limit, nprobe, save_every, background
                    (faiss_store.FaissStore); for Milvus index, consistency, collection,
                    timeout (milvus_store.MilvusStore; the token comes from $TWIN_MILVUS_TOKEN).
    """

    def __init__(
        self,
        directory: str | Path,
        model_id: str | None = None,
        *,
        threshold: float | None = None,
        embedding_size: int | None = None,
        thumbnails: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        retry_window: float = DEFAULT_RETRY_WINDOW_S,
        **options: Any,
    ):
        busy_timeout = _seconds(busy_timeout, "busy_timeout")
        self.retry_window = _seconds(retry_window, "retry_window")
        self.busy_timeout = busy_timeout
        self.threshold = None if threshold is None else float(threshold)
        self.keep_thumbnails = bool(thumbnails)
        self._caller = Caller(model_id, int(embedding_size or 0))
        self.store: VectorStore = open_store(str(directory), self._caller, busy_timeout=busy_timeout, **options)
        self.directory = self.store.directory
        self.location = self.store.location

    @property
    def model_id(self) -> str | None:
        return self._caller.model_id

    @property
    def embedding_size(self) -> int:
        return self._caller.dim

    @property
    def kind(self) -> str:
        """Which store holds the gallery: "faiss" (a folder) or "milvus"."""
        return self.store.kind

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Finish what is in progress (a change, a background rebuild), then close the store."""
        self.store.close()

    @property
    def _closed(self) -> bool:
        return self.store.closed

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({self.location!r}, model_id={self.model_id!r})"

    # -- writing ----------------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        embedding: np.ndarray,
        thumbnail: np.ndarray | bytes | None = None,
        *,
        retry_window: float | None = None,
    ) -> int:
        """Store one face of `name`; returns its entry id. Durable when it returns.

        A retry is not a duplicate: when `name` already has an entry of this very face (the
        same embedding: distance < RETRY_DISTANCE) enrolled less than `retry_window` seconds
        ago (default: the gallery's, 10 minutes), that entry's id is returned and nothing is
        added. So a client that lost the reply to a committed enrollment can simply send it again.

        A name that looks like an enrolled one without being it (checks.name_key: a Cyrillic
        "о" in "Tony Blair", a doubled space) is refused, naming the enrolled one.

        Raises InvalidInput (a ValueError) for a bad name, embedding or thumbnail, ModelMismatch
        when the gallery holds another model's embeddings, GalleryBusy when another program
        has been changing the gallery for longer than busy_timeout; nothing is stored then.
        """
        name = self.check_name(name)
        vector = clean_vector(embedding, self.embedding_size)
        window = self.retry_window if retry_window is None else float(retry_window)
        if not (math.isfinite(window) and window >= 0):
            raise InvalidInput(f"retry_window must be a number of seconds >= 0, not {retry_window!r}.")
        png = thumbs.encode(thumbnail) if (thumbnail is not None and self.keep_thumbnails) else None
        return self.store.add(name, vector, png, retry_since=time.time() - window if window > 0 else None)

    def _enrolled(self, name: object) -> str:
        """A name to look up: as typed when someone is enrolled under exactly it (a name stored
        before today's rules, which clean_name would now refuse or rewrite, can still be
        listed, renamed and deleted), else its clean form."""
        try:
            clean = clean_name(name)
        except InvalidInput:
            clean = None
        # only a name that today's rules refuse or rewrite costs this lookup
        if (
            isinstance(name, str)
            and clean != name
            and 0 < len(name) <= 4 * MAX_NAME_LENGTH
            and self.store.has_person(name)
        ):
            return name
        return clean if clean is not None else clean_name(name)

    def check_name(self, name: object, *, besides: str | None = None) -> str:
        """The clean form of a name to enroll (checks.clean_name), refused with InvalidInput
        when it looks like another enrolled name without being it (besides: a name that
        does not count, the old name of a rename). One indexed lookup on a folder gallery."""
        name = clean_name(name)
        if self.store.has_person(name):  # more photos of someone enrolled: one indexed lookup
            return name
        like = self.names_like(name)
        other = None if name in like else checks.look_alike(name, [n for n in like if n != besides])
        if other is not None:
            raise checks.looks_like(name, other)
        return name

    def names_like(self, name: str) -> list[str]:
        """The enrolled names that look like `name` (its own included, when enrolled)."""
        key = checks.name_key(clean_name(name))
        lookup = getattr(self.store, "names_like", None)
        if lookup is not None:
            return lookup(key)
        # stores without the index (Milvus): every name is read, once per new name enrolled
        return [n for n, *_ in self.store.people() if checks.name_key(n) == key]

    def generation(self) -> int | None:
        """A number that grows whenever entries are deleted, by this process or another (the
        CLI, another app replica); None when the store keeps none (then ask `owner` per entry)."""
        counter = getattr(self.store, "generation", None)
        return None if counter is None else int(counter())

    def remove_entry(self, entry_id: int) -> None:
        """Delete one entry, its vector and its thumbnail, for good. NotFound if there is none."""
        number = checks.entry_id(entry_id)
        if number is None:
            raise NotFound(f"There is no entry {entry_id!r}.")
        if not self.store.remove([number]):
            raise NotFound(f"There is no entry {entry_id}.")

    def remove_person(self, name: str) -> int:
        """Delete every entry of `name` (vectors and thumbnails, for good); returns how many."""
        return len(self.store.remove_person(self._enrolled(name)))

    def rename_person(self, old: str, new: str, *, merge: bool = False) -> int:
        """Rename a person (all their entries); returns how many entries. Renaming onto a name
        already enrolled merges the two only with merge=True. A new name that looks like
        another enrolled one (not `old`) is refused, naming it: to merge, rename onto it exactly."""
        old = self._enrolled(old)
        return self.store.rename(old, self.check_name(new, besides=old), merge=merge)

    def vacuum(self) -> None:
        """Make deleted data physically gone from the store's files and compact what remains
        (a folder: VACUUM; Milvus: see milvus_store for what it can promise)."""
        self.store.vacuum()

    # -- reading ----------------------------------------------------------------------------
    def search(self, embedding: np.ndarray, k: int = 5, *, per_person: bool = False) -> list[Match]:
        """The k nearest entries, nearest first (per_person: the nearest entry of each of the
        k nearest people). Approximate on large galleries. Never waits for a writer."""
        vector = clean_vector(embedding, self.embedding_size)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be a whole number from 1 to {MAX_K}, not {k!r}.")
        fetch = int(k)
        while True:
            found = self.store.search(vector, fetch)
            matches = [Match(name, i, d) for i, name, d in found]
            if per_person:
                best: dict[str, Match] = {}
                for m in matches:
                    best.setdefault(m.name, m)
                matches = list(best.values())
            if len(matches) >= k or len(found) < fetch:
                return matches[:k]
            fetch *= 4

    def identify(self, embedding: np.ndarray, threshold: float | None = None) -> Match | None:
        """The nearest entry if it is within the threshold (distance <= threshold), else None."""
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold is None or not math.isfinite(threshold):
            raise InvalidInput("identify needs a threshold: pass threshold= here or to Gallery(...).")
        best = self.search(embedding, k=1)
        return best[0] if best and best[0].distance <= threshold else None

    def name(self, embedding: np.ndarray, naming: Any) -> Any:
        """Who this face is, as `naming` (engine.identification.Naming) decides: the RERANK
        nearest entries, with every entry of their people when it scores a person by the mean of
        their photos, re-scored against its cohort and judged by its threshold for this
        gallery's number of people. Returns its `Named`."""
        vector = clean_vector(embedding, self.embedding_size)
        owners = {i: n for i, n, _ in self.store.search(vector, int(naming.rerank))}
        if naming.templates == "mean":
            for person in dict.fromkeys(owners.values()):
                owners.update({i: person for i, *_ in self.store.entries(person)})
        vectors = self.store.vectors(list(owners))
        entries = [(i, n, vectors[i]) for i, n in owners.items() if i in vectors]
        return naming.decide(vector, entries, self.count_people())

    def people(self) -> list[Person]:
        """Everyone enrolled: name, number of entries, first and last enrollment (UTC)."""
        return sorted(
            (Person(n, c, _when(a), _when(b)) for n, c, a, b in self.store.people()),
            key=lambda p: (p.name.casefold(), p.name),
        )

    def people_page(self, page: int = 1, per_page: int = 50, *, start: str = "") -> tuple[list[Person], int]:
        """One page of people in name order (code points) and how many people there are (from
        the first name >= `start` on). A folder gallery reads only the page from its name
        index: milliseconds at a million people. Other stores list everyone, then slice."""
        page, per_page = int(page), int(per_page)
        if page < 1 or not 1 <= per_page <= MAX_K:
            raise InvalidInput(f"page must be >= 1 and per_page from 1 to {MAX_K}.")
        start = start if isinstance(start, str) else ""
        offset = (page - 1) * per_page
        lookup, count = getattr(self.store, "people_page", None), getattr(self.store, "count_names", None)
        if lookup is not None and count is not None:
            rows, total = lookup(start, offset, per_page), count(start)
        else:
            everyone = sorted(r for r in self.store.people() if r[0] >= start)
            rows, total = everyone[offset : offset + per_page], len(everyone)
        return [Person(n, c, _when(a), _when(b)) for n, c, a, b in rows], int(total)

    def entry_ids(self, names: list[str]) -> dict[str, list[int]]:
        """name -> its entry ids, oldest first, for a page of people (one query on a folder)."""
        clean = [n for n in names if isinstance(n, str)]  # names as the store gave them
        found: dict[str, list[int]] = {n: [] for n in clean}
        lookup = getattr(self.store, "entry_ids", None)
        if lookup is None:
            return {n: [i for i, *_ in self.store.entries(n)] for n in clean}
        for name, entry in lookup(clean):
            found[name].append(int(entry))
        return found

    def count_people(self) -> int:
        """How many people are enrolled (len(people()) without listing them: one COUNT in SQLite;
        on Milvus, a scan of the name keys alone). Never waits for a writer."""
        return self.store.count_people()

    def entries(self, name: str | None = None) -> list[Entry]:
        """Every entry (or those of one person: one indexed query), oldest first."""
        name = None if name is None else self._enrolled(name)
        return [Entry(i, n, _when(t), m, bool(h)) for i, n, t, m, h in self.store.entries(name)]

    def owner(self, entry_id: int) -> str | None:
        """The name an entry is enrolled under, or None when there is no such entry (one
        primary-key lookup)."""
        number = checks.entry_id(entry_id)
        return None if number is None else self.store.owner(number)

    def thumbnail(self, entry_id: int) -> bytes | None:
        """The stored PNG of an entry, or None: thumbnails off, none given, no such entry, or a
        stored thumbnail that does not decode as a PNG within the size limits (logged as a
        warning: one bad row must not break a page that shows many)."""
        number = checks.entry_id(entry_id)
        png = None if number is None else self.store.thumbnail(number)
        if png is None:
            return None
        try:
            return thumbs.check(png)
        except InvalidInput as exc:
            log.warning("The thumbnail of entry %d is unusable and is not shown: %s", number, exc)
            return None

    def __len__(self) -> int:
        return self.store.count()

    def __contains__(self, name: object) -> bool:
        try:
            name = self._enrolled(name)
        except InvalidInput:
            return False
        return self.store.has_person(name)

    @property
    def model_mismatch(self) -> str | None:
        """None when enroll/search work; else the message ModelMismatch would carry."""
        try:
            self.store.check_model()
        except ModelMismatch as exc:
            return str(exc)
        return None

    @property
    def stored_model_id(self) -> str | None:
        """The model whose embeddings the gallery holds now (None: not recorded, or empty)."""
        return self.store.stored_model_id()

    # -- index maintenance (a folder's FAISS cache; nothing to do for other stores) ----------
    @property
    def index_kind(self) -> str | None:
        """'flat' or 'ivf' once a folder's index is loaded, else None."""
        return getattr(self.store, "index_kind", None)

    def rebuild(self) -> None:
        """Rebuild a folder's FAISS index from SQLite now (and save it)."""
        self._maintain("rebuild")

    def save(self) -> None:
        """Save a folder's FAISS index file now (it is a cache: SQLite alone is enough to recover)."""
        self._maintain("save")

    def wait(self) -> None:
        """Wait until a background rebuild (if any) has finished."""
        self._maintain("wait")

    def _maintain(self, action: str) -> None:
        self._open_check()
        method = getattr(self.store, action, None)
        if method is not None:
            method()

    def _open_check(self) -> None:
        if self.store.closed:
            raise GalleryError("The gallery is closed.")

    # -- whole-gallery moves (index/transfer.py) ----------------------------------------------
    def reembed(
        self,
        embed: Callable[[np.ndarray], np.ndarray],
        model_id: str,
        *,
        drop_missing: bool = False,
        batch_size: int = 128,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Re-embed every entry from its stored thumbnail with a new model; returns how many.

        embed: uint8 crops (N x H x W x 3) -> N embeddings (engine.embed_crops). Entries without
        a thumbnail cannot be re-embedded: refused, unless drop_missing deletes them. Either
        every entry moves to the new model, or none does; searches go on with the old
        embeddings until it is done."""
        return transfer.reembed(
            self.store, embed, model_id, drop_missing=drop_missing, batch_size=batch_size, progress=progress
        )

    def export(self, path: str | Path, *, thumbnails: bool = True) -> int:
        """Write the whole gallery to one file (an SQLite database); returns how many entries.

        The file holds names, times, embeddings and (unless thumbnails=False) thumbnails: it is
        as private as the gallery itself. Searches go on meanwhile."""
        self._open_check()
        return transfer.export(self.store, path, thumbnails=thumbnails)

    def import_from(
        self, path: str | Path, *, replace: bool = False, max_entries: int = MAX_IMPORT_ENTRIES
    ) -> transfer.Imported:
        """Add the entries of an exported gallery (replace=True: instead of the current ones);
        returns how many were added (an int carrying `already_enrolled` and `refused`).

        Every row goes through the enrollment policy (index.enrollment.ImportPolicy): a face
        already enrolled under the row's name adds nothing (importing a file twice adds
        nothing the second time); the same face under another name, or a name that looks like
        another enrolled (or imported) one, is refused and listed in `refused`.

        The export is not trusted (index/exports.py): it is opened read-only; only real tables
        are read; more than max_entries entries are refused before any is read; every row is
        checked as enroll checks it (name, embedding size, finiteness and length, time, model)
        and every thumbnail is decoded, size-checked and re-encoded by the code that makes
        thumbnails. All or nothing: a file that is not a gallery export, or holds one bad row,
        is refused with InvalidInput naming the problem, and nothing changes. A non-empty
        gallery refuses an export of another model (ModelMismatch); an empty one takes the
        export's model. Searches go on meanwhile."""
        from .enrollment import ImportPolicy

        self._open_check()
        return transfer.import_from(
            self.store,
            path,
            replace=replace,
            thumbnails=self.keep_thumbnails,
            max_entries=max_entries,
            policy=ImportPolicy(self, replace=replace),
        )


def open_gallery(location: str | Path, engine: Any = None, **options: Any) -> Gallery:
    """The gallery at `location` (a folder, a *.db path or a Milvus URL), opened for `engine`'s
    embeddings (its model id, threshold and embedding size) when one is given. The one place
    the app (app.open_gallery) and `python -m index` open a gallery.

    The gallery's threshold is the engine's *identification* threshold when it has one (naming
    someone among many needs a stricter threshold than telling whether two photos match: with
    N people enrolled a stranger has N chances), else its verification threshold."""
    if engine is not None:
        options.setdefault("model_id", engine.model_id)
        options.setdefault("threshold", getattr(engine, "identification_threshold", None) or engine.threshold)
        options.setdefault("embedding_size", engine.embedding_size)
    return Gallery(location, **options)
