"""The routes around the queue, the disk, the queue itself, proxies and responses (issue 19).

Each test attacks the real app (app.py in a subprocess) as the issue's probes did, and each
failed on the code before the fix (4b89ab1): the direct /run route skipping the queue, uploads
without a quota, partial uploads left on disk, a killed instance's uploads never deleted, a
second instance deleting the first one's pictures, a flood of unread jobs starving everyone,
X-Forwarded-For trusted from anyone, pre-sign-in routes answering, no security headers.

Several clients are told apart by their own loopback source address (127.0.0.2, 127.0.0.3...):
real, distinct peers, not a spoofed header.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app_server import DATA, LFW, AppServer, free_port, lfw

pytestmark = pytest.mark.skipif(not (DATA / "lfw").is_dir(), reason=f"no LFW photos in {DATA}")

MB = 2**20


def http(source: str = "127.0.0.1", timeout: float = 120.0) -> httpx.Client:
    """An HTTP client whose connections come from `source` (any 127.x.y.z reaches the server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout)


def base(server: AppServer) -> str:
    return server.url.rstrip("/")


def upload(client: httpx.Client, server: AppServer, *photos: Path) -> list[str]:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    answer = client.post(f"{base(server)}/gradio_api/upload", files=files)
    assert answer.status_code == 200, answer.text
    return answer.json()


def on_disk(server: AppServer, path: str) -> Path:
    """Where an uploaded file is on the server (responses name the upload folder /twin-uploads)."""
    if not path.startswith("/twin-uploads/"):
        return Path(path)
    folders = sorted((server.tmp / "gradio-tmp").glob("twin-*"))
    assert len(folders) == 1, folders
    return folders[0] / path[len("/twin-uploads/"):]


