"""No absolute server path in a response: the upload folder is shown to clients under an alias.

Gradio answers an upload with the files' absolute paths, and every returned picture carries
its path and a URL made of it (`/gradio_api/file=/tmp/.../x.jpg`): the server's folder layout
(user names, mount points, where the app runs) for anyone to read. `HidePaths` rewrites the
upload folder's absolute path to `ALIAS` in every text response (JSON, event streams, HTML),
and back in what clients send: the path of a /file= request, and JSON request bodies (a photo
field names its upload by the path it was given). Only the one folder is mapped, both ways,
so nothing outside it becomes reachable: a request path still goes through Gradio's own
checks and demo/inputs.py's, on the real path.

Plain ASGI, no Gradio import.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

#: What clients see instead of the upload folder's absolute path.
ALIAS = "/twin-uploads"
_TEXT = (b"application/json", b"text/", b"application/javascript")


class HidePaths:
    """Rewrite `folder` <-> ALIAS in responses and requests (see the module docstring)."""

    def __init__(self, app: Any, folder: str):
        self.app = app
        real = str(folder).rstrip("/")
        quoted = urllib.parse.quote(real, safe="/")
        self.outgoing = [(real.encode(), ALIAS.encode())]
        if quoted != real:
            self.outgoing.append((quoted.encode(), ALIAS.encode()))
        self.real, self.alias = real, ALIAS

    def hide(self, data: bytes) -> bytes:
        for real, alias in self.outgoing:
            if real in data:
                data = data.replace(real, alias)
        return data

    def reveal_path(self, scope: Scope) -> Scope:
        path = scope.get("path", "")
        marker = "/file=" + self.alias + "/"
        if marker not in path:
            return scope
        new_path = path.replace(marker, "/file=" + self.real + "/", 1)
        raw = urllib.parse.quote(new_path, safe="/=:@!$&'()*+,;").encode()
        return dict(scope, path=new_path, raw_path=raw)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = self.reveal_path(scope)
        if scope.get("method") == "POST" and _header(scope, b"content-type").startswith(b"application/json"):
            receive = await self._revealed_body(receive)
        start: Message | None = None
        buffered = bytearray()
        streaming = False

        async def hiding(item: Message) -> None:
            nonlocal start, streaming
            if item["type"] == "http.response.start":
                ctype = _header(item, b"content-type")
                if not ctype.startswith(_TEXT) or _header(item, b"content-encoding"):
                    start = None
                    await send(item)
                    return
                start = item
                streaming = not _header(item, b"content-length")
                if streaming:
                    await send(item)
                return
            if item["type"] != "http.response.body" or start is None:
                await send(item)
                return
            if streaming:
                await send(dict(item, body=self.hide(item.get("body", b""))))
                return
            buffered.extend(item.get("body", b""))
            if item.get("more_body", False):
                return
            body = self.hide(bytes(buffered))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send(dict(start, headers=[*headers, (b"content-length", str(len(body)).encode())]))
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hiding)

    async def _revealed_body(self, receive: Any) -> Any:
        """Read the (already size-capped) JSON body, put the real folder back in its paths."""
        chunks, more = [], True
        first_other: Message | None = None
        while more:
            item = await receive()
            if item["type"] != "http.request":
                first_other = item
                break
            chunks.append(item.get("body", b""))
            more = item.get("more_body", False)
        body = b"".join(chunks).replace(f'"{self.alias}/'.encode(), f'"{self.real}/'.encode())
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                if first_other is not None:
                    return first_other
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _header(scope_or_message: dict[str, Any], name: bytes) -> bytes:
    for key, value in scope_or_message.get("headers", []):
        if key.lower() == name:
            return bytes(value).lower() if name == b"content-type" else bytes(value)
    return b""
