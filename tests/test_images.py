"""engine.images.load_image: every input kind and mode becomes an upright RGB image; bad input
is refused with InvalidImage and a message a person can read."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import engine.images as images
from engine import InvalidImage, load_image
from engine.detectors.mtcnn import MTCNNDetector


@pytest.fixture(scope="module")
def photo_path(lfw):
    return lfw("George_W_Bush", 1)


@pytest.fixture(scope="module")
def photo(photo_path) -> Image.Image:
    with Image.open(photo_path) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector(device="cpu")


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def assert_readable(exc: pytest.ExceptionInfo, *words: str) -> None:
    message = str(exc.value)
    assert message and "\n" not in message and len(message) < 300, message
    assert "Traceback" not in message
    lowered = message.lower()
    assert any(w in lowered for w in words), f"{message!r} says none of {words}"


# -- input kinds ------------------------------------------------------------------------------
def test_path_str_and_pathlike(photo_path, photo):
    for source in (photo_path, str(photo_path)):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (250, 250)
        assert np.array_equal(np.asarray(image), np.asarray(photo))


def test_bytes_bytearray_and_file_object(photo_path, photo):
    data = photo_path.read_bytes()
    for source in (data, bytearray(data), io.BytesIO(data)):
        assert np.array_equal(np.asarray(load_image(source)), np.asarray(photo))
    with open(photo_path, "rb") as handle:
        assert np.array_equal(np.asarray(load_image(handle)), np.asarray(photo))


def test_pil_image_is_converted_not_mutated(photo):
    grey = photo.convert("L")
    image = load_image(grey)
    assert image.mode == "RGB" and grey.mode == "L"
    assert np.array_equal(np.asarray(image)[:, :, 0], np.asarray(grey))


def test_ndarray_uint8_rgb(photo):
    array = np.asarray(photo)
    assert np.array_equal(np.asarray(load_image(array)), array)


def test_ndarray_float_in_0_1_and_0_255(photo):
    array = np.asarray(photo)
    unit = array.astype(np.float32) / 255.0
    assert np.abs(pixels(load_image(unit)) - array).max() <= 1
    assert np.array_equal(np.asarray(load_image(array.astype(np.float64))), array)


def test_ndarray_grey_and_single_channel(photo):
    grey = np.asarray(photo.convert("L"))
    for array in (grey, grey[:, :, None]):
        image = load_image(array)
        assert image.mode == "RGB" and image.size == (250, 250)
        out = np.asarray(image)
        assert np.array_equal(out[:, :, 0], grey) and np.array_equal(out[:, :, 1], grey)


def test_ndarray_rgba_is_composited_on_white():
    array = np.zeros((10, 12, 4), np.uint8)
    array[:, :6] = (200, 10, 10, 255)   # opaque red-ish half
    array[:, 6:] = (0, 0, 0, 0)         # fully transparent half
    out = np.asarray(load_image(array))
    assert out.shape == (10, 12, 3)
    assert tuple(out[0, 0]) == (200, 10, 10) and tuple(out[0, 11]) == (255, 255, 255)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((2, 2, 2, 3), np.uint8),
                                 np.zeros((0, 5, 3), np.uint8), np.full((4, 4), np.nan)])
def test_ndarray_unusable_shapes_and_values(bad):
    with pytest.raises(InvalidImage) as exc:
        load_image(bad)
    assert_readable(exc, "array")


def test_unsupported_source_type():
    with pytest.raises(InvalidImage) as exc:
        load_image(12345)  # type: ignore[arg-type]
    assert_readable(exc, "int")


# -- EXIF orientation -------------------------------------------------------------------------
def rotated_with_exif(upright: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG whose pixels are stored sideways, with the EXIF tag that tells viewers to turn it.

    Orientation 6 = "rotate 90 degrees clockwise to display": store it turned counter-clockwise.
    """
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied(photo, detector):
    upright = photo.crop((25, 0, 225, 250))          # 200 wide x 250 tall, face inside
    data = rotated_with_exif(upright)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size == (250, 200)                # what is stored: sideways
    for source in (data, Image.open(io.BytesIO(data))):
        image = load_image(source)
        assert image.size == (200, 250)              # the size swaps back
        assert np.abs(pixels(image) - pixels(upright)).mean() < 4   # same picture, JPEG noise only
        faces = detector.detect(image)
        assert len(faces) == 1
        eyes, mouth = faces[0].landmarks[:2], faces[0].landmarks[3:]
        assert eyes[:, 1].max() < mouth[:, 1].min()  # upright: eyes above the mouth
        assert abs(eyes[0, 1] - eyes[1, 1]) < 10     # and level


