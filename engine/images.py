"""Decode any photo a user may hand us into an RGB PIL image, or fail with a clear message.

Pillow does the decoding; this module only adds the policy: which inputs are accepted,
how odd modes become RGB, and how big an image may be before we refuse it.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import InvalidImage

log = logging.getLogger("twin.engine")

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

#: Refuse images above this many pixels (a decompression bomb or a panorama we cannot use).
MAX_PIXELS = 60_000_000
#: Refuse encoded files above this many bytes before decoding them.
MAX_FILE_BYTES = 50 * 1024 * 1024
#: Detection runs on a copy whose longer side is at most this; crops come from full resolution.
DETECTION_MAX_SIDE = 1024


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return `source` as an upright RGB image; raise InvalidImage with a readable reason.

    Only the pixels matter: metadata that cannot be parsed (a damaged EXIF block, a junk ICC
    profile or XMP packet, a broken PNG text chunk, ...) is ignored, and the photo is used as
    stored. The image returned carries no metadata (its `info` is empty), so it is never
    turned twice.
    """
    if isinstance(source, Image.Image):
        try:  # a lazily opened image decodes here: a damaged one fails like damaged bytes
            _check_size(source, max_pixels)
            source.load()
        except (InvalidImage, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, the pixels are unusable
            raise InvalidImage(_damaged(exc, "The image is damaged or truncated: it cannot be decoded.")) from None
        return _pixels_only(_to_rgb(_upright(source, copy=True)))
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    data = _read_bytes(source)
    if not data:
        raise InvalidImage("The file is empty: it holds no image.")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImage(
            f"The file is too large ({len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MB)."
        )
    return _pixels_only(_to_rgb(_upright(_decode(data, max_pixels), copy=False)))


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode `data`; when that fails, decode it once more with every metadata segment removed.

    Pillow parses some metadata while opening a file (JFIF, ICC and Adobe segments of a JPEG,
    every ancillary chunk of a PNG) and gives up on the whole image when one is malformed.
    """
    try:
        return _open(data, max_pixels)
    except InvalidImage:
        raise  # too large or a bomb: refused as it is, never retried
    except UnidentifiedImageError:
        failure = InvalidImage(
            "This file is not an image we can read (JPEG, PNG, WebP, BMP, TIFF, GIF and PGM are supported)."
        )
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything Pillow raises on a damaged file
        failure = InvalidImage(_damaged(exc, "The image file is damaged or truncated: it cannot be decoded."))
    stripped = without_metadata(data)
    if stripped is not None and stripped != data:
        try:
            return _open(stripped, max_pixels)
        except InvalidImage:
            raise
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - the pixels themselves are damaged: say what failed first
            pass
    raise failure from None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image, max_pixels)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("The image has too many pixels to be processed safely.") from None
    return image


def _damaged(exc: BaseException, message: str) -> str:
    """Our words for a file the decoder gave up on; the decoder's own text goes to the log only
    (a person is shown our message, never a library's exception)."""
    log.info("image decoder refused a file: %s", " ".join(str(exc).split())[:200] or type(exc).__name__)
    return message


# -- orientation ------------------------------------------------------------------------------
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1..8; 1 (as stored) when it is missing or cannot be read.

    Pillow parses EXIF lazily, and a damaged block can raise nearly anything from there
    (SyntaxError from its TIFF parser, struct.error, TypeError, ValueError, ...).
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - unreadable metadata is ignored, by policy
        return 1
    return value if type(value) is int and value in _TRANSPOSE else 1


def _upright(image: Image.Image, copy: bool) -> Image.Image:
    """`image` turned as its orientation says (a new image), or itself (a copy when `copy`)."""
    method = _TRANSPOSE.get(orientation(image))
    if method is not None:
        return image.transpose(method)
    return image.copy() if copy else image


def _pixels_only(image: Image.Image) -> Image.Image:
    image.info = {}
    return image


# -- metadata stripping -------------------------------------------------------------------------
#: JPEG markers without a length field (TEM, RST0..7).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
#: PNG ancillary chunks that change pixels, kept when the others are dropped.
_PNG_PIXEL_CHUNKS = {b"tRNS"}


def without_metadata(data: bytes) -> bytes | None:
    """The same JPEG or PNG file with its metadata left out; None for other formats or when
    the file's structure is itself broken.

    JPEG: every APPn and COM segment goes, except a well-formed Adobe APP14 (it tells how to
    read CMYK pixels). PNG: every ancillary chunk goes, except tRNS (transparency).
    """
    if data.startswith(b"\xff\xd8"):
        return _jpeg_without_metadata(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_without_metadata(data)
    return None


def _jpeg_without_metadata(data: bytes) -> bytes | None:
    out, at = [b"\xff\xd8"], 2
    while at + 1 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is pixels
            out.append(data[at:])
            return b"".join(out)
        if marker in _STANDALONE:
            out.append(data[at : at + 2])
            at += 2
            continue
        if at + 4 > len(data):
            return None
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if end > len(data) or end < at + 4:
            return None
        payload = data[at + 4 : end]
        metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        if not metadata or (marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12):
            out.append(data[at:end])
        at = end
    return None


def _png_without_metadata(data: bytes) -> bytes | None:
    out, at = [data[:8]], 8
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            return None
        if kind[:1].isupper() or kind in _PNG_PIXEL_CHUNKS:  # critical chunks (IHDR, PLTE, IDAT, IEND)
            out.append(data[at:end])
        at = end
        if kind == b"IEND":
            return b"".join(out)
    return None


def detection_view(image: Image.Image, max_side: int = DETECTION_MAX_SIDE) -> tuple[Image.Image, float]:
    """A copy small enough for fast detection, and the factor that maps its coordinates back."""
    longest = max(image.size)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), image.width / size[0]


def _read_bytes(source: ImageSource) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImage(f"No such file: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidImage(
                f"The file is too large ({path.stat().st_size / 2**20:.0f} MB; "
                f"the limit is {MAX_FILE_BYTES / 2**20:.0f} MB)."
            )
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
        raise InvalidImage(
            f"The image is too large ({image.width}x{image.height} pixels; "
            f"the limit is {max_pixels / 1e6:g} megapixels)."
        )
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
