"""Issue 9, item 9: real photos whose metadata is damaged still load; only their pixels count.

Every file here is made in the test from a real LFW JPEG: a damaged metadata segment (EXIF,
XMP, ICC, MPF, Adobe, JFIF, ...) or chunk (PNG text, ICC, EXIF) is spliced into it with
plain byte manipulation, as the damaged photos found on the web carry them. Each must load
with the right size and orientation; genuinely undecodable pixels still give InvalidImage.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from engine import InvalidImage, load_image
from engine.images import without_metadata

ORIENTATION = 0x0112


# -- building damaged files -------------------------------------------------------------------
def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A JPEG's marker segments up to the start of scan, and everything from there on."""
    assert data[:2] == b"\xff\xd8"
    at, found = 2, []
    while data[at + 1] != 0xDA:
        assert data[at] == 0xFF
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        found.append((data[at + 1], data[at + 4:at + 2 + length]))
        at += 2 + length
    return found, data[at:]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg: bytes, *extra: tuple[int, bytes], dpi: bool = True) -> bytes:
    """`jpeg` with its APP0 (JFIF) replaced and `extra` segments spliced in right after it.

    dpi=True declares 72 dpi in the JFIF header, as most web exports do: Pillow then takes the
    resolution from JFIF and reads the EXIF block only when the photo is turned upright (where
    the damage used to surface). dpi=False leaves no JFIF segment at all, as cameras write.
    """
    found, scan = jpeg_segments(jpeg)
    head = b""
    if dpi:
        head = segment(0xE0, b"JFIF\x00\x01\x01\x01\x00\x48\x00\x48\x00\x00")
    rest = b"".join(segment(m, p) for m, p in found if m != 0xE0)
    return b"\xff\xd8" + head + b"".join(segment(m, p) for m, p in extra) + rest + scan


def tiff_block(entries, next_ifd: int = 0, tail: bytes = b"", header: bytes = b"II*\x00\x08\x00\x00\x00") -> bytes:
    """A little-endian TIFF structure (what an EXIF block is): entries (tag, type, count, 4-byte value)."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if isinstance(value, int):
            value = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + value
    return header + body + struct.pack("<I", next_ifd) + tail


def exif_segment(entries=(), **kwargs) -> tuple[int, bytes]:
    return 0xE1, b"Exif\x00\x00" + tiff_block(list(entries), **kwargs)


@pytest.fixture(scope="module")
def upright(lfw) -> Image.Image:
    """200 wide x 250 tall: a non-square photo, so a wrong turn shows in the size."""
    with Image.open(lfw("George_W_Bush", 1)) as im:
        return im.convert("RGB").crop((25, 0, 225, 250))


@pytest.fixture(scope="module")
def sideways(upright) -> bytes:
    """The photo stored turned (250 x 200), as a camera writes it before EXIF orientation 6."""
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def plain(upright) -> bytes:
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def assert_same_picture(image: Image.Image, reference: Image.Image) -> None:
    assert image.mode == "RGB" and image.size == reference.size
    difference = np.abs(np.asarray(image).astype(np.int16) - np.asarray(reference).astype(np.int16))
    assert difference.mean() < 4, difference.mean()      # the same picture, JPEG noise only


# -- EXIF -------------------------------------------------------------------------------------
def test_exif_block_that_is_not_tiff_is_ignored(plain, upright):
    """The case from the web: Pillow's TIFF parser raises SyntaxError inside EXIF handling."""
    data = with_segments(plain, (0xE1, b"Exif\x00\x00XX*\x00\x08\x00\x00\x00" + bytes(20)))
    with pytest.raises(SyntaxError):                      # the damage is real: Pillow itself fails
        Image.open(io.BytesIO(data)).getexif()
    assert_same_picture(load_image(data), upright)
    lazily_opened = Image.open(io.BytesIO(data))          # a caller's PIL image: the same rule
    assert_same_picture(load_image(lazily_opened), upright)


