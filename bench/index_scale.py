"""Gallery index at scale: synthetic unit vectors at 10k, 100k and 1M faces, each index kind,
FAISS (the folder store) beside Milvus Lite (the *.db store).

    python bench/index_scale.py                      # `make bench-index`: 10k, 100k, 1M (~10 min)
    python bench/index_scale.py --sizes 10000,100000 # smaller
    python bench/index_scale.py --gallery 0          # skip the end-to-end Gallery section
    python bench/index_scale.py --milvus-max 0       # FAISS only

Per size and index kind: build time and bulk add throughput, one-by-one adds (how enrollments
arrive) and removals, single-query search latency p50/p99 (k=5, one query per call, the way
the app asks), recall@1 against exact search, and memory per face (resident growth while
building, and bytes in the saved file). flat and ivf are built by index.vectors, exactly as
the gallery builds them; hnsw (IndexHNSWFlat, M=32, efConstruction=40) is the alternative
that was measured and not shipped.

Data: N vectors drawn uniformly on the 128-d unit sphere (the hardest case for approximate
search: no clusters). Queries, 500 of each kind:
  near  : an enrolled vector moved to distance 0.6 from it: another photo of an enrolled
          person, as close as a good model puts same-person photos;
  far   : moved to distance 0.8: a harder second photo;
  random: uniform on the sphere: a stranger (nothing is within any sane threshold of it, so
          its top-1 does not change an identification; reported for completeness).
Threads: 1 (OMP_NUM_THREADS / --threads), as the app's worker threads each search alone.
Batched: the same queries 10 to a call (time per query), as a bulk identification would ask.

Milvus Lite (up to --milvus-max faces): the collection the gallery's Milvus store makes
(index/stores/milvus_store.py: FLAT, the store's default, and HNSW), filled through pymilvus
in batches of 2,000 rows, flushed, and timed once its index reports every row indexed;
one-by-one inserts and deletes as enrollments and removals arrive; searches (60 of each
kind, --milvus-queries) through the
client (gRPC to the in-process server), k=5; bytes per face = its data directory on disk.
The table goes to stdout and to bench/results/index_scale.md.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from index.gallery import DEFAULT_EXACT_LIMIT  # noqa: E402
from index.vectors import VectorIndex, ivf_layout  # noqa: E402

DIM = 128
K = 5
QUERY_KINDS = {"near": 0.6, "far": 0.8, "random": None}


# -- data -----------------------------------------------------------------------------------------
def unit_vectors(n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out


def moved(base: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at exactly `distance` from each row of `base`, in a random direction."""
    u = rng.standard_normal(base.shape, dtype=np.float32)
    u -= (u * base).sum(1, keepdims=True) * base
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    cos = 1 - distance ** 2 / 2
    return (cos * base + np.sqrt(1 - cos ** 2) * u).astype(np.float32)


def rss_bytes() -> int:
    """Resident memory, after handing freed heap back to the OS (else a new index reuses it
    and its growth hides)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def file_bytes(index) -> int:
    size = 0

    def count(chunk: bytes) -> int:
        nonlocal size
        size += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer
    return size


# -- one index kind ---------------------------------------------------------------------------------
@dataclass
class Row:
    size: int
    kind: str
    setting: str
    shipped: bool = False
    build_s: float = float("nan")
    bulk_per_s: float = float("nan")
    one_per_s: float = float("nan")
    remove_ms: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_p50_ms: float = float("nan")
    batch_ms: float = float("nan")
    recall: dict = field(default_factory=dict)
    ram_per_face: float = float("nan")
    file_per_face: float = float("nan")


def batched(search, queries: np.ndarray, size: int = 10) -> tuple[float, np.ndarray]:
    """Milliseconds per query when asked `size` at a time, and each query's top-1 id."""
    top = np.empty(len(queries), np.int64)
    t = time.perf_counter()
    for start in range(0, len(queries), size):
        _, ids = search(queries[start:start + size])
        top[start:start + size] = ids[:, 0]
    return (time.perf_counter() - t) / len(queries) * 1e3, top


