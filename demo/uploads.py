"""The upload folder: one per app instance, a quota on what clients may put in it, nothing left over.

- `instance_folder` gives each instance (gallery + port) its own folder under Gradio's temp
  folder, held with an exclusive lock while the process lives. At start-up it empties the folder
  (what a previous process of this instance left, killed or not: uploaded faces included), and
  removes the folders of instances that are no longer running. A second instance never touches
  a running one's files: if the folder is locked it takes a folder of its own.
- `UploadQuota` (ASGI, in front of Gradio's /upload) counts each client's bytes, in flight and
  on disk, and everyone's together, and refuses (429 / 503) an upload that would pass a quota
  before reading it. A chunked body is cut off where its reservation ends (and one that stops
  arriving is cut off by demo/guard.BodyLimit, so a stalled upload cannot hold a reservation).
- Gradio streams each uploaded file to a `tmp*` file in the folder and renames it into place
  when the whole request has arrived; a refused or cut-off request leaves those behind. After
  any upload that did not succeed (and now and then anyway), every `tmp*` file no open file
  descriptor of this process points at is deleted: a live upload's file is open, a dead one's
  is not.

Plain ASGI and the file system, no Gradio import.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import IO, Any

from .clients import client_host

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: one instance per folder is then on the operator
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("twin.uploads")

Scope = dict[str, Any]
Message = dict[str, Any]
MB = 2**20
#: Marks a folder as an instance's, and is what the instance holds locked while it runs.
LOCK_NAME = ".twin-instance.lock"
_held: list[IO[str]] = []  # the locks of this process's folders, open until it exits


def instance_folder(root: Path, key: str) -> Path:
    """This instance's own upload folder under `root`, emptied and locked for this process."""
    root.mkdir(parents=True, exist_ok=True)
    name = "twin-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    for candidate in (name, f"{name}-{os.getpid()}"):
        folder = root / candidate
        folder.mkdir(exist_ok=True)
        lock = open(folder / LOCK_NAME, "a")  # noqa: SIM115 - held open for the process's life
        if not _try_lock(lock):
            lock.close()
            continue  # a running instance has the same key: leave its files alone
        _empty(folder)
        _held.append(lock)
        _remove_dead_instances(root, keep=folder)
        return folder.resolve()
    raise OSError(f"no free upload folder under {root}")


def _try_lock(lock: IO[str]) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _empty(folder: Path) -> None:
    for item in folder.iterdir():
        if item.name == LOCK_NAME:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def _remove_dead_instances(root: Path, keep: Path, grace: float = 60.0) -> None:
    """Delete the folders of instances that are not running (their lock is free)."""
    for folder in root.glob("twin-*"):
        lock_path = folder / LOCK_NAME
        if folder == keep or not lock_path.is_file():
            continue
        try:
            if time.time() - lock_path.stat().st_mtime < grace:
                continue  # just made: its instance may be about to lock it
            with open(lock_path, "a") as lock:
                if _try_lock(lock):
                    shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def empty_at_exit(folder: Path) -> None:
    """On a clean stop: delete everything but the lock (the uploads and drawn pictures)."""
    with contextlib.suppress(OSError):
        _empty(folder)


