"""Re-embed a gallery with the current engine after a model upgrade (`python -m index reembed`).

The gallery keeps each entry's aligned crop as a thumbnail; the new model embeds those crops
exactly as FaceEngine.faces would have (same crop, same flip averaging), so a gallery moves
to new weights without anyone being photographed again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .gallery import Gallery


def load_engine(weights: str | Path | None = None, device: str | None = None) -> Any:
    """The face engine (imported here, not in gallery.py: the gallery knows no images)."""
    from engine import FaceEngine

    return FaceEngine(weights, device=device) if weights else FaceEngine(device=device)


def open_for(directory: str | Path, engine: Any, **options: Any) -> Gallery:
    """The gallery at `directory`, opened for this engine's embeddings."""
    return Gallery(directory, model_id=engine.model_id, threshold=engine.threshold,
                   embedding_size=engine.embedding_size, **options)


def reembed(gallery: Gallery, engine: Any, *, drop_missing: bool = False,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Re-embed every entry of `gallery` from its thumbnail with `engine`; returns how many."""
    return gallery.reembed(engine.embed_crops, engine.model_id, drop_missing=drop_missing, progress=progress)
