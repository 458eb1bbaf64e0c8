"""The shared (Redis) store against the embedded one: inserts, queries, memory, takeover.

Everything runs on a private ``redis-server`` on 127.0.0.1 started for the section, so
the figures are the store's own, without a network between (a real network adds its
round trips: a query makes three, an insert batch about twenty).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.data import DATA, REPO, sized
from tests.support import RedisServer

QUERIES = sized(200, 20)


def _copy(
    src_snap, src_store, store, rows: np.ndarray, batch: int = 1000, features: bool = True
) -> float:
    """Commit *rows* of a local index into *store*, in batches; returns seconds."""
    from engine.storage import Batch

    paths = src_store.paths_of(rows)
    started = time.perf_counter()
    for lo in range(0, len(rows), batch):
        sl = rows[lo : lo + batch]
        store.commit(
            Batch(
                paths=paths[lo : lo + batch],
                sizes=[0] * len(sl),
                mtimes=[0] * len(sl),
                digests=[None] * len(sl),
                codes=np.asarray(src_snap.codes[sl]),
                features=np.asarray(src_snap.features[sl]) if features else None,
                band_keys=np.asarray(src_snap.band_keys[sl]),
            )
        )
    return time.perf_counter() - started


def copy_worker(url: str, src: str, lo: int, hi: int) -> None:
    """One process's share of a two-worker insert (run with ``-c``)."""
    from engine import open_store

    local = open_store(src)
    snap = local.snapshot()
    store = open_store(url)
    rows = np.arange(lo, hi)
    took = _copy(snap, local, store, rows)
    print(f"{hi - lo} {took}")


def _latencies(search, codes: np.ndarray, feats, paths: list[str], mode: str) -> list[float]:
    out = []
    for code, f, p in zip(codes, feats, paths):
        t0 = time.perf_counter()
        search.search_code(code, 10, exclude=p, features=f, mode=mode)
        out.append(time.perf_counter() - t0)
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _groups(store) -> dict[str, int]:
    """Redis bytes by kind of key (MEMORY USAGE of every key of the index)."""
    out: dict[str, int] = {}
    names = {
        b"codes": "codes",
        b"feats": "features",
        b"bands": "band keys",
        b"ids": "ids",
        b"img": "paths and file states",
        b"live": "live bitmap",
        b"lsh_bucket": "LSH buckets",
        b"lsh_keys": "LSH per-image lists",
    }
    pipe_keys = list(store.r.scan_iter(match=store.prefix + b"*", count=10000))
    for i in range(0, len(pipe_keys), 10000):
        chunk = pipe_keys[i : i + 10000]
        pipe = store.r.pipeline(transaction=False)
        for k in chunk:
            pipe.memory_usage(k, samples=0)
        for k, used in zip(chunk, pipe.execute()):
            rest = k[len(store.prefix) :]
            group = next((v for n, v in names.items() if rest.startswith(n)), "other")
            out[group] = out.get(group, 0) + int(used or 0)
    return out


