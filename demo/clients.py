"""Who is asking: the client's address, proxy headers believed only from the operator's proxy.

Every per-client limit (sign-in lockout, upload quota, queue caps, open streams) keys on the
client address. A header such as X-Forwarded-For is written by whoever sends the request, so it
is believed only when the connection comes from a proxy the operator named (`--trust-proxy`);
then the client is the right-most address in the header that is not itself a trusted proxy
(each proxy appends the address it saw, so everything left of that was written by the client).
From anyone else the forwarding headers are removed before Gradio sees them, so they cannot
poison the URLs Gradio builds either (X-Forwarded-Host / -Proto).

Uvicorn has its own proxy-header handling that trusts 127.0.0.1 by default; app.py turns it
off (FORWARDED_ALLOW_IPS="") so this module is the only place that decides.
Plain ASGI, no Gradio import.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Scope = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers that describe a request as a proxy saw it; believed only from a trusted proxy.
FORWARDING_HEADERS = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
        b"forwarded",
    }
)


def parse_networks(values: Iterable[str]) -> list[Network]:
    """`--trust-proxy` values (addresses or networks, comma-separated) -> networks; ValueError if bad."""
    networks: list[Network] = []
    for value in values:
        for item in value.split(","):
            if item.strip():
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
    return networks


def client_host(scope: Scope) -> str:
    """The client's address as ProxyHeaders left it in the scope ('unknown' without one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ProxyHeaders:
    """Set scope['client'] to the real client; drop forwarding headers nobody trusted wrote."""

    def __init__(self, app: Any, trusted: Iterable[Network] = ()):
        self.app = app
        self.trusted = list(trusted)

    def is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    def real_client(self, forwarded_for: str) -> str | None:
        """The right-most address in X-Forwarded-For that is not a trusted proxy."""
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(_strip_port(hop)))
                except ValueError:
                    return None  # not an address: the proxy did not write it; use the proxy's
        return None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = client_host(scope)
        headers = scope.get("headers", [])
        if self.trusted and self.is_trusted(peer):
            forwarded = b", ".join(v for k, v in headers if k.lower() == b"x-forwarded-for").decode("latin-1")
            real = self.real_client(forwarded) if forwarded else None
            if real is not None:
                scope = dict(scope, client=(real, 0))
        else:
            scope = dict(scope, headers=[(k, v) for k, v in headers if k.lower() not in FORWARDING_HEADERS])
        await self.app(scope, receive, send)


def _strip_port(hop: str) -> str:
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.split(":")[0]
    return hop
