"""Queue fairness: no client may fill the queue, or the server's memory, with jobs it never reads.

Gradio's queue has one size limit for everyone (max_size): a client sending join after join
fills it and every other user gets "queue full". Here each job counts against its client from
the moment it joins until its result has been read (Gradio forgets a job's id only then), under
two keys: the client's session and its address (demo/clients.py; the address is what a client
cannot change for free, the session what separates tabs behind one address). Past a cap the
join is refused with 429 and a message, while other clients are served as before. A result
nobody reads stops counting after `unread_seconds`, and its stored messages are dropped then.

This wraps the queue's `push` (the one door of /queue/join, /call and /call/v2); it needs the
queue's `pending_event_ids_session`, `pending_messages_per_session` and `event_ids_to_events`,
which Gradio 6 has had since the queue was made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException


class FairQueue:
    """Per-session and per-address caps on a Gradio queue's unfinished or unread jobs."""

    def __init__(
        self,
        queue: Any,
        per_session: int = 8,
        per_address: int = 16,
        unread_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.queue = queue
        self.per_session, self.per_address, self.unread_seconds = per_session, per_address, unread_seconds
        self.clock = clock
        self._jobs: dict[str, tuple[str, str, float]] = {}  # event id -> (session, address, joined)
        self._lock = threading.Lock()
        self._push = queue.push

    def install(self) -> FairQueue:
        self.queue.push = self.push
        return self

    def counts(self, session: str | None, address: str) -> tuple[int, int]:
        """(jobs of this session, jobs of this address) not yet read, after dropping stale ones."""
        self._forget_read()
        with self._lock:
            jobs = list(self._jobs.values())
        return sum(1 for s, _, _ in jobs if session and s == session), sum(1 for _, a, _ in jobs if a == address)

    async def push(self, body: Any, request: Any, username: str | None) -> Any:
        address = request.client.host if getattr(request, "client", None) else "unknown"
        session, mine = self.counts(body.session_hash, address)
        if session >= self.per_session or mine >= self.per_address:
            raise HTTPException(
                status_code=429,
                detail=f"Too many unfinished requests from you (at most {self.per_address} from one address, "
                f"{self.per_session} from one page); wait for your results and try again.",
                headers={"retry-after": "5"},
            )
        success, event_id, state = await self._push(body, request, username)
        if success and isinstance(event_id, str):
            with self._lock:
                self._jobs[event_id] = (str(body.session_hash), address, self.clock())
        return success, event_id, state

    def _forget_read(self) -> None:
        """Stop counting jobs whose result was read; drop those unread for too long."""
        pending = self.queue.pending_event_ids_session
        now = self.clock()
        with self._lock:
            jobs = list(self._jobs.items())
        for event_id, (session, _, joined) in jobs:
            if event_id not in pending.get(session, ()):
                with self._lock:
                    self._jobs.pop(event_id, None)
            elif now - joined > self.unread_seconds and event_id not in self.queue.event_ids_to_events:
                with self._lock:
                    self._jobs.pop(event_id, None)
                self._drop(session, event_id)

    def _drop(self, session: str, event_id: str) -> None:
        """Free what Gradio holds for a finished job nobody came to read."""
        ids = self.queue.pending_event_ids_session.get(session)
        if ids is not None:
            ids.discard(event_id)
            if not ids:
                self.queue.pending_event_ids_session.pop(session, None)
                if session == event_id:  # a /call job's own session: no page is reading it
                    self.queue.pending_messages_per_session.pop(session, None)