def bench_store(rep) -> None:
    """Insert rate, query latency and memory at 100k images: Redis against SQLite."""
    from benchmarks.scale import MID, ensure
    from engine import ImageSimilaritySearch, open_store

    src_path = ensure(MID)
    local = open_store(str(src_path))
    snap = local.snapshot()
    rows = np.setdiff1d(np.arange(snap.slots), snap.dead)
    server = RedisServer()
    lines = []
    try:
        base_mem = server.used_memory()
        url = server.url + "?name=bench"
        store = open_store(url)
        meta = {k: v for k, v in snap.meta.items() if not k.startswith("lsh") and k != "schema"}
        store.set_meta(meta)
        one = _copy(snap, local, store, rows)
        n = len(rows)
        used = server.used_memory() - base_mem
        groups = _groups(store)
        # two workers at once, into a second index of the same server
        url2 = server.url + "?name=bench2"
        two = open_store(url2)
        two.set_meta(meta)
        half = n // 2
        code = (
            "import sys; from benchmarks.shared_bench import copy_worker;"
            " copy_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))"
        )
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url2, str(src_path), str(lo), str(hi)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            for lo, hi in ((0, half), (half, n))
        ]
        for p in procs:
            p.communicate()
        both = time.perf_counter() - t0
        assert two.count() == n
        two.clear()
        # the same without features (``features=0``: codes only, no re-ranking)
        before = server.used_memory()
        small = open_store(server.url + "?name=small&features=0")
        small.set_meta({**meta, "feature_dim": 0})
        _copy(snap, local, small, rows, features=False)
        per_small = (server.used_memory() - before) / n
        small.clear()

        rng = np.random.RandomState(0)
        pick = rng.choice(rows, QUERIES, replace=False)
        codes = np.asarray(snap.codes[pick])
        feats = np.asarray(snap.features[pick], np.float32)
        paths = local.paths_of(pick)
        root = Path(tempfile.mkdtemp(prefix="lookalike-shared-"))
        results = {}
        for label, kwargs in (
            ("SQLite (local file)", {"index_path": str(src_path)}),
            ("Redis (127.0.0.1)", {"store": url}),
        ):
            with ImageSimilaritySearch(root, **kwargs) as search:
                t0 = time.perf_counter()
                search.load()
                first = time.perf_counter() - t0
                for mode in ("auto", "exact"):
                    _latencies(search, codes[:20], feats[:20], paths[:20], mode)  # warm
                    lat = _latencies(search, codes, feats, paths, mode)
                    results[(label, mode)] = (lat, first)
        os.rmdir(root)
    finally:
        server.stop()
    rows_out = [
        [
            label,
            mode,
            f"{_pct(lat, 50):.1f}",
            f"{_pct(lat, 99):.1f}",
            f"{first:.2f}",
        ]
        for (label, mode), (lat, first) in results.items()
    ]
    from benchmarks.report import table

    per = used / n
    lines.append(
        f"Inserts (the store alone, batches of 1,000 images with codes, features and band"
        f" keys; no CNN): one worker {n / one:,.0f} images/s; two worker processes into one"
        f" index at once {n / both:,.0f} images/s together. The CNN encodes 300-400"
        " images/s per machine here, so the store is not what bounds a worker."
    )
    lines.append(
        "Queries at 100,000 images, 200 queries by stored code, top 10 re-ranked on"
        " features, in ms (first load: reading what the first query needs, once per"
        " process; for Redis, every code and band key into the process):\n\n"
        + table(["store", "mode", "p50", "p99", "first load s"], rows_out)
    )
    mem_rows = [
        [g, f"{b / n:,.0f}", f"{b / n * 1e7 / 1e9:,.1f}"]
        for g, b in sorted(groups.items(), key=lambda kv: -kv[1])
    ]
    lines.append(
        f"Redis memory: {per:,.0f} bytes per image in all (used_memory grew"
        f" {used / 1e6:,.0f} MB for {n:,} images; {per * 1e7 / 1e9:,.0f} GB at 10M"
        f" images), by kind of key (MEMORY USAGE). Without features (`features=0` in the"
        f" URL: codes only, no re-ranking) {per_small:,.0f} bytes per image"
        f" ({per_small * 1e7 / 1e9:,.0f} GB at 10M).\n\n"
        + table(["keys", "bytes/image", "GB at 10M images"], mem_rows)
    )
    rep.section(
        "Shared index (Redis): store",
        "\n\n".join(lines),
        "python -m benchmarks.run --only shared",
    )


