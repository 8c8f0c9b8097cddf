"""Milvus Lite, the embedded Milvus behind a *.db gallery: the data directory's checks, the
one embedded server per directory (started by pymilvus on first use, stopped here when the
last Gallery of this process on it closes, so that another process may open it), and the
flushes that keep its memtable small.

Milvus Lite serves one process at a time per data directory; a server serves many.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..errors import GalleryError, InvalidInput

log = logging.getLogger(__name__)

FLUSH_EVERY = 256  # flush after this many changed rows (see changed)

_lock = threading.Lock()
_users: dict[str, int] = {}  # open Gallery objects per data directory
_unflushed: dict[str, int] = {}  # rows changed since the last flush, per data directory


class _QuietLite(logging.Filter):
    """Milvus Lite's gRPC server logs pymilvus's AllocTimestamp call (made while an index is
    built), which it does not implement and pymilvus does without, as an ERROR with a
    traceback; only that line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


logging.getLogger("grpc._server").addFilter(_QuietLite())


def open_directory(path: Path) -> None:
    """Check that `path` can be a Milvus Lite data directory, make it (owner only), and count
    this Gallery as one of its users in this process."""
    if path.is_file():
        with open(path, "rb") as f:
            sqlite = f.read(16) == b"SQLite format 3\x00"
        raise InvalidInput(
            f"{path} is an SQLite file"
            + (" (the database inside a folder gallery: pass its folder)" if sqlite else "")
            + ", not a Milvus Lite gallery."
        )
    if (path / "gallery.db").is_file():
        raise InvalidInput(f"{path} is a folder gallery (SQLite + FAISS); a *.db location means Milvus Lite.")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # faces are personal data: owner only
    with _lock:
        _users[str(path)] = _users.get(str(path), 0) + 1


def release(uri: str) -> None:
    """One Gallery on `uri` closed; the last one stops the embedded server."""
    with _lock:
        users = _users.get(uri, 0) - 1
        if users > 0:
            _users[uri] = users
            return
        _users.pop(uri, None)
    try:
        from milvus_lite import server_manager_instance

        server_manager_instance.release_server(uri)
    except Exception:  # noqa: BLE001 - nothing more to do at close
        log.exception("Could not stop Milvus Lite for %s.", uri)


def busy(uri: str, exc: BaseException) -> GalleryError:
    return GalleryError(
        f"Milvus Lite cannot open {uri}: another program has it open "
        "(Milvus Lite serves one process at a time; use a Milvus server for several) "
        f"({exc})."
    )


def changed(uri: str, rows: int) -> bool:
    """Count changed rows; True when the caller should flush now. Milvus Lite keeps changes
    in a memtable it scans in Python on every query (35 ms at 2,000 rows, growing) until
    128 MB of them make it flush; so the store flushes every FLUSH_EVERY rows."""
    with _lock:
        count = _unflushed[uri] = _unflushed.get(uri, 0) + rows
        if count >= FLUSH_EVERY:
            _unflushed[uri] = 0
    return count >= FLUSH_EVERY


def unflushed(uri: str) -> int:
    return _unflushed.get(uri, 0)


def flushed(uri: str) -> None:
    _unflushed[uri] = 0
