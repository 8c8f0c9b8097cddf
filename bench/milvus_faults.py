"""Server faults (issue 24): the real app on a real Milvus server that goes away.

    python bench/milvus_faults.py [--out bench/results/milvus_faults.md]

Starts a Milvus standalone server from the `milvus` package (tests/milvus_server.py, 2.3.5)
and one `python app.py --gallery milvus://127.0.0.1:PORT/faces` (tests/app_server.py), enrolls
a few photos, then:

1. stops the server (SIGTERM; what a 2.3 standalone does then: its coordinators stop while its
   proxy still answers, then it is killed): /identify, /enroll and /people each time to the
   answer, and the answer ("the gallery is unavailable, try again" expected);
2. starts it again on the same port and data: the server's start time, and the time from
   then until the app's /people answers again (the app is not restarted);
3. 2 clients enrolling, kill -9 of the server after 3 acknowledged enrollments, restart:
   how many acknowledged enrollments are in the gallery afterwards (lost = acknowledged - found).

Writes a Markdown table. About 3-5 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_server import AppServer, lfw  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from milvus_server import MilvusServerProcess  # noqa: E402

PHOTOS = [lfw("Tony_Blair", 1), lfw("Colin_Powell", 1), lfw("Hugo_Chavez", 1), lfw("Serena_Williams", 2),
          lfw("Angelina_Jolie", 1), lfw("Ariel_Sharon", 1), lfw("Jacques_Chirac", 1), lfw("Gerhard_Schroeder", 1),
          lfw("Donald_Rumsfeld", 1), lfw("Junichiro_Koizumi", 1)]


def timed(call):
    started = time.perf_counter()
    try:
        call()
        return time.perf_counter() - started, "answered (no error)"
    except Exception as exc:  # noqa: BLE001 - the answer is what is measured
        return time.perf_counter() - started, " ".join(str(exc).split())[:120]


def people(client) -> dict[str, list]:
    return {p["name"]: p["entries"] for p in client.predict(api_name="/people")[2]}


def enroll(client, name: str, photo: Path) -> int | None:
    entries = client.predict(name, [handle_file(str(photo))], api_name="/enroll")[2]["entries"]
    return entries[0]["entry_id"] if entries else None


def until_serving(client, limit_s: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        try:
            people(client)
            return time.perf_counter() - started
        except Exception:  # noqa: BLE001 - not yet
            time.sleep(0.5)
    raise TimeoutError("the app did not serve again")


def run(work: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    server = MilvusServerProcess(work / "milvus")
    rows.append(("server start (fresh data directory)", f"{server.start():.1f} s, {server.memory_mb():.0f} MB RSS"))
    (work / "app").mkdir()
    app = AppServer(work / "app", "--gallery", f"{server.url}/faces")
    client = Client(app.url, verbose=False, download_files=str(work / "downloads"))
    try:
        for i, photo in enumerate(PHOTOS[:3]):
            enroll(client, f"before {i}", photo)
        before = people(client)

        server.stop(timeout_s=10)
        for label, call in [("/identify", lambda: client.predict(handle_file(str(PHOTOS[0])), api_name="/identify")),
                            ("/enroll", lambda: enroll(client, "during", PHOTOS[4])),
                            ("/people", lambda: people(client))]:
            seconds, answer = timed(call)
            rows.append((f"server stopped: {label}", f"{seconds:.2f} s: {answer}"))
        started = time.perf_counter()
        rows.append(("restart: server start", f"{server.start():.1f} s"))
        rows.append(("restart: app serving again after the server answers", f"{until_serving(client):.1f} s"))
        rows.append(("restart: total, from the restart to the app serving", f"{time.perf_counter() - started:.1f} s"))
        after = people(client)
        lost = sum(len(set(v) - set(after.get(k, []))) for k, v in before.items())
        rows.append(("restart: enrollments acknowledged before the stop, lost", str(lost)))

        acknowledged: dict[str, int] = {}
        failed: list[str] = []
        stop = threading.Event()

        def worker(offset: int) -> None:
            c = Client(app.url, verbose=False, download_files=str(work / f"dl{offset}"))
            for i in range(3 + offset, len(PHOTOS), 2):  # (PHOTOS[:3] are enrolled already)
                if stop.is_set():
                    return
                name = f"kill {i}"
                try:
                    entry = enroll(c, name, PHOTOS[i])
                    if entry is not None:
                        acknowledged[name] = entry
                except Exception as exc:  # noqa: BLE001
                    failed.append(" ".join(str(exc).split())[:120])

        workers = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for w in workers:
            w.start()
        while len(acknowledged) < 3 and any(w.is_alive() for w in workers):
            time.sleep(0.1)
        server.kill()
        stop.set()
        for w in workers:
            w.join(120)
        rows.append(("kill -9: restart, server start", f"{server.start():.1f} s"))
        rows.append(("kill -9: app serving again after the server answers", f"{until_serving(client):.1f} s"))
        held = people(client)
        lost = [n for n, e in acknowledged.items() if e not in held.get(n, [])]
        rows.append(("kill -9: enrollments acknowledged / lost", f"{len(acknowledged)} / {len(lost)}"))
        unavailable = [f for f in failed if "unavailable" in f]
        rows.append(("kill -9: enrollments answered 'unavailable' (not acknowledged)", str(len(unavailable))))
        rows.append(("kill -9: other errors", str(len(failed) - len(unavailable)) + (
            f" ({[f for f in failed if 'unavailable' not in f][0]})" if len(failed) > len(unavailable) else "")))
        rows.append(("app alive, no traceback in its log", str(app.proc.poll() is None and "Traceback" not in app.log())))
    finally:
        app.stop()
        server.stop(timeout_s=10)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "milvus_faults.md")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-faults-") as tmp:
        rows = run(Path(tmp))
    text = "\n".join([
        "# Server faults: the app on a Milvus 2.3.5 standalone server that goes away",
        "",
        f"`python bench/milvus_faults.py`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        "one app.py, the server from the `milvus` package (tests/milvus_server.py).",
        "",
        "| what | figure |",
        "|---|---|",
        *[f"| {k} | {v.replace('|', '/')} |" for k, v in rows],
        "",
    ])
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
