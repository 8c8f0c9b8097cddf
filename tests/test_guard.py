"""demo.guard: the body cap and the sign-in throttle, on a real Starlette app over HTTP."""
from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from demo.guard import BodyLimit, LoginThrottle


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"read": len(body)})


async def login(request: Request) -> JSONResponse:
    form = await request.form()
    ok = form.get("password") == "right"
    return JSONResponse({"success": ok}, status_code=200 if ok else 400)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(clock):
    app = Starlette(routes=[Route("/call", echo, methods=["POST"]), Route("/gradio_api/upload", echo, methods=["POST"]),
                            Route("/login", login, methods=["POST"])],
                    middleware=[Middleware(BodyLimit, limit=1000, upload_limit=5000),
                                Middleware(LoginThrottle, free=3, base=10.0, clock=clock)])
    return TestClient(app)


def test_a_body_within_the_limit_is_served(client):
    assert client.post("/call", content=b"x" * 1000).json() == {"read": 1000}
    assert client.post("/gradio_api/upload", content=b"x" * 4000).json() == {"read": 4000}


def test_a_declared_oversize_body_is_refused_before_it_is_read(client):
    response = client.post("/call", content=b"x" * 1001)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert client.post("/gradio_api/upload", content=b"x" * 5001).status_code == 413


def test_an_undeclared_oversize_body_is_cut_off(client):
    def chunks():
        for _ in range(10):
            yield b"x" * 300
    response = client.post("/call", content=chunks())          # chunked: no Content-Length
    assert response.status_code == 413


def test_a_bad_content_length_is_refused(client):
    response = client.post("/call", content=b"x", headers={"content-length": "many"})
    assert response.status_code == 400


def test_failed_sign_ins_lock_the_client_out_for_longer_each_time(client, clock):
    wrong = {"username": "ann", "password": "guess"}
    for _ in range(3):
        assert client.post("/login", data=wrong).status_code == 400
    locked = client.post("/login", data={"username": "ann", "password": "right"})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 10
    clock.now += 11
    assert client.post("/login", data=wrong).status_code == 400     # 4th failure: 20 s this time
    clock.now += 11
    assert client.post("/login", data=wrong).status_code == 429
    clock.now += 10
    assert client.post("/login", data={"username": "ann", "password": "right"}).status_code == 200
    assert client.post("/login", data=wrong).status_code == 400     # a success cleared the count


def test_a_signed_device_cookie_keeps_its_user_out_of_a_neighbours_lockout(clock):
    app = Starlette(routes=[Route("/login", login, methods=["POST"])],
                    middleware=[Middleware(LoginThrottle, free=3, base=10.0, clock=clock)])
    user, neighbour = TestClient(app), TestClient(app)          # one address ("testclient")
    signed_in = user.post("/login", data={"username": "ann", "password": "right"})
    assert signed_in.status_code == 200 and "twin-device" in signed_in.headers["set-cookie"]
    for _ in range(4):
        neighbour.post("/login", data={"username": "ann", "password": "guess"})
    assert neighbour.post("/login", data={"username": "ann", "password": "right"}).status_code == 429
    assert user.post("/login", data={"username": "ann", "password": "right"}).status_code == 200
    forged = TestClient(app, cookies={"twin-device": "abc.0123456789abcdef0123456789abcdef"})
    assert forged.post("/login", data={"username": "ann", "password": "right"}).status_code == 429


async def _seen(scope, receive, send):
    body = json.dumps({"client": scope["client"][0], "headers": sorted(k.decode() for k, _ in scope["headers"])})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})


def _through_proxy_headers(peer: str, forwarded: str, trusted: str) -> dict:
    import asyncio

    from demo.clients import ProxyHeaders, parse_networks

    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "client": (peer, 1234), "headers": [(b"x-forwarded-for", forwarded.encode()),
                                                                  (b"x-forwarded-host", b"evil.example")]}
    asyncio.run(ProxyHeaders(_seen, parse_networks([trusted]) if trusted else [])(scope, receive, send))
    return json.loads(sent[1]["body"])


def test_forwarding_headers_count_only_from_the_trusted_proxy():
    seen = _through_proxy_headers("10.0.0.5", "1.2.3.4, 203.0.113.7", "10.0.0.0/24")
    assert seen["client"] == "203.0.113.7" and "x-forwarded-host" in seen["headers"]
    seen = _through_proxy_headers("10.0.0.5", "203.0.113.7, 10.0.0.9", "10.0.0.0/24")     # two proxies
    assert seen["client"] == "203.0.113.7"
    seen = _through_proxy_headers("198.51.100.1", "203.0.113.7", "10.0.0.0/24")           # not the proxy
    assert seen["client"] == "198.51.100.1" and seen["headers"] == []
    assert _through_proxy_headers("127.0.0.1", "203.0.113.7", "")["client"] == "127.0.0.1"
