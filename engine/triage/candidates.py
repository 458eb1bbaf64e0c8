"""The candidate graph: each picture's nearest pictures and the evidence about each pair,
kept in the index and brought up to date by what changed, never made again whole.

**What it holds.** Per picture (a *row*): its path and a tag of its content (the first
8 bytes of its SHA-256), its thumbnail's spread, its nearest neighbour's code cosine.
Per candidate pair: code cosine, visual similarity, aligned pixels and transform, the
full-size pixel score, the local-feature verdict (:class:`engine.copies.Pairs`).
Candidates are each picture's :data:`engine.copies.CANDIDATES` nearest by code cosine
(a pair is kept when it is among the first of either picture), exactly up to
:data:`engine.triage.selfjoin.EXACT_MAX` pictures, from an inverted file beyond
(:mod:`engine.triage.ivf`: of copies edited every way, planted among a million pictures,
it keeps 0.83-0.995 as candidates where the exact ten nearest keep 0.87-0.995, and the
LSH bands it replaced kept 0.33-0.93).

**Why it is kept.** A first triage of 100,000 pictures spends minutes on the self-join,
the features and the full-size pixels; everything after that is milliseconds. The graph
is stored in the index (one blob, :mod:`engine.triage.graph_blob`) with the settings it
was made under (backbone, weights, code size, precision, the centre's generation, the
copy rule): a graph made otherwise is not used.

**How it follows the index** (:func:`update`). Pictures are matched by path and content
tag. A picture gone (deleted, moved, changed) leaves with its pairs; the pictures that
lost a candidate with it, and every new picture, get their nearest pictures exactly
(a block product of those rows against all); an old picture gains a new one as a
candidate when it beats its current last candidate. Then each pair keeps its rank among
either picture's candidates, as a whole join would give. Only new pairs are measured.

**Read as untrusted.** The blob comes from the index, which whoever has the folder can
write: its header is bounded JSON, every array's type and length is checked against it
and against the blob's size, every row number is in range. Anything else and the graph
is made again, as if there were none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine import copies
from engine.triage import tiny
from engine.triage.selfjoin import EXACT_MAX, rows_top_k, self_join

Progress = Callable[[str, float], None]


@dataclass
class CandidateGraph:
    paths: list[str]
    tags: np.ndarray  # int64
    flat: np.ndarray  # float32: each thumbnail's spread (NaN: not known yet)
    nearest: np.ndarray  # float32: the nearest neighbour's code cosine (NaN: none)
    nearest_row: np.ndarray  # int64 (-1: none)
    nearest_exact: np.ndarray  # bool
    pairs: copies.Pairs
    fingerprint: str
    method: str = "exact blocks"
    certain: float = 1.0  # every row whose nearest is below this has an exact one
    #: rows by (path, tag), made on first use
    _where: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def row_of(self, path: str, tag: int) -> int | None:
        if not self._where:
            self._where = {(p, int(t)): i for i, (p, t) in enumerate(zip(self.paths, self.tags))}
        return self._where.get((path, int(tag)))


def tag_of(digest: bytes | None, mtime: int) -> int:
    """What tells two versions of a file apart: its content digest's first 8 bytes (the
    modification time where no digest is stored)."""
    if digest:
        return int.from_bytes(digest[:8], "little", signed=True)
    return int(mtime)


# --- making and following ------------------------------------------------------------------


def _by_row(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The order that sorts entries by row *a*, best score *s* first within a row: one
    argsort of one key (scores are cosines, in [-1, 1]), three times faster than a
    lexsort of two."""
    return np.argsort(a * 4.0 + (1.0 - np.clip(s, -1.0, 1.0)), kind="stable")


