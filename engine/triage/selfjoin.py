"""Near-duplicate self-join: every pair of images above a similarity, and each image's
nearest neighbour score. The primitive triage is built on.

Two ways, chosen by the collection's size (``method="auto"``):

* **Exact blocks** (up to :data:`EXACT_MAX` images): the centred unit codes multiplied
  block by block (BLAS), keeping pairs at or above ``tau`` and every row's and column's
  maximum. Exact, and quadratic: about 14 s at 70k images on 2 cores.
* **LSH banding** (beyond): sign-token MinHash signatures of the codes, cut into bands
  strict enough that a pair at ``tau`` shares a band with chance 0.99
  (:func:`banding_for`). Every bucket is verified exactly, small buckets pair by pair,
  large ones (dense clusters) as one block product. Pairs come out with their exact code
  similarity; none is returned unchecked.

Each image's top k (the candidate graph's question) is answered exactly up to
:data:`EXACT_MAX` and from an inverted file beyond (``method="ivf"``,
:mod:`engine.triage.ivf`): bands find pairs above a similarity, not nearest by rank.

Nearest-neighbour scores serve outlier detection, which needs the *lowest* ones exact.
With banding or the inverted file, each image first gets a lower bound (its best pair,
and its best match in a random reference sample); the images with the lowest bounds
(three times the outlier share) get an exact nearest-neighbour search. An image left out has a bound, hence a
true score, at least the lowest bound left out, ``nearest_certain``: every image scoring
below that is among those searched, exactly. ``nearest_exact`` marks exact scores.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.lsh import band_keys, candidate_probability, expected_jaccard
from engine.triage import ivf
from engine.triage.exact_join import (  # noqa: F401  (exact_blocks, rows_top_k: re-exported)
    BLOCK_COLS,
    BLOCK_ROWS,
    JOIN_SEED,
    JoinCancelled,
    PairFilter,
    _concat,
    exact_blocks,
    rows_top_k,
)

#: Up to this many images the exact block product is used (measured crossover).
EXACT_MAX = 120_000
#: Buckets larger than this are verified as one block product rather than pair by pair.
SMALL_BUCKET = 24
#: Reference images sampled for the nearest-neighbour lower bounds.
REFERENCES = 16_384
#: With banding, exact nearest neighbours are searched for this many times the outlier
#: share of images (those with the lowest bounds): bounded work, certified below a cut.
OUTLIER_SEARCH = 3

Progress = Callable[[str, float], None]


@dataclass
class SelfJoin:
    """Pairs (``left < right``, slots) with code cosine ``score >= tau``, sorted by left
    then right; per slot the nearest neighbour's score (NaN for slots no image uses),
    exact where ``nearest_exact``. Every image whose true nearest-neighbour score is
    below ``nearest_certain`` has its exact score here (1.0: all are exact)."""

    tau: float
    left: np.ndarray
    right: np.ndarray
    score: np.ndarray
    nearest: np.ndarray
    nearest_slot: np.ndarray
    nearest_exact: np.ndarray
    nearest_certain: float
    method: str
    seconds: float


def banding_for(tau: float, miss: float = 0.01) -> tuple[int, int]:
    """(bands, rows) for pairs at *tau*: rows grow with *tau* (fewer chance collisions
    among merely similar images), bands are as few as give a pair at *tau* a chance of at
    least ``1 - miss`` to share one."""
    rows = 12 if tau >= 0.93 else 10 if tau >= 0.88 else 8
    j = float(expected_jaccard(tau)) ** rows
    bands = max(2, math.ceil(math.log(miss) / math.log1p(-j)))
    assert candidate_probability(tau, bands, rows) >= 1 - miss - 1e-9
    return bands, rows


def unit_codes(vectors) -> tuple[np.ndarray, np.ndarray]:
    """Centred unit codes of the live slots (a copy: ``hash_dim`` float32 per image) and
    the slots they belong to."""
    vectors.prepare()
    live = np.flatnonzero(vectors.live)
    m = vectors.centre.codes if vectors.centre is not None else 0.0
    out = np.empty((len(live), vectors.snap.codes.shape[1]), np.float32)
    step = 1 << 16
    for lo in range(0, len(live), step):
        idx = live[lo : lo + step]
        block = np.asarray(vectors.snap.codes[idx], np.float32) - m
        out[lo : lo + step] = block * vectors._inv_norm[idx, None]
    return out, live


def self_join(
    vectors,
    tau: float,
    method: str = "auto",
    outliers: float = 0.01,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    pair_filter: PairFilter | None = None,
    top_k: int = 0,
) -> SelfJoin:
    """Every pair of live images with code cosine at least *tau* (and, with
    *pair_filter*, for which ``pair_filter(a, b)`` is true: rows in the order of
    :func:`unit_codes`), and nearest-neighbour scores exact for at least the lowest
    *outliers* share (see the module's notes). With *top_k* (exact or ``"ivf"``): only
    the pairs where one is among the other's *top_k* best (``"ivf"``: found in an
    inverted file, :mod:`engine.triage.ivf`, not exactly)."""
    t0 = time.perf_counter()
    cancel = cancel or threading.Event()
    say = on_progress or (lambda _phase, _done: None)
    units, slots = unit_codes(vectors)
    n = len(units)
    if method == "auto":
        method = "exact" if n <= EXACT_MAX else "lsh"
    if method == "exact":
        left, right, score, nearest, nearest_at = exact_blocks(
            units, tau, say, cancel, pair_filter=pair_filter, top_k=top_k
        )
        if top_k:
            left, right, score = _once(left, right, score, n)
        exact = np.ones(n, bool)
        certain = 1.0
        how = "exact blocks"
    elif method == "ivf":
        if not top_k or pair_filter is not None:
            raise ValueError("the inverted file gives each image's top k, unfiltered")
        left, right, score = _once(*ivf.top_k(units, top_k, say, cancel), n)
        keep = score >= tau
        left, right, score = left[keep], right[keep], score[keep]
        nearest, nearest_at, exact, certain = _nearest(
            units, left, right, score, outliers, say, cancel
        )
        how = "inverted file {}x{}".format(*ivf.shape_for(n))
    else:
        if top_k:
            raise ValueError("LSH banding gives pairs above a similarity, not each image's top k")
        bands, rows = banding_for(tau)
        left, right, score = _banded_pairs(units, tau, bands, rows, say, cancel, pair_filter)
        nearest, nearest_at, exact, certain = _nearest(
            units, left, right, score, outliers, say, cancel
        )
        how = f"LSH banding {bands}x{rows}"
    full = np.full(vectors.snap.slots, np.nan, np.float32)
    full_at = np.full(vectors.snap.slots, -1, np.int64)
    full_exact = np.zeros(vectors.snap.slots, bool)
    full[slots], full_exact[slots] = nearest, exact
    full_at[slots] = np.where(nearest_at >= 0, slots[np.maximum(nearest_at, 0)], -1)
    order = np.lexsort((right, left))
    return SelfJoin(
        tau,
        slots[left[order]],
        slots[right[order]],
        score[order],
        full,
        full_at,
        full_exact,
        certain,
        how,
        time.perf_counter() - t0,
    )


def _once(left, right, score, n: int) -> tuple:
    """Pairs found from both sides, each once with left < right."""
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    packed, first = np.unique(lo * n + hi, return_index=True)
    return packed // n, packed % n, score[first]


# --- LSH banding -----------------------------------------------------------------------------


def _banded_pairs(units, tau, bands, rows, say, cancel, pair_filter=None) -> tuple:
    """Pairs at or above *tau* sharing a band."""
    from engine import minhash  # datasketch: imported by the banded join only

    n = len(units)
    keys = np.empty((n, bands), np.uint64)
    step = 1 << 15
    for lo in range(0, n, step):
        if cancel.is_set():
            raise JoinCancelled
        sig = minhash.signatures(units[lo : lo + step], bands * rows, JOIN_SEED)
        keys[lo : lo + step] = band_keys(sig, bands, rows)
        say("signatures", min(1.0, (lo + step) / n))
    found: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for b in range(bands):
        if cancel.is_set():
            raise JoinCancelled
        order = np.argsort(keys[:, b], kind="stable")
        k = keys[order, b]
        starts = np.concatenate([[0], np.flatnonzero(k[1:] != k[:-1]) + 1])
        sizes = np.diff(np.concatenate([starts, [n]]))
        for size in np.unique(sizes[sizes > 1]):
            group_starts = starts[sizes == size]
            if size <= SMALL_BUCKET:
                a, c = np.triu_indices(size, 1)
                left = order[group_starts[:, None] + a].ravel()
                right = order[group_starts[:, None] + c].ravel()
                _verify(units, left, right, tau, n, found, scores, pair_filter)
            else:
                for g in group_starts:
                    members = np.sort(order[g : g + size])
                    s = units[members] @ units[members].T
                    r, c = np.nonzero(np.triu(s >= tau, 1))
                    if pair_filter is not None and len(r):
                        keep = pair_filter(members[r], members[c])
                        r, c = r[keep], c[keep]
                    if len(r):
                        found.append(members[r] * n + members[c])
                        scores.append(s[r, c])
        say("pairs", (b + 1) / bands)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    packed, first = np.unique(np.concatenate(found), return_index=True)
    score = np.concatenate(scores)[first]
    return packed // n, packed % n, score.astype(np.float32)


def _verify(units, left, right, tau, n, found, scores, pair_filter=None, chunk=1 << 18) -> None:
    """Exact cosine of candidate pairs, in chunks; keep those at or above *tau* (and
    passing *pair_filter*)."""
    lo_side, hi_side = np.minimum(left, right), np.maximum(left, right)
    for i in range(0, len(left), chunk):
        lo, hi = lo_side[i : i + chunk], hi_side[i : i + chunk]
        s = np.einsum("ij,ij->i", units[lo], units[hi])
        keep = s >= tau
        if pair_filter is not None and keep.any():
            keep[keep] = pair_filter(lo[keep], hi[keep])
        if keep.any():
            found.append(lo[keep] * n + hi[keep])
            scores.append(s[keep])


def _nearest(units, left, right, score, outliers, say, cancel) -> tuple:
    """Nearest-neighbour scores: lower bounds for all, exact for the lowest (certified)."""
    n = len(units)
    bound = np.full(n, -np.inf, np.float32)
    at = np.full(n, -1, np.int64)
    a, b = np.concatenate([left, right]), np.concatenate([right, left])
    s2 = np.concatenate([score, score])
    if len(a):  # each image's best pair
        order = np.lexsort((s2, a))
        last = np.concatenate([a[order][1:] != a[order][:-1], [True]])
        pick = order[last]
        bound[a[pick]], at[a[pick]] = s2[pick], b[pick]
    rng = np.random.RandomState(JOIN_SEED)
    refs = np.sort(rng.choice(n, min(REFERENCES, n), replace=False))
    ref_units = units[refs]
    for lo in range(0, n, BLOCK_COLS):
        if cancel.is_set():
            raise JoinCancelled
        s = units[lo : lo + BLOCK_COLS] @ ref_units.T
        mine = np.flatnonzero((refs >= lo) & (refs < lo + BLOCK_COLS))
        s[refs[mine] - lo, mine] = -np.inf  # an image is not its own neighbour
        best = s.argmax(axis=1)
        val = s[np.arange(len(s)), best]
        better = val > bound[lo : lo + len(s)]
        bound[lo : lo + len(s)][better] = val[better]
        at[lo : lo + len(s)][better] = refs[best[better]]
        say("outliers", 0.5 * min(1.0, (lo + BLOCK_COLS) / n))
    nearest, exact = bound.copy(), np.zeros(n, bool)
    take = min(n, max(1, math.ceil(OUTLIER_SEARCH * outliers * n)))
    chosen = np.argsort(bound, kind="stable")[:take]
    for lo in range(0, len(chosen), BLOCK_ROWS):
        if cancel.is_set():
            raise JoinCancelled
        rows_ = chosen[lo : lo + BLOCK_ROWS]
        mine = units[rows_]
        best_v = np.full(len(rows_), -np.inf, np.float32)
        best_a = np.full(len(rows_), -1, np.int64)
        for j in range(0, n, BLOCK_COLS):
            s = mine @ units[j : j + BLOCK_COLS].T
            self_cols = rows_ - j
            inside = (self_cols >= 0) & (self_cols < s.shape[1])
            s[np.flatnonzero(inside), self_cols[inside]] = -np.inf
            c = s.argmax(axis=1)
            v = s[np.arange(len(rows_)), c]
            better = v > best_v
            best_v[better], best_a[better] = v[better], c[better] + j
        nearest[rows_], at[rows_], exact[rows_] = best_v, best_a, True
        say("outliers", 0.5 + 0.5 * min(1.0, (lo + BLOCK_ROWS) / max(len(chosen), 1)))
    # An image left out has a bound, hence a true score, at least the lowest bound left
    # out: below that, every score is exact and every image is accounted for.
    rest = np.ones(n, bool)
    rest[chosen] = False
    certain = float(bound[rest].min()) if rest.any() else 1.0
    return nearest, at, exact, certain
