"""Copies of small pictures (icons, sprites, thumbnails, 32 px data sets): lookalike's
triage against imagededup's PHash and fastdup, in the same run.

The sets are those of :mod:`benchmarks.copies` with every original first shrunk to a
long side of 24-64 px (:data:`benchmarks.copies.SMALL`), its copies edited from that: a
"downscale" copy of a 40 px original is 10-36 px. Pair precision and recall over every
pair of a planted group; the rest of the pictures must stay ungrouped.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.copies import KINDS, MILD
from benchmarks.copies import build as build_copies
from benchmarks.phash import DISTANCE, phash_pairs
from benchmarks.report import table
from benchmarks.triage_bench import _fastdup_quality, _quality, catalogue, pair_quality

#: (label, source, strengths, kinds), see benchmarks/copies.py.
SETS = (
    ("clip-art, tuning strengths, every kind", "clipart-tune", "tune", KINDS),
    ("held out: other clip-art, mild edits", "clipart-held", "old", MILD),
    ("held out: other clip-art, other strengths (travelled)", "clipart-held", "held", KINDS),
    ("held out: photographs, mild edits", "photos", "old", MILD),
)


def _phash_quality(root: Path) -> tuple[float, float] | None:
    got = phash_pairs(root)
    return None if got is None else pair_quality(got, root)


def _catalogue(fashion: Path, index: Path) -> str:
    """What the rule does to a catalogue of 28 px look-alike products."""
    report, got, cross, grouped = catalogue(fashion, index)
    return (
        f"Look-alike catalogue, Fashion-MNIST test split ({report.images:,} products of 28 px,"
        f" almost no true copies): **{grouped / max(1, report.images):.1%} grouped**"
        f" ({grouped}), {len(got)} pairs, **{cross} across classes** (target ≤ 2 %, none)."
    )


def bench_small(rep, fashion10k_index: Path, fashion: Path) -> None:
    rows = []
    for label, source, strength, family in SETS:
        root = build_copies(source, strength, family, small=True)
        if not any(root.glob("*/*")):
            rows.append([label, 0, "no pictures of this source here", "", ""])
            continue
        q = _quality(root)
        peers = [_phash_quality(root), _fastdup_quality(root)]
        rows.append(
            [label, q["images"], f"**{q['precision']:.3f} / {q['recall']:.3f}**"]
            + [f"{p[0]:.3f} / {p[1]:.3f}" if p else "not installed" for p in peers]
        )
        print(label, rows[-1], flush=True)
    body = table(
        [
            "set (originals 24-64 px)", "images", "lookalike: pair precision / recall",
            f"imagededup PHash (distance ≤ {DISTANCE})", "fastdup ≥ 0.9",
        ],
        rows,
    )  # fmt: skip
    body += "\n\n" + _catalogue(fashion, fashion10k_index)
    body += (
        "\n\nSets built by `benchmarks/copies.py` (`small=True`): the copy sets' pictures"
        " shrunk to a long side of 24-64 px before their copies are made (mild: downscale"
        " 50-80 %, crops 2-5 %, JPEG 40-70, brightness; travelled: every kind at the held-out"
        " strengths). The rule for small pictures (`engine.copies.SMALL`, `SMALL_GAP`) was"
        " chosen on the first set only. Targets: P ≥ 0.95 and R ≥ 0.85 on copies of 24-64 px"
        " pictures; mild P ≥ 0.97, R ≥ 0.95; travelled P ≥ 0.97, R ≥ 0.90."
    )
    rep.section("Triage: copies of small pictures", body, "python -m benchmarks.run --only small")
