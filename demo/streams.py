"""Routes that hold a connection open, and routes Gradio answers before anyone signs in.

Gradio answers /cancel, /reset, /heartbeat/<session> and a few more without checking the
sign-in, and a heartbeat or result stream stays open for as long as the client likes, each one
an open file and a task. `OpenRoutes`:

- with --auth, refuses those routes (401) to a request without a signed-in session (what
  Gradio's own `login_check` accepts: its access-token cookie, looked up in the app's tokens);
- caps the streams one client may hold open at once (`per_client`) and all clients together
  (`total`): the next one is refused (429 / 503) instead of opening.

Plain ASGI; the Gradio app is reached duck-typed through scope["app"] (Starlette puts it there).
"""

from __future__ import annotations

import threading
from typing import Any

from .clients import client_host

Scope = dict[str, Any]

#: Gradio routes (after /gradio_api) that answer without a sign-in check of their own.
BEFORE_SIGN_IN = ("/cancel", "/reset", "/heartbeat/", "/stream/", "/queue/status", "/monitoring")
#: Routes whose answer is a stream that stays open.
STREAMS = ("/heartbeat/", "/queue/data", "/call/", "/upload_progress", "/stream/")


def _route(path: str) -> str:
    return path[len("/gradio_api") :] if path.startswith("/gradio_api/") else path


def signed_in(scope: Scope) -> bool:
    """True when the app needs no sign-in, or the request carries a live session cookie."""
    app = scope.get("app")
    if app is None or (getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None):
        return True
    if getattr(app, "auth_dependency", None) is not None:
        return True  # someone else's sign-in scheme: Gradio's own check decides
    cookie_id = getattr(app, "cookie_id", "")
    names = {f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"}
    tokens = getattr(app, "tokens", {}) or {}
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, token = part.strip().partition("=")
            if name in names and token in tokens:
                return True
    return False


class OpenRoutes:
    """401 for pre-sign-in routes without a session; a cap on open streams per client and in all."""

    def __init__(self, app: Any, per_client: int = 16, total: int = 2000):
        self.app = app
        self.per_client, self.total = per_client, total
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from .guard import _refuse

        route = _route(scope.get("path", ""))
        if route.startswith(BEFORE_SIGN_IN) and not signed_in(scope):
            await _refuse(send, 401, "Please sign in first.")
            return
        is_stream = scope.get("method") == "GET" and route.startswith(STREAMS)
        if route.startswith("/call/") and route.count("/") < 3:
            is_stream = False  # POST /call/<api> joins; GET /call/<api>/<event> streams
        if not is_stream:
            await self.app(scope, receive, send)
            return
        client = client_host(scope)
        with self._lock:
            mine, everyone = self._open.get(client, 0), sum(self._open.values())
            refused = mine >= self.per_client or everyone >= self.total
            if not refused:
                self._open[client] = mine + 1
        if refused:
            status = 429 if mine >= self.per_client else 503
            await _refuse(
                send, status, "Too many open connections; close some and try again.", ((b"retry-after", b"5"),)
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                left = self._open.get(client, 1) - 1
                if left > 0:
                    self._open[client] = left
                else:
                    self._open.pop(client, None)
