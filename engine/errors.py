"""User-facing errors: each message is meant to be shown to a person as it is."""


class FaceError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidImage(FaceError, ValueError):
    """The input is not a usable image (not an image, empty, truncated, too large)."""


class NoFaceFound(FaceError):
    """A photo contains no face the detector is confident about, or not the face asked for.

    which: the photo, as the message names it; number: the face asked for (1 = the most
    prominent); found: how many faces the photo has (engine.picking.pick_face fills all three).
    """

    def __init__(self, message: str, which: str | None = None, *, number: int | None = None, found: int | None = None):
        super().__init__(message)
        self.which = which
        self.number = number
        self.found = found


class BadFaceNumber(FaceError, ValueError):
    """A face number that is not a whole number from 1 (faces are numbered from 1, the most
    prominent first: engine.picking)."""

    def __init__(self, value: object, message: str | None = None):
        self.value = value
        super().__init__(
            message
            or f"A face number must be a whole number from 1 (1 = the most prominent face), not {str(value)[:20]!r}."
        )


class ModelNotFound(FaceError, FileNotFoundError):
    """The trained weights are missing; the message says how to make them."""


class TooMuchWork(FaceError):
    """A photo holds more work than one request may do (hundreds of faces): its deadline passed.

    `found` is the number of faces found before giving up (None when detection itself ran out
    of time); the message says what to do.
    """

    def __init__(self, found: int | None = None, photos: int = 1, message: str | None = None):
        self.found = found
        if message is None:
            what = "this photo" if photos == 1 else "these photos"
            count = "" if found is None else f" ({found} face{'' if found == 1 else 's'} found)"
            message = f"There is too much work in {what}{count}; use a photo with fewer faces or crop it."
        super().__init__(message)


class PoorQuality(FaceError):
    """A face too poor to enroll (engine.quality): tiny, blurred, turned away, too dark.

    `quality` is the face's engine.quality.Quality; the message says what is wrong and what to
    do ("The face is 24 px wide; use a larger photo ...").
    """

    def __init__(self, quality, message: str | None = None):
        self.quality = quality
        if message is None:
            reason = getattr(quality, "reason", None) or "the face is too poor to use"
            message = f"{reason[:1].upper()}{reason[1:]}."
        super().__init__(message)