def test_faces_are_found_in_a_photo_with_damaged_exif(engine, lfw):
    data = with_segments(lfw("Colin_Powell", 1).read_bytes(),
                         (0xE1, b"Exif\x00\x00XX*\x00\x08\x00\x00\x00" + bytes(20)))
    faces = engine.faces(data)
    assert len(faces) >= 1
    assert np.linalg.norm(faces[0].embedding) == pytest.approx(1.0, abs=1e-5)
    reference = engine.faces(lfw("Colin_Powell", 1))[0].embedding
    np.testing.assert_allclose(faces[0].embedding, reference, atol=1e-5)   # the same pixels


# Damage that leaves no usable orientation: the photo is used as stored (upright here).
AS_STORED = {
    "IFD offset past the end": dict(entries=[(ORIENTATION, 3, 1, 6)], header=b"II*\x00\x00\x10\x00\x00"),
    "IFD offset near 4 GB": dict(entries=[(ORIENTATION, 3, 1, 6)], header=b"II*\x00\xf0\xff\xff\xff"),
    "orientation 0": dict(entries=[(ORIENTATION, 3, 1, 0)]),
    "orientation 9": dict(entries=[(ORIENTATION, 3, 1, 9)]),
    "orientation 65535": dict(entries=[(ORIENTATION, 3, 1, 65535)]),
    "orientation as text": dict(entries=[(ORIENTATION, 2, 4, b"six\x00")]),
    "orientation as a fraction": dict(entries=[(ORIENTATION, 5, 1, 26)], tail=struct.pack("<II", 6, 1)),
    "orientation with a huge count": dict(entries=[(ORIENTATION, 3, 0x7FFFFFFF, 8)]),
    "orientation of an unknown type": dict(entries=[(ORIENTATION, 99, 1, 6)]),
    "IFD cut short": dict(entries=[], header=b"II*\x00\x08\x00\x00\x00\x05\x00\x12\x01"),
}


@pytest.mark.parametrize("case", list(AS_STORED))
def test_unusable_exif_leaves_the_photo_as_stored(plain, upright, case):
    for dpi in (True, False):
        data = with_segments(plain, exif_segment(**AS_STORED[case]), dpi=dpi)
        assert_same_picture(load_image(data), upright)


# A valid orientation beside damaged tags: the photo is still turned upright. Pillow's own
# exif_transpose() fails on all of these while rewriting the EXIF block it does not need.
TURNED = {
    "clean (the control)": dict(entries=[(ORIENTATION, 3, 1, 6)]),
    "Make stored as a fraction": dict(entries=[(ORIENTATION, 3, 1, 6), (0x010F, 5, 1, 38)],
                                      tail=struct.pack("<II", 1, 2)),
    "XResolution stored as text": dict(entries=[(ORIENTATION, 3, 1, 6), (0x011A, 2, 4, b"abc\x00")]),
    "ResolutionUnit stored as text": dict(entries=[(ORIENTATION, 3, 1, 6), (0x0128, 2, 4, b"abc\x00")]),
    "Artist stored as a double": dict(entries=[(ORIENTATION, 3, 1, 6), (0x013B, 12, 1, 38)], tail=bytes(8)),
    "Exif IFD pointer past the end": dict(entries=[(ORIENTATION, 3, 1, 6), (0x8769, 4, 1, 999_999)]),
    "Exif IFD pointer stored as text": dict(entries=[(ORIENTATION, 3, 1, 6), (0x8769, 2, 4, b"abc\x00")]),
    "Exif IFD pointing at itself": dict(entries=[(ORIENTATION, 3, 1, 6), (0x8769, 4, 1, 8)]),
    "GPS IFD pointer past the end": dict(entries=[(ORIENTATION, 3, 1, 6), (0x8825, 4, 1, 999_999)]),
    "tag of an unknown type": dict(entries=[(ORIENTATION, 3, 1, 6), (0x9999, 77, 1, 0)]),
    "maker note of 4 GB": dict(entries=[(ORIENTATION, 3, 1, 6), (0x927C, 7, 0xFFFFFFFF, 20)]),
    "next IFD past the end": dict(entries=[(ORIENTATION, 3, 1, 6)], next_ifd=999_999),
    # IFD1 describes an embedded thumbnail: a truncated JPEG that claims 50,000 bytes
    "truncated thumbnail": dict(entries=[(ORIENTATION, 3, 1, 6)], next_ifd=26, tail=(
        struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, 60) + struct.pack("<HHII", 0x0202, 4, 1, 50_000)
        + struct.pack("<I", 0) + b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")),
}


@pytest.mark.parametrize("case", list(TURNED))
def test_valid_orientation_beside_damaged_tags_is_applied(sideways, upright, case):
    for dpi in (True, False):
        data = with_segments(sideways, exif_segment(**TURNED[case]), dpi=dpi)
        image = load_image(data)
        assert_same_picture(image, upright)
        assert image.info == {}                               # pixels only: never turned twice
        assert_same_picture(load_image(image), upright)


def test_upright_photo_with_damaged_exif_and_thumbnail_keeps_its_face(engine, lfw):
    """A sideways group-photo-like case: turned by EXIF, with a damaged thumbnail; the face is
    found upright (eyes above the mouth)."""
    with Image.open(lfw("Tony_Blair", 2)) as im:
        stored = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95)
    data = with_segments(buffer.getvalue(), exif_segment(**TURNED["truncated thumbnail"]))
    faces = engine.faces(data)
    assert len(faces) >= 1
    eyes, mouth = faces[0].landmarks[:2], faces[0].landmarks[3:]
    assert eyes[:, 1].max() < mouth[:, 1].min()


