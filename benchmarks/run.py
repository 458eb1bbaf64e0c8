"""lookalike's benchmark suite: speed and quality, measured, written to docs/BENCHMARKS.md.

    python -m benchmarks.run                # everything (about 40 minutes on 2 cores)
    python -m benchmarks.run --only quality,latency
    python -m benchmarks.run --smoke        # every benchmark small, to see it runs (CI)

Data (built under bench-data/ on first use, see :mod:`benchmarks.data` and
:mod:`benchmarks.scale`): Fashion-MNIST's test split and all 70,000 images from Debian's
dataset-fashion-mnist, written as PNG files so decoding is real; a varied clip-art set
from Debian's openclipart-png; a million-image index made from the real codes.

Machines are shared and noisy: contenders run alternately in one process, each figure
is a median over repeats, and comparisons are given as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import search_bench
from benchmarks.data import DATA, REPO, SMOKE, ensure_fashion, sized
from benchmarks.report import Report, table

SECTIONS = (
    "index",
    "throughput",
    "compare",
    "encoder",
    "paths",
    "quality",
    "latency",
    "lsh",
    "kernels",
    "scale",
    "selfjoin",
    "triage",
    "triage-time",
    "candidates",
    "small",
    "session",
    "dataset",
    "labels",
    "wrong-labels",
    "disk",
    "app",
    "shared",
    "pictures",
)


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
    from engine.encoding.chooser import cpu_description

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

    from engine.encoding.torch_cnn import CPU_MICRO_BATCH

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-enc-"))
    torch.manual_seed(0)
    r50 = tmp / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), r50)
    env = {
        k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_PRECISION", "LOOKALIKE_RUNTIME")
    }
    names = {
        ("onnx", "fp32"): "ONNX Runtime fp32",
        ("openvino", "fp32"): "OpenVINO fp32",
        ("openvino", "bf16"): "OpenVINO bf16",
        ("openvino", "int8"): "OpenVINO int8",
        ("torch", "fp32"): "PyTorch fp32",
        ("torch", "bf16"): "PyTorch bf16 autocast",
    }

    def probe(backbone: str, weights: str | None, runtime: str, precision: str) -> dict:
        cmd = [sys.executable, "-m", "benchmarks.encoder_probe", "--backbone", backbone]
        cmd += [
            "--runtime",
            runtime,
            "--precision",
            precision,
            "--batch",
            str(sized(CPU_MICRO_BATCH, 2)),
        ]
        cmd += ["--repeats", str(sized(10, 1))]
        cmd += ["--weights", weights] if weights else []
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for backbone, weights in (("efficientnet-lite0", None), ("resnet50", str(r50))):
        rates: dict[str, list[float]] = {n: [] for n in names.values()}
        refused: dict[str, str] = {}
        for _ in range(repeats):
            for (runtime, precision), name in names.items():
                got = probe(backbone, weights, runtime, precision)
                if "error" in got:
                    refused[name] = got["error"]
                else:
                    rates[name].append(got["rate"])
        auto = probe(backbone, weights, "auto", "auto")["path"]
        auto_name = {
            f"{'onnxruntime' if r == 'onnx' else r} {p}": n for (r, p), n in names.items()
        }[auto]
        med = {n: statistics.median(v) for n, v in rates.items() if v}
        best = max(med.values())
        for name, rate in med.items():
            mark = "**auto's choice**" if name == auto_name else ""
            rows.append([backbone, name, f"{rate:.1f}", f"{rate / best:.0%}", mark])
        for name, why in refused.items():
            rows.append([backbone, name, "cannot run here", "", why.replace("|", "/")])
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


def keypress_to_results(
    root: Path, index: Path, n: int, thumbs: list[float] | None = None, size=(160, 50)
) -> list[float]:
    """Seconds from an enter key sent to the app in a real terminal (tmux, *size*
    columns and rows) to the new query's scores on the screen, read back with
    capture-pane; into *thumbs*, seconds until every card's picture is drawn too (no "…"
    placeholder left)."""
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

    cmd = f"cd {REPO} && COLORTERM=truecolor {sys.executable} -m tui {root} --index {index}"
    subprocess.run([*sock, "kill-server"], capture_output=True)
    subprocess.run(
        [*sock, "new-session", "-d", "-s", "b", "-x", str(size[0]), "-y", str(size[1]), cmd],
        check=True,
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
                    t.splitlines()[0] != b
                    and "lookalikes of" in t.splitlines()[0]
                    and re.search(r"\d\.\d{3} ", t) is not None  # a card's score
                )
            )
            out.append(time.perf_counter() - t0)
            if thumbs is not None:
                # the cards' placeholder, right of the tree (whose title may be cut with …)
                wait(lambda t: all("…" not in ln[36:] for ln in t.splitlines()[1:]))
                thumbs.append(time.perf_counter() - t0)
    finally:
        subprocess.run([*sock, "kill-server"], capture_output=True)
    return out


def search_command(root: Path, index: Path, runs: int) -> list[float]:
    """Seconds for the whole `lookalike search --no-update` process, a query that is an
    indexed file: start, the index opened, the answer with its words and known copies."""
    query = sorted(root.glob("*/*.png"))[0]
    cmd = [sys.executable, "-m", "tui", "search", "--no-update", "--in", str(root)]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([*cmd, str(query), "--index", str(index)], capture_output=True, check=True)
        out.append(time.perf_counter() - t0)
    return out


def bench_app(rep: Report, root: Path, index: Path) -> None:
    searches = search_command(root, index, sized(7, 2))
    frames, footers = first_paint(root, sized(7, 2))
    thumbs: list[float] = []
    keys = keypress_to_results(root, index, sized(20, 3), thumbs)
    small = keypress_to_results(root, index, sized(20, 3), size=(80, 24))
    body = table(
        ["figure", "median", "max", "target"],
        [
            [
                "first paint: `lookalike DIR` in a pty until the first frame (panels drawn)",
                f"**{statistics.median(frames):.2f} s**",
                f"{max(frames):.2f} s",
                "≤ 0.4 s",
            ],
            [
                "… until the footer's keys are drawn too (a later frame)",
                f"{statistics.median(footers):.2f} s",
                f"{max(footers):.2f} s",
                "",
            ],
            [
                "`lookalike search --no-update` of an indexed file, whole process",
                f"**{statistics.median(searches):.2f} s**",
                f"{max(searches):.2f} s",
                "",
            ],
            [
                "keypress to scores on screen (enter in the tree, tmux, warm, 10k index)",
                f"**{1000 * statistics.median(keys):.0f} ms**",
                f"{1000 * max(keys):.0f} ms (p95 {1000 * float(np.percentile(keys, 95)):.0f})",
                "≤ 100 ms median, ≤ 250 ms p95",
            ],
            [
                "… the same at 80x24",
                f"**{1000 * statistics.median(small):.0f} ms**",
                f"{1000 * max(small):.0f} ms (p95 {1000 * float(np.percentile(small, 95)):.0f})",
                "≤ 100 ms median",
            ],
            [
                "keypress to every picture of the 12-card page drawn",
                f"**{1000 * statistics.median(thumbs):.0f} ms**",
                f"{1000 * max(thumbs):.0f} ms",
                "≤ 200 ms median",
            ],
        ],
    )
    body += (
        "\n\nFirst paint and the search command over 7 runs each, on the 10k folder. Keypress: 20 searches in a real terminal (tmux 160x50, then 80x24), timed from "
        "`send-keys Enter` to the first screen read back (capture-pane, polled) that shows the new "
        "query's status line and scores; thumbnails may follow. The polling adds a few ms."
    )
    rep.section("The app", body, "python -m benchmarks.run --only index,app")


def _measured_on(part: str) -> str:
    """A section measured on another machine than the one the report's head names."""
    title, body = part.split("\n", 1)
    when = time.strftime("%Y-%m-%d")
    return f"{title}\n\nMeasured {when} on {cpu_kind()}, not the machine above.\n{body}"


