"""Indexing throughput against fastdup, and where each image's time goes.

fastdup (a peer tool, PyPI, runs offline) and ``lookalike index`` index the same 10,000
Fashion-MNIST PNGs, each from a cold index, alternately, twice, in separate processes;
the table gives medians and the ratio. fastdup pins older numpy and Pillow than
lookalike, so it runs from its own virtual environment, made on first use under
bench-data/ (``pip install fastdup``), never in lookalike's.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.data import REPO, sized
from benchmarks.report import table

FASTDUP_VENV = REPO / "bench-data" / "fastdup-venv"  # one for full and smoke runs
_FASTDUP_RUN = """
import sys, time, fastdup
t0 = time.perf_counter()
fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])
fd.run(overwrite=True, verbose=False)
print(time.perf_counter() - t0)
"""


def fastdup_python() -> Path | None:
    """fastdup's Python (its environment made on first use), or None where it cannot be
    installed: then the tables say "not installed"."""
    py = FASTDUP_VENV / "bin" / "python"
    ready = FASTDUP_VENV / "installed"
    if not ready.exists():
        print("making a virtual environment for fastdup…", flush=True)
        shutil.rmtree(FASTDUP_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(FASTDUP_VENV)], check=True)
        got = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "fastdup"], capture_output=True
        )
        if got.returncode:
            return None
        ready.touch()
    return py


def _fastdup_seconds(py: Path, root: Path) -> float:
    work = Path(tempfile.mkdtemp(prefix="fastdup-"))
    try:
        out = subprocess.run(
            [str(py), "-c", _FASTDUP_RUN, str(root), str(work)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _lookalike_seconds(root: Path, size: int) -> tuple[float, str]:
    index = Path(tempfile.mkdtemp(prefix="lookalike-tp-")) / "index.sqlite"
    cmd = [sys.executable, "-m", "tui", "index", str(root), "--index", str(index), "--json"]
    cmd += ["--input-size", str(size)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    seconds = time.perf_counter() - t0
    shutil.rmtree(index.parent, ignore_errors=True)
    return seconds, json.loads(out.stdout)["backbone"]


def bench_throughput(rep, root: Path, rounds: int = sized(2, 1)) -> None:
    n = len(list(root.glob("*/*.png")))
    py = fastdup_python()
    # the first run on a machine measures the ways of running the CNN and makes the int8
    # model (seconds, once): done here, outside the timed runs
    subprocess.run([sys.executable, "-m", "tui", "models"], capture_output=True, cwd=REPO)
    times: dict[str, list[float]] = {"fastdup": [], "lookalike 224 px": [], "lookalike 192 px": []}
    how = ""
    for _ in range(rounds):  # alternate the contenders
        if py is not None:
            times["fastdup"].append(_fastdup_seconds(py, root))
        for size in (224, 192):
            seconds, how = _lookalike_seconds(root, size)
            times[f"lookalike {size} px"].append(seconds)
    stages, where = stage_times(root)
    rows = []
    base = statistics.median(times["fastdup"]) if times["fastdup"] else None
    for name, ts in times.items():
        if not ts:
            rows.append([name, "not installed", "", ""])
            continue
        med = statistics.median(ts)
        ratio = f"**{base / med:.2f}×**" if base else ""
        rows.append([name, f"{med:.1f} s", f"{n / med:.0f}", ratio])
    body = table(["", "seconds (median)", "images/s", "against fastdup"], rows)
    body += (
        f"\n\n{n:,} Fashion-MNIST PNGs, every run from a cold index (a fresh work folder for"
        f" fastdup), whole processes timed from start to exit, {rounds} alternated rounds."
        f" fastdup 2.54 with its defaults (its own model and similarity pass included);"
        f" lookalike: `lookalike index DIR --json` ({how}). Target ≥ 2.5×."
    )
    cnn = stages["CNN (and hash layer)"]
    if cnn > 0:
        alone = 1000 / cnn
        at_224 = n / statistics.median(times["lookalike 224 px"])
        body += (
            f" The CNN alone (224 px, the same runtime and threads, the pictures decoded"
            f" before, batches of 64: the next table) encodes {alone:.0f} images/s; end to end"
            f" at 224 px runs at {at_224 / alone:.0%} of that."
        )
    rep.section("Indexing against fastdup", body, "python -m benchmarks.run --only throughput")
    rep.section("Where indexing time goes", where, "python -m benchmarks.run --only throughput")


def stage_times(root: Path, count: int = sized(2000, 200)) -> tuple[dict[str, float], str]:
    """Where an image's time goes in ``lookalike index``, stage by stage, one thread:
    milliseconds per image by stage, and the section's text."""
    from engine import ImageSimilaritySearch, quality
    from engine.copies import grey_copy, thumbnail
    from engine.images import read_image, square_pixels
    from engine.storage import Batch

    paths = sorted(root.glob("*/*.png"))[:count]
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-stages-"))
    search = ImageSimilaritySearch(root, tmp / "index.sqlite")
    enc = search.encoder
    stage: dict[str, float] = {}

    def clock(name, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        stage[name] = stage.get(name, 0.0) + time.perf_counter() - t0
        return out

    pixels, digests = [], []
    for p in paths:
        im, digest = clock("read, hash bytes, decode", read_image, p, 224)
        pixels.append(clock("fit to 224 px", square_pixels, im, 224))
        grey = np.asarray(clock("greyscale copy at 128 px", grey_copy, im))
        clock("thumbnail for copies", thumbnail, im, grey)
        clock("quality measurements", quality.measure, im, grey)
        digests.append(digest)
    batch = np.stack(pixels)
    codes, feats = [], []
    for i in range(0, len(batch), 64):
        c, f = clock("CNN (and hash layer)", enc.encode, batch[i : i + 64])
        codes.append(c)
        feats.append(f)
    codes, feats = np.concatenate(codes), np.concatenate(feats)
    from engine.centre import fit
    from engine.encoding import feature_dim
    from engine.identity import record

    record(search.store, search.identity, enc, feature_dim(enc), search.root)
    search.view.set_centre(fit(codes[:64], feats[:64], enc.projection, 1))
    search.store.set_meta(search.view.centre.to_meta())
    search.view.band_keys(codes[:1])  # once a process: the token table read from the cache
    keys = clock("MinHash band keys", search.view.band_keys, codes)
    with search.store.writer():
        for i in range(0, len(paths), 64):
            sl = slice(i, i + 64)
            b = Batch(
                paths=[p.relative_to(root).as_posix() for p in paths[sl]],
                sizes=[0] * len(paths[sl]),
                mtimes=[0] * len(paths[sl]),
                digests=digests[sl],
                pixels=[784] * len(paths[sl]),
                codes=codes[sl],
                features=feats[sl].astype(np.float16),
                band_keys=keys[sl],
            )
            clock("store (arrays flushed, SQLite commit)", search.store.commit, b)
    search.close()
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(stage.values())
    rows = [
        [name, f"{1000 * t / len(paths):.3f}", f"{t / total:.0%}"]
        for name, t in sorted(stage.items(), key=lambda kv: -kv[1])
    ]
    rows.append(["**all, one after another**", f"**{1000 * total / len(paths):.3f}**", ""])
    body = table(["stage", "ms per image", "share"], rows)
    body += (
        f"\n\n{len(paths):,} Fashion-MNIST PNGs, each stage timed alone in one thread (the CNN on"
        f" 2 threads, {enc.describe()}); the band keys after the first call of the process"
        " (which reads the table of the tokens' hashes from the cache folder, made by"
        " datasketch on a machine's first run)."
        " In `lookalike index` the pictures are prepared in as few threads as keep the CNN"
        " fed (here one) while the CNN works on the batch before, so the stages overlap: on"
        " 2 cores the CNN is what bounds the rate."
    )
    return {name: 1000 * t / len(paths) for name, t in stage.items()}, body
