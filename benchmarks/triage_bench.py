"""Triage figures: grouping quality on the near-duplicate set, time at 70k and at 1M."""

from __future__ import annotations

import json
import tempfile
import time
from itertools import combinations
from pathlib import Path

from benchmarks.dupes import build as build_dupes
from benchmarks.scale import SOURCE, ensure, ensure_source
from benchmarks.search_bench import table


def _pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in combinations(g, 2)}


def bench_triage(rep, fashion10k_index: Path, fashion: Path) -> None:
    from engine import ImageSimilaritySearch
    from engine.triage import DEFAULT_THRESHOLD, triage

    root = build_dupes()
    truth = json.loads((root / "truth.json").read_text())["groups"]
    true_pairs = _pairs(truth)
    identical_truth = {p for g in truth for p in g if ".same." in p}
    rows = []
    with ImageSimilaritySearch(root) as search:
        search.index()
        for t in (0.7, 0.75, 0.8, 0.85, 0.9):
            report = triage(search, t)
            got = _pairs(
                [[g.representative.path] + [m.path for m in g.members] for g in report.groups]
            )
            tp = len(got & true_pairs)
            identical = {m.path for g in report.groups for m in g.members if m.identical}
            mark = "**default**" if t == DEFAULT_THRESHOLD else ""
            rows.append(
                [
                    f"{t:.2f} {mark}",
                    f"{tp / max(1, len(got)):.3f}",
                    f"{tp / len(true_pairs):.3f}",
                    f"{len(identical & identical_truth)}/{len(identical_truth)}",
                    len(report.groups),
                ]
            )
        images = search.count()
    body = table(["threshold", "pair precision", "pair recall", "identical copies", "groups"], rows)
    body += (
        f"\n\n{images} images: the varied clip-art set (colour variants and pictures the"
        f" library already holds twice left out), {len(truth)} of them with one to three"
        " edited copies (downscaled to 50-80 %, cropped by 2-5 % per side, JPEG quality"
        " 40-70, brightness ±10 %, one or two edits each) and one in ten with a byte-identical"
        " copy; the rest, of the same classes, must stay ungrouped. A pair counts when both"
        " images land in one group. Targets: precision ≥ 0.95, recall ≥ 0.90, every identical"
        " copy. Built by `benchmarks/dupes.py` from Debian's openclipart-png."
    )
    rep.section("Triage: grouping near-duplicates", body, "python -m benchmarks.run --only triage")

    rows = []
    with ImageSimilaritySearch(fashion, fashion10k_index) as search:
        report = triage(search)
        rows.append(
            [
                f"{report.images:,}",
                "Fashion-MNIST test",
                f"{report.seconds:.1f} s",
                report.method,
                len(report.groups),
                report.duplicates,
                len(report.outliers),
            ]
        )
    ensure_source()
    with ImageSimilaritySearch(SOURCE) as search:
        report = triage(search)
        rows.append(
            [
                f"{report.images:,}",
                "Fashion-MNIST train+test",
                f"**{report.seconds:.1f} s**",
                report.method,
                len(report.groups),
                report.duplicates,
                len(report.outliers),
            ]
        )
    with ImageSimilaritySearch(Path(tempfile.mkdtemp()), ensure(1_000_000)) as search:
        t0 = time.perf_counter()
        report = triage(search)
        rows.append(
            [
                f"{report.images:,}",
                "70k real + synthetic, 1 % planted near-duplicates",
                f"**{(time.perf_counter() - t0) / 60:.1f} min**",
                report.method,
                len(report.groups),
                report.duplicates,
                len(report.outliers),
            ]
        )
    body = table(
        ["images", "collection", "triage time", "self-join", "groups", "duplicates", "outliers"],
        rows,
    )
    body += (
        "\n\nIndex already up to date; 2 cores. Targets: 70k ≤ 60 s; 1M in minutes. On"
        " Fashion-MNIST, groups are pictures that look alike at thumbnail size (plain"
        " trousers, plain bags): a catalogue of look-alike products calls for a higher"
        " `--threshold`."
    )
    rep.section("Triage: time", body, "python -m benchmarks.run --only triage")
