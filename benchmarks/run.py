"""lookalike's benchmark suite: speed and quality, measured, written to docs/BENCHMARKS.md.

    python -m benchmarks.run                # everything (about 15-20 minutes on 2 cores)
    python -m benchmarks.run --only quality,latency

Data: Fashion-MNIST's test split (10,000 images) from Debian's dataset-fashion-mnist,
written as PNG files under bench-data/ so decoding is real. Large-scale figures use
synthetic codes drawn from the real ones (a real code plus Gaussian noise of the same
scale as the codes' spread), not uniform noise.

Machines are shared and noisy: contenders run alternately in one process, each figure
is a median over repeats, and comparisons are given as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench-data"
FASHION = DATA / "fashion-test"
SECTIONS = ("index", "compare", "encoder", "quality", "banding", "latency", "scale", "disk", "app")


class Report:
    """Collects markdown sections; each figure with the command that produced it."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def section(self, title: str, body: str, command: str) -> None:
        self.parts.append(f"## {title}\n\n{body.strip()}\n\nCommand: `{command}`\n")
        print(f"\n## {title}\n{body.strip()}\n", flush=True)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    import datasketch
    import onnxruntime
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.splitlines()
            if ln.startswith("model name")
        )
        flags = set(
            next(ln for ln in cpuinfo.splitlines() if ln.startswith("flags"))
            .split(":", 1)[1]
            .split()
        )
    except (OSError, StopIteration):
        model, flags = platform.processor(), set()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    present = ", ".join(f for f in wanted if f in flags) or "none of note"
    rows = [
        ["CPU", model],
        ["cores", os.cpu_count()],
        ["flags", present],
        [
            "torch",
            f"{torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()})",
        ],
        ["onnxruntime", onnxruntime.__version__],
        ["datasketch", datasketch.__version__],
        ["numpy", np.__version__],
        ["python", platform.python_version()],
    ]
    return table(["", ""], rows)


def ensure_data(n_per_class: int | None = None) -> Path:
    from engine.fashion import export

    count = len(list(FASHION.glob("*/*.png"))) if FASHION.exists() else 0
    if count < 10_000:
        print("writing Fashion-MNIST test images as PNG…", flush=True)
        export(FASHION, ("test",), n_per_class)
    return FASHION


def labels_of(paths: list[str]) -> np.ndarray:
    from engine.fashion import CLASSES

    return np.array([CLASSES.index(p.split("/")[0]) for p in paths])


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


# --- figures ---------------------------------------------------------------------------


