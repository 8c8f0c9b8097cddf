"""Deleted entries stop serving at once, whoever deleted them (issue 19 row 10).

The app deletes the picture files of an entry it deletes itself (demo/files.py `forget`),
but `python -m index remove` in another process, or another app replica, deleted entries
whose thumbnails this app went on serving until someone opened the people list. Here every
request for one of our files first reads the gallery's deletion counter (Gallery.generation:
one row of SQLite, shared by every process); when it moved, the entries this app holds
pictures of are looked up (one primary-key read each) and the files of those that are gone
are deleted before the request is answered. Stores that keep no counter are checked the same
way, at most once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio

log = logging.getLogger("twin.demo")

#: Without a counter in the store: how stale a picture of a deleted entry may be, at most.
UNCOUNTED_RECHECK_S = 1.0
#: How long one check may look entries up before the file is served anyway (the rest are looked
#: up at the next request): a slow or restarting store never holds a picture for long.
CHECK_BUDGET_S = 2.0


class DeletionWatch:
    """Keeps `files` (demo.files.ResultFiles) to the entries `gallery` still holds."""

    def __init__(self, gallery: Any, files: Any):
        self.gallery = gallery
        self.files = files
        self._lock = threading.Lock()
        self._seen = self._generation()
        self._checked = time.monotonic()

    def _generation(self) -> int | None:
        try:
            return self.gallery.generation()
        except Exception:  # noqa: BLE001 - a closed or busy gallery: check the entries instead
            return None

    def check(self) -> int:
        """Before one of our files is served: forget the pictures of entries deleted since the
        last check. Returns how many files were deleted."""
        generation = self._generation()
        with self._lock:
            if generation is not None and generation == self._seen:
                return 0
            if generation is None and time.monotonic() - self._checked < UNCOUNTED_RECHECK_S:
                return 0
            gone: list[str] = []
            started = time.monotonic()
            for entry in self.files.known():
                state = self._gone(entry) if time.monotonic() - started < CHECK_BUDGET_S else None
                if state is None:  # the gallery cannot answer now (a server restarting): keep every
                    self._checked = time.monotonic()  # file, ask again in a second, never wait per entry
                    return 0
                if state:
                    gone.append(entry)
            removed = self.files.forget(gone) if gone else 0
            self._seen, self._checked = generation, time.monotonic()
        if removed:
            log.info("deleted %d picture file(s) of %d entries deleted elsewhere", removed, len(gone))
        return removed

    def _gone(self, entry: str) -> bool | None:
        """True when the entry is deleted; None when the gallery cannot answer now."""
        try:
            return self.gallery.owner(int(entry)) is None
        except (TypeError, ValueError):
            return True
        except Exception as exc:  # noqa: BLE001 - the gallery cannot answer now: keep it, ask next time
            log.warning("could not look up entry %s (%s); its files are kept for now", entry, type(exc).__name__)
            return None


class FreshFiles:
    """ASGI middleware: every file request (Gradio's `/file=` routes) runs the watch first,
    off the event loop (it reads SQLite)."""

    def __init__(self, app: Any, watch: DeletionWatch):
        self.app = app
        self.watch = watch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and "/file=" in scope.get("path", ""):
            try:
                await anyio.to_thread.run_sync(self.watch.check)
            except Exception:  # noqa: BLE001 - never fail the request for the check's sake
                log.exception("the deletion check failed")
        await self.app(scope, receive, send)


def middleware(demo: Any) -> list:
    """The middleware for app.py's launch: [] for a demo built without a watch."""
    from starlette.middleware import Middleware

    watch = getattr(demo, "twin_deletion_watch", None)
    return [] if watch is None else [Middleware(FreshFiles, watch=watch)]
