"""How well the words beside the scores (engine.labels) place a result: on Fashion-MNIST,
how often each word's results share the query's class; on the copy sets, which word an
edited copy gets, and which the best match of a picture without copies gets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from benchmarks.copies import MILD
from benchmarks.copies import build as build_copies
from benchmarks.report import table


def _fashion(root: Path, index: Path) -> list:
    from engine import ImageSimilaritySearch
    from engine.labels import WORDS, measure

    with ImageSimilaritySearch(root, index) as search:
        scale = measure(search)
        queries = sorted(search.store.file_states())[::100]
        same, total = Counter(), Counter()
        for q in queries:
            for m in search.search(root / q, 10).matches:
                word = scale.label(m.score)
                total[word] += 1
                same[word] += m.path.split("/")[0] == q.split("/")[0]
    cells = [f"{same[w] / total[w]:.0%} of {total[w]}" if total[w] else "-" for w in WORDS]
    bars = f"{scale.copy:.2f} / {scale.close:.3f} / {scale.typical:.3f}"
    return [f"Fashion-MNIST test split ({len(queries)} queries × 10)", bars, *cells]


def _copies(root: Path) -> list:
    from engine import ImageSimilaritySearch
    from engine.labels import WORDS, measure

    truth = json.loads((root / "truth.json").read_text())
    grouped = {p for g in truth["groups"] for p in g}
    with ImageSimilaritySearch(root) as search:
        search.index()
        scale = measure(search)
        if scale is None:  # too few pictures for a scale (a source barely installed)
            return [root.name, "too few pictures to place words", ""]
        copies, singles = Counter(), Counter()
        for group in truth["groups"]:
            found = {m.path: m.score for m in search.search(root / group[0], 10).matches}
            for c in group[1:]:
                copies[scale.label(found[c]) if c in found else "not in the 10"] += 1
        for p in [p for p in sorted(search.store.file_states()) if p not in grouped][:150]:
            best = search.search(root / p, 1).matches
            if best:
                singles[scale.label(best[0].score)] += 1

    def share(counts: Counter) -> str:
        n = sum(counts.values())
        return ", ".join(f"{w} {counts[w] / n:.0%}" for w in (*WORDS, "not in the 10") if counts[w])

    return [root.name, f"{sum(copies.values())}: {share(copies)}", share(singles)]


def bench_labels(rep, index: Path, fashion: Path) -> None:
    rows = [_fashion(fashion, index)]
    head = [
        "collection",
        "bars (near copy / very similar / similar)",
        *(f"{w}: same class" for w in ("near copy", "very similar", "similar", "related")),
    ]
    body = table(head, rows)
    sets = [
        build_copies("clipart-tune", "tune"),
        build_copies("clipart-held", "held"),
        build_copies("clipart-held", "old", MILD),
        build_copies("photos", "held"),
    ]
    body += "\n\n" + table(
        [
            "copy set",
            "edited copies (of the original's 10 results): word",
            "best match of a picture without copies: word",
        ],
        [_copies(s) for s in sets],
    )
    rep.section("Words beside the scores", body, "python -m benchmarks.run --only labels")
