"""Thumbnails: the small aligned face crop kept with an entry, stored as PNG bytes.

Re-encoding every thumbnail as PNG keeps only pixels (no EXIF, no GPS, no camera
metadata) and makes a stored thumbnail safe to decode later for the UI or for re-embedding.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidInput

MAX_SIDE = 512          # an aligned crop is 112 x 112; anything much bigger is not a thumbnail
MIN_SIDE = 8
MAX_BYTES = 4 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(thumbnail: np.ndarray | bytes | bytearray | memoryview) -> bytes:
    """A uint8 array (H x W x 3 RGB, or H x W grey) or encoded image bytes -> PNG bytes.

    Raises InvalidInput for anything else, for images that do not decode, and for sizes
    outside MIN_SIDE..MAX_SIDE.
    """
    if isinstance(thumbnail, (bytes, bytearray, memoryview)):
        data = bytes(thumbnail)
        if not data:
            raise InvalidInput("The thumbnail is empty.")
        if len(data) > MAX_BYTES:
            raise InvalidInput(f"The thumbnail is {len(data)} bytes; the limit is {MAX_BYTES}.")
        try:
            with Image.open(io.BytesIO(data)) as image:
                _check_side(*image.size)
                image.load()
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput("The thumbnail bytes are not a readable image.") from exc
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
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def decode(png: bytes) -> np.ndarray:
    """Stored thumbnail bytes -> H x W x 3 uint8 RGB array."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _check_side(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise InvalidInput(f"A thumbnail must be between {MIN_SIDE} and {MAX_SIDE} pixels a side, "
                           f"not {width} x {height}: pass the aligned face crop.")