def bench_index(rep: Report, root: Path) -> Path:
    """lookalike index on the 10k set, from scratch, through the real command line."""
    index = DATA / "index-10k.sqlite"
    for p in DATA.glob("index-10k.sqlite*"):
        p.unlink()
    cmd = [sys.executable, "-m", "tui", "index", str(root), "--index", str(index), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    stats = json.loads(out.stdout)
    body = table(
        ["images", "seconds", "images/s", "backbone", "target"],
        [
            [
                stats["indexed"],
                stats["seconds"],
                stats["images_per_s"],
                stats["backbone"],
                "≥ 150 images/s",
            ]
        ],
    )
    rep.section(
        "Indexing throughput, end to end (10k PNGs)",
        body,
        "lookalike index bench-data/fashion-test --index bench-data/index-10k.sqlite --json",
    )
    return index


def bench_compare(rep: Report, root: Path, n_eff: int, n_r50: int, rounds: int) -> None:
    """The engine against the seed's one-at-a-time pipeline, alternated."""
    import torch
    from torchvision.models import resnet50

    from benchmarks.seed_pipeline import SeedPipeline
    from engine.search import ImageSimilaritySearch

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    torch.manual_seed(0)
    r50 = tmp / "resnet50-random.pth"
    torch.save(resnet50(weights=None).state_dict(), r50)
    all_paths = sorted(root.glob("*/*.png"))
    for backbone, weights, n in (
        ("efficientnet-lite0", None, n_eff),
        ("resnet50", str(r50), n_r50),
    ):
        subset = tmp / f"subset-{backbone}"
        paths = all_paths[:: max(1, len(all_paths) // n)][:n]
        for p in paths:
            dest = subset / p.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest)
        seed = SeedPipeline(backbone, weights)
        seed_paths = sorted(subset.glob("*/*.png"))
        seed.encode(seed_paths[0])  # warm
        engine_times, seed_times = [], []
        for r in range(rounds):
            index_path = tmp / f"{backbone}-{r}.sqlite"
            search = ImageSimilaritySearch(subset, index_path, backbone=backbone, weights=weights)
            _ = search.encoder  # load (and export once) outside the timed part, as for the seed
            t0 = time.perf_counter()
            stats = search.index()
            engine_times.append(time.perf_counter() - t0)
            assert stats.indexed == len(seed_paths)
            runtime = search.describe()
            search.close()
            seed_times.append(seed.index(seed_paths))
        e, s = statistics.median(engine_times), statistics.median(seed_times)
        target = "≥ 5×" if backbone == "efficientnet-lite0" else "≥ 2.5×"
        rows.append(
            [
                backbone + (" (random weights)" if weights else ""),
                len(seed_paths),
                rounds,
                f"{len(seed_paths) / s:.1f}",
                f"{len(seed_paths) / e:.1f} ({runtime})",
                f"**{s / e:.1f}×**",
                target,
            ]
        )
    shutil.rmtree(tmp, ignore_errors=True)
    body = table(
        [
            "backbone",
            "images",
            "rounds",
            "seed pipeline img/s",
            "engine img/s",
            "speed-up",
            "target",
        ],
        rows,
    )
    body += (
        "\n\nSeed pipeline: one image at a time, fp32 eager PyTorch, `MinHash.update` per token, "
        "`MinHashLSH.insert`. Engine: the full `index()` (walk, threaded decode, batched CNN, "
        "batched MinHash, SQLite commits). Models are loaded before timing for both; rounds alternate."
    )
    rep.section(
        f"Engine against the seed's way on {cpu_kind()}",
        body,
        "python -m benchmarks.run --only compare",
    )


def cpu_kind() -> str:
    """The CPU's model and the flags that decide which inference path is fastest."""
    from engine.runtime import cpu_description

    model, flags = cpu_description()
    wanted = ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx512f", "avx2")
    have = [f for f in wanted if f in flags]
    return f"{model} ({', '.join(have) or 'no AVX2'}; {os.cpu_count()} cores)"


def bench_encoder(rep: Report, repeats: int) -> None:
    """Every way of running each backbone, at the engine's CPU batch, each timed alone in
    its own process (rounds alternate), and what ``auto`` picks here: the pick must be
    within 10 % of the fastest."""
    import torch
    from torchvision.models import resnet50

    from engine.encoder import CPU_MICRO_BATCH

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-enc-"))
    torch.manual_seed(0)
    r50 = tmp / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), r50)
    env = {
        k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_PRECISION", "LOOKALIKE_RUNTIME")
    }
    names = {
        ("onnx", "fp32"): "ONNX Runtime fp32",
        ("torch", "fp32"): "PyTorch fp32",
        ("torch", "bf16"): "PyTorch bf16 autocast",
    }

    def probe(backbone: str, weights: str | None, runtime: str, precision: str) -> dict:
        cmd = [sys.executable, "-m", "benchmarks.encoder_probe", "--backbone", backbone]
        cmd += ["--runtime", runtime, "--precision", precision, "--batch", str(CPU_MICRO_BATCH)]
        cmd += ["--weights", weights] if weights else []
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for backbone, weights in (("efficientnet-lite0", None), ("resnet50", str(r50))):
        rates: dict[str, list[float]] = {n: [] for n in names.values()}
        for _ in range(repeats):
            for (runtime, precision), name in names.items():
                rates[name].append(probe(backbone, weights, runtime, precision)["rate"])
        auto = probe(backbone, weights, "auto", "auto")["path"]
        auto_name = {"onnxruntime fp32": "ONNX Runtime fp32", "torch fp32": "PyTorch fp32"}.get(
            auto, "PyTorch bf16 autocast"
        )
        med = {n: statistics.median(v) for n, v in rates.items()}
        best = max(med.values())
        for name, rate in med.items():
            mark = "**auto's choice**" if name == auto_name else ""
            rows.append([backbone, name, f"{rate:.1f}", f"{rate / best:.0%}", mark])
        rows.append(
            [
                backbone,
                "*auto against the fastest*",
                "",
                f"**{med[auto_name] / best:.0%}**",
                "≥ 90 %",
            ]
        )
    shutil.rmtree(tmp, ignore_errors=True)
    body = table(
        ["backbone", "path", f"images/s (batch {CPU_MICRO_BATCH}, 2 threads)", "of fastest", ""],
        rows,
    )
    body += (
        f"\n\nEach path timed alone in a fresh process (10 batches after 2 warm-ups, median),"
        f" {repeats} alternated rounds, median of rounds: inside one process the paths disturb"
        " each other (ONNX Runtime's threads spin-wait after a run). ResNet-50 with random"
        " weights (speed does not depend on them). *auto's choice* is what the engine picked"
        " by its own short measurement (on first use, remembered in"
        " `~/.cache/lookalike/runtime.json`)."
    )
    rep.section(
        f"Encoder paths on {cpu_kind()}",
        body,
        "python -m benchmarks.run --only encoder",
    )