def _positions(a_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For entries sorted by row: where each row starts, how many it has, and each
    entry's place within its row."""
    starts = np.concatenate([[0], np.flatnonzero(a_sorted[1:] != a_sorted[:-1]) + 1])
    counts = np.diff(np.append(starts, len(a_sorted)))
    return starts, counts, np.arange(len(a_sorted)) - np.repeat(starts, counts)


def nearest_candidates(left, right, score, n: int, k: int = copies.CANDIDATES):
    """Keep each pair that is among the first *k* of either picture; its rank is the
    better of the two (0: each other's nearest). Returns the kept indices and ranks."""
    if not len(left):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate([left, right])
    s = np.concatenate([score, score])
    idx = np.concatenate([np.arange(len(left)), np.arange(len(left))])
    order = _by_row(a, s)
    _starts, _counts, pos = _positions(a[order])
    rank = np.full(len(left), np.iinfo(np.int64).max)
    np.minimum.at(rank, idx[order], pos)
    keep = np.flatnonzero(rank < k)
    return keep, rank[keep]


def last_candidate(pairs: copies.Pairs, n: int, k: int = copies.CANDIDATES) -> np.ndarray:
    """Each row's k-th best code cosine among its pairs (-inf with fewer than k): what a
    new picture must beat to become one of its candidates."""
    out = np.full(n, -np.inf, np.float32)
    if not len(pairs):
        return out
    a = np.concatenate([pairs.left, pairs.right])
    s = np.concatenate([pairs.score, pairs.score])
    order = _by_row(a, s)
    a, s = a[order], s[order]
    starts, counts, _pos = _positions(a)
    full = counts >= k
    out[a[starts[full]]] = s[starts[full] + k - 1]
    return out


def _nearest_from_pairs(pairs: copies.Pairs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best pair: its score and the other row (NaN and -1 for none)."""
    best = np.full(n, np.nan, np.float32)
    at = np.full(n, -1, np.int64)
    if len(pairs):
        a = np.concatenate([pairs.left, pairs.right])
        b = np.concatenate([pairs.right, pairs.left])
        s = np.concatenate([pairs.score, pairs.score])
        order = _by_row(a, s)
        starts, _counts, _pos = _positions(a[order])
        pick = order[starts]
        best[a[pick]], at[a[pick]] = s[pick], b[pick]
    return best, at


def build(
    vec,
    paths: list[str],
    tags: np.ndarray,
    fingerprint: str,
    outliers: float,
    say,
    cancel,
    exact: bool | None = None,
) -> CandidateGraph:
    """A new graph of the live pictures of *vec* (rows in the order of
    :func:`engine.triage.selfjoin.unit_codes`): the whole self-join, no evidence yet.
    *exact*: each picture's nearest exactly (None: up to EXACT_MAX pictures) or from
    an inverted file."""
    from engine.triage.selfjoin import unit_codes

    units, slots = unit_codes(vec)
    n = len(slots)
    exact = n <= EXACT_MAX if exact is None else exact
    joined = self_join(
        vec,
        0.0,
        method="exact" if exact else "ivf",
        outliers=outliers,
        on_progress=say,
        cancel=cancel,
        top_k=copies.CANDIDATES,
    )
    rows = np.searchsorted(slots, joined.left), np.searchsorted(slots, joined.right)
    keep, rank = nearest_candidates(rows[0], rows[1], joined.score, n)
    pairs = copies.Pairs(rows[0][keep], rows[1][keep], rank)
    pairs.score = joined.score[keep].astype(np.float32)
    nearest = joined.nearest[slots].astype(np.float32)
    at = joined.nearest_slot[slots]
    nearest_row = np.where(at >= 0, np.searchsorted(slots, np.maximum(at, 0)), -1)
    return CandidateGraph(
        list(paths),
        np.asarray(tags, np.int64),
        np.full(n, np.nan, np.float32),
        nearest,
        nearest_row.astype(np.int64),
        joined.nearest_exact[slots].astype(bool),
        pairs,
        fingerprint,
        joined.method,
        float(joined.nearest_certain),
    )


@dataclass
class Change:
    """What :func:`update` found: rows new to the graph, rows gone from it."""

    new: int = 0
    gone: int = 0

    @property
    def any(self) -> bool:
        return bool(self.new or self.gone)


def _merged(joined: copies.Pairs, n: int) -> copies.Pairs:
    """*joined* with one of each pair (the one with evidence first), kept where it is
    among either picture's first candidates, ranked."""
    packed = joined.left * n + joined.right
    measured = ~np.isnan(joined.pixels)
    order = np.lexsort((~measured, packed))
    first = order[np.concatenate([[True], packed[order][1:] != packed[order][:-1]])]
    merged = joined.take(np.sort(first))
    keep_at, rank = nearest_candidates(merged.left, merged.right, merged.score, n)
    by_pixels = merged.rank >= tiny.RANK  # kept however far the codes, and so marked
    at = np.concatenate([keep_at, np.setdiff1d(np.flatnonzero(by_pixels), keep_at)])
    rank = np.concatenate([rank, np.zeros(len(at) - len(keep_at), np.int64)])
    merged = merged.take(at)
    merged.rank = np.where(by_pixels[at], tiny.RANK, rank)
    return merged


def with_pixel_pairs(graph: CandidateGraph, left, right, code_score) -> None:
    """The tiny pictures' candidates by thumbnail (:mod:`engine.triage.tiny`) put in
    *graph*: pairs new to it join with rank :data:`engine.triage.tiny.RANK` and their
    code cosine (*code_score(left, right)*); every pair it has stays, evidence and all,
    those among them marked with that rank too (so an update keeps them while the codes
    move). They leave as other pairs do, with a picture."""
    n = len(graph)
    have = graph.pairs.left * n + graph.pairs.right
    graph.pairs.rank[np.isin(have, left * n + right)] = tiny.RANK
    new = ~np.isin(left * n + right, have)
    if new.any():
        fresh = copies.Pairs(left[new], right[new], np.full(int(new.sum()), tiny.RANK))
        fresh.score = np.asarray(code_score(left[new], right[new]), np.float32)
        graph.pairs = copies.Pairs.join([graph.pairs, fresh])


def update(
    graph: CandidateGraph,
    paths: list[str],
    tags: np.ndarray,
    keep: set[str],
    units_of: Callable[[], tuple[np.ndarray, np.ndarray]],
    say: Progress,
    cancel: threading.Event,
) -> tuple[CandidateGraph, np.ndarray, Change]:
    """*graph* brought up to the pictures now in the index (*paths*, *tags*, in the
    order of *units_of*'s rows). Rows of *keep* paths stay though the index has them no
    more (moved aside by this session: an undo brings them back). Returns the graph, the
    index row of each graph row (-1 for one kept that is not in the index), and what
    changed. *units_of* gives the centred unit codes of the index's rows and is called
    only when a join is needed."""
    index_row = {(p, int(t)): i for i, (p, t) in enumerate(zip(paths, tags))}
    old_to_index = np.array(
        [index_row.get((p, int(t)), -1) for p, t in zip(graph.paths, graph.tags)], np.int64
    )
    stay = (old_to_index >= 0) | np.array([p in keep for p in graph.paths], bool)
    seen = np.zeros(len(paths), bool)
    seen[old_to_index[old_to_index >= 0]] = True
    new_index_rows = np.flatnonzero(~seen)
    change = Change(new=len(new_index_rows), gone=int((~stay).sum()))
    if not change.any:
        return graph, old_to_index, change
    # rows kept, in their order, then the new ones
    kept_rows = np.flatnonzero(stay)
    remap = np.full(len(graph), -1, np.int64)
    remap[kept_rows] = np.arange(len(kept_rows))
    pairs = graph.pairs
    alive = (remap[pairs.left] >= 0) & (remap[pairs.right] >= 0)
    ends = remap[np.concatenate([pairs.left[~alive], pairs.right[~alive]])]
    lost = np.zeros(len(kept_rows), bool)  # rows that lost a candidate with a gone picture
    lost[ends[ends >= 0]] = True
    old = pairs.take(alive)
    old.left, old.right = remap[old.left], remap[old.right]
    added = len(new_index_rows)
    n = len(kept_rows) + added
    index_of = np.concatenate([old_to_index[kept_rows], new_index_rows]).astype(np.int64)
    near = graph.nearest_row[kept_rows]
    grown = CandidateGraph(
        [graph.paths[i] for i in kept_rows] + [paths[i] for i in new_index_rows],
        np.concatenate([graph.tags[kept_rows], np.asarray(tags, np.int64)[new_index_rows]]),
        np.concatenate([graph.flat[kept_rows], np.full(added, np.nan, np.float32)]),
        np.concatenate([graph.nearest[kept_rows], np.full(added, np.nan, np.float32)]),
        np.concatenate([np.where(near >= 0, remap[np.maximum(near, 0)], -1), np.full(added, -1)]),
        np.concatenate([graph.nearest_exact[kept_rows], np.zeros(added, bool)]),
        old,
        graph.fingerprint,
        graph.method,
        graph.certain,
    )
    # the rows that need their nearest pictures: the new ones and those that lost one;
    # only rows in the index take part in a join
    present = index_of >= 0
    todo = np.flatnonzero(np.concatenate([lost, np.ones(added, bool)]) & present)
    units, _slots = units_of()
    own = units[index_of[present]]  # the graph's rows in the index, in graph order
    graph_row = np.flatnonzero(present)
    where = np.full(n, -1, np.int64)
    where[graph_row] = np.arange(len(graph_row))
    accept = last_candidate(grown.pairs, n)[graph_row]
    accept[where[todo]] = np.inf  # their own lists are made whole below
    found_l, found_r, found_s = rows_top_k(own, where[todo], copies.CANDIDATES, accept, say, cancel)
    left, right = graph_row[found_l], graph_row[found_r]
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    fresh = copies.Pairs(lo, hi, np.zeros(len(lo), np.int64))
    fresh.score = found_s.astype(np.float32)
    merged = _merged(copies.Pairs.join([grown.pairs, fresh]), n)
    grown.pairs = merged
    best, at = _nearest_from_pairs(merged, n)
    exact = grown.method == "exact blocks"
    fix = todo if not exact else np.arange(n)
    grown.nearest[fix], grown.nearest_row[fix] = best[fix], at[fix]
    grown.nearest_exact[todo] = True
    if not exact:  # a new candidate may beat an old row's nearest
        better = ~np.isnan(best) & (np.isnan(grown.nearest) | (best > grown.nearest))
        grown.nearest[better], grown.nearest_row[better] = best[better], at[better]
    return grown, index_of, change
