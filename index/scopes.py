"""Which gallery a request sees: one shared gallery, one per visitor session, or one per user.

    shared   one gallery for everyone who can open the app (a private deployment; today's app)
    session  each visitor session (a browser page, a gradio_client Client) gets its own gallery,
             in a private temporary folder, deleted when the session ends or has been idle
             for `ScopeLimits.idle_seconds`; bounded in people and photos per session and in
             sessions at once (so in total), refused in our words past a bound
    user     each signed-in user gets a persistent gallery of their own, a sub-folder of the
             gallery folder named by a keyed hash of the user name (never the raw name); a
             visitor who is not signed in gets a session gallery

`GalleryScopes.gallery_for(visitor)` is the one way to a gallery; `ScopedGallery` is a
gallery-shaped view that resolves the calling visitor on every use, so the app's actions
(demo/service.py) cannot reach any gallery but the caller's. Knows nothing of Gradio: the
caller says who the visitor is (`Visitor`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GalleryError

log = logging.getLogger(__name__)

SHARED, SESSION, USER = "shared", "session", "user"
SCOPES = (SHARED, SESSION, USER)
#: The sub-folder of a folder gallery that holds the users' galleries (user scope).
USERS_FOLDER = "users"
#: What the page says in the shared scope.
SHARED_LINE = (
    "Shared gallery: everyone who can open this app sees, identifies against and can delete "
    "the people enrolled here; they are kept until someone deletes them."
)
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ScopeRefused(GalleryError):
    """A bound was reached (sessions at once, people or photos in a session), or a session
    was asked for by another browser; the message says what to do."""


@dataclass(frozen=True)
class Visitor:
    """Who makes a request: the session (Gradio's session hash), the signed-in user (or None)
    and the visitor cookie of their browser or client (binds a session to it; None if none)."""

    session: str | None
    user: str | None = None
    cookie: str | None = None


@dataclass(frozen=True)
class ScopeLimits:
    """Bounds on session galleries. Total: at most max_sessions * max_entries entries."""

    max_sessions: int = 100  # session galleries at once
    max_people: int = 20  # people per session gallery
    max_entries: int = 60  # photos (entries) per session gallery
    idle_seconds: float = 1800.0  # a session gallery unused this long is deleted


def default_scope(share: bool, host: str | None, space: bool) -> str:
    """`session` when others can reach the app (a share link, a Space, a non-loopback host),
    else `shared` (local use keeps one gallery)."""
    reachable = share or space or (host or "127.0.0.1").strip() not in LOOPBACK
    return SESSION if reachable else SHARED


def user_key(name: str) -> str:
    """The folder name of a user's gallery: a hash of the name, never the name itself."""
    return hashlib.sha256(b"twin-user\0" + name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def user_folder(root: str | Path, name: str) -> Path:
    """Where `name`'s gallery lives inside the folder gallery `root` (user scope, python -m index)."""
    return Path(root) / USERS_FOLDER / user_key(name)


def is_folder_location(location: str | Path) -> bool:
    """True for a folder gallery (SQLite + FAISS); False for Milvus (*.db, milvus://, https://)."""
    text = str(location)
    return "://" not in text and not text.endswith(".db")


@dataclass
class _Session:
    key: str
    gallery: Any
    folder: Path
    cookie: str | None
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GalleryScopes:
    """The galleries of one app, by scope.

    open_folder(path): opens (creating) a folder gallery for the app's engine.
    shared:            the shared gallery (shared scope).
    users_root:        the folder gallery whose `users/` sub-folder holds user galleries.
    on_end(key):       called when a session gallery is deleted (the app deletes its pictures).
    """

    def __init__(
        self,
        mode: str,
        open_folder: Callable[[Path], Any] | None = None,
        *,
        shared: Any = None,
        users_root: str | Path | None = None,
        limits: ScopeLimits = ScopeLimits(),
        on_end: Callable[[str], None] | None = None,
        sweep_every: float | None = None,
    ):
        if mode not in SCOPES:
            raise ValueError(f"the gallery scope must be one of {', '.join(SCOPES)}, not {mode!r}")
        if mode == SHARED and shared is None:
            raise ValueError("the shared scope needs the shared gallery")
        if mode != SHARED and open_folder is None:
            raise ValueError(f"the {mode} scope needs a way to open folder galleries")
        if mode == USER and users_root is None:
            raise ValueError("the user scope needs the folder that holds the users' galleries")
        self.mode = mode
        self.limits = limits
        self._open = open_folder
        self._shared = shared
        self._users_root = Path(users_root) if users_root is not None else None
        self._users: dict[str, Any] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._on_end = on_end
        self._temp: Path | None = None
        self._closed = threading.Event()
        self._sweeper: threading.Thread | None = None
        if mode != SHARED:
            every = sweep_every if sweep_every is not None else min(60.0, max(0.5, limits.idle_seconds / 4))
            self._sweeper = threading.Thread(target=self._sweep_loop, args=(every,), daemon=True, name="twin-scopes")
            self._sweeper.start()

    # -- which gallery -----------------------------------------------------------------------
    def key_of(self, visitor: Visitor) -> str:
        """The scope a visitor is in, as a key (no gallery is opened): 'shared', 'u-<hash>',
        's-<hash>'. Raises ScopeRefused for a session-less request outside the shared scope."""
        if self.mode == SHARED:
            return SHARED
        if self.mode == USER and visitor.user:
            return "u-" + user_key(visitor.user)
        if not visitor.session:
            raise ScopeRefused("This request has no session: open the app's page, or use a gradio_client Client.")
        return "s-" + hashlib.sha256(b"twin-session\0" + visitor.session.encode()).hexdigest()[:32]

    def is_private(self, visitor: Visitor) -> bool:
        return self.key_of(visitor) != SHARED

    def gallery_for(self, visitor: Visitor) -> Any:
        """The gallery this visitor sees (made on first use); ScopeRefused past a bound."""
        key = self.key_of(visitor)
        if key == SHARED:
            return self._shared
        if key.startswith("u-"):
            return self._user_gallery(key[2:])
        return self._session(key, visitor).gallery

    def enroll(self, visitor: Visitor, name: str, embedding: Any, **options: Any) -> Any:
        """Gallery.enroll within the visitor's bounds: a session gallery takes at most
        max_people people and max_entries photos; past that, ScopeRefused and nothing stored."""
        key = self.key_of(visitor)
        if not key.startswith("s-"):
            return self.gallery_for(visitor).enroll(name, embedding, **options)
        session = self._session(key, visitor)
        with session.lock:  # the count and the enrollment together: two requests cannot both pass
            gallery, limits = session.gallery, self.limits
            if len(gallery) >= limits.max_entries:
                raise ScopeRefused(
                    f"Your session's gallery is full ({limits.max_entries} photos, the most a visitor "
                    "may enroll here). Delete some entries in the Gallery tab to enroll more."
                )
            if name not in gallery and gallery.count_people() >= limits.max_people:
                raise ScopeRefused(
                    f"Your session's gallery already holds {limits.max_people} people, the most a "
                    "visitor may enroll here. Delete someone in the Gallery tab to enroll someone new."
                )
            return gallery.enroll(name, embedding, **options)

    def _user_gallery(self, key: str) -> Any:
        with self._lock:
            gallery = self._users.get(key)
            if gallery is None:
                assert self._open is not None and self._users_root is not None
                folder = self._users_root / USERS_FOLDER / key
                folder.mkdir(parents=True, exist_ok=True)
                gallery = self._users[key] = self._open(folder)
            return gallery

    def _session(self, key: str, visitor: Visitor) -> _Session:
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                if session.cookie is not None and visitor.cookie != session.cookie:
                    raise ScopeRefused("This session belongs to another browser. Reload the page to start your own.")
                session.last_used = now
                return session
            if self._closed.is_set():
                raise ScopeRefused("The app is shutting down.")
            if len(self._sessions) >= self.limits.max_sessions:
                self._expire(now)
            if len(self._sessions) >= self.limits.max_sessions:
                raise ScopeRefused(
                    f"Twin is keeping galleries for as many visitors as it can ({self.limits.max_sessions}) "
                    "right now. Please try again in a few minutes; nothing of yours was stored."
                )
            assert self._open is not None
            if self._temp is None:
                self._temp = Path(tempfile.mkdtemp(prefix="twin-sessions-"))  # mode 0700: ours only
                log.info("session galleries in %s", self._temp)
            folder = self._temp / key
            folder.mkdir()
            try:
                gallery = self._open(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            session = self._sessions[key] = _Session(key, gallery, folder, visitor.cookie, now)
            log.info("session gallery opened (%d at once)", len(self._sessions))
            return session

    # -- ending sessions ---------------------------------------------------------------------
    def end_session(self, session_id: str | None) -> bool:
        """Delete a session's gallery now (the visitor closed or reloaded the page)."""
        if not session_id or self.mode == SHARED:
            return False
        key = self.key_of(Visitor(session_id))
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is None:
            return False
        self._free(session)
        return True

    def sweep(self) -> int:
        """Delete the session galleries idle for longer than the limit; returns how many."""
        with self._lock:
            gone = self._expire(time.monotonic())
        return gone

    def _expire(self, now: float) -> int:
        """(Holding the lock.) Free the idle sessions."""
        idle = [s for s in self._sessions.values() if now - s.last_used >= self.limits.idle_seconds]
        for session in idle:
            del self._sessions[session.key]
        for session in idle:
            self._free(session)
        if idle:
            log.info("freed %d idle session galleries (%d left)", len(idle), len(self._sessions))
        return len(idle)

    def _free(self, session: _Session) -> None:
        try:
            session.gallery.close()
        except Exception as exc:  # a broken gallery must not stop the others being freed
            log.warning("closing a session gallery: %s", exc)
        shutil.rmtree(session.folder, ignore_errors=True)
        if self._on_end is not None:
            try:
                self._on_end(session.key)
            except Exception:
                log.exception("cleaning up after a session")

    def _sweep_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            try:
                self.sweep()
            except Exception:
                log.exception("sweeping idle session galleries")

    @property
    def sessions(self) -> int:
        """Session galleries open now."""
        return len(self._sessions)

    def close(self) -> None:
        """Free every session gallery and close the user galleries (the app is stopping)."""
        self._closed.set()
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            users, self._users = list(self._users.values()), {}
        for session in sessions:
            self._free(session)
        for gallery in users:
            gallery.close()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)

    # -- words -------------------------------------------------------------------------------
    def describe_scope(self) -> str:
        """The scope in a sentence, for the operator (the launch log)."""
        if self.mode == SHARED:
            return "one gallery shared by everyone who can open the app"
        session = (
            f"its own temporary gallery (deleted when the page closes or after {_duration(self.limits.idle_seconds)} "
            f"idle; at most {self.limits.max_people} people, {self.limits.max_entries} photos, "
            f"{self.limits.max_sessions} sessions at once)"
        )
        if self.mode == USER:
            where = f"{self._users_root}/{USERS_FOLDER}/"
            return f"each signed-in user has a persistent gallery in {where}; a visitor not signed in gets {session}"
        return f"each visitor session gets {session}"

    def describe(self, visitor: Visitor) -> str:
        """One sentence for the page: which gallery the visitor is in and what becomes of its faces."""
        if self.mode == SHARED:
            return SHARED_LINE
        if self.mode == USER and visitor.user:
            return (
                f"Your own gallery as {visitor.user}: only someone signed in as {visitor.user} sees the people "
                "enrolled here; they are kept on the server until you delete them."
            )
        limits = self.limits
        return (
            "Your own gallery for this visit: nobody else sees the people you enroll; they are deleted "
            f"when you close or reload this page, or after {_duration(limits.idle_seconds)} without use "
            f"(at most {limits.max_people} people and {limits.max_entries} photos)."
        )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


class ScopedGallery:
    """A gallery-shaped view of the calling visitor's gallery: every attribute is looked up on
    `scopes.gallery_for(who())` at the moment of use, so code holding it (the app's actions)
    can only ever reach the caller's own gallery. `enroll` applies the session bounds."""

    def __init__(self, scopes: GalleryScopes, who: Callable[[], Visitor]):
        self.scopes = scopes
        self.who = who

    def current(self) -> Any:
        return self.scopes.gallery_for(self.who())

    def enroll(self, name: str, embedding: Any, **options: Any) -> Any:
        return self.scopes.enroll(self.who(), name, embedding, **options)

    def describe(self) -> str:
        return self.scopes.describe(self.who())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.current(), name)

    def __len__(self) -> int:
        return len(self.current())

    def __contains__(self, name: object) -> bool:
        return name in self.current()
