"""Two ASGI middlewares in front of the whole app: a request-body cap and a sign-in throttle.

Gradio limits *uploads* (max_file_size), but an API call can carry its photo inline in the
JSON body (a `data:` URL), and such a body is read and parsed before any of our code runs.
`BodyLimit` refuses a body that is too large before it is read: at once when Content-Length
says so, and as soon as the bytes received pass the limit when it does not.

`LoginThrottle` counts failed sign-ins per client key; after a few in a row, that key is
refused (429) for a time that doubles with every further failure, so guessing a password
costs hours instead of seconds. A success clears the count. The key is what a client cannot
forge: its address as demo/clients.py resolved it (proxy headers believed only from the
operator's `--trust-proxy`), or, for a browser that has signed in before, a device cookie
signed by this server. So a user who once signed in is never locked out by someone else's
failures from the same address (a NAT, the same proxy): only the guesser's key is locked.

Plain ASGI (Starlette's message types), no Gradio import.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from .clients import client_host

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _refuse(send: Send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse (413) any request whose body is larger than its route's limit, before reading it.

    limit:        bytes allowed for every route but uploads (an API call with inline photos).
    upload_limit: bytes allowed for Gradio's multipart upload route (several photos at once;
                  Gradio streams those to disk and checks each file against max_file_size).
    idle:         seconds a body may stop arriving before it is cut off (408): a client that
                  sends a few bytes and then nothing must not hold a request open forever.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, idle: float = 20.0):
        self.app = app
        self.limit = int(limit)
        self.upload_limit = int(upload_limit)
        self.idle = float(idle)

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path.rstrip("/").endswith("/upload") else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        message = f"The request is too large (the limit is {limit / 2**20:.0f} MB)."
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await _refuse(send, 400, "The request's Content-Length is not a number.")
                return
            if too_large:
                await _refuse(send, 413, message)
                return
        received = 0
        overflow = False
        started = False
        stalled = False
        complete = False

        async def counted() -> Message:
            nonlocal received, overflow, stalled, complete
            if overflow:
                return {"type": "http.disconnect"}
            if complete:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            try:
                item = await asyncio.wait_for(receive(), self.idle)
            except TimeoutError:
                overflow = stalled = True
                return {"type": "http.disconnect"}
            if item["type"] == "http.request":
                received += len(item.get("body", b""))
                complete = not item.get("more_body", False)
                if received > limit:
                    overflow = True
                    return {"type": "http.disconnect"}
            return item

        async def guarded_send(item: Message) -> None:
            nonlocal started
            if overflow and not started:
                return  # the app's answer to a cut-off body is replaced below
            if item["type"] == "http.response.start":
                started = True
            await send(item)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            if stalled:
                await _refuse(send, 408, f"The request body stopped arriving for {self.idle:.0f} s.")
            else:
                await _refuse(send, 413, message)


#: The cookie that tells a browser which signed in before from everyone else at its address.
DEVICE_COOKIE = "twin-device"


class LoginThrottle:
    """Slow down password guessing: after `free` failures in a row, lock the client out.

    The lockout is `base` seconds after the first locked failure and doubles with each one
    after it, up to `cap`. Clients are remembered in a bounded LRU (`remember`).
    """

    def __init__(
        self,
        app: ASGIApp,
        free: int = 5,
        base: float = 5.0,
        cap: float = 3600.0,
        remember: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.free, self.base, self.cap, self.remember = free, base, cap, remember
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # client -> (count, locked until)
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)  # device cookies are valid until this process ends

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        with self._lock:
            count, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def record(self, client: str, success: bool) -> None:
        with self._lock:
            if success:
                self._failures.pop(client, None)
                return
            count, _ = self._failures.pop(client, (0, 0.0))
            count += 1
            until = 0.0
            if count >= self.free:
                until = self.clock() + min(self.cap, self.base * 2 ** (count - self.free))
            self._failures[client] = (count, until)
            while len(self._failures) > self.remember:
                self._failures.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").rstrip("/").endswith("/login")
        ):
            await self.app(scope, receive, send)
            return
        device = self.device_of(scope)
        client = f"device:{device}" if device else f"address:{client_host(scope)}"
        wait = self.retry_after(client)
        if wait > 0:
            await _refuse(
                send,
                429,
                f"Too many failed sign-ins; try again in {wait:.0f} s.",
                ((b"retry-after", str(int(wait) + 1).encode()),),
            )
            return
        status = 0

        async def watched(item: Message) -> None:
            nonlocal status
            if item["type"] == "http.response.start":
                status = int(item["status"])
                if status == 200 and device is None:  # remember this browser: its own key from now on
                    item = dict(item, headers=[*item.get("headers", []), (b"set-cookie", self.device_cookie())])
            await send(item)

        await self.app(scope, receive, watched)
        if status == 200:
            self.record(client, True)
        elif 400 <= status < 500:
            self.record(client, False)

    def device_cookie(self) -> bytes:
        """A new device id, signed: `twin-device=<id>.<hmac>` for 30 days, script-proof."""
        device = secrets.token_urlsafe(16)
        value = f"{device}.{self._sign(device)}"
        return f"{DEVICE_COOKIE}={value}; Max-Age=2592000; Path=/; HttpOnly; SameSite=Lax".encode()

    def device_of(self, scope: Scope) -> str | None:
        """The device id of a validly signed device cookie in the request, else None."""
        cookies = _header(scope, b"cookie") or ""
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == DEVICE_COOKIE:
                device, _, mac = value.partition(".")
                if device and hmac.compare_digest(mac, self._sign(device)):
                    return device
        return None

    def _sign(self, device: str) -> str:
        return hmac.new(self._secret, device.encode(), hashlib.sha256).hexdigest()[:32]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