def _section(name: str, rep: Report, root: Path, index: Path) -> None:
    """Run one section of :data:`SECTIONS` (its module imported only when it runs)."""
    if name == "throughput":
        from benchmarks.throughput import bench_throughput

        bench_throughput(rep, root)
    elif name == "compare":
        bench_compare(rep, root, n_eff=sized(400, 40), n_r50=sized(120, 8), rounds=sized(2, 1))
    elif name == "encoder":
        bench_encoder(rep, repeats=sized(3, 1))
    elif name == "paths":
        from benchmarks.paths_bench import bench_paths

        bench_paths(rep)
    elif name == "quality":
        search_bench.bench_quality(rep, index, root)
    elif name == "latency":
        search_bench.bench_latency(rep, index)
    elif name == "lsh":
        search_bench.bench_lsh_where(rep)
    elif name == "kernels":
        search_bench.bench_kernels(rep)
    elif name == "scale":
        search_bench.bench_scale(rep)
    elif name == "selfjoin":
        search_bench.bench_selfjoin(rep)
    elif name == "triage":
        from benchmarks.triage_bench import bench_triage

        bench_triage(rep, index, root)
    elif name == "triage-time":
        from benchmarks.triage_bench import bench_triage_time

        bench_triage_time(rep, index, root)
    elif name == "candidates":
        from benchmarks.triage_bench import bench_candidates

        bench_candidates(rep)
    elif name == "small":
        from benchmarks.small_bench import bench_small

        bench_small(rep, index, root)
    elif name == "session":
        from benchmarks.session_bench import bench_session

        bench_session(rep)
    elif name == "dataset":
        from benchmarks.dataset_bench import bench_dataset

        bench_dataset(rep)
    elif name == "labels":
        from benchmarks.labels_bench import bench_labels

        bench_labels(rep, index, root)
    elif name == "wrong-labels":
        from benchmarks.wrong_labels_bench import bench_wrong_labels

        bench_wrong_labels(rep)
    elif name == "disk":
        search_bench.bench_disk(rep, index)
    elif name == "app":
        bench_app(rep, root, index)
    elif name == "pictures":
        from benchmarks.render_bench import bench_pictures

        bench_pictures(rep)
    elif name == "shared":
        from benchmarks.shared_bench import bench_shared

        bench_shared(rep, root)
    else:
        raise ValueError(f"unknown section {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--out", help="where the report goes (default docs/BENCHMARKS.md)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every benchmark at a small size, on data of its own under bench-data/smoke;"
        " the report goes there too (its figures say nothing: it shows the benchmarks run)",
    )
    args = parser.parse_args(argv)
    if args.smoke and not SMOKE:  # the sizes are read when the modules load: start again
        os.environ["LOOKALIKE_BENCH_SMOKE"] = "1"
        argv = sys.argv[1:] if argv is None else argv
        return subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], cwd=REPO).returncode
    args.out = args.out or str(DATA / "BENCHMARKS.md" if SMOKE else REPO / "docs" / "BENCHMARKS.md")
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    DATA.mkdir(parents=True, exist_ok=True)
    root = ensure_fashion()
    rep = Report()
    started = time.perf_counter()
    index = DATA / "index-10k.sqlite"
    if "index" in only or not index.exists():
        index = bench_index(rep if "index" in only else Report(), root)
    for name in SECTIONS[1:]:
        if name in only:
            t0 = time.perf_counter()
            _section(name, rep, root, index)
            print(f"section {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    took = time.perf_counter() - started
    head = (
        "# Benchmarks\n\nMeasured by `python -m benchmarks.run` (every section: about 20"
        " minutes on the machine below; `--only A,B` measures some again and keeps the"
        f" rest). Last written {time.strftime('%Y-%m-%d')}.\n\n"
        "## Machine\n\n" + machine() + "\n\n"
    )
    parts = rep.parts
    out = Path(args.out)
    if args.only and out.exists():  # keep the sections this run did not measure
        text = out.read_text()
        old = text.split("\n## ")[1:]
        machine_was = next((p for p in old if p.startswith("Machine")), "")
        if machine_was and machine_was.split("\n", 1)[1].strip() != machine().strip():
            # the machine above is the full run's; sections measured elsewhere say where
            head = text.split("\n## ", 1)[0].rstrip() + "\n\n## " + machine_was.rstrip() + "\n\n"
            parts = [_measured_on(p) for p in parts]
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
