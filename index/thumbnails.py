"""Thumbnails: the small aligned face crop kept with an entry, stored as PNG bytes.

Re-encoding every thumbnail as PNG keeps only pixels (no EXIF, no GPS, no camera
metadata) and makes a stored thumbnail safe to decode later for the UI or for re-embedding.
The same checks guard every way in and out: `encode` (enroll, import), `check` (what
`Gallery.thumbnail` hands out) and `decode` (re-embedding): the declared size is checked
before a pixel is decompressed, so a decompression bomb or a 9000 x 9000 image costs nothing.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidInput

MAX_SIDE = 512  # an aligned crop is 112 x 112; anything much bigger is not a thumbnail
MIN_SIDE = 8
MAX_BYTES = 4 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COMPRESS_LEVEL = 1  # 1 ms a 112 x 112 crop (level 6: 4 ms, 10% smaller): an import re-encodes every one
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    TypeError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    MemoryError,
)


def encode(thumbnail: np.ndarray | bytes | bytearray | memoryview, *, formats: Iterable[str] | None = None) -> bytes:
    """A uint8 array (H x W x 3 RGB, or H x W grey) or encoded image bytes -> PNG bytes.

    formats: the image formats accepted for bytes (e.g. ("PNG",) for an import); None: any
    that Pillow reads. Raises InvalidInput for anything else, for images that do not decode,
    and for sizes outside MIN_SIDE..MAX_SIDE.
    """
    if isinstance(thumbnail, (bytes, bytearray, memoryview)):
        array = _pixels(bytes(thumbnail), formats)
    elif isinstance(thumbnail, np.ndarray):
        array = thumbnail
        if array.dtype != np.uint8:
            raise InvalidInput(f"A thumbnail array must be uint8 pixels, not {array.dtype}.")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise InvalidInput(f"A thumbnail array must be H x W x 3 (RGB) or H x W (grey), not {array.shape}.")
        _check_side(array.shape[1], array.shape[0])
    else:
        raise InvalidInput(f"A thumbnail must be a uint8 array or image bytes, not {type(thumbnail).__name__}.")
    image = Image.fromarray(np.ascontiguousarray(array))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def check(png: bytes) -> bytes:
    """Stored thumbnail bytes, unchanged, once they decode as a PNG of an allowed size.

    Raises InvalidInput otherwise (without decompressing an oversized image)."""
    _pixels(bytes(png), ("PNG",))
    return bytes(png)


def decode(png: bytes) -> np.ndarray:
    """Stored thumbnail bytes -> H x W x 3 uint8 RGB array. InvalidInput when they are not a
    PNG of an allowed size, or do not decode."""
    return _pixels(bytes(png), ("PNG",))


def _pixels(data: bytes, formats: Iterable[str] | None) -> np.ndarray:
    """Decode image bytes into an H x W x 3 uint8 array, checking the size before decoding."""
    if not data:
        raise InvalidInput("The thumbnail is empty.")
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"The thumbnail is {len(data)} bytes; the limit is {MAX_BYTES}.")
    allowed = None if formats is None else [f.upper() for f in formats]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=allowed) as image:
                _check_side(*image.size)
                image.load()
                array = np.asarray(image.convert("RGB"))
    except InvalidInput:
        raise
    except _UNREADABLE as exc:
        raise InvalidInput(
            "The thumbnail bytes are not a readable image" + (f" ({' or '.join(allowed)})" if allowed else "") + "."
        ) from exc
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InvalidInput("The thumbnail bytes are not a readable image.")
    return array


def _check_side(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise InvalidInput(
            f"A thumbnail must be between {MIN_SIDE} and {MAX_SIDE} pixels a side, "
            f"not {width} x {height}: pass the aligned face crop."
        )
