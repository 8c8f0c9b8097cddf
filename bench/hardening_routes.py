"""Issue 19's probes (routes, uploads, queue flood, proxy headers), before and after, side by side.

    python bench/hardening_routes.py [--base 4b89ab1] [--out bench/results/hardening-routes.md]

Also run by bench/hardening.py (`make bench-hardening`). "Before" is the app at the base commit,
exported with `git archive` into a temporary folder; "after" is this checkout. Each runs the same
probes against its own fresh server on loopback; clients are told apart by their own loopback
source address (127.0.0.x), never by a header:

1. 20 heavy /identify calls (a 576-face photo) through every route Gradio has (/run, /api,
   /call, /call/v2, /queue/join): a small /compare's time alone and beside them, server memory;
2. 8 parallel uploads of 99 MB from one client: how many accepted, bytes left on disk;
3. a 215 MB chunked upload (over the cap) and 3 uploads cut off mid-body: partial files left;
5. 4 threads flooding /call/compare without ever reading a result, for 15 s, while another client
   makes 20 calls: how many served, what the flood got, the server's CPU-seconds;
6. (--auth) 300 wrong passwords from loopback with a new X-Forwarded-For each: how many refused;
   then 8 wrong ones "from" a victim's address, and the victim's own sign-in.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_server import LFW, AppServer, lfw  # noqa: E402

MB = 2**20
BASE = "4b89ab1"


def http(source: str = "127.0.0.1", timeout: float = 120.0) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout)


def url(server: AppServer) -> str:
    return server.url.rstrip("/")


def upload(client: httpx.Client, server: AppServer, *photos: Path) -> list[str]:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    return client.post(f"{url(server)}/gradio_api/upload", files=files).json()


def field(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def call(client: httpx.Client, server: AppServer, endpoint: str, data: list) -> str:
    posted = client.post(f"{url(server)}/gradio_api/call/{endpoint}", json={"data": data})
    if posted.status_code != 200:
        return f"http {posted.status_code}"
    event = ""
    with client.stream("GET", f"{url(server)}/gradio_api/call/{endpoint}/{posted.json()['event_id']}") as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    return event
    return event or "no answer"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crowd(path: Path, side: int = 24, width: int = 30) -> Path:
    height = round(width * 136 / 114)
    people = sorted(os.listdir(LFW))
    grid = Image.new("RGB", (side * width, side * height), "white")
    for i in range(side * side):
        person = people[(i * 7) % len(people)]
        with Image.open(LFW / person / f"{person}_0001.jpg") as im:
            grid.paste(im.convert("RGB").crop((68, 60, 182, 196)).resize((width, height)),
                       ((i % side) * width, (i // side) * height))
    grid.save(path, quality=80)
    return path


def counts(codes: list) -> str:
    return ", ".join(f"{c}: {codes.count(c)}" for c in sorted(set(codes), key=str)) or "none"


# -- the probes -------------------------------------------------------------------------------------
def heavy_routes(server: AppServer, work: Path) -> dict:
    heavy = upload(http("127.0.0.2"), server, crowd(work / "crowd.jpg"))[0]
    small = upload(http("127.0.0.5"), server, lfw("Serena_Williams", 1), lfw("Serena_Williams", 2))
    legit = http("127.0.0.5")

    def small_compare() -> float:
        t = time.perf_counter()
        call(legit, server, "compare", [field(small[0]), field(small[1]), 1, 1])
        return time.perf_counter() - t

    small_compare()
    alone = statistics.median(small_compare() for _ in range(3))
    fn_index = next(d["id"] for d in http().get(f"{url(server)}/config").json()["dependencies"]
                    if d.get("api_name") == "identify")
    before = rss_mb(server.proc.pid)
    answers: dict[str, list] = {}
    routes = ["run", "api", "run", "api", "run", "api", "call", "call/v2", "queue/join", "call"] * 2

    def attack(route: str, source: str) -> None:
        body: dict = {"data": [field(heavy)]}
        if route == "call/v2":
            body = {"photo": field(heavy)}
        if route == "queue/join":
            body.update(fn_index=fn_index, session_hash=uuid.uuid4().hex[:11])
        path = "queue/join" if route == "queue/join" else f"{route}/identify"
        try:
            code = http(source, timeout=120).post(f"{url(server)}/gradio_api/{path}", json=body).status_code
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        answers.setdefault(route, []).append(code)

    threads = [threading.Thread(target=attack, args=(r, f"127.0.1.{i % 4 + 1}")) for i, r in enumerate(routes)]
    for t in threads:
        t.start()
    time.sleep(3)
    beside = [small_compare() for _ in range(3)]
    peak = rss_mb(server.proc.pid)
    for t in threads:
        t.join(180)
    time.sleep(2)
    return {"alone": alone, "beside": statistics.median(beside), "peak": peak - before,
            "after": rss_mb(server.proc.pid) - before, "answers": answers}


def parallel_uploads(server: AppServer) -> dict:
    folder = server.tmp / "gradio-tmp"
    start_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    blob = os.urandom(9 * MB)
    codes: list = []

    def one(i: int) -> None:
        files = [("files", (f"big{i}-{j}.jpg", blob + bytes([i, j]), "image/jpeg")) for j in range(11)]
        try:
            codes.append(http("127.0.0.4").post(f"{url(server)}/gradio_api/upload", files=files).status_code)
        except httpx.HTTPError as exc:
            codes.append(type(exc).__name__)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    seconds = time.perf_counter() - t0
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) - start_bytes
    return {"codes": codes, "disk": on_disk, "seconds": seconds}


def partial_uploads(server: AppServer) -> dict:
    folder = server.tmp / "gradio-tmp"
    boundary = "twinboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(215):
            yield b"\xff" * MB

    refused = http("127.0.0.7").post(f"{url(server)}/gradio_api/upload", content=chunks(),
                                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.7", 0)) as s:
            s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {30 * MB}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + head)
            s.sendall(b"\xee" * (5 * MB))
        time.sleep(0.3)
    time.sleep(12)
    stray = [p for p in folder.rglob("tmp*") if p.is_file()]
    return {"refused": refused.status_code, "files": len(stray), "bytes": sum(p.stat().st_size for p in stray)}


def flood(server: AppServer, seconds: float = 15.0, legit_calls: int = 20) -> dict:
    photo = upload(http("127.0.0.2"), server, lfw("Colin_Powell", 1))[0]
    mine = upload(http("127.0.0.3"), server, lfw("Serena_Williams", 1), lfw("Serena_Williams", 2))
    codes: list = []
    stop = threading.Event()

    def flooder() -> None:
        with http("127.0.0.2", timeout=30) as c:
            while not stop.is_set():
                try:
                    codes.append(c.post(f"{url(server)}/gradio_api/call/compare",
                                        json={"data": [field(photo), field(photo), 1, 1]}).status_code)
                except httpx.HTTPError as exc:
                    codes.append(type(exc).__name__)

    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    threads = [threading.Thread(target=flooder) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    legit, outcomes = http("127.0.0.3"), []
    while len(outcomes) < legit_calls and time.perf_counter() - t0 < seconds + 60:
        outcomes.append(call(legit, server, "compare", [field(mine[0]), field(mine[1]), 1, 1]))
    stop.set()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    return {"served": outcomes.count("complete"), "calls": len(outcomes), "legit": outcomes, "flood": codes,
            "rate": len(codes) / wall, "cpu": cpu_seconds(server.proc.pid) - cpu0, "wall": wall}


def lockout(server: AppServer, guesses: int = 300) -> dict:
    attacker = http("127.0.0.1")
    codes, t0 = [], time.perf_counter()
    for i in range(guesses):
        codes.append(attacker.post(f"{url(server)}/login", data={"username": "ann", "password": f"g{i}"},
                                   headers={"X-Forwarded-For": f"10.{i // 250}.{i % 250}.1"}).status_code)
    rate = guesses / (time.perf_counter() - t0)
    for i in range(8):
        attacker.post(f"{url(server)}/login", data={"username": "ann", "password": f"v{i}"},
                      headers={"X-Forwarded-For": "127.0.0.9"})
    victim = http("127.0.0.9").post(f"{url(server)}/login", data={"username": "ann", "password": "s3cret-Pass"})
    return {"codes": codes, "rate": rate, "victim": victim.status_code}


# -- running both versions ---------------------------------------------------------------------------
def export(commit: str, into: Path) -> Path:
    """The project at `commit`, exported (git archive) into `into` (no checkout, no branch change)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def probe(root: Path, work: Path, label: str) -> dict:
    print(f"[{label}] starting the app from {root}", flush=True)
    out: dict = {}
    server = AppServer(work / f"{label}-app", root=root)
    try:
        print(f"[{label}] 1. heavy calls through every route", flush=True)
        out["heavy"] = heavy_routes(server, work)
        print(f"[{label}] 5. flood of unread jobs", flush=True)
        out["flood"] = flood(server)
        print(f"[{label}] 2. parallel uploads", flush=True)
        out["uploads"] = parallel_uploads(server)
        print(f"[{label}] 3. refused and cut-off uploads", flush=True)
        out["partial"] = partial_uploads(server)
    finally:
        server.stop()
    server = AppServer(work / f"{label}-auth", "--auth", "ann:s3cret-Pass", root=root)
    try:
        print(f"[{label}] 6. rotating X-Forwarded-For", flush=True)
        out["lockout"] = lockout(server)
    finally:
        server.stop()
    return out