def latency(search, queries: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Single-query wall-clock latency p50 and p99 (ms), CPU-time p50 (ms: what a query costs
    on an otherwise idle core, immune to being preempted), and each query's top-1 id."""
    times, cpu, top = [], [], np.empty(len(queries), np.int64)
    for i in range(len(queries)):
        q = queries[i:i + 1]
        c, t = time.thread_time(), time.perf_counter()
        _, ids = search(q)
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        top[i] = ids[0, 0]
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.median(cpu) * 1e3), top


def measure(rows: list, size: int, kind: str, build, settings: list, data: np.ndarray, queries: dict,
            truth: dict, extra: np.ndarray, args) -> None:
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - t
    ram = (rss_bytes() - before) / size
    faiss_index = index.index if isinstance(index, VectorIndex) else index
    on_file = file_bytes(faiss_index) / size
    made = []
    for label, apply, shipped in settings:
        apply(faiss_index)
        row = Row(size, kind, label, shipped, build_s, size / build_s, ram_per_face=ram, file_per_face=on_file)
        for name, q in queries.items():
            count = len(q) if kind != "flat" else min(len(q), args.flat_queries)
            p50, p99, cpu50, top = latency(lambda x: faiss_index.search(x, K), q[:count])
            row.recall[name] = float(np.mean(top == truth[name][:count]))
            if name == "near":
                row.p50_ms, row.p99_ms, row.cpu_p50_ms = p50, p99, cpu50
                row.batch_ms = batched(lambda x: faiss_index.search(x, K), q[:count])[0]
        made.append(row)
    # then one-by-one adds (ids above the data's), and one-by-one removals of some of them
    t = time.perf_counter()
    for i, v in enumerate(extra):
        faiss_index.add_with_ids(v[None], np.array([size + i], np.int64))
    one_per_s = len(extra) / (time.perf_counter() - t)
    remove_ms = float("nan")
    if kind != "hnsw":
        removals = min(len(extra), 20 if size >= 1_000_000 else 100)
        t = time.perf_counter()
        for i in range(removals):
            faiss_index.remove_ids(np.array([size + i], np.int64))
        remove_ms = (time.perf_counter() - t) / removals * 1e3
    for row in made:
        row.one_per_s, row.remove_ms = one_per_s, remove_ms
        rows.append(row)
        print(format_row(row), flush=True)
    del index, faiss_index
    gc.collect()


# -- Milvus Lite --------------------------------------------------------------------------------------
def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def wait_for_index(path: str, collection: str) -> None:
    """Until Milvus Lite has built its index over what was flushed. Its DescribeIndex always
    answers "Finished" (the build runs later, in a background thread, and searches fall back
    to brute force meanwhile), so this waits on that thread itself: a look inside milvus-lite
    3.x, for this bench only."""
    from milvus_lite import server_manager_instance

    _, db, _ = server_manager_instance._servers[os.path.abspath(path)]
    db.get_collection(collection)._wait_for_bg(timeout=1800)


