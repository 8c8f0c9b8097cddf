"""Hardening figures, the gallery's rows (issue 19 row 12): the people list at 1,000,000 entries.

    python bench/hardening_people.py [--entries 1000000] [--per-person 10]
                                     [--out bench/results/hardening_people.md]

Builds a folder gallery of `--entries` entries (`--per-person` each, so 100,000 people by
default) straight through index/store.py (random unit vectors: listing people never reads
them), opens it as the app does, and times what one /people call costs:

- before: what the Gallery tab's /people did until this round (TwinService.people: every
  entry read, grouped, the JSON of everyone rendered), wall and CPU seconds and JSON bytes;
- after: TwinService.people_page (one page of 50 people read through the name index): the
  first page, page 1,000, the last page, a page from a name, and a repeat of the first page
  (the people count is remembered until the gallery changes).

Writes a Markdown table to bench/results/hardening_people.md (run by `make bench-hardening`
after bench/hardening.py). About a minute and 0.6 GB of disk on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from demo import render
from demo.service import PEOPLE_PER_PAGE, TwinService
from index import Gallery
from index.checks import name_key
from index.store import Store
from index.stores.faiss_store import DB_NAME

ROOT = Path(__file__).resolve().parents[1]
DIM = 128


def build(folder: Path, entries: int, per_person: int) -> float:
    """A gallery of `entries` entries, written in one transaction; returns the seconds taken."""
    started = time.perf_counter()
    Store(folder / DB_NAME).close()  # the schema, as a gallery makes it
    rng = np.random.default_rng(0)
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    people = entries // per_person
    for start in range(0, entries, 50_000):
        count = min(50_000, entries - start)
        vectors = rng.normal(size=(count, DIM)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            (f"Person {((start + i) % people):07d}", 1.7e9 + start + i, "bench", vectors[i].tobytes())
            for i in range(count)
        ]
        conn.executemany("INSERT INTO entries (name, enrolled, model_id, embedding) VALUES (?, ?, ?, ?)", rows)
    names = [f"Person {i:07d}" for i in range(people)]
    conn.executemany("INSERT INTO name_keys (name, key) VALUES (?, ?)", [(n, name_key(n)) for n in names])
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('model_id', 'bench'), ('dim', ?)", (str(DIM),))
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def timed(action) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(folder: Path, people: int) -> list[dict]:
    gallery = Gallery(folder, model_id="bench", embedding_size=DIM, background=False)
    service = TwinService(None, gallery)  # type: ignore[arg-type]  # the list needs no engine
    rows = []

    def before() -> int:  # the /people of the last release: everyone, then their JSON
        everyone = service.people()
        render.people_markdown([(p.name, len(p.entries)) for p in everyone])
        return len(json.dumps(render.people_payload(everyone)))

    def page(number: int, start: str = ""):
        def run() -> int:
            shown, total, _ = service.people_page(number, start)
            render.people_page_markdown([(p.name, len(p.entries)) for p in shown], total, number, PEOPLE_PER_PAGE)
            return len(json.dumps(render.people_payload(shown)))

        return run

    last = -(-people // PEOPLE_PER_PAGE)
    cases = [
        ("before: everyone (the old /people)", before),
        ("after: page 1 (first call: counts the people)", page(1)),
        ("after: page 1 again (count remembered)", page(1)),
        (f"after: page 1,000 of {last:,}", page(1000)),
        (f"after: the last page ({last:,})", page(last)),
        ("after: page 1 from the name 'Person 0090000'", page(1, "Person 0090000")),
    ]
    for label, action in cases:
        wall, cpu, size = timed(action)
        rows.append({"case": label, "wall_s": wall, "cpu_s": cpu, "json_bytes": size})
    gallery.close()
    return rows


def report(args, built: float, rows: list[dict]) -> str:
    lines = [
        "# Hardening: the people list at scale (issue 19 row 12)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"`python bench/hardening_people.py --entries {args.entries} --per-person {args.per_person}`.",
        f"A folder gallery of {args.entries:,} entries ({args.entries // args.per_person:,} people, "
        f"{args.per_person} each), built in {built:.0f} s. One /people call's work in the app's process "
        "(service + render + JSON), without the HTTP hop:",
        "",
        "| call | wall | CPU | JSON |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['wall_s'] * 1000:,.1f} ms | {r['cpu_s'] * 1000:,.1f} ms | {r['json_bytes']:,} B |"
        for r in rows
    ]
    lines += [
        "",
        "Before, every page load and every /people call listed everyone. Now /people is the first page and",
        "/people_page(page, start) any other: the page's names come from the name_keys index (SQLite), the",
        "count of people from the same index, remembered until the gallery changes (SQLite data_version).",
        "A deep page costs an index walk over the names before it (no row is read); `start` jumps straight",
        "to a name. Milvus galleries have no such index: they still list everyone, then slice.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--per-person", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hardening_people.md")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-people-") as tmp:
        folder = Path(tmp) / "gallery"
        folder.mkdir()
        built = build(folder, args.entries, args.per_person)
        rows = measure(folder, args.entries // args.per_person)
    text = report(args, built, rows)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
