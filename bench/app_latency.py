"""The app's overhead: /compare through gradio_client against FaceEngine.compare() called directly.

    python bench/app_latency.py [--runs 20] [--device cpu|cuda] [--out bench/results/speed.md]

Starts app.py on a free loopback port with a throw-away gallery, times both paths on the
same two LFW photos (after warm-up runs), and writes a section to the results file. The
section is replaced when one for the same device already exists, so CPU and GPU runs
sit side by side.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from engine.settings import ROOT  # noqa: E402  (the project root, defined once)
from engine.settings import DATA_DIR as DATA  # noqa: E402
PHOTOS = (DATA / "lfw" / "Serena_Williams" / "Serena_Williams_0001.jpg",
          DATA / "lfw" / "Serena_Williams" / "Serena_Williams_0002.jpg")
READY = "twin: ready at "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, device: str | None) -> tuple[subprocess.Popen, str, Path]:
    log = tmp / "app.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(free_port()),
           "--gallery", str(tmp / "gallery")] + (["--device", device] if device else [])
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio-tmp")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(READY):
                return proc, line[len(READY):].strip(), log
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"app.py did not start:\n{log.read_text()}")


def timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


def write_section(path: Path, heading: str, body: str) -> None:
    text = path.read_text() if path.is_file() else (
        "# App latency: what the web app adds to a comparison\n\n"
        "Written by `bench/app_latency.py`; one section per device.\n")
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{heading}\n\n{body.strip()}\n\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default=None, help="engine device for both paths (default: cuda if available)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.md",
                    help="a section is replaced or appended in this file (run bench/speed.py first)")
    args = ap.parse_args()

    import torch
    from gradio_client import Client, handle_file

    from engine import FaceEngine

    engine = FaceEngine(device=args.device)
    device = engine.device.type
    direct = timed(lambda: engine.compare(*PHOTOS), args.runs, args.warmup)
    del engine

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _ = start_app(Path(tmp), args.device)
        try:
            client = Client(url, verbose=False, download_files=str(Path(tmp) / "downloads"))
            files = [handle_file(str(p)) for p in PHOTOS]
            through_app = timed(lambda: client.predict(*files, 1, 1, api_name="/compare"), args.runs, args.warmup)
            floor = timed(lambda: client.predict(api_name="/people"), args.runs, args.warmup)
        finally:
            proc.terminate()
            proc.wait(15)

    d, a, f = statistics.median(direct), statistics.median(through_app), statistics.median(floor)
    load = " · load average {:.1f} {:.1f} {:.1f} (other work on the machine)".format(*os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else ""
    machine = f"{platform.machine()}, {os.cpu_count()} CPU threads" + (f", {gpu}" if gpu else "")
    body = f"""
{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine} · torch threads {torch.get_num_threads()}{load} ·
{args.runs} timed runs after {args.warmup} warm-up runs · photos: two 250x250 LFW JPEGs (one face each).

| path | median ms | p90 ms |
|---|---:|---:|
| `FaceEngine.compare(a, b)` called directly | {d:.1f} | {p90(direct):.1f} |
| `/compare` through gradio_client (upload both photos, queue, compare, draw, download the 3 result images) | {a:.1f} | {p90(through_app):.1f} |
| **the app's overhead** (difference of medians) | **{a - d:.1f}** | |
| `/people` through gradio_client (no files, no model): the client/queue round trip alone | {f:.1f} | {p90(floor):.1f} |

The direct path decodes, detects, aligns and embeds both photos; the app path does the same
work plus HTTP uploads, Gradio's queue and event stream, drawing the boxes and the aligned
pair, encoding them (JPEG) and the client's downloads, all on this one machine (loopback).
"""
    write_section(args.out, f"## The web app's overhead ({device})", body)
    print(body)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
