"""User-facing errors: each message is meant to be shown to a person as it is."""


class FaceError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidImage(FaceError, ValueError):
    """The input is not a usable image (not an image, empty, truncated, too large)."""


class NoFaceFound(FaceError):
    """A photo contains no face the detector is confident about."""

    def __init__(self, message: str, which: str | None = None):
        super().__init__(message)
        self.which = which


class ModelNotFound(FaceError, FileNotFoundError):
    """The trained weights are missing; the message says how to make them."""
