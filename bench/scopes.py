"""Session galleries under load, on the real app (python app.py --gallery-scope session).

    python bench/scopes.py            # ~5 min on a CPU; writes bench/results/scopes.md

1. Memory: the server's resident memory (VmRSS) after a warm-up session, with 50 sessions that
   each enroll one LFW photo of a different person (gradio_client, one Client per session), and
   after they leave (idle time 20 s: the sweeper deletes their galleries).
2. Bounds: one client opens 1,000 sessions (POST /gradio_api/call/people with 1,000 session
   hashes) against --max-sessions 100, while a visitor who enrolled before keeps using the app:
   how many are served, how many refused and with which words, and whether the visitor is
   still served and still sees only their own person.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.settings import LFW_DIR, RESULTS_DIR  # noqa: E402

READY = "twin: ready at "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    def __init__(self, tmp: Path, *extra: str):
        self.log_path = tmp / f"app-{time.time_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (open while the server runs)
        env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(free_port()),
             "--gallery", str(tmp / "gallery"), "--gallery-scope", "session", *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready = [line for line in self.log().splitlines() if line.startswith(READY)]
            if ready:
                self.url = ready[0][len(READY):].strip()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._log.close()


def people_photos(count: int) -> list[tuple[str, Path]]:
    out = []
    for folder in sorted(LFW_DIR.iterdir()):
        photo = folder / f"{folder.name}_0001.jpg"
        if photo.is_file():
            out.append((folder.name.replace("_", " "), photo))
        if len(out) == count:
            break
    return out


def call_people(url: str, session: str) -> tuple[bool, str]:
    """One /people call in its own session over the plain HTTP API: (served, what came back)."""
    with httpx.Client(timeout=60) as http:
        event = http.post(f"{url}gradio_api/call/people", json={"data": [], "session_hash": session}).json()
        text = http.get(f"{url}gradio_api/call/people/{event['event_id']}").text
    kind = "complete" if "event: complete" in text else "error"
    data = text.split("data:", 1)[1].strip() if "data:" in text else ""
    return kind == "complete", data


def readable(data: str) -> str:
    try:
        return str(json.loads(data))
    except ValueError:
        return data


def main() -> int:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-scopes-"))
    rows: list[str] = []
    photos = people_photos(150)

    app = App(tmp, "--session-idle", "20", "--max-sessions", "100")
    try:
        left = list(photos)

        def enroll_one(c) -> None:  # the next LFW person whose first photo is enrollable
            while left:
                name, photo = left.pop(0)
                try:
                    c.predict(name, [handle_file(str(photo))], api_name="/enroll")
                    return
                except AppError:  # two faces, too small...: the next person
                    continue

        enroll_one(Client(app.url, verbose=False, download_files=False))
        time.sleep(25)  # the warm-up session idles out too
        before = app.rss_mb()
        start = time.monotonic()
        for _ in range(50):
            enroll_one(Client(app.url, verbose=False, download_files=False))
        took = time.monotonic() - start
        during = app.rss_mb()
        opened = app.log().count("session gallery opened")
        deadline = time.monotonic() + 120
        while not app.log().rstrip().endswith("(0 left)") and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        after = app.rss_mb()
        freed = "(0 left)" in app.log()
    finally:
        app.stop()
    rows += [
        "## 50 sessions that enroll and leave",
        "",
        "| | server RSS (MB) |",
        "|---|---|",
        f"| after a warm-up session, which has left | {before:.0f} |",
        f"| with 50 sessions open, one LFW photo enrolled in each ({took:.0f} s for all 50) | {during:.0f} |",
        f"| after the 50 left (idle 20 s, swept: all freed = {freed}) | {after:.0f} |",
        "",
        f"Growth that stays: {after - before:+.0f} MB for 50 sessions ({opened} session galleries opened in all); "
        f"while open: {(during - before) / 50:.1f} MB per session.",
        "",
    ]

    app = App(tmp, "--session-idle", "600", "--max-sessions", "100")
    try:
        keeper = Client(app.url, verbose=False, download_files=False)
        keeper.predict("Colin Powell", [handle_file(str(LFW_DIR / "Colin_Powell" / "Colin_Powell_0001.jpg"))],
                       api_name="/enroll")
        served = refused = 0
        message = ""
        start = time.monotonic()
        for i in range(1000):
            ok, data = call_people(app.url, f"flood{i:04d}")
            if ok:
                served += 1
            else:
                refused += 1
                message = message or data
        took = time.monotonic() - start
        keeper_people = [p["name"] for p in keeper.predict(api_name="/people")[2]]
        late = Client(app.url, verbose=False, download_files=False)
        try:
            late.predict(api_name="/people")
            late_result = "served"
        except Exception as exc:
            late_result = f"refused: {exc}"
    finally:
        app.stop()
    rows += [
        "## One client opens 1,000 sessions (--max-sessions 100)",
        "",
        f"- {served} served, {refused} refused, in {took:.0f} s ({1000 / took:.0f} sessions/s asked).",
        f"- The refusal, as the client gets it: `{readable(message)}`",
        f"- The visitor who enrolled before the flood: still served, sees {keeper_people}.",
        f"- A new visitor during the flood's sessions (until they idle out): {late_result}.",
        "",
        "A flood fills the session slots until its sessions idle out (`--session-idle`): visitors who "
        "already have a session keep being served; new visitors are refused in words meanwhile. A cap per "
        "client address is not built (behind a proxy every client shares one address).",
        "",
    ]
    text = "\n".join(
        [
            "# Session galleries: memory and bounds (`python bench/scopes.py`)",
            "",
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, CPU, {os.cpu_count()} cores (shared with other work), "
            "the real app (app.py) in session scope; numbers from one run.",
            "",
            *rows,
        ]
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "scopes.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
