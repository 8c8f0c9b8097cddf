"""Whole-gallery moves, the same for every store: export to one file, import from one (without
trusting it: index/exports.py checks every row), and re-embed after a model upgrade
(`python -m index reembed`).

Re-embedding uses the thumbnail kept with each entry: the aligned crop, which the new model
embeds exactly as FaceEngine.faces would have (same crop, same flip averaging), so a gallery
moves to new weights without anyone being photographed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import thumbnails as thumbs
from .checks import clean_vector
from .errors import GalleryError, InvalidInput
from .exports import MAX_IMPORT_ENTRIES, Export
from .store import vector_bytes, write_export
from .stores.base import Row, VectorStore


def export(store: VectorStore, path: str | Path, *, thumbnails: bool = True) -> int:
    """Write every entry to one file (an SQLite database in the gallery's own schema); returns
    how many. Written to a private temporary file beside `path`, then renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    try:
        with store.export_rows(thumbnails=thumbnails) as source:
            rows = ((i, n, t, m, vector_bytes(v), png if thumbnails else None) for i, n, t, m, v, png in source.rows())
            count = write_export(tmp, source.model_id, source.dim, rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


class Imported(int):
    """How many entries an import added (it is that number), and what it left out:
    `already_enrolled` (rows already in the gallery under their name: importing a file twice
    adds nothing the second time) and `refused` ((export entry id, name, why) of rows the
    enrollment policy refuses: the same face under another name, a look-alike name)."""

    already_enrolled: int
    refused: list[tuple[int, str, str]]

    def __new__(cls, added: int, already_enrolled: int = 0, refused: list | None = None) -> Imported:
        made = super().__new__(cls, added)
        made.already_enrolled = already_enrolled
        made.refused = list(refused or [])
        return made


def import_from(
    store: VectorStore,
    path: str | Path,
    *,
    replace: bool = False,
    thumbnails: bool = True,
    max_entries: int = MAX_IMPORT_ENTRIES,
    policy: Any = None,
) -> Imported:
    """Add the entries of an export (replace: instead of the current ones) that `policy`
    (index.enrollment.ImportPolicy; None: every one) admits. The rows added are all or
    nothing (see each store for how); InvalidInput names the first bad row."""
    already, refused = 0, []
    with Export(path, max_entries=max_entries) as source:

        def admitted() -> Iterator[Row]:
            nonlocal already
            for r in source.rows(thumbnails=thumbnails):
                why = None if policy is None else policy.admit(r.name, r.vector)
                if why == "duplicate":
                    already += 1
                elif why:
                    refused.append((r.source_id, r.name, why))
                else:
                    yield (r.source_id, r.name, r.enrolled, source.model_id, r.vector, r.png)

        added = store.import_rows(source.model_id, source.dim, admitted(), replace=replace)
    return Imported(added, already, refused)


def reembed(
    store: VectorStore,
    embed: Callable[[np.ndarray], np.ndarray],
    model_id: str,
    *,
    drop_missing: bool = False,
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-embed every entry from its thumbnail; returns how many. embed: uint8 crops
    (N x H x W x 3) -> N embeddings (engine.embed_crops). Entries without a thumbnail are
    refused unless drop_missing deletes them. Either every entry moves to the new model, or
    none does."""
    if not isinstance(model_id, str) or not model_id:
        raise InvalidInput("reembed needs the new model's id.")
    with store.reembedding(model_id) as job:
        missing = job.without_thumbnail
        if missing and not drop_missing:
            raise GalleryError(
                f"{len(missing)} of {job.total} entries have no thumbnail and cannot be "
                "re-embedded: re-enroll them, or drop them (drop_missing=True, --drop-missing)."
            )
        done, dim = 0, None
        for rows in job.thumbnails(batch_size):
            groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
            for entry_id, png in rows:
                try:
                    crop = thumbs.decode(png)
                except InvalidInput as exc:
                    raise GalleryError(
                        f"The thumbnail of entry {entry_id} is unusable ({exc}): remove that entry, then re-embed."
                    ) from exc
                groups.setdefault(crop.shape, []).append((entry_id, crop))
            for members in groups.values():
                vectors = np.asarray(embed(np.stack([c for _, c in members])))
                if vectors.ndim != 2 or len(vectors) != len(members):
                    raise GalleryError("The embedding function returned the wrong shape.")
                dim = dim or int(vectors.shape[1])
                job.update([(eid, clean_vector(v, dim)) for (eid, _), v in zip(members, vectors, strict=True)])
                done += len(members)
            if progress:
                progress(done, job.total - len(missing))
        job.finish(dim or store_dim(store), missing)
    return done


def store_dim(store: VectorStore) -> int:
    caller = getattr(store, "caller", None)
    return int(caller.dim) if caller is not None else 128


# -- the engine side (imported here, never by the gallery: the gallery knows no images) ----------
def load_engine(weights: str | Path | None = None, device: str | None = None) -> Any:
    """The face engine, for the CLI's commands that need one."""
    from engine import FaceEngine

    return FaceEngine(weights, device=device) if weights else FaceEngine(device=device)