# -- modes ------------------------------------------------------------------------------------
def test_mode_L(photo):
    image = load_image(encode(photo.convert("L")))
    assert image.mode == "RGB"
    out = np.asarray(image)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_mode_P_without_transparency(photo):
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    image = load_image(encode(palette))
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(palette.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_P_with_transparency_becomes_white(photo, fmt):
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    array = np.asarray(palette).copy()
    array[array == 0] = 1                    # free index 0 ...
    array[:20, :20] = 0                      # ... and make it the transparent corner
    marked = Image.fromarray(array, "P")
    marked.putpalette(palette.getpalette())
    image = load_image(encode(marked, fmt, transparency=0))
    assert image.mode == "RGB"
    out = np.asarray(image)
    assert (out[:20, :20] == 255).all()
    assert not (out[100:150, 100:150] == 255).all()


def test_mode_RGBA_transparent_pixels_become_white(photo):
    rgba = photo.convert("RGBA")
    alpha = np.full((250, 250), 255, np.uint8)
    alpha[:, :50] = 0                        # transparent strip
    alpha[:, 50:60] = 128                    # half transparent
    rgba.putalpha(Image.fromarray(alpha))
    out = pixels(load_image(encode(rgba)))
    original = pixels(photo)
    assert (out[:, :50] == 255).all()
    assert np.array_equal(out[:, 60:], original[:, 60:])
    half = (original[:, 50:60].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(out[:, 50:60] - half).max() <= 2


def test_mode_LA(photo):
    la = photo.convert("LA")
    alpha = np.full((250, 250), 255, np.uint8)
    alpha[200:, :] = 0
    la.putalpha(Image.fromarray(alpha))
    out = np.asarray(load_image(encode(la)))
    assert out.shape == (250, 250, 3)
    assert (out[200:] == 255).all()
    assert np.array_equal(out[:200, :, 0], np.asarray(photo.convert("L"))[:200])


def test_mode_16_bit_png(photo):
    grey = np.asarray(photo.convert("L")).astype(np.uint16)
    sixteen = Image.fromarray(grey * 257)            # 0..65535
    assert sixteen.mode.startswith("I;16")
    data = encode(sixteen)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode in ("I;16", "I")             # really a 16-bit file
    out = pixels(load_image(data))
    assert np.abs(out[:, :, 1] - grey).max() <= 1    # scaled to 8 bits, not clipped to white


def test_mode_CMYK_jpeg(photo):
    data = encode(photo.convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "CMYK"
    image = load_image(data)
    assert image.mode == "RGB"
    assert np.abs(pixels(image) - pixels(photo)).mean() < 6


def test_mode_1_bit(photo):
    image = load_image(encode(photo.convert("1")))
    assert image.mode == "RGB" and image.size == (250, 250)
    assert set(np.unique(np.asarray(image))) <= {0, 255}


def test_pgm_grey(att):
    image = load_image(att("s5", 1))
    assert image.mode == "RGB" and image.size == (92, 112)


# -- refusals ---------------------------------------------------------------------------------
def test_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(InvalidImage) as exc:
        load_image(path)
    assert_readable(exc, "not an image")


def test_missing_file(tmp_path):
    with pytest.raises(InvalidImage) as exc:
        load_image(tmp_path / "nowhere.jpg")
    assert_readable(exc, "no such file")


@pytest.mark.parametrize("empty", [b"", bytearray(), io.BytesIO(b"")])
def test_empty(empty):
    with pytest.raises(InvalidImage) as exc:
        load_image(empty)
    assert_readable(exc, "empty")


def test_empty_file_on_disk(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InvalidImage) as exc:
        load_image(path)
    assert_readable(exc, "empty")


def test_text_mode_file_object(photo_path):
    with open(photo_path, "r") as handle, pytest.raises(InvalidImage) as exc:
        load_image(handle)
    assert_readable(exc, "binary")


def test_truncated_jpeg(photo_path):
    data = photo_path.read_bytes()
    half = data[: len(data) // 2]
    with pytest.raises(InvalidImage) as exc:
        load_image(half)
    assert_readable(exc, "truncated", "damaged")
    with pytest.raises(InvalidImage):                # also when Pillow opened it lazily
        load_image(Image.open(io.BytesIO(half)))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that *declares* width x height (no real pixel data): a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 8000])   # above Pillow's own bomb limit; above only ours
def test_decompression_bomb(side):
    data = png_header_only(side, side)
    assert len(data) < 100
    with pytest.raises(InvalidImage) as exc:
        load_image(data)
    assert_readable(exc, "too many pixels", "too large")


def test_max_pixels(photo_path, photo):
    with pytest.raises(InvalidImage) as exc:
        load_image(photo_path, max_pixels=250 * 250 - 1)
    assert_readable(exc, "too large")
    assert "250x250" in str(exc.value) and "0 megapixels" not in str(exc.value)
    assert load_image(photo_path, max_pixels=250 * 250).size == (250, 250)
    for source in (photo, np.asarray(photo)):
        with pytest.raises(InvalidImage):
            load_image(source, max_pixels=1000)


def test_file_too_large(photo_path, monkeypatch):
    limit = photo_path.stat().st_size - 1
    monkeypatch.setattr(images, "MAX_FILE_BYTES", limit)
    data = photo_path.read_bytes()
    for source in (photo_path, data, io.BytesIO(data)):
        with pytest.raises(InvalidImage) as exc:
            load_image(source)
        assert_readable(exc, "too large")


def test_detection_view(photo):
    assert images.detection_view(photo, 1024) == (photo, 1.0)
    big = photo.resize((2000, 1500))
    view, scale = images.detection_view(big, 1000)
    assert view.size == (1000, 750) and scale == pytest.approx(2.0)
