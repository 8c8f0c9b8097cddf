"""Decode any photo a user may hand us into an RGB PIL image, or fail with a clear message.

Pillow does the decoding; this module only adds the policy: which inputs are accepted,
how odd modes become RGB, and how big an image may be before we refuse it.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImage

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO, Image.Image, np.ndarray]

#: Refuse images above this many pixels (a decompression bomb or a panorama we cannot use).
MAX_PIXELS = 60_000_000
#: Refuse encoded files above this many bytes before decoding them.
MAX_FILE_BYTES = 50 * 1024 * 1024
#: Detection runs on a copy whose longer side is at most this; crops come from full resolution.
DETECTION_MAX_SIDE = 1024


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return `source` as an upright RGB image; raise InvalidImage with a readable reason."""
    if isinstance(source, Image.Image):
        try:  # a lazily opened image decodes here: a damaged one fails like damaged bytes
            return _to_rgb(_check_size(ImageOps.exif_transpose(source) or source, max_pixels))
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, InvalidImage):
                raise
            raise InvalidImage(f"The image is damaged or truncated ({exc}).") from None
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    data = _read_bytes(source)
    if not data:
        raise InvalidImage("The file is empty: it holds no image.")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImage(f"The file is too large ({len(data) / 2**20:.0f} MB; the limit is "
                           f"{MAX_FILE_BYTES / 2**20:.0f} MB).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image, max_pixels)
            image.load()
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("The image has too many pixels to be processed safely.") from None
    except UnidentifiedImageError:
        raise InvalidImage("This file is not an image we can read (JPEG, PNG, WebP, BMP, "
                           "TIFF, GIF and PGM are supported).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"The image file is damaged or truncated ({exc}).") from None
    image = ImageOps.exif_transpose(image) or image
    return _to_rgb(image)


def detection_view(image: Image.Image, max_side: int = DETECTION_MAX_SIDE) -> tuple[Image.Image, float]:
    """A copy small enough for fast detection, and the factor that maps its coordinates back."""
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR), image.width / size[0]


def _read_bytes(source: ImageSource) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImage(f"No such file: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidImage(f"The file is too large ({path.stat().st_size / 2**20:.0f} MB; "
                               f"the limit is {MAX_FILE_BYTES / 2**20:.0f} MB).")
        return path.read_bytes()
    if hasattr(source, "read"):
        try:
            data = source.read(MAX_FILE_BYTES + 1)
        except UnicodeDecodeError:
            raise InvalidImage("The file was opened as text; open it in binary mode.") from None
        if isinstance(data, str):
            raise InvalidImage("The file was opened as text; open it in binary mode.")
        return data
    raise InvalidImage(f"Cannot read an image from a {type(source).__name__}.")


def _check_size(image: Image.Image, max_pixels: int) -> Image.Image:
    if image.width < 1 or image.height < 1:
        raise InvalidImage("The image has no pixels.")
    if image.width * image.height > max_pixels:
        raise InvalidImage(f"The image is too large ({image.width}x{image.height} pixels; "
                           f"the limit is {max_pixels / 1e6:g} megapixels).")
    return image


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """Arrays are taken as H x W (grey) or H x W x C (RGB / RGBA), uint8 or float in 0..1."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InvalidImage(f"An image array must be HxW or HxWx3/4, not {array.shape}.")
    if array.size == 0:
        raise InvalidImage("The image array is empty.")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidImage("The image array holds NaN or infinite values.")
        if values.max() <= 1.0:
            values = values * 255.0
        elif array.dtype == np.uint16 or values.max() > 255:
            values = values / 257.0
        array = np.clip(values.round(), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    return _to_rgb(_check_size(image, max_pixels))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Every mode to 8-bit RGB: transparency onto white, 16-bit scaled, CMYK via Pillow."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F" and array.max() <= 1.0:
            top = 1.0
        grey = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
