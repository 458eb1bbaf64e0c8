"""The copies triage has verified, as a search sees them: so that a result which triage
groups as a copy of the query is called a copy, with triage's reason (``mirrored copy ·
0.95 aligned pixels``), not only placed on the score scale ("very similar").

Nothing is measured here: the evidence is the candidate graph a triage keeps in the index
(:mod:`engine.triage.candidates`), decided again by the copy rule as triage decides it
(milliseconds, vectorised), and byte-identical files. A pair the user marked not a copy
is not one; a picture changed since its evidence was measured has none. Where no triage
has run yet (or the graph was made under other settings), only identical bytes are
known: the words then fall back to the score scale.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from engine import copies
from engine.labels import KnownCopies
from engine.triage import graph_blob
from engine.triage.groups import IDENTICAL
from engine.triage.verify import read_blob
from engine.triage.view import facts_of, fingerprint

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch


def known_copies(search: ImageSimilaritySearch) -> KnownCopies:
    """The verified copies of *search*'s index (read in well under a second at 10,000
    pictures; call it from a worker, once per change of the index)."""
    facts, paths = facts_of(search)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    by_digest: dict[bytes, list[str]] = defaultdict(list)
    for p, d in zip(paths, facts.digests):
        if d:
            by_digest[d].append(p)
    for same in by_digest.values():
        for a in same:
            for b in same:
                if a != b:
                    out[a][b] = IDENTICAL
    graph = graph_blob.decode(read_blob(search.store, graph_blob.BLOB), fingerprint(search))
    if graph is None:
        return KnownCopies(dict(out))
    where = {p: i for i, p in enumerate(paths)}
    at = np.array([where.get(p, -1) for p in graph.paths], np.int64)
    tags = facts.tags
    current = (at >= 0) & (tags[np.maximum(at, 0)] == graph.tags) if len(tags) else at >= 0
    pixels = np.where(current, facts.pixels[np.maximum(at, 0)] if len(tags) else 0, 0)
    pairs = graph.pairs
    copies.decide(pairs, np.nan_to_num(graph.flat, nan=0.0), np.sqrt(pixels).astype(np.int64))
    rejected = search.store.rejections()
    ok = np.flatnonzero(pairs.copy & current[pairs.left] & current[pairs.right])
    for i in ok.tolist():
        a, b = graph.paths[pairs.left[i]], graph.paths[pairs.right[i]]
        if (min(a, b), max(a, b)) not in rejected:
            out[a].setdefault(b, pairs.why[i])
            out[b].setdefault(a, pairs.why[i])
    return KnownCopies(dict(out), from_triage=True)
