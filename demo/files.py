"""The pictures the app sends back, as files we own inside Gradio's cache folder.

Left to itself, Gradio saves every returned picture under a name made from a hash of its
bytes and rewrites that file in place, so two requests drawing the same picture race (a
client can read a half-written file), and a deleted person's thumbnail stays downloadable
at its old URL until the cache is swept. Here every picture is written once, under a
temporary name, then renamed into place (readers see all of it or nothing), named with a
random token (URLs cannot be guessed), and:

- a result picture (drawn photo, aligned pair) gets a fresh name per request and is removed
  after `max_age` seconds;
- an entry's thumbnail is written once per entry and deleted the moment the entry is
  deleted (`forget`), so its URL stops serving at once.

Gradio serves a returned path that already lies inside its cache folder as it is, without
copying it (blocks.move_resource_to_block_cache), which is what makes deletion real.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

JPEG_QUALITY = 90


class ResultFiles:
    """Write-once picture files under `folder` (a folder inside Gradio's cache)."""

    def __init__(self, folder: str | Path, max_age: float = 3600.0):
        self.folder = Path(folder)
        self.results = self.folder / "results"
        self.thumbs = self.folder / "thumbs"
        for sub in (self.results, self.thumbs):
            sub.mkdir(parents=True, exist_ok=True)
            for stale in sub.iterdir():  # a previous run's files: nobody holds their URLs
                stale.unlink(missing_ok=True)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._thumbs: dict[str, Path] = {}
        self._shows: dict[str, list[Path]] = {}  # entry id -> result pictures of it
        self._last_sweep = time.monotonic()

    def picture(self, image: Image.Image | None, entry_id: Any = None) -> str | None:
        """A request's result picture as a fresh file; None stays None.

        entry_id: the gallery entry the picture shows (Enroll's crops): deleting that entry
        deletes this file too.
        """
        if image is None:
            return None
        self._sweep()
        path = _write_jpeg(image, self.results / f"{secrets.token_urlsafe(16)}.jpg")
        if entry_id is not None:
            with self._lock:
                self._shows.setdefault(str(entry_id), []).append(path)
        return str(path)

    def thumbnail(self, entry_id: Any, load: Callable[[Any], Image.Image | None]) -> str | None:
        """The file of an entry's thumbnail, made once from `load(entry_id)` (None: no thumbnail)."""
        key = str(entry_id)
        with self._lock:
            known = self._thumbs.get(key)
        if known is not None and known.is_file():
            return str(known)
        image = load(entry_id)
        if image is None:
            return None
        path = _write_jpeg(image, self.thumbs / f"{_safe(key)}-{secrets.token_urlsafe(12)}.jpg")
        with self._lock:
            old = self._thumbs.get(key)
            if old is not None and old.is_file():  # another request made it meanwhile: keep one
                path.unlink(missing_ok=True)
                return str(old)
            self._thumbs[key] = path
        return str(path)

    def forget(self, entry_ids: Iterable[Any]) -> int:
        """Delete the thumbnail files of these entries; their URLs stop serving. Returns how many."""
        removed = 0
        with self._lock:
            for entry_id in entry_ids:
                paths = self._shows.pop(str(entry_id), [])
                thumb = self._thumbs.pop(str(entry_id), None)
                for path in paths + ([thumb] if thumb is not None else []):
                    if path.exists():
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def known(self) -> list[str]:
        """The entries this app holds picture files of (for demo/freshness.py)."""
        with self._lock:
            return sorted({*self._thumbs, *self._shows})

    def retain(self, entry_ids: Iterable[Any]) -> int:
        """Forget every thumbnail but those of `entry_ids` (entries deleted by another program)."""
        keep = {str(e) for e in entry_ids}
        with self._lock:
            gone = [key for key in {*self._thumbs, *self._shows} if key not in keep]
        return self.forget(gone)

    def forget_all_thumbnails(self) -> None:
        """After a rename or an import, the cheap and safe answer: make every thumbnail again."""
        with self._lock:
            paths, self._thumbs = list(self._thumbs.values()), {}
        for path in paths:
            path.unlink(missing_ok=True)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < min(60.0, self.max_age / 4):
            return
        self._last_sweep = now
        cutoff = time.time() - self.max_age
        for path in self.results.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
        with self._lock:
            self._shows = {k: live for k, v in self._shows.items() if (live := [p for p in v if p.exists()])}


def _write_jpeg(image: Image.Image, path: Path) -> Path:
    """Write under a temporary name in the same folder, then rename: never a half-written file."""
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


def _safe(key: str) -> str:
    return "".join(ch for ch in key if ch.isalnum() or ch in "-_")[:32] or "entry"