# -- other JPEG segments: XMP, ICC, MPF, Photoshop, Adobe, JFIF, comments ----------------------
JPEG_SEGMENTS = {
    "XMP of binary junk": (0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + bytes(range(256))),
    "XMP with no packet": (0xE1, b"http://ns.adobe.com/xap/1.0/"),
    "XMP orientation 9": (0xE1, b'http://ns.adobe.com/xap/1.0/\x00<x tiff:Orientation="9"/>'),
    "ICC profile of junk": (0xE2, b"ICC_PROFILE\x00\x01\x01" + b"junk" * 50),
    "ICC profile chunk count wrong": (0xE2, b"ICC_PROFILE\x00\x02\x05" + b"junk" * 50),
    "ICC segment with no header": (0xE2, b"ICC_PROFILE\x00"),
    "ICC segment cut after its number": (0xE2, b"ICC_PROFILE\x00\x01"),
    "MPF index of junk": (0xE2, b"MPF\x00" + b"junk" * 10),
    "MPF index claiming 2 images": (0xE2, b"MPF\x00II*\x00\x08\x00\x00\x00\x02\x00\x01\xb0\x04\x00\x01\x00"
                                          b"\x00\x00\x02\x00\x00\x00\x02\xb0\x07\x00\x20\x00\x00\x00\x26\x00"
                                          b"\x00\x00\x00\x00\x00\x00" + bytes(32)),
    "Photoshop block cut short": (0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\xff\xff\xff\xff"),
    "Adobe segment cut short": (0xEE, b"Adobe"),
    "Adobe segment with a bad transform": (0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x07"),
    "JFIF segment cut short": (0xE0, b"JFIF\x00\x01"),
    "comment of binary junk": (0xFE, bytes(range(256))),
    "empty APP1": (0xE1, b""),
}


@pytest.mark.parametrize("case", list(JPEG_SEGMENTS))
def test_damaged_jpeg_segment_is_ignored(plain, upright, case):
    data = with_segments(plain, JPEG_SEGMENTS[case])
    assert_same_picture(load_image(data), upright)


def test_xmp_orientation_is_applied_beside_junk(sideways, upright):
    data = with_segments(sideways, (0xE1, b'http://ns.adobe.com/xap/1.0/\x00<x tiff:Orientation="6"/>\xff\xfe'))
    assert_same_picture(load_image(data), upright)


def test_mpo_with_damaged_second_frame(upright):
    buffer = io.BytesIO()
    upright.save(buffer, "MPO", save_all=True, append_images=[upright.rotate(90)])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_same_picture(load_image(data[: len(data) * 2 // 3]), upright)   # second frame cut off
    damaged = bytearray(data)
    at = data.index(b"MPF\x00")
    damaged[at + 60:at + 80] = b"\xff" * 20                                 # its index entries junk
    assert_same_picture(load_image(bytes(damaged)), upright)


# -- PNG chunks, WebP and TIFF metadata -------------------------------------------------------
def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with(png: bytes, chunk: bytes, after_pixels: bool = False) -> bytes:
    at = png.rindex(b"IEND") - 4 if after_pixels else 8 + 25     # before IEND, or after IHDR
    return png[:at] + chunk + png[at:]


TEXT_BOMB = zlib.compress(bytes(5_000_000), 9)                 # 5 KB that inflate to 5 MB
EXIF_6 = tiff_block([(ORIENTATION, 3, 1, 6)])
PNG_CHUNKS = {
    "tEXt of binary junk": (png_chunk(b"tEXt", bytes(range(256))), False),
    "zTXt that is not zlib": (png_chunk(b"zTXt", b"k\x00\x00junk"), False),
    "zTXt inflating to 5 MB": (png_chunk(b"zTXt", b"k\x00\x00" + TEXT_BOMB), False),
    "zTXt inflating to 5 MB after the pixels": (png_chunk(b"zTXt", b"k\x00\x00" + TEXT_BOMB), True),
    "iTXt inflating to 5 MB": (png_chunk(b"iTXt", b"k\x00\x01\x00\x00\x00" + TEXT_BOMB), False),
    "iTXt of invalid UTF-8": (png_chunk(b"iTXt", b"k\x00\x00\x00\x00\x00\xff\xfe\xfd"), False),
    "iCCP profile of junk": (png_chunk(b"iCCP", b"p\x00\x00junk"), False),
    "iCCP inflating to 5 MB": (png_chunk(b"iCCP", b"p\x00\x00" + TEXT_BOMB), False),
    "iCCP of an unknown method": (png_chunk(b"iCCP", b"p\x00\x05" + zlib.compress(b"junk")), False),
    "eXIf that is not TIFF": (png_chunk(b"eXIf", b"XX*\x00" + bytes(20)), False),
    "Raw profile type exif of junk": (png_chunk(b"tEXt", b"Raw profile type exif\x00\nexif\n  10\nnot-hex"), False),
    "pHYs cut short": (png_chunk(b"pHYs", b"\x00\x00"), False),
    "pHYs cut short after the pixels": (png_chunk(b"pHYs", b"\x00\x00"), True),
    "gAMA cut short": (png_chunk(b"gAMA", b"\x00"), False),
    "sRGB empty": (png_chunk(b"sRGB", b""), False),
    "cHRM cut short": (png_chunk(b"cHRM", bytes(5)), False),
    "tEXt with a bad checksum": (png_chunk(b"tEXt", b"a\x00b", crc=1), False),
    "tEXt with a bad checksum after the pixels": (png_chunk(b"tEXt", b"a\x00b", crc=1), True),
    "acTL cut short": (png_chunk(b"acTL", bytes(3)), False),
}


@pytest.fixture(scope="module")
def png(upright) -> bytes:
    buffer = io.BytesIO()
    upright.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(PNG_CHUNKS))
def test_damaged_png_chunk_is_ignored(png, upright, case):
    chunk, after_pixels = PNG_CHUNKS[case]
    image = load_image(png_with(png, chunk, after_pixels))
    assert image.size == upright.size
    assert np.array_equal(np.asarray(image), np.asarray(upright))   # lossless: every pixel


def test_png_transparency_survives_when_metadata_is_dropped(png, upright):
    rgba = upright.convert("RGBA")
    alpha = np.full((250, 200), 255, np.uint8)
    alpha[:, :40] = 0
    rgba.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    out = np.asarray(load_image(png_with(buffer.getvalue(), png_chunk(b"tEXt", b"a\x00b", crc=1))))
    assert (out[:, :40] == 255).all()
    assert np.array_equal(out[:, 40:], np.asarray(upright)[:, 40:])


@pytest.mark.parametrize("chunk", [png_chunk(b"eXIf", EXIF_6[:8] + tiff_block(
    [(ORIENTATION, 3, 1, 6), (0x0128, 2, 4, b"abc\x00")])[8:]),
    png_chunk(b"iTXt", b'XML:com.adobe.xmp\x00\x00\x00\x00\x00<x tiff:Orientation="6"/>')],
    ids=["eXIf with a mistyped tag", "XMP"])
def test_png_orientation_is_applied_beside_damage(upright, chunk):
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    buffer = io.BytesIO()
    stored.save(buffer, "PNG")
    assert_same_picture(load_image(png_with(buffer.getvalue(), chunk)), upright)


def test_webp_with_junk_exif_icc_and_xmp(upright):
    buffer = io.BytesIO()
    upright.save(buffer, "WEBP", quality=95, exif=b"Exif\x00\x00XX*\x00" + bytes(20),
                 icc_profile=b"junk" * 10, xmp=bytes(range(256)))
    image = load_image(buffer.getvalue())
    assert image.size == upright.size
    assert np.abs(np.asarray(image).astype(np.int16) - np.asarray(upright)).mean() < 6


def test_tiff_with_orientation_and_a_bad_exif_pointer(upright):
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[ORIENTATION] = 6
    tags[0x8769] = 999_999                                # Exif IFD past the end of the file
    tags[700] = b"\xff\xfe junk XMP"
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, "TIFF", tiffinfo=tags, icc_profile=b"junk" * 10)
    image = load_image(buffer.getvalue())
    assert image.size == upright.size
    assert np.array_equal(np.asarray(image), np.asarray(upright))


# -- fuzzing: whatever the damage to an EXIF block, the photo loads --------------------------------
def test_random_damage_to_a_rich_exif_block_never_stops_a_photo(plain, upright):
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    exif[0x010F], exif[0x0110], exif[0x011A], exif[0x0128] = "Canon", "EOS", 72.0, 2
    inner = exif.get_ifd(0x8769)
    inner[0x9003], inner[0x829A], inner[0x927C] = "2020:01:01 00:00:00", 0.01, b"maker" * 20
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (1.0, 2.0, 3.0)
    block = exif.tobytes()
    rng = np.random.default_rng(9)
    for _ in range(150):
        damaged = bytearray(block)
        for at in rng.integers(6, len(block), size=int(rng.choice([1, 3, 8]))):
            damaged[at] = int(rng.integers(0, 256))
        image = load_image(with_segments(plain, (0xE1, bytes(damaged))))
        assert image.size == upright.size or image.size == upright.size[::-1]   # a damaged tag may turn it


# -- pixels that cannot be decoded are still refused ---------------------------------------------
def test_undecodable_pixels_are_still_refused_with_a_clear_message(plain, png):
    damaged_exif = (0xE1, b"Exif\x00\x00XX*\x00\x08\x00\x00\x00" + bytes(20))
    truncated_jpeg = with_segments(plain, damaged_exif)[: len(plain) // 2]
    truncated_png = png_with(png, png_chunk(b"zTXt", b"k\x00\x00" + TEXT_BOMB))[: len(png) // 2]
    no_scan = with_segments(plain, damaged_exif)[:200]                        # headers only
    for data in (truncated_jpeg, truncated_png, no_scan):
        with pytest.raises(InvalidImage) as exc:
            load_image(data)
        message = str(exc.value)
        assert "damaged" in message or "truncated" in message or "not an image" in message, message
        assert "\n" not in message and len(message) < 300


def test_without_metadata(plain, png):
    data = with_segments(plain, (0xE1, b"Exif\x00\x00junk"), (0xE2, b"ICC_PROFILE\x00"), (0xFE, b"hello"),
                         (0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01"))
    stripped = without_metadata(data)
    markers = [m for m, _ in jpeg_segments(stripped)[0]]
    assert not {0xE0, 0xE1, 0xE2, 0xFE} & set(markers) and 0xEE in markers    # well-formed Adobe kept
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stripped))), np.asarray(Image.open(io.BytesIO(plain))))
    tagged = png_with(png, png_chunk(b"tEXt", b"a\x00b"))
    assert without_metadata(tagged) == png
    assert without_metadata(b"GIF89a...") is None
    assert without_metadata(plain[:30]) is None                                # structure broken