def wait_for_server_index(client, name: str, size: int) -> None:
    """Until a Milvus server reports every row of `size` indexed (FLAT: at once)."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        described = client.describe_index(name, "vector")
        if described.get("index_type") == "FLAT" or int(described.get("indexed_rows", 0)) >= size:
            return
        time.sleep(1)
    raise TimeoutError(f"the server did not index {size} rows")


def milvus_rows(size: int, index_type: str, data: np.ndarray, queries: dict, truth: dict, extra: np.ndarray,
                args, server=None) -> list[Row]:
    """One Milvus Lite collection of `size` faces, made by the gallery's Milvus store; or, with
    `server` (tests/milvus_server.MilvusServerProcess), one on that Milvus server."""
    from index.stores.base import Caller
    from index.stores.milvus_store import MilvusStore

    with tempfile.TemporaryDirectory(prefix="twin-bench-milvus-") as tmp:
        where = f"{server.url}/bench_{size}_{index_type.lower()}" if server else str(Path(tmp) / "bench.db")
        store = MilvusStore(where, Caller("bench", DIM), index=index_type, timeout=600)
        client, name = store.client, store._physical
        # (after the server started: its growth is what the faces cost)
        before = server.memory_mb() * 2**20 if server else rss_bytes()
        disk_before = dir_bytes(server.base_dir / "data") if server else 0

        def rows(start: int, vectors: np.ndarray) -> list[dict]:
            return [{"id": start + i + 1, "name": f"person {start + i}", "name_key": "k", "enrolled": 0.0,
                     "model_id": "bench", "has_thumbnail": False, "thumbnail": [], "vector": v.tolist()}
                    for i, v in enumerate(vectors)]

        t = time.perf_counter()
        for start in range(0, size, 2000):
            client.insert(name, rows(start, data[start:start + 2000]))
        insert_s = time.perf_counter() - t
        client.flush(name)
        if server:
            wait_for_server_index(client, name, size)
            client.load_collection(name)
        else:
            wait_for_index(str(Path(tmp) / "bench.db"), name)
        build_s = time.perf_counter() - t
        ram = ((server.memory_mb() * 2**20 if server else rss_bytes()) - before) / size
        disk = (dir_bytes(server.base_dir / "data") - disk_before if server else dir_bytes(Path(tmp) / "bench.db")) / size

        def search(q: np.ndarray):
            hits = client.search(name, data=q.tolist(), limit=K, search_params={"metric_type": "L2"},
                                 consistency_level="Strong")
            ids = np.full((len(q), K), -1, np.int64)
            for i, found in enumerate(hits):
                for j, h in enumerate(found):
                    ids[i, j] = int(h["id"]) - 1
            return None, ids

        row = Row(size, "milvus server" if server else "milvus lite", index_type + (" (store default)" if index_type == "FLAT" else ""),
                  False, build_s, size / insert_s, ram_per_face=ram, file_per_face=disk)
        count = args.milvus_queries
        for kind, q in queries.items():
            per_query, top = batched(search, q[:count])
            row.recall[kind] = float(np.mean(top == truth[kind][:count]))
            if kind == "near":
                row.batch_ms = per_query
        row.p50_ms, row.p99_ms, _, _ = latency(search, queries["near"][:count])
        t = time.perf_counter()
        for i, v in enumerate(extra[:200]):
            client.insert(name, rows(size + i, v[None]))
        row.one_per_s = 200 / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(50):
            client.delete(name, ids=[size + i + 1])
        row.remove_ms = (time.perf_counter() - t) / 50 * 1e3
        if server:
            client.drop_collection(name)
        store.close()
    print(format_row(row), flush=True)
    return [row]


# -- the end-to-end Gallery --------------------------------------------------------------------------
def gallery_section(n: int, rng: np.random.Generator, milvus: bool) -> list[str]:
    """Enroll n faces through Gallery (durable commits), search through it, and weigh the
    files: a folder (SQLite + FAISS), then Milvus Lite."""
    from index import Gallery

    data = unit_vectors(n, rng)
    queries = moved(data[rng.integers(0, n, 300)], 0.6, rng)
    lines = [f"Gallery end to end, {n:,} faces (no thumbnails), through `Gallery.enroll` / `Gallery.search`:", ""]
    for store in ("folder", "milvus") if milvus else ("folder",):
        with tempfile.TemporaryDirectory(prefix="twin-bench-") as tmp:
            location = tmp if store == "folder" else str(Path(tmp) / "gallery.db")
            options = {"background": False} if store == "folder" else {}
            g = Gallery(location, model_id="bench", **options)
            t = time.perf_counter()
            for i, v in enumerate(data):
                g.enroll(f"person {i}", v)
            enroll_s = (time.perf_counter() - t) / n
            g.search(queries[0])  # builds the index
            times = []
            for q in queries:
                t = time.perf_counter()
                g.search(q, k=K)
                times.append(time.perf_counter() - t)
            g.close()
            ms = np.array(times) * 1e3
            if store == "folder":
                db = (Path(tmp) / "gallery.db").stat().st_size / n
                idx = (Path(tmp) / "vectors.index").stat().st_size / n
                lines += [f"- folder (SQLite + FAISS): enroll {enroll_s * 1e3:.1f} ms each ({1 / enroll_s:.0f}/s), one "
                          "durable SQLite commit (fsync) per call; search k=5 p50 "
                          f"{np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms (index + names from "
                          f"SQLite); disk {db:.0f} bytes/face in gallery.db + {idx:.0f} in vectors.index"]
            else:
                disk = dir_bytes(Path(location)) / n
                lines += [f"- Milvus Lite: enroll {enroll_s * 1e3:.1f} ms each ({1 / enroll_s:.0f}/s): a model "
                          "check, a same-photo query before and after the insert, the insert (no fsync); search "
                          f"k=5 p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms (names come "
                          f"with the hits); disk {disk:.0f} bytes/face"]
    lines += ["- a thumbnail (112x112 PNG crop) adds about 20-30 kB/face when kept (base64 in Milvus: a third more)"]
    return lines


# -- output -------------------------------------------------------------------------------------------
HEADER = ("| faces | index | setting | build s | bulk add/s | one-by-one add/s | remove ms | search p50 ms | "
          "search p99 ms | search CPU p50 ms | batched ms/query | recall@1 near | recall@1 far | recall@1 random | "
          "RAM B/face | file B/face |")


def format_row(r: Row) -> str:
    def f(v, spec):
        return "n/a" if v != v else format(v, spec)
    setting = f"**{r.setting}** (shipped)" if r.shipped else r.setting
    return (f"| {r.size:,} | {r.kind} | {setting} | {f(r.build_s, '.1f')} | {f(r.bulk_per_s, ',.0f')} | "
            f"{f(r.one_per_s, ',.0f')} | {f(r.remove_ms, '.2f')} | {f(r.p50_ms, '.3f')} | {f(r.p99_ms, '.2f')} | "
            f"{f(r.cpu_p50_ms, '.3f')} | {f(r.batch_ms, '.3f')} | "
            f"{r.recall.get('near', float('nan')):.3f} | {r.recall.get('far', float('nan')):.3f} | "
            f"{r.recall.get('random', float('nan')):.3f} | {f(r.ram_per_face, ',.0f')} | "
            f"{f(r.file_per_face, ',.0f')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=500, help="queries of each kind")
    parser.add_argument("--flat-queries", type=int, default=100, help="single queries timed on exact search")
    parser.add_argument("--kinds", default="flat,ivf,hnsw")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hnsw-max", type=int, default=100_000,
                        help="largest size to build HNSW at (default 100000: at 1M it takes over 15 min)")
    parser.add_argument("--gallery", type=int, default=2000, help="faces for the end-to-end section (0: skip)")
    parser.add_argument("--milvus-max", type=int, default=100_000,
                        help="largest size to run Milvus Lite at (default 100000; 0: FAISS only)")
    parser.add_argument("--milvus-index", default="FLAT,HNSW", help="Milvus index types (default FLAT,HNSW)")
    parser.add_argument("--milvus-queries", type=int, default=60, help="Milvus queries of each kind")
    parser.add_argument("--milvus-on", default="lite",
                        help="lite, server or lite,server: server starts a Milvus 2.3.5 standalone server "
                             "(the `milvus` package, tests/milvus_server.py) and measures it too")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "index_scale.md"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = args.kinds.split(",")
    started = time.time()
    rows: list[Row] = []
    notes: list[str] = []
    server = None
    if "server" in args.milvus_on:
        sys.path.insert(0, str(ROOT / "tests"))
        from milvus_server import MilvusServerProcess

        server = MilvusServerProcess(Path(tempfile.mkdtemp(prefix="twin-bench-server-")))
        start_s = server.start()
        notes.append(f"- Milvus server: 2.3.5 standalone (the `milvus` package), started in {start_s:.1f} s, "
                     f"{server.memory_mb():.0f} MB resident when empty; RAM B/face = its resident growth, "
                     "file B/face = its data directory's growth; searches at Strong consistency over gRPC.")
    print(HEADER, flush=True)
    for size in sizes:
        rng = np.random.default_rng(args.seed + size)
        data = unit_vectors(size, rng)
        picks = rng.integers(0, size, args.queries)
        queries = {name: (moved(data[picks], d, rng) if d is not None else unit_vectors(args.queries, rng))
                   for name, d in QUERY_KINDS.items()}
        extra = unit_vectors(1000, rng)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(data)
        truth, nearest = {}, {}
        for name, q in queries.items():
            sims, ids = exact.search(q, 2)
            truth[name] = ids[:, 0]
            nearest[name] = np.median(np.sqrt(np.maximum(0, 2 - 2 * sims[:, 1 if name != "random" else 0])))
        del exact
        notes.append(f"- {size:,} faces: the nearest *other* enrolled face is at a median distance of "
                     f"{nearest['near']:.3f} from a near query (its own entry is at 0.6); a random query's "
                     f"nearest face is at {nearest['random']:.3f}.")
        ids = np.arange(size, dtype=np.int64)
        nlist, nprobe = ivf_layout(size)
        if "flat" in kinds:
            measure(rows, size, "flat", lambda: VectorIndex.build("flat", DIM, ids, data),
                    [("exact", lambda ix: None, size <= DEFAULT_EXACT_LIMIT)], data, queries, truth, extra, args)
        if "ivf" in kinds:
            probes = sorted({max(1, nprobe // 2), nprobe, min(nlist, nprobe * 2)})
            measure(rows, size, "ivf", lambda: VectorIndex.build("ivf", DIM, ids, data),
                    [(f"nlist={nlist} nprobe={p}", (lambda ix, p=p: setattr(ix, "nprobe", p)),
                      p == nprobe and size > DEFAULT_EXACT_LIMIT)
                     for p in probes], data, queries, truth, extra, args)
        if "hnsw" in kinds and size > args.hnsw_max:
            built = [r for r in rows if r.kind == "hnsw"]
            if built:
                rate = built[-1].bulk_per_s
                notes.append(f"- hnsw was not built at {size:,} faces (--hnsw-max {args.hnsw_max:,}): at the rate "
                             f"measured at {built[-1].size:,} ({rate:,.0f} faces/s, and it slows as the graph "
                             f"grows) the build alone would take over {size / rate / 60:.0f} min on one thread.")
        if "hnsw" in kinds and size <= args.hnsw_max:
            def build_hnsw():
                inner = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = 40
                index = faiss.IndexIDMap2(inner)
                index.add_with_ids(data, ids)
                return index

            def ef(value):
                def apply(ix):
                    faiss.downcast_index(ix.index).hnsw.efSearch = value
                return apply
            measure(rows, size, "hnsw", build_hnsw,
                    [(f"M=32 efSearch={e}", ef(e), False) for e in (64, 128, 256)],
                    data, queries, truth, extra, args)
        if size <= args.milvus_max:
            for index_type in [k for k in args.milvus_index.split(",") if k]:
                if "lite" in args.milvus_on:
                    rows += milvus_rows(size, index_type, data, queries, truth, extra, args)
                if server is not None:
                    rows += milvus_rows(size, index_type, data, queries, truth, extra, args, server)
        elif args.milvus_max and "milvus" not in " ".join(notes):
            made = [r for r in rows if r.kind == "milvus lite"]
            if made:
                notes.append(f"- Milvus Lite was not run at {size:,} faces (--milvus-max {args.milvus_max:,}): at the "
                             f"rates measured at {made[-1].size:,} (insert, flush and index build "
                             f"{made[-1].build_s:.0f} s) it would take well over the time this bench is given.")
        del data
        gc.collect()
    gallery_lines = (gallery_section(args.gallery, np.random.default_rng(args.seed), args.milvus_max > 0)
                     if args.gallery else [])
    if server is not None:
        server.stop(timeout_s=10)
    elapsed = time.time() - started
    write_report(args, rows, notes, gallery_lines, elapsed)


def milvus_notes(rows: list[Row], args) -> list[str]:
    """FAISS beside Milvus Lite, in words, from the rows measured."""
    lite = [r for r in rows if r.kind == "milvus lite"]
    if not lite:
        return []
    lines = ["", "## FAISS and Milvus Lite on one machine", ""]
    for size in sorted({r.size for r in lite}):
        shipped = next((r for r in rows if r.size == size and r.shipped), None)
        for r in (r for r in lite if r.size == size):
            if shipped is not None:
                lines.append(f"- {size:,} faces, Milvus Lite {r.setting.split()[0]}: search p50 {r.p50_ms:.1f} ms "
                             f"against {shipped.p50_ms:.3f} ms for the shipped FAISS index "
                             f"({r.p50_ms / max(shipped.p50_ms, 1e-9):,.0f}x), {r.batch_ms:.2f} ms a query batched, "
                             f"recall@1 near {r.recall.get('near', float('nan')):.3f}; "
                             f"bulk insert {r.bulk_per_s:,.0f}/s, ready (flushed and indexed) after "
                             f"{r.build_s:.0f} s; {r.file_per_face:,.0f} bytes/face on disk.")
    lines += [
        "",
        "On one machine FAISS in the app's process is faster, by two orders of magnitude (the "
        "ratios above), and it is not close: a FAISS search is a C++ call on an array already in this process's "
        "memory, while every Milvus Lite call is a gRPC round trip to a server written in Python "
        "(milvus-lite 3.x), whose FLAT search is NumPy brute force that copies the candidate "
        "vectors on every query and whose HNSW index is built in a background thread after a flush "
        "(searches fall back to brute force until it finishes); at its default search parameters "
        "Lite's HNSW also finds the true nearest face less often than the shipped IVF index. Its "
        "RAM per face counts Python objects (the memtable, Arrow tables), not only vectors. "
        "Milvus Lite is here for what it "
        "shares with a Milvus server, not for speed: the same client API, schema and behaviour, "
        "so the Milvus store is tested without a server, and a gallery moves to one by changing "
        "its location.",
        "",
        "Past one machine a Milvus cluster is still the answer, because what stops the folder store "
        "is not search speed: (1) one writer at a time on one disk, and every app replica needing "
        "that disk, where Milvus takes writes from any number of replicas and keeps one copy of the "
        "truth; (2) memory: the FAISS index must fit in every replica's RAM (about 0.5 kB a face, "
        "plus SQLite's pages), where Milvus shards segments over query nodes and can keep "
        "thumbnails memory-mapped; (3) availability: replicas of each segment on several query "
        "nodes, a write-ahead log in message storage and data in object storage, so losing a "
        "machine loses neither the gallery nor the service; (4) a distributed index built by index "
        "nodes (HNSW, IVF, DiskANN) instead of each app process rebuilding its own. The price is a "
        "network round trip per search plus the server's own search (Milvus's engine is C++, like "
        "FAISS), which a request that spends 30-130 ms embedding each photo (bench/results/speed.md) "
        "can afford.",
    ]
    return lines


def write_report(args, rows: list[Row], notes: list[str], gallery_lines: list[str], elapsed: float) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    lines = [
        "# Gallery index at scale",
        "",
        f"`{shlex.join(['python', 'bench/index_scale.py', *sys.argv[1:]])}` on {dt.date.today()}: "
        f"{os.cpu_count()} CPUs ({cpu}), faiss {faiss.__version__}, {args.threads} thread(s), "
        f"load average {load[0]:.1f} at the end"
        + (" (other jobs shared the machine: wall-clock latencies are pessimistic, p99 especially)"
           if load[0] > 1.5 else "") + f". Took {elapsed / 60:.1f} min.",
        "",
        "Synthetic unit vectors (uniform on the 128-d sphere), single queries, k=5. Search p50/p99 "
        "are wall-clock (what a user waited on this shared, loaded machine, at nice 19); search CPU "
        "p50 is the query's own CPU time (what it costs on an idle core). Recall@1 is "
        "agreement with exact search's top-1 on 500 queries of each kind: *near* = an enrolled "
        "vector moved to distance 0.6 (another photo of an enrolled person), *far* = moved to 0.8, "
        "*random* = a stranger. Exact (flat) recall is 1 by definition; its latency is timed on "
        f"{args.flat_queries} queries; batched = the same queries 10 to a call, time per query. RAM B/face = "
        "resident memory growth while building (vectors, ids, lists or graph); file B/face = the saved index "
        "(Milvus Lite: its data directory). Milvus Lite rows: the gallery's Milvus store's own collection, "
        f"searched through pymilvus, {args.milvus_queries} queries of each kind; build s = insert, flush and "
        "index build until every row is indexed; its search CPU is spent in the server's threads, so not "
        "reported. Bold = what the gallery ships "
        f"(exact up to {DEFAULT_EXACT_LIMIT:,} faces, then IVF with nlist ~ 4 sqrt(N) rounded down to a power of "
        "two and nprobe = max(128, nlist/8)); "
        "other IVF rows are the same index searched with half or twice the lists.",
        "",
        HEADER,
        "|" + "---|" * (HEADER.count("|") - 1),
        *[format_row(r) for r in rows],
        "",
        "Why the numbers look the way they do:",
        "",
        *notes,
        "- Removal: flat removal compacts the array (O(N) per call); IVF removal scans the id lists "
        "(O(N) ids, no vector moves); HNSW cannot remove at all (the gallery would need tombstones "
        "and rebuilds), which, with its build time, is why the gallery uses IVF above the exact limit.",
        *milvus_notes(rows, args),
        "",
        *gallery_lines,
        "",
    ]
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