def file_field(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def sse_result(client: httpx.Client, server: AppServer, endpoint: str, event_id: str) -> tuple[str, object]:
    event = ""
    with client.stream("GET", f"{base(server)}/gradio_api/call/{endpoint}/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.split(":", 1)[1].strip() or "null")
    return event, None


def call(client: httpx.Client, server: AppServer, endpoint: str, data: list) -> tuple[str, object]:
    posted = client.post(f"{base(server)}/gradio_api/call/{endpoint}", json={"data": data})
    if posted.status_code != 200:
        return f"http {posted.status_code}", posted.text
    return sse_result(client, server, endpoint, posted.json()["event_id"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def crowd_photo(path: Path, side: int = 24, width: int = 30) -> Path:
    """576 small LFW faces in a grid: seconds of detection for one request (bench/hardening.py's)."""
    height = round(width * 136 / 114)
    people = sorted(os.listdir(LFW))
    grid = Image.new("RGB", (side * width, side * height), "white")
    for i in range(side * side):
        person = people[(i * 7) % len(people)]
        with Image.open(LFW / person / f"{person}_0001.jpg") as im:
            face = im.convert("RGB").crop((68, 60, 182, 196)).resize((width, height))
        grid.paste(face, ((i % side) * width, (i // side) * height))
    grid.save(path, quality=80)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("routes"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("routes-auth"), "--auth", "ann:s3cret-Pass")
    yield app
    app.stop()


# -- row 1: every route that runs an action goes through the queue's limit ----------------------
def test_heavy_calls_through_every_route_leave_a_small_call_fast(server, tmp_path):
    heavy = upload(http("127.0.0.2"), server, crowd_photo(tmp_path / "crowd.jpg"))[0]
    small = upload(http("127.0.0.5"), server, lfw("Serena_Williams", 1), lfw("Serena_Williams", 2))
    legit = http("127.0.0.5")

    def small_compare() -> float:
        t = time.perf_counter()
        event, _ = call(legit, server, "compare", [file_field(small[0]), file_field(small[1]), 1, 1])
        assert event == "complete"
        return time.perf_counter() - t

    small_compare()                                                      # warm-up
    alone = statistics.median(small_compare() for _ in range(3))
    before = rss_mb(server.proc.pid)
    routes = ["run", "api", "run", "api", "run", "api", "call", "call/v2", "queue/join", "call"] * 2
    answers: list[tuple[str, int]] = []

    def attack(route: str, source: str) -> None:
        body: dict = {"data": [file_field(heavy)]}
        if route == "call/v2":
            body = {"photo": file_field(heavy)}
        if route == "queue/join":
            body.update(fn_index=None, session_hash=uuid.uuid4().hex[:11])
            info = http().get(f"{base(server)}/config").json()
            body["fn_index"] = next(d["id"] for d in info["dependencies"] if d.get("api_name") == "identify")
        path = f"queue/join" if route == "queue/join" else f"{route}/identify"
        try:
            answers.append((route, http(source, timeout=90).post(f"{base(server)}/gradio_api/{path}",
                                                                 json=body).status_code))
        except httpx.HTTPError:
            answers.append((route, -1))

    threads = [threading.Thread(target=attack, args=(route, f"127.0.1.{i % 4 + 1}"))
               for i, route in enumerate(routes)]
    for t in threads:
        t.start()
    time.sleep(3)
    beside = statistics.median(small_compare() for _ in range(3))
    peak = rss_mb(server.proc.pid)
    for t in threads:
        t.join(120)
    # The direct routes no longer run anything past the queue (before the fix they ran every call
    # at once, each to its 20 s deadline: HTTP 500).
    assert {code for route, code in answers if route in ("run", "api")} == {404}, answers
    # Before the fix: 13.5 s beside, 0.68 s alone (20x; the bench: 25x). The queue now runs 3 heavy
    # calls at a time beside the small one's own slots: 3.4x in the bench; on 2 cores shared with
    # other work this test has seen up to 5.6x, so the bound is wide and the figure is the bench's.
    assert beside <= 8 * alone + 1.0, f"a small call took {beside:.2f} s beside the flood, {alone:.2f} s alone"
    assert peak - before < 1500, f"memory grew {peak - before:.0f} MB"
    assert http().post(f"{base(server)}/gradio_api/run/identify",
                       json={"data": [file_field(heavy)]}).status_code in (403, 404)


# -- rows 2, 3, 11: the upload quota; partial and refused uploads leave nothing ------------------
def test_parallel_large_uploads_from_one_client_hit_the_quota(server, tmp_path):
    blob = os.urandom(9 * MB)
    folder = server.tmp / "gradio-tmp"
    codes: list[int] = []

    def one(i: int) -> None:
        files = [("files", (f"big{i}-{j}.jpg", blob + bytes([i, j]), "image/jpeg")) for j in range(11)]
        try:
            codes.append(http("127.0.0.4").post(f"{base(server)}/gradio_api/upload", files=files).status_code)
        except httpx.HTTPError:
            codes.append(-1)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes.count(200) <= 2 and 429 in codes, codes
    assert folder_bytes(folder) < 280 * MB
    assert upload(http("127.0.0.6"), server, lfw("Tony_Blair", 1)), "another client is still served"


def stray_files(folder: Path) -> list[Path]:
    """Files an upload left behind outside the hash folders Gradio keeps finished uploads in."""
    return [p for p in folder.rglob("tmp*") if p.is_file()]


def test_refused_and_cut_off_uploads_leave_no_files(server):
    folder = server.tmp / "gradio-tmp"
    boundary = "twinboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(215):                                     # past the 201 MB upload cap
            yield b"\xff" * MB

    refused = http("127.0.0.7").post(f"{base(server)}/gradio_api/upload", content=chunks(),
                                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert refused.status_code in (413, 429)
    for _ in range(3):                                           # cut off mid-body
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.7", 0)) as s:
            s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {30 * MB}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + head)
            s.sendall(b"\xee" * (5 * MB))
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while stray_files(folder) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stray_files(folder) == []


def test_a_second_instance_leaves_the_first_ones_pictures_alone(server, tmp_path):
    client = http()
    photo = upload(client, server, lfw("Tony_Blair", 1))[0]
    event, payload = call(client, server, "identify", [file_field(photo)])
    assert event == "complete"
    url = payload[0]["url"]
    assert client.get(url).status_code == 200
    second = AppServer(tmp_path / "second", temp_dir=server.tmp / "gradio-tmp")
    try:
        assert client.get(url).status_code == 200, "starting a second instance deleted the first one's files"
    finally:
        second.stop()


# -- row 4: what a killed instance left is deleted when it starts again -------------------------
def test_a_killed_instances_uploads_are_deleted_at_its_next_start(tmp_path):
    port = free_port()
    first = AppServer(tmp_path, port=port)
    try:
        paths = [on_disk(first, p) for p in upload(http(), first, lfw("Colin_Powell", 1), lfw("Hugo_Chavez", 1))]
        assert all(p.is_file() for p in paths)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(15)
    finally:
        first.stop()
    again = AppServer(tmp_path, port=port)
    try:
        assert [p.exists() for p in paths] == [False, False]
    finally:
        again.stop()


# -- row 5: a client flooding the queue with jobs it never reads is refused, others are served ---
def test_a_flood_of_unread_jobs_gets_429_and_others_are_served(server):
    flood_client, legit = http("127.0.0.2"), http("127.0.0.3")
    flood_photo = upload(flood_client, server, lfw("Colin_Powell", 1))[0]
    mine = upload(legit, server, lfw("Serena_Williams", 1), lfw("Serena_Williams", 2))
    codes: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        with http("127.0.0.2", timeout=30) as c:
            while not stop.is_set():
                body = {"data": [file_field(flood_photo), file_field(flood_photo), 1, 1]}
                try:
                    codes.append(c.post(f"{base(server)}/gradio_api/call/compare", json=body).status_code)
                except httpx.HTTPError:
                    codes.append(-1)

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    for t in flooders:
        t.start()
    time.sleep(2)
    served = 0
    for _ in range(10):
        event, _ = call(legit, server, "compare", [file_field(mine[0]), file_field(mine[1]), 1, 1])
        served += event == "complete"
    stop.set()
    for t in flooders:
        t.join(60)
    assert served >= 9, f"only {served} of 10 legitimate calls were served"
    assert 429 in codes and codes.count(200) <= 20, f"the flood got {codes.count(200)} jobs in"


# -- rows 6, 7: proxies, the sign-in lockout, routes before sign-in ------------------------------
def login(client: httpx.Client, server: AppServer, password: str, **headers: str) -> int:
    return client.post(f"{base(server)}/login", data={"username": "ann", "password": password},
                       headers=headers).status_code


def test_rotating_x_forwarded_for_does_not_escape_the_lockout(auth_server):
    attacker = http("127.0.0.1")
    codes = [login(attacker, auth_server, f"guess{i}", **{"X-Forwarded-For": f"10.1.{i}.{i}"}) for i in range(8)]
    assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}, codes


def test_a_victim_whose_address_is_spoofed_is_not_locked_out(auth_server):
    attacker = http("127.0.0.1")
    for i in range(8):
        login(attacker, auth_server, f"guess{i}", **{"X-Forwarded-For": "127.0.0.9"})
    assert login(http("127.0.0.9"), auth_server, "s3cret-Pass") == 200


def test_a_user_who_signed_in_before_is_not_locked_out_by_a_neighbour(auth_server):
    user = http("127.0.0.10")
    assert login(user, auth_server, "s3cret-Pass") == 200                 # keeps the device cookie
    neighbour = http("127.0.0.10")                                       # same address, no cookie
    codes = [login(neighbour, auth_server, f"guess{i}") for i in range(8)]
    assert codes[-1] == 429
    assert login(user, auth_server, "s3cret-Pass") == 200


def test_behind_a_trusted_proxy_the_lockout_keys_on_the_address_the_proxy_saw(tmp_path):
    app = AppServer(tmp_path, "--auth", "ann:s3cret-Pass", "--trust-proxy", "127.0.0.8")
    try:
        proxy = http("127.0.0.8")
        codes = [login(proxy, app, f"guess{i}", **{"X-Forwarded-For": f"10.1.{i}.{i}, 10.9.9.9"}) for i in range(8)]
        assert set(codes[5:]) == {429}, codes                            # the attacker: 10.9.9.9
        assert login(http("127.0.0.8"), app, "s3cret-Pass", **{"X-Forwarded-For": "10.7.7.7"}) == 200
        spoofer = http("127.0.0.11")                                     # not the proxy: header ignored
        codes = [login(spoofer, app, f"guess{i}", **{"X-Forwarded-For": f"10.2.{i}.{i}"}) for i in range(8)]
        assert set(codes[5:]) == {429}, codes
    finally:
        app.stop()


def test_routes_before_sign_in_are_refused(auth_server):
    client = http("127.0.0.12", timeout=5)
    url = base(auth_server)
    assert client.post(f"{url}/gradio_api/cancel", json={"session_hash": "x", "fn_index": 0, "event_id": "y"}
                       ).status_code == 401
    assert client.post(f"{url}/gradio_api/reset", json={"event_id": "y"}).status_code == 401
    assert client.get(f"{url}/gradio_api/heartbeat/abc").status_code == 401


def test_open_streams_per_client_are_capped(server):
    url = base(server)
    before = open_files(server.proc.pid)
    opened, codes = [], []
    for i in range(40):
        c = http("127.0.0.13", timeout=5)
        response = c.send(c.build_request("GET", f"{url}/gradio_api/heartbeat/s{i}"), stream=True)
        codes.append(response.status_code)
        opened.append((c, response))
    try:
        assert codes.count(200) <= 16 and 429 in codes, codes
        assert open_files(server.proc.pid) - before < 40
    finally:
        for c, response in opened:
            response.close()
            c.close()


# -- row 15: security headers; no absolute server paths ------------------------------------------
def test_every_response_carries_security_headers(server):
    client = http()
    for path in ("/", "/config", "/gradio_api/info"):
        headers = client.get(f"{base(server)}{path}").headers
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), path
        assert headers.get("x-frame-options") == "DENY", path
        assert headers.get("x-content-type-options") == "nosniff", path


def test_no_absolute_server_path_in_responses(server):
    client = http()
    secrets = [str(server.tmp), str(Path(__file__).resolve().parents[1])]
    uploaded = client.post(f"{base(server)}/gradio_api/upload",
                           files={"files": ("a.jpg", lfw("Tony_Blair", 1).read_bytes(), "image/jpeg")})
    event, payload = call(client, server, "identify", [file_field(uploaded.json()[0])])   # the alias works
    assert event == "complete", payload
    assert client.get(payload[0]["url"]).status_code == 200
    texts = [uploaded.text, json.dumps(payload), client.get(f"{base(server)}/config").text,
             client.get(f"{base(server)}/").text, client.get(f"{base(server)}/gradio_api/info").text]
    for text in texts:
        assert not any(secret in text for secret in secrets), text[:300]


def test_a_body_that_stops_arriving_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.14", 0)) as s:
        s.settimeout(60)
        s.sendall(b"POST /gradio_api/call/compare HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"data\": [")
        t = time.monotonic()
        answer = s.recv(4096)
        waited = time.monotonic() - t
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 40
