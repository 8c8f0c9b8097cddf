"""The Gradio side of gallery scopes (index/scopes.py): who the caller is, their picture files,
and the guard that keeps one visitor's thumbnail URLs from serving to another.

- `current_visitor()`: the Visitor of the request being handled (Gradio's session hash, the
  signed-in user, the visitor cookie), read from Gradio's request context.
- `ScopedFiles`: the picture files (demo/files.py's ResultFiles) of the caller's scope, one
  folder per scope under a random name; deleted with the session's gallery.
- `VisitorGuard` (ASGI middleware): gives each browser (and gradio_client, which keeps the
  cookies of its first request) a random visitor cookie, and answers 404 to a request for a
  file of a private scope unless that request's cookie is one the scope's files were made for.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from index.scopes import SHARED, GalleryScopes, ScopeLimits, Visitor

from .files import ResultFiles
from .guard import Receive, Scope, Send, _refuse
from .inputs import upload_folder

log = logging.getLogger("twin.demo")

COOKIE = "twin-visitor"
#: Private scopes' pictures live in <root>/scoped/<token>/ (the shared scope's in <root>/ as before).
SCOPED = "scoped"


def current_visitor() -> Visitor:
    """Who makes the request being handled now (no request: an anonymous, session-less visitor)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return Visitor(None)
    session = getattr(request, "session_hash", None)
    user = getattr(request, "username", None)
    return Visitor(session or None, user or None, _cookie_of(request))


def _cookie_of(request: Any) -> str | None:
    try:
        header = request.headers.get("cookie")
    except Exception:
        return None
    return _parse_cookie(header)


def _parse_cookie(header: str | None) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:
        return None
    morsel = jar.get(COOKIE)
    value = morsel.value if morsel is not None else ""
    return value if 16 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() else None


class ScopedFiles:
    """ResultFiles per scope: attribute access goes to the caller's own (made on first use)."""

    def __init__(self, root: str | Path, scopes: GalleryScopes, who: Callable[[], Visitor] = current_visitor):
        self.root = Path(root)
        self.scoped = self.root / SCOPED
        self.scopes = scopes
        self.who = who
        self._lock = threading.Lock()
        self._shared = ResultFiles(self.root) if scopes.mode == SHARED else None
        self._files: dict[str, tuple[str, ResultFiles]] = {}  # scope key -> (token, files)
        self._grants: dict[str, set[str]] = {}  # token -> visitor cookies allowed to fetch its files
        shutil.rmtree(self.scoped, ignore_errors=True)  # a previous run's: nobody holds their URLs

    def current(self) -> ResultFiles:
        visitor = self.who()
        key = self.scopes.key_of(visitor)
        if key == SHARED and self._shared is not None:
            return self._shared
        if key.startswith("s-"):
            self.scopes.gallery_for(visitor)  # a session's pictures live and die with its gallery
        with self._lock:
            known = self._files.get(key)
            if known is None:
                token = secrets.token_urlsafe(16)
                known = self._files[key] = (token, ResultFiles(self.scoped / token))
                self._grants[token] = set()
            token, files = known
            if visitor.cookie:
                self._grants[token].add(visitor.cookie)
        return files

    def drop(self, key: str) -> None:
        """A session ended: delete its pictures (their URLs stop serving)."""
        with self._lock:
            known = self._files.pop(key, None)
            if known is not None:
                self._grants.pop(known[0], None)
        if known is not None:
            shutil.rmtree(self.scoped / known[0], ignore_errors=True)

    def allows(self, path: str, cookie: str | None) -> bool:
        """May a request with this visitor cookie fetch the file at `path`? Files outside the
        private scopes' folder are not ours to judge (Gradio's own checks apply)."""
        try:
            target = Path(path).resolve()
            parts = target.relative_to(self.scoped.resolve()).parts
        except (ValueError, OSError, RuntimeError):
            return True
        if not parts:
            return False
        with self._lock:
            return cookie is not None and cookie in self._grants.get(parts[0], set())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.current(), name)


def _file_path(path: str) -> str | None:
    """The file a Gradio file route asks for (/gradio_api/file=/abs/path, /file/...), or None."""
    for marker in ("/file=", "/file/"):
        if marker in path:
            return path.split(marker, 1)[1]  # ASGI's path is decoded once already, as Gradio reads it
    return None


class VisitorGuard:
    """Visitor cookies, and 404 for a private scope's file asked for by anyone else."""

    def __init__(self, app: Any, files: ScopedFiles | None = None):
        self.app = app
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie"), None)
        cookie = _parse_cookie(header)
        path = scope.get("path", "")
        wanted = _file_path(path)
        if wanted is not None and self.files is not None and not self.files.allows(wanted, cookie):
            await _refuse(send, 404, "Not found.")
            return
        if cookie is not None or scope.get("method") != "GET" or not (path.endswith("/") or path.endswith("/config")):
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https" or any(
            k == b"x-forwarded-proto" and v == b"https" for k, v in scope.get("headers", [])
        )
        # In an iframe (a Space) only a partitioned, SameSite=None cookie is sent back.
        attributes = "; Secure; SameSite=None; Partitioned" if secure else "; SameSite=Lax"
        value = f"{COOKIE}={secrets.token_urlsafe(24)}; Path=/; HttpOnly{attributes}".encode("latin-1")

        async def with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def scoped(
    mode: str,
    open_folder: Callable[[Path], Any],
    *,
    shared: Any,
    users_root: str | Path | None = None,
    limits: ScopeLimits = ScopeLimits(),
    root: str | Path | None = None,
) -> tuple[GalleryScopes, ScopedFiles]:
    """The app's scopes and their picture files, wired so that a session's end deletes both."""
    holder: list[ScopedFiles] = []
    scopes = GalleryScopes(
        mode, open_folder, shared=shared, users_root=users_root, limits=limits, on_end=lambda key: holder[0].drop(key)
    )
    files = ScopedFiles(root if root is not None else upload_folder() / "twin", scopes)
    holder.append(files)
    return scopes, files


def unloader(scopes: GalleryScopes) -> Callable[[], None]:
    """The page's unload event: the visitor closed or reloaded the page, so their session
    gallery (and its pictures) is deleted now rather than after the idle time."""

    def end_session() -> None:
        if scopes.end_session(current_visitor().session):
            log.info("session gallery deleted: the page was closed (%d left)", scopes.sessions)

    return end_session
