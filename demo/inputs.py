"""What a client may hand us as a photo, and nothing else: the only door from a request to a file.

A request's photo fields are controlled by the client. Gradio hands them over as a path, a
FileData-like dict (`path`, `url`, `orig_name`) or, for pasted and webcam images, an inline
`data:` URL. This module accepts exactly two things:

- a file inside Gradio's upload folder (where the server itself put the client's upload), and
- inline base64 bytes in a `data:image/...` URL, no larger than the upload limit, checked
  *before* decoding.

Anything else (another local path, `file://`, `http://`, a symlink out of the upload folder,
a path that does not exist) gets one and the same message, so a client cannot even learn
whether a path exists on the server. No Gradio import: the rules are plain Python and tested
as such.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import InvalidImage

#: The largest photo a client may send, uploaded or inline (app.py gives Gradio the same limit).
MAX_PHOTO_BYTES = 10 * 1024 * 1024
#: The one answer to every path or URL we will not open (the same whether or not it exists).
NOT_AN_UPLOAD = "This photo was not uploaded to this app; upload the file (or paste it) and try again."

_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+(;[a-z0-9=.+-]+)*;base64,", re.IGNORECASE)


class RefusedInput(InvalidImage):
    """The client pointed at something that is not its own upload (or sent too much inline)."""


@dataclass(frozen=True)
class PhotoInput:
    """A photo we may open: exactly one of `path` (inside the upload folder) or `data` (bytes)."""

    label: str
    path: Path | None = None
    data: bytes | None = None

    @property
    def source(self) -> Path | bytes:
        return self.path if self.path is not None else self.data  # type: ignore[return-value]


def upload_folder() -> Path:
    """Gradio's upload and cache folder, as Gradio itself chooses it (GRADIO_TEMP_DIR or /tmp/gradio)."""
    folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def is_present(value: Any) -> bool:
    """Did the client give anything at all for this field (None, '' and {} mean no)."""
    if value is None or value == "":
        return False
    if isinstance(value, dict):
        return bool(value.get("path") or value.get("url"))
    return True


def photo_input(
    value: Any, default_label: str, *, folder: Path | None = None, max_bytes: int = MAX_PHOTO_BYTES
) -> PhotoInput:
    """The photo a client sent, as something safe to open; RefusedInput for anything else."""
    folder = folder or upload_folder()
    label = _label(value, default_label)
    path, url = _fields(value)
    if path:
        return PhotoInput(label, path=_inside(path, folder))
    if url and url[:5].lower() == "data:":
        return PhotoInput(label, data=_inline_bytes(url, max_bytes))
    if url:  # Gradio's own URLs for uploads carry the path too; a bare URL is never fetched
        raise RefusedInput(NOT_AN_UPLOAD)
    raise RefusedInput(NOT_AN_UPLOAD)


def _fields(value: Any) -> tuple[str | None, str | None]:
    if isinstance(value, dict):
        path, url = value.get("path"), value.get("url")
    elif isinstance(value, (str, os.PathLike)):
        path, url = os.fspath(value), None
        if isinstance(path, str) and path[:5].lower() == "data:":
            path, url = None, path
    else:
        path, url = getattr(value, "path", None), getattr(value, "url", None)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise RefusedInput(NOT_AN_UPLOAD)
    if url is not None and not isinstance(url, str):
        raise RefusedInput(NOT_AN_UPLOAD)
    return (os.fspath(path) if path else None), (url or None)


def _inside(path: str, folder: Path) -> Path:
    """`path` resolved (symlinks followed) when it lies inside `folder`; refused otherwise."""
    if "\0" in path or path[:5].lower() in ("file:", "http:", "https") or "://" in path:
        raise RefusedInput(NOT_AN_UPLOAD)
    try:
        resolved = Path(path).resolve(strict=False)
    except (OSError, RuntimeError, ValueError):
        raise RefusedInput(NOT_AN_UPLOAD) from None
    if resolved == folder or folder not in resolved.parents:
        raise RefusedInput(NOT_AN_UPLOAD)
    if not resolved.is_file():  # inside our own folder: saying it is gone leaks nothing
        raise RefusedInput(NOT_AN_UPLOAD)
    try:
        size = resolved.stat().st_size
    except OSError:
        raise RefusedInput(NOT_AN_UPLOAD) from None
    if size > MAX_PHOTO_BYTES:
        raise RefusedInput(
            f"The photo is too large ({size / 2**20:.1f} MB; the limit is {MAX_PHOTO_BYTES / 2**20:.0f} MB)."
        )
    return resolved


def _inline_bytes(url: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:image/...` URL, refused by length before any decoding."""
    header_end = url.find(",")
    if header_end < 0 or header_end > 200 or not _DATA_URL.match(url[: header_end + 1]):
        raise RefusedInput("The pasted image could not be read (expected a base64 data:image URL).")
    payload_len = len(url) - header_end - 1
    if payload_len * 3 // 4 > max_bytes:
        raise RefusedInput(
            f"The pasted image is too large (about {payload_len * 3 / 4 / 2**20:.1f} MB; "
            f"the limit is {max_bytes / 2**20:.0f} MB)."
        )
    try:
        return base64.b64decode(url[header_end + 1 :], validate=True)
    except (ValueError, binascii.Error):
        raise RefusedInput("The pasted image could not be read (its base64 data is damaged).") from None


def _label(value: Any, default: str) -> str:
    """The file name the user knows a photo by (Gradio's copies keep it as `orig_name`)."""
    name = value.get("orig_name") if isinstance(value, dict) else None
    if isinstance(name, str) and name.strip():
        return _printable(Path(name.replace("\\", "/")).name)[:120] or default
    if isinstance(value, (str, os.PathLike)) and os.fspath(value)[:5].lower() != "data:":
        return _printable(Path(os.fspath(value)).name)[:120] or default
    return default


def _printable(text: str) -> str:
    return "".join(ch for ch in str(text) if ch.isprintable())
