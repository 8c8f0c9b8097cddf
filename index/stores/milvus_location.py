"""Where a Milvus gallery is: a location (what the user typed: a *.db path for Milvus Lite,
milvus://host:19530/collection for a server, https://host/collection for a managed Milvus)
read into what MilvusClient connects to and the collection (alias) it names, plus the store
options a location may carry after "?". Credentials never travel in a location: they come
from $TWIN_MILVUS_TOKEN.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..errors import InvalidInput

TOKEN_ENV = "TWIN_MILVUS_TOKEN"
DEFAULT_COLLECTION = "twin_gallery"
DEFAULT_PORT = 19530
OPTIONS = ("index", "consistency")


@dataclass(frozen=True)
class Target:
    """Where a location points: what MilvusClient connects to, and the collection (alias)."""

    uri: str
    collection: str
    lite: bool


def parse(location: str, collection: str | None = None) -> Target:
    text = location.strip().split("?", 1)[0]  # (options after "?": see location_options)
    parts = urlsplit(text)
    if parts.scheme.lower() in ("milvus", "http", "https") and parts.netloc:
        if parts.username or parts.password:
            raise InvalidInput(
                f"Put the Milvus credentials in ${TOKEN_ENV} (user:password or an API key), "
                "not in the gallery location."
            )
        scheme = "https" if parts.scheme.lower() == "https" else "http"
        port = parts.port or (DEFAULT_PORT if parts.scheme.lower() == "milvus" else None)
        name = collection or parts.path.strip("/") or DEFAULT_COLLECTION
        uri = f"{scheme}://{parts.hostname}" + (f":{port}" if port else "")
        return Target(uri, collection_name(name), lite=False)
    return Target(str(Path(text).expanduser().resolve()), collection_name(collection or DEFAULT_COLLECTION), True)


def location_options(location: str) -> dict[str, str]:
    """Store options written into the location, for the app's --gallery and $TWIN_GALLERY:
    milvus://host:19530/faces?index=HNSW&consistency=Bounded."""
    query = location.partition("?")[2]
    options = dict(parse_qsl(query))
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise InvalidInput(f"Unknown gallery option(s) {sorted(unknown)} in {location!r}: index, consistency.")
    return options


def collection_name(name: str) -> str:
    ok = (
        name
        and len(name) <= 200
        and (name[0].isalpha() or name[0] == "_")
        and name.isascii()
        and all(c.isalnum() or c == "_" for c in name)
    )
    if not ok:
        raise InvalidInput(
            f"{name!r} is not a Milvus collection name (letters, digits and _, starting with a letter, at most 200)."
        )
    return name


def token() -> str:
    """The credentials for a server (user:password or an API key), or "" for none."""
    return os.environ.get(TOKEN_ENV, "")