def bench_workers(rep, root: Path, n: int = sized(2000, 100)) -> None:
    """`lookalike index` end to end into Redis: one worker, two, and a killed one."""
    subset = DATA / f"fashion-{n}"
    if not subset.exists():
        files = sorted(root.rglob("*.png"))[:: max(1, len(list(root.rglob("*.png"))) // n)][:n]
        for f in files:
            dest = subset / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.read_bytes())
    server = RedisServer()
    env = {**os.environ, "LOOKALIKE_CLAIM_IDLE": "5"}

    def run(name: str, workers: int, pinned: bool = False) -> float:
        """Seconds for *workers* processes to index the subset; *pinned*: each on a core
        of its own (``taskset``), standing in for machines of one core each."""
        url = server.url + f"?name={name}"
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                (["taskset", "-c", str(i)] if pinned else [])
                + [sys.executable, "-m", "tui", "index", str(subset), "--store", url],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            for i in range(workers)
        ]
        for p in procs:
            p.wait()
        return time.perf_counter() - t0

    try:
        one = statistics.median([run(f"one{r}", 1) for r in range(2)])
        two = statistics.median([run(f"two{r}", 2) for r in range(2)])
        core1 = statistics.median([run(f"core-one{r}", 1, True) for r in range(2)])
        core2 = statistics.median([run(f"core-two{r}", 2, True) for r in range(2)])
        takeover = _takeover(server, subset, env)
    finally:
        server.stop()
    body = (
        f"`lookalike index` of {n:,} Fashion-MNIST PNGs into a fresh Redis index, whole"
        f" processes, median of 2: one worker {one:.1f} s ({n / one:.0f} images/s), two"
        f" workers on this machine at once {two:.1f} s ({n / two:.0f} images/s): they share"
        " its two cores, so this measures the coordination's cost, not a speed-up. Each"
        " worker on a core of its own (`taskset`, standing in for two one-core machines;"
        f" Redis shares the cores): one worker {core1:.1f} s ({n / core1:.0f} images/s), two"
        f" workers {core2:.1f} s ({n / core2:.0f} images/s), {core1 / core2:.2f}x.\n\n"
        f"A worker killed (-9) mid-run: its chunk was committed by another worker"
        f" {takeover:.1f} s after the kill, with the claim time set to 5 s"
        " (`LOOKALIKE_CLAIM_IDLE`; default 60 s). The claim time counts from when the dead"
        " worker took the chunk; then up to half a second until another worker looks, and"
        " the chunk's encoding."
    )
    rep.section("Shared index (Redis): workers", body, "python -m benchmarks.run --only shared")


def _until(done, *workers: subprocess.Popen, timeout: float = 600.0) -> None:
    """Wait for *done*; a failure (the workers ended first, or the time ran out) rather
    than a benchmark that hangs."""
    deadline = time.perf_counter() + timeout
    while not done():
        if all(w.poll() is not None for w in workers) or time.perf_counter() > deadline:
            raise RuntimeError("the workers ended (or stalled) before the benchmark's moment")
        time.sleep(0.02)


def _takeover(server: RedisServer, subset: Path, env: dict) -> float:
    """Seconds from killing a worker until its pending chunks were all acknowledged."""
    from engine import open_store

    url = server.url + "?name=takeover"
    store = open_store(url)
    cmd = [sys.executable, "-m", "tui", "index", str(subset), "--store", url]
    cmd += ["--batch-size", str(sized(64, 4))]  # a smoke run's few pictures: chunks to hold
    total = len(list(subset.rglob("*.png")))
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    _until(lambda: store.count() >= total // 10, first)
    second = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    _until(lambda: store.count() >= total // 5, first, second)
    r = store.r
    tag = f":{first.pid}:".encode()
    mine: list = []

    def holding() -> bool:  # kill it while it holds a chunk
        consumers = r.xinfo_consumers(store.k("work"), b"workers")
        mine[:] = [c["name"] for c in consumers if tag in c["name"] and c["pending"]]
        return bool(mine)

    _until(holding, first)
    first.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    first.wait()
    while True:
        pending = r.xpending_range(store.k("work"), b"workers", "-", "+", 100)
        if not [p for p in pending if p["consumer"] in mine]:
            break
        time.sleep(0.02)
    took = time.perf_counter() - killed
    second.wait()
    assert store.count() == total
    return took


def bench_shared(rep, root: Path) -> None:
    bench_store(rep)
    bench_workers(rep, root)
