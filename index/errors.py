"""Errors the gallery raises on purpose; each message is meant to be shown to a person as it is."""


class GalleryError(Exception):
    """Base of every error the gallery raises on purpose."""


class InvalidInput(GalleryError, ValueError):
    """A name, embedding, thumbnail or file the gallery refuses; nothing was stored."""


class ModelMismatch(GalleryError, ValueError):
    """The gallery holds embeddings of another model: searching or adding would mix two spaces.

    `stored` is the gallery's model id, `wanted` the caller's. The cure is re-embedding the
    stored thumbnails with the new model: `python -m index reembed`.
    """

    def __init__(self, message: str, stored: str | None = None, wanted: str | None = None):
        super().__init__(message)
        self.stored = stored
        self.wanted = wanted


class NotFound(GalleryError, LookupError):
    """No such person or entry."""


class GalleryCorrupt(GalleryError):
    """The SQLite database (the source of truth) cannot be read."""


BUSY_MESSAGE = "The gallery is busy (another program is changing it); try again in a moment."


class GalleryBusy(GalleryError):
    """A change could not start: another program (or thread) has held the gallery's write lock
    for longer than the gallery's busy_timeout. Nothing was changed; the same call may be
    retried. Searches never raise it: they do not wait for writers."""

    def __init__(self, message: str = BUSY_MESSAGE):
        super().__init__(message)


UNAVAILABLE_MESSAGE = "The gallery is unavailable (its database server does not answer); try again in a moment."


class GalleryUnavailable(GalleryError):
    """The gallery's server cannot be reached or is not serving (stopped, restarting, its
    network down). The details go to the log, not into the message: they name internal hosts.
    A change that failed this way may or may not have landed; sending it again is safe (a
    retried enrollment lands on the same entry)."""

    def __init__(self, message: str = UNAVAILABLE_MESSAGE):
        super().__init__(message)
