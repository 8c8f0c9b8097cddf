"""Security headers on every response: what the page may load, who may frame it, no sniffing.

The Content-Security-Policy allows what Gradio's page needs and nothing from elsewhere: its
own scripts and styles (Gradio puts its config in an inline script and Svelte sets inline
styles, hence 'unsafe-inline'), pictures as data:/blob: URLs (uploads previewed, webcam), and
connections back to the app only (fetch and event streams). `frame-ancestors 'none'` and
X-Frame-Options: DENY stop other sites from framing the app (clickjacking); nosniff stops a
browser from reading an uploaded file as a script. Checked in Chromium by tests/test_browser.py.
Plain ASGI, no Gradio import.
"""

from __future__ import annotations

from typing import Any

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Add HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(item: dict[str, Any]) -> None:
            if item["type"] == "http.response.start":
                present = {k.lower() for k, _ in item.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in present]
                item = dict(item, headers=[*item.get("headers", []), *extra])
            await send(item)

        await self.app(scope, receive, with_headers)