def section(before: dict, after: dict, base: str) -> str:
    def both(fn) -> str:
        return f"{fn(before)} | {fn(after)}"

    def ratio(r: dict) -> str:
        h = r["heavy"]
        return f"{h['beside']:.2f} s beside, {h['alone']:.2f} s alone: **{h['beside'] / h['alone']:.1f}x**"

    def routes(r: dict) -> str:
        return "; ".join(f"/{k}: {counts(v)}" for k, v in r["heavy"]["answers"].items())

    def ups(r: dict) -> str:
        u = r["uploads"]
        return (f"{u['codes'].count(200)} of 8 accepted ({counts(u['codes'])}); **+{u['disk'] / MB:.0f} MB** "
                f"on disk in {u['seconds']:.1f} s")

    def part(r: dict) -> str:
        p = r["partial"]
        return f"refused with {p['refused']}; **{p['files']} partial files, {p['bytes'] / MB:.0f} MB** left"

    def fl(r: dict) -> str:
        f = r["flood"]
        return (f"**{f['served']} of {f['calls']} served** ({counts(f['legit'])}); the flood "
                f"({f['rate']:.0f} joins/s): {counts(f['flood'])}; {f['cpu']:.0f} CPU-s in {f['wall']:.0f} s")

    def lo(r: dict) -> str:
        x = r["lockout"]
        return (f"{len(x['codes'])} guesses at {x['rate']:.0f}/s: **{x['codes'].count(429)} refused (429)**; "
                f"the spoofed victim's own sign-in: **{x['victim']}**")

    return "\n".join([
        "## Routes, uploads, queue, proxies (issue 19): before and after",
        "",
        f"`bench/hardening_routes.py`: the same probes against the app at {base} (before, exported with "
        "`git archive`) and at this checkout (after), each on its own fresh server; clients told apart by "
        "their own loopback source address (127.0.0.x).",
        "",
        f"| # | probe | before ({base}) | after |",
        "|---|---|---|---|",
        f"| 1 | a small /compare beside 20 heavy /identify calls sent through every route | {both(ratio)} |",
        f"| 1 | what each route answered the heavy calls (HTTP status) | {both(routes)} |",
        "| 1 | server memory: peak growth during, growth 2 s after | "
        + both(lambda r: f"+{r['heavy']['peak']:.0f} MB, +{r['heavy']['after']:.0f} MB") + " |",
        f"| 2 | 8 parallel 99 MB uploads from one client | {both(ups)} |",
        f"| 3 | a 215 MB chunked upload + 3 cut off mid-body, 12 s later | {both(part)} |",
        f"| 5 | 20 calls of one client while 4 threads of another join /call/compare and never read | {both(fl)} |",
        f"| 6 | wrong passwords from loopback, a new X-Forwarded-For each; then 8 \"from\" a victim | {both(lo)} |",
        "",
    ])


def run(work: Path, base: str = BASE) -> str:
    before_root = export(base, work / "base")
    before = probe(before_root, work, "before")
    after = probe(ROOT, work, "after")
    return section(before, after, base)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=BASE, help="the commit to measure as 'before' (default %(default)s)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hardening-routes.md")
    args = p.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="twin-routes-") as tmp:
        text = run(Path(tmp), args.base)
    head = (f"# Hardening, round 3: routes (issue 19)\n\nCommand: `.venv/bin/python bench/hardening_routes.py`  \n"
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPU cores (shared with other "
            f"work); whole run {(time.monotonic() - started) / 60:.1f} min.\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head + text)
    print(head + text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