def full_features(root: Path, paths: list[str]) -> np.ndarray:
    """Pooled backbone features (1280-d) for every image, cached under bench-data/."""
    cache = DATA / "features-10k.npy"
    if cache.exists():
        feats = np.load(cache)
        if len(feats) == len(paths):
            return feats
    import onnxruntime as ort
    import torch

    from engine.encoder import DeepImageEncoder
    from engine.images import open_image
    from engine.onnx_runtime import export
    from engine.search import INPUT_SIZE, _square_pixels

    enc = DeepImageEncoder(
        128, "efficientnet-lite0", device="cpu", precision="fp32", runtime="torch"
    )

    class Feats(torch.nn.Module):
        def forward(self, pixels):
            return enc.features(enc.normalise(pixels))

    onnx_path = DATA / "features.onnx"
    export(Feats(), INPUT_SIZE, onnx_path, output="features")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(paths), 64):
        batch = np.stack(
            [_square_pixels(open_image(root / p), INPUT_SIZE) for p in paths[i : i + 64]]
        )
        out.append(session.run(None, {"pixels": batch})[0])
    feats = np.concatenate(out)
    np.save(cache, feats)
    return feats


def topk_cosine(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn[queries] @ xn.T
    s[np.arange(len(queries)), queries] = -np.inf
    top = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.take_along_axis(s, top, 1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, 1)


def bench_quality(rep: Report, root: Path, index: Path) -> dict:
    from engine.search import ImageSimilaritySearch

    search = ImageSimilaritySearch(root, index)
    search.load()
    mem = search._memory
    paths = list(mem.paths)
    labels = labels_of(paths)
    codes = np.stack([search.store.lookup(p)[1] for p in paths])
    queries = np.arange(0, len(paths), 10)
    feats = full_features(root, paths)
    exact_full = topk_cosine(feats, queries, 10)
    p_full = (labels[exact_full] == labels[queries, None]).mean()
    centred = codes - search._centre
    exact_codes = topk_cosine(centred, queries, 10)
    p_codes = (labels[exact_codes] == labels[queries, None]).mean()
    row_of = {p: i for i, p in enumerate(paths)}
    p_lsh, recall, scored, modes = [], [], [], []
    for q, truth in zip(queries, exact_codes):
        res = search.search_code(codes[q], 10, exclude=paths[q])
        got = np.array([row_of[m.path] for m in res.matches])
        p_lsh.append((labels[got] == labels[q]).mean())
        recall.append(len(set(got) & set(truth)) / 10)
        scored.append(res.candidates / res.indexed)
        modes.append(res.mode)
    p_lsh_m, rec_m, sc_m = float(np.mean(p_lsh)), float(np.mean(recall)), float(np.mean(scored))
    search.close()
    body = table(
        ["figure", "value", "target"],
        [
            [
                "precision@10, exact cosine on full 1280-d backbone features",
                f"{p_full:.3f}",
                "reference",
            ],
            ["precision@10, exact cosine on stored 128-d codes", f"{p_codes:.3f}", ""],
            [
                "precision@10, LSH (the engine's default answer)",
                f"**{p_lsh_m:.3f}**",
                f"≥ {p_full - 0.01:.3f}",
            ],
            ["LSH recall@10 against exact cosine on stored codes", f"**{rec_m:.3f}**", "≥ 0.95"],
            ["share of the index scored per query", f"**{sc_m:.1%}**", "≤ 10 %"],
            [
                "queries answered by LSH (rest: exact fill)",
                f"{modes.count('lsh')}/{len(modes)}",
                "",
            ],
        ],
    )
    body += (
        f"\n\n{len(queries)} queries (every 10th image); a hit is a result of the query's class."
    )
    rep.section("Quality on the 10k set", body, "python -m benchmarks.run --only quality")
    return {
        "codes": centred,
        "labels": labels,
        "queries": queries,
        "truth": exact_codes,
        "search_codes": codes,
    }


def band_candidates(
    sigs: np.ndarray, queries: np.ndarray, bands: int, rows: int
) -> list[np.ndarray]:
    """For each query, the rows sharing at least one band with it (numpy, same rule as MinHashLSH)."""
    hit = np.zeros((len(queries), len(sigs)), bool)
    for b in range(bands):
        block = sigs[:, b * rows : (b + 1) * rows]
        hit |= (block[queries][:, None, :] == block[None, :, :]).all(axis=2)
    hit[np.arange(len(queries)), queries] = False
    return [np.flatnonzero(h) for h in hit]


def bench_banding(rep: Report, q: dict) -> None:
    from engine.minhash import signatures

    codes, queries, truth = q["codes"], q["queries"][::2], q["truth"][::2]
    rows_out = []
    for num_perm, configs in (
        (128, [(32, 4), (42, 3), (25, 5), (21, 6)]),
        (256, [(64, 4), (51, 5), (42, 6)]),
    ):
        sigs = signatures(codes, num_perm, 1)
        for bands, r in configs:
            cands = band_candidates(sigs, queries, bands, r)
            rec = np.mean([len(set(c) & set(t)) / 10 for c, t in zip(cands, truth)])
            frac = np.mean([len(c) for c in cands]) / len(codes)
            rows_out.append([num_perm, f"{bands}×{r}", f"{rec:.3f}", f"{frac:.1%}"])
    body = table(["num_perm", "bands × rows", "recall@10 of candidates", "share scored"], rows_out)
    body += (
        "\n\nSign-token MinHash of centred codes, banded as datasketch's MinHashLSH does "
        f"({len(queries)} queries). The default (128, 32×4) is the smallest banding above 0.95 recall."
    )
    rep.section(
        "LSH banding sweep on the 10k codes",
        body,
        "python -m benchmarks.run --only quality,banding",
    )


def synthetic_codes(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n codes that look like real ones: a random real code plus noise at a quarter of the spread."""
    rng = np.random.RandomState(seed)
    base = real[rng.randint(0, len(real), n)]
    spread = real.std(axis=0, keepdims=True)
    return (base + 0.25 * spread * rng.standard_normal(base.shape).astype(np.float32)).astype(
        np.float32
    )


def store_codes(path: Path, codes: np.ndarray, num_perm: int = 128, seed: int = 1) -> None:
    """Write codes into a fresh SQLite index as the engine would (centre, signatures, metadata)."""
    from engine.encoder import HASH_LAYER_VERSION
    from engine.minhash import signatures
    from engine.store import Row, SQLiteStore

    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    store = SQLiteStore(path)
    centre = codes.mean(axis=0)
    store.set_meta(
        {
            "backbone": "efficientnet-lite0",
            "weights_id": None,
            "hash_dim": codes.shape[1],
            "input_size": 224,
            "hash_layer": HASH_LAYER_VERSION,
            "num_perm": num_perm,
            "seed": seed,
            "scheme": "affine32",
            "centre": centre.tolist(),
            "centre_count": len(codes),
        }
    )
    for start in range(0, len(codes), 20_000):
        chunk = codes[start : start + 20_000]
        sigs = signatures(chunk - centre, num_perm, seed)
        store.write(
            Row(f"synthetic/{start + i:07d}.png", 0, 0, code=c, signature=s)
            for i, (c, s) in enumerate(zip(chunk, sigs))
        )
    store.close()


def latency_at(index: Path, codes: np.ndarray, n_queries: int) -> dict:
    from engine.search import ImageSimilaritySearch

    rng = np.random.RandomState(1)
    root = Path(tempfile.mkdtemp(prefix="lookalike-root-"))
    t0 = time.perf_counter()
    rss0 = rss_mb()
    search = ImageSimilaritySearch(root, index)
    search.load()
    opened = time.perf_counter() - t0
    rss = rss_mb() - rss0
    paths = search._memory.paths
    picks = rng.randint(0, len(paths), n_queries)
    lsh_t, exact_t, rec, scored = [], [], [], []
    for i in picks:
        code = codes[i]
        t = time.perf_counter()
        res = search.search_code(code, 10, exclude=paths[i])
        lsh_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ex = search.search_code(code, 10, exact=True, exclude=paths[i])
        exact_t.append(time.perf_counter() - t)
        rec.append(len({m.path for m in res.matches} & {m.path for m in ex.matches}) / 10)
        scored.append(res.candidates / res.indexed)
    search.close()
    shutil.rmtree(root, ignore_errors=True)
    ms = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
    return {
        "n": len(paths),
        "open_s": opened,
        "rss_mb": rss,
        "p50": ms(lsh_t, 50),
        "p99": ms(lsh_t, 99),
        "exact_p50": ms(exact_t, 50),
        "recall": float(np.mean(rec)),
        "scored": float(np.mean(scored)),
    }


def bench_latency(rep: Report, index10k: Path, q: dict) -> None:
    real = q["search_codes"]
    r10 = latency_at(index10k, real, 500)
    path70 = DATA / "index-70k-synthetic.sqlite"
    codes70 = np.concatenate([real, synthetic_codes(real, 70_000 - len(real))])
    store_codes(path70, codes70)
    r70 = latency_at(path70, codes70, 500)
    rows = [
        [
            f"{r['n']:,}",
            "real" if r is r10 else "10k real + 60k synthetic",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['exact_p50']:.2f}",
            f"{r['scored']:.1%}",
            f"{r['recall']:.3f}",
        ]
        for r in (r10, r70)
    ]
    body = table(
        ["codes", "kind", "LSH p50 ms", "LSH p99 ms", "exact p50 ms", "share scored", "recall@10"],
        rows,
    )
    body += "\n\nWarm, in-process, stored query codes (no CNN), 500 queries, k = 10. Target: p50 ≤ 5 ms at 70k."
    rep.section("Query latency", body, "python -m benchmarks.run --only quality,latency")


def bench_scale(rep: Report, q: dict, n: int) -> None:
    real = q["search_codes"]
    path = DATA / "index-scale-synthetic.sqlite"
    codes = synthetic_codes(real, n, seed=2)
    t0 = time.perf_counter()
    store_codes(path, codes)
    write_s = time.perf_counter() - t0
    r = latency_at(path, codes, 100)
    brute = r["exact_p50"]
    body = table(
        ["figure", "value", "target"],
        [
            ["codes", f"{n:,}", "1,000,000"],
            ["open to first query (read SQLite, build LSH)", f"**{r['open_s']:.1f} s**", "≤ 2 s"],
            [
                "memory after open",
                f"**{1024 * r['rss_mb'] / n:.2f} KB/image** ({r['rss_mb']:.0f} MB)",
                "≤ 4 KB/image",
            ],
            ["LSH query p50", f"{r['p50']:.1f} ms", ""],
            ["exact brute force (numpy) p50", f"{brute:.1f} ms", ""],
            ["LSH speed-up over brute force", f"**{brute / r['p50']:.1f}×**", "≥ 10×"],
            ["LSH recall@10 against brute force", f"**{r['recall']:.3f}**", "≥ 0.9"],
            ["share scored per query", f"{r['scored']:.1%}", ""],
            ["writing the index (signatures + SQLite)", f"{write_s:.1f} s", ""],
        ],
    )
    rep.section(
        "Scale: synthetic codes", body, f"python -m benchmarks.run --only quality,scale --scale {n}"
    )
    for p in DATA.glob(path.name + "*"):
        p.unlink()


def bench_disk(rep: Report, index: Path) -> None:
    import sqlite3

    con = sqlite3.connect(index)
    con.execute("VACUUM")
    n, path_bytes = con.execute("SELECT COUNT(*), SUM(LENGTH(path)) FROM images").fetchone()
    con.close()
    size = index.stat().st_size
    per = (size - path_bytes) / n
    body = table(
        ["images", "file bytes", "bytes/image, paths excluded", "target"],
        [[n, f"{size:,}", f"**{per:.0f}**", "≤ 1,536"]],
    )
    body += "\n\nA 128-d float32 code (512 B) and a 128-value uint32 signature (512 B) per image, plus SQLite's row and index overhead."
    rep.section("Index size on disk", body, "python -m benchmarks.run --only index,disk")


def first_paint(root: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from exec of `lookalike DIR` in a pseudo-terminal to the first frame with
    the panels drawn, and to the frame that also holds the footer's keys."""
    import pty
    import select

    frames, footers = [], []
    for _ in range(runs):
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["TERM"] = "xterm-256color"
            os.execv(sys.executable, [sys.executable, "-m", "tui", str(root)])
        t0 = time.perf_counter()
        buf = b""
        while time.perf_counter() - t0 < 30:
            ready, _, _ = select.select([fd], [], [], 0.005)
            if ready:
                try:
                    buf += os.read(fd, 65536)
                except OSError:
                    break
                if b"index" in buf and len(frames) < len(footers) + 1:
                    frames.append(time.perf_counter() - t0)
                if b"Quit" in buf:
                    footers.append(time.perf_counter() - t0)
                    break
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    return frames, footers


def keypress_to_results(root: Path, index: Path, n: int) -> list[float]:
    """Seconds from an enter key sent to the app in a real terminal (tmux) to the new
    query's scores on the screen, read back with capture-pane."""
    sock = ["tmux", "-L", "lookalike-bench"]

    def screen() -> str:
        return subprocess.run(
            [*sock, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True
        ).stdout

    def wait(pred, timeout=60.0) -> str:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            text = screen()
            if pred(text):
                return text
            time.sleep(0.002)
        raise RuntimeError("the app did not show what was expected:\n" + screen())

    cmd = f"cd {REPO} && {sys.executable} -m tui {root} --index {index}"
    subprocess.run([*sock, "kill-server"], capture_output=True)
    subprocess.run(
        [*sock, "new-session", "-d", "-s", "b", "-x", "160", "-y", "50", cmd], check=True
    )
    out = []
    try:
        wait(lambda t: "index up to date" in t)
        subprocess.run([*sock, "send-keys", "-t", "b", "j", "Enter"], check=True)
        wait(lambda t: "test-0" in t)
        for _ in range(n):
            subprocess.run([*sock, "send-keys", "-t", "b", "j"], check=True)
            time.sleep(0.4)
            text = screen()
            before = text.splitlines()[0]
            t0 = time.perf_counter()
            subprocess.run([*sock, "send-keys", "-t", "b", "Enter"], check=True)
            wait(
                lambda t, b=before: (
                    t.splitlines()[0] != b and "lookalikes of" in t.splitlines()[0] and "#1" in t
                )
            )
            out.append(time.perf_counter() - t0)
    finally:
        subprocess.run([*sock, "kill-server"], capture_output=True)
    return out


def bench_app(rep: Report, root: Path, index: Path) -> None:
    frames, footers = first_paint(root, 7)
    keys = keypress_to_results(root, index, 20)
    body = table(
        ["figure", "median", "max", "target"],
        [
            [
                "first paint: `lookalike DIR` in a pty until the first frame (panels drawn)",
                f"**{statistics.median(frames):.2f} s**",
                f"{max(frames):.2f} s",
                "≤ 0.5 s",
            ],
            [
                "… until the footer's keys are drawn too (a later frame)",
                f"{statistics.median(footers):.2f} s",
                f"{max(footers):.2f} s",
                "",
            ],
            [
                "keypress to scores on screen (enter in the tree, tmux, warm, 10k index)",
                f"**{1000 * statistics.median(keys):.0f} ms**",
                f"{1000 * max(keys):.0f} ms",
                "≤ 150 ms",
            ],
        ],
    )
    body += (
        "\n\nFirst paint over 7 runs, on the 10k folder. Keypress: 20 searches in a real terminal (tmux 160x50), timed from "
        "`send-keys Enter` to the first screen read back (capture-pane, polled) that shows the new "
        "query's status line and scores; thumbnails may follow. The polling adds a few ms."
    )
    rep.section("The app", body, "python -m benchmarks.run --only index,app")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--scale", type=int, default=1_000_000, help="codes for the scale test")
    parser.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    DATA.mkdir(exist_ok=True)
    root = ensure_data()
    rep = Report()
    started = time.perf_counter()
    index = DATA / "index-10k.sqlite"
    if "index" in only or not index.exists():
        index = bench_index(rep, root)
    if "compare" in only:
        bench_compare(rep, root, n_eff=400, n_r50=120, rounds=2)
    if "encoder" in only:
        bench_encoder(rep, repeats=3)
    q = None
    if only & {"quality", "banding", "latency", "scale"}:
        q = bench_quality(rep, root, index)
    if "banding" in only:
        bench_banding(rep, q)
    if "latency" in only:
        bench_latency(rep, index, q)
    if "scale" in only:
        bench_scale(rep, q, args.scale)
    if "disk" in only:
        bench_disk(rep, index)
    if "app" in only:
        bench_app(rep, root, index)
    took = time.perf_counter() - started
    head = (
        "# Benchmarks\n\nMeasured by `python -m benchmarks.run` "
        f"(this run: sections {', '.join(s for s in SECTIONS if s in only)}; {took / 60:.1f} minutes).\n\n"
        "## Machine\n\n" + machine() + "\n\n"
    )
    parts = rep.parts
    out = Path(args.out)
    if args.only and out.exists():  # keep the sections this run did not measure
        old = out.read_text().split("\n## ")[1:]
        kept = {
            p.split("\n", 1)[0]: "## " + p.rstrip() + "\n"
            for p in old
            if not p.startswith("Machine")
        }
        for part in parts:
            kept[part.split("\n", 1)[0][3:]] = part
        parts = list(kept.values())
    analysis = (Path(__file__).parent / "analysis.md").read_text()
    parts = [p for p in parts if not p.startswith("## Targets:")]
    out.write_text(head + "\n".join(parts) + "\n" + analysis)
    print(f"wrote {args.out} in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