def open_paths() -> set[str] | None:
    """The files this process has open (Linux /proc), None where that cannot be known."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None
    paths = set()
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            paths.add(os.readlink(fd_dir / fd))
    return paths


def remove_partial_uploads(folder: Path, unknown_age: float = 3600.0) -> int:
    """Delete `tmp*` files in `folder` that no upload is writing. Returns how many."""
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith("tmp") and p.is_file()]
    except OSError:
        return 0
    if not candidates:
        return 0
    busy = open_paths()
    removed = 0
    for path in candidates:
        try:
            if busy is None and time.time() - path.stat().st_mtime < unknown_age:
                continue
            if busy is not None and str(path) in busy:
                continue
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


class UploadQuota:
    """Per-client and total quotas on Gradio's upload route; partial uploads deleted.

    folder:     the upload folder (Gradio's; `tmp*` files in it are partial uploads).
    per_client: bytes one client may have in flight plus on disk.
    total:      bytes all clients together may have in flight plus on disk.
    limit:      the largest upload body (what a chunked upload may reserve at most).
    """

    def __init__(
        self,
        app: Any,
        folder: Path,
        per_client: int,
        total: int,
        limit: int,
        retain: float = 7200.0,
    ):
        self.app = app
        self.folder = Path(folder)
        self.per_client, self.total, self.limit, self.retain = per_client, total, limit, retain
        self._lock = threading.Lock()
        self._flight: dict[str, int] = {}
        self._disk: dict[str, tuple[str, int, float]] = {}  # path -> (client, bytes, when)
        self._pruned = 0.0

    def usage(self, client: str) -> tuple[int, int]:
        """(this client's bytes, everyone's bytes), in flight and on disk."""
        self._prune()
        with self._lock:
            mine = self._flight.get(client, 0) + sum(n for c, n, _ in self._disk.values() if c == client)
            everyone = sum(self._flight.values()) + sum(n for _, n, _ in self._disk.values())
        return mine, everyone

    def _prune(self, every: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._pruned < every:
            return
        self._pruned = now
        with self._lock:
            known = list(self._disk.items())
        gone = [p for p, (_, _, when) in known if time.time() - when > self.retain or not os.path.exists(p)]
        with self._lock:
            for path in gone:
                self._disk.pop(path, None)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").rstrip("/").endswith("/gradio_api/upload")
        ):
            await self.app(scope, receive, send)
            return
        from .guard import _header, _refuse  # one refusal format for every middleware

        client = client_host(scope)
        declared = _header(scope, b"content-length")
        mine, everyone = self.usage(client)
        try:
            want = int(declared) if declared is not None else min(self.limit, self.per_client - mine)
        except ValueError:
            want = min(self.limit, self.per_client - mine)
        if want <= 0 or mine + want > self.per_client:
            await _refuse(
                send,
                429,
                f"You have uploaded too much for now (the limit is {self.per_client // MB} MB per client; "
                "uploads are deleted within two hours). Try again later.",
                ((b"retry-after", b"600"),),
            )
            return
        if everyone + want > self.total:
            await _refuse(send, 503, "The server's upload space is full; try again later.", ((b"retry-after", b"60"),))
            return
        with self._lock:
            self._flight[client] = self._flight.get(client, 0) + want
        received, cut, started, status = 0, "", False, 0
        body = bytearray()
        more = True

        async def counted() -> Message:
            nonlocal received, cut, more
            if cut:
                return {"type": "http.disconnect"}
            if not more:
                return await receive()
            item = await receive()  # BodyLimit, outside, cuts off a body that stops arriving
            if item["type"] == "http.request":
                received += len(item.get("body", b""))
                more = bool(item.get("more_body", False))
                if received > want:
                    cut = "quota"
                    return {"type": "http.disconnect"}
            return item

        async def watched(item: Message) -> None:
            nonlocal started, status
            if cut and not started:
                return
            if item["type"] == "http.response.start":
                started, status = True, int(item["status"])
            elif item["type"] == "http.response.body" and status == 200 and len(body) < (1 << 20):
                body.extend(item.get("body", b""))
            await send(item)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not cut:
                raise
        finally:
            with self._lock:
                left = self._flight.get(client, 0) - want
                if left > 0:
                    self._flight[client] = left
                else:
                    self._flight.pop(client, None)
            if status == 200:
                self._record(client, bytes(body))
            else:
                self._sweep_soon()
        if cut and not started:
            await _refuse(send, 429, f"The upload is larger than your quota allows ({self.per_client // MB} MB).")

    def _record(self, client: str, body: bytes) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        now = time.time()
        for path in paths if isinstance(paths, list) else []:
            with contextlib.suppress(OSError, TypeError):
                size = os.path.getsize(path)
                with self._lock:
                    self._disk[str(path)] = (client, size, now)

    def _sweep_soon(self) -> None:
        """Delete partial uploads once the failed request's files are closed (now, 1 s and 10 s on)."""
        loop = asyncio.get_running_loop()
        for delay in (0.0, 1.0, 10.0):
            loop.call_later(delay, lambda: loop.run_in_executor(None, remove_partial_uploads, self.folder))
