"""The exact self-join of :mod:`engine.triage.selfjoin` (up to its ``EXACT_MAX`` pictures), and
each row's top k against all: the centred unit codes multiplied block by block (BLAS),
pairs at or above a similarity and every row's nearest neighbour kept. Exact, and
quadratic: about 14 s at 70k images on 2 cores."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

Progress = Callable[[str, float], None]
#: Which of the pairs (left rows, right rows) to keep: a mask.
PairFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Rows and columns per block product: 128 MB of float32 scores at a time.
BLOCK_ROWS, BLOCK_COLS = 2048, 16384
#: With top_k: columns sampled to give each row its first top k, and past how many new
#: entries per row a block is cut to each row's best first.
TOP_K_SEED = 4096
TOP_K_DIRECT = 1024
#: Seed of the self-join's own MinHash permutations (independent of the index's).
JOIN_SEED = 7


class JoinCancelled(Exception):
    """The self-join was cancelled."""


def _pairs_at(s: np.ndarray, best: np.ndarray, i: int, j: int, tau: float, pair_filter):
    """The pairs of block *s* (rows from *i*, columns from *j*) at or above *tau* with
    left < right and passing *pair_filter*: (left, right, score), or None. Only the rows
    whose *best* reaches *tau* are scanned."""
    hot = np.flatnonzero(best >= tau)
    if not len(hot):
        return None
    r, c = np.nonzero(s[hot] >= tau)
    keep = c + j > hot[r] + i
    r, c = r[keep], c[keep]
    if pair_filter is not None and len(r):
        keep = pair_filter(hot[r] + i, c + j)
        r, c = r[keep], c[keep]
    return hot[r] + i, c + j, s[hot[r], c]


def exact_blocks(
    units: np.ndarray,
    tau: float,
    say: Progress | None = None,
    cancel: threading.Event | None = None,
    rows_limit: int | None = None,
    pair_filter: PairFilter | None = None,
    top_k: int = 0,
) -> tuple:
    """The brute force: every row block against every column block, returning pairs
    (left, right, score) at or above *tau* and each row's nearest neighbour (score, row).

    Twice the multiplications of the upper triangle alone, but each row's nearest
    neighbour then comes from row-wise reductions only (contiguous, fast), where the
    triangle needs column-wise ones (measured slower than the extra products).
    *rows_limit* stops after that many rows (every row costs the same: the benchmark
    times a share of them). With *top_k*, the pairs are instead each row's *top_k* best
    columns of every block at or above *tau* (unordered, repeats possible: a superset
    of every row's *top_k* nearest neighbours).
    """
    say = say or (lambda _phase, _done: None)
    cancel = cancel or threading.Event()
    n = len(units)
    nearest = np.full(n, -np.inf, np.float32)
    nearest_at = np.full(n, -1, np.int64)
    lefts, rights, scores = [], [], []
    if top_k:
        # a fixed sample of columns gives each row a first top k cheaply; afterwards only
        # columns beating a row's current k-th best are looked at (few, past the sample)
        seed = np.sort(np.random.RandomState(JOIN_SEED).permutation(n)[:TOP_K_SEED])
        seed_units = units[seed]
        # the sample's columns are left out of each block's new entries by a lookup,
        # not by writing -inf into every row of the block (measured: 4.6 of 25 s at 70k)
        sampled = np.zeros(n, bool)
        sampled[seed] = True
    for i in range(0, rows_limit if rows_limit is not None else n, BLOCK_ROWS):
        if cancel.is_set():
            raise JoinCancelled
        a = units[i : i + BLOCK_ROWS]
        rows = np.arange(len(a))
        if top_k:  # each row's first top k, from the sample
            s0 = a @ seed_units.T
            s0[(seed[None, :] == (rows + i)[:, None])] = -np.inf
            part = np.argpartition(-s0, min(top_k, n - 1) - 1, axis=1)[:, : min(top_k, n - 1)]
            cur_v, cur_c = np.take_along_axis(s0, part, axis=1), seed[part]
        for j in range(0, n, BLOCK_COLS):
            s = a @ units[j : j + BLOCK_COLS].T
            own = rows + i - j  # each row's own column, where it falls in this block
            mine = (own >= 0) & (own < s.shape[1])
            s[rows[mine], own[mine]] = -np.inf
            best_col = s.argmax(axis=1)
            best = s[rows, best_col]
            better = best > nearest[i : i + len(a)]
            nearest[i : i + len(a)][better] = best[better]
            nearest_at[i : i + len(a)][better] = best_col[better] + j
            if top_k:  # each row's best columns, either side of the diagonal
                _merge_block(s, best, j, cur_v, cur_c, seed, sampled)
                continue
            if j + s.shape[1] <= i:
                continue  # only pairs with left < right are kept: this block holds none
            found = _pairs_at(s, best, i, j, tau, pair_filter)
            if found is not None:
                lefts.append(found[0])
                rights.append(found[1])
                scores.append(found[2])
        if top_k:
            r, q = np.nonzero((cur_v >= tau) & (cur_c >= 0))
            lefts.append(r + i)
            rights.append(cur_c[r, q])
            scores.append(cur_v[r, q])
        say("pairs", min(1.0, (i + len(a)) / n))
    return (*_concat(lefts, rights, scores), nearest, nearest_at)


def rows_top_k(
    units: np.ndarray,
    rows: np.ndarray,
    k: int,
    accept: np.ndarray | None = None,
    say: Progress | None = None,
    cancel: threading.Event | None = None,
    variants: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For some *rows* of *units*: each one's *k* best other rows, and with *accept*
    (one threshold per row of *units*), every other row that scores above its own
    threshold with it. Returns pairs (row, other, score), unordered. What an update of
    a candidate graph needs: the new pictures' nearest, and the old pictures a new one
    now enters the first *k* of. A block of rows against every column at a time.
    *variants* (len(rows), m, d): each row is asked as these m vectors instead, its score
    with a column the best of theirs (a thumbnail's eight turns and mirrors)."""
    say = say or (lambda _phase, _done: None)
    cancel = cancel or threading.Event()
    n = len(units)
    k = min(k, max(n - 1, 0))
    m = 1 if variants is None else variants.shape[1]
    step = max(1, BLOCK_ROWS // m)  # the same scores in memory at a time
    out_l, out_r, out_s = [], [], []
    for lo in range(0, len(rows), step):
        if cancel.is_set():
            raise JoinCancelled
        rr = np.asarray(rows[lo : lo + step], np.int64)
        a = units[rr] if variants is None else variants[lo : lo + step].reshape(-1, units.shape[1])
        cur_v = np.full((len(rr), k), -np.inf, np.float32)
        cur_c = np.full((len(rr), k), -1, np.int64)
        for j in range(0, n, BLOCK_COLS):
            s = a @ units[j : j + BLOCK_COLS].T
            if m > 1:
                s = s.reshape(len(rr), m, -1).max(axis=1)
            own = rr - j
            mine = (own >= 0) & (own < s.shape[1])
            s[np.flatnonzero(mine), own[mine]] = -np.inf
            if k:
                kk = min(k, s.shape[1])
                part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
                all_v = np.concatenate([cur_v, np.take_along_axis(s, part, 1)], axis=1)
                all_c = np.concatenate([cur_c, part + j], axis=1)
                pick = np.argpartition(-all_v, k - 1, axis=1)[:, :k]
                cur_v = np.take_along_axis(all_v, pick, 1)
                cur_c = np.take_along_axis(all_c, pick, 1)
            if accept is not None:
                r, c = np.nonzero(s > accept[None, j : j + s.shape[1]])
                out_l.append(rr[r])
                out_r.append(c + j)
                out_s.append(s[r, c])
        r, q = np.nonzero((cur_c >= 0) & np.isfinite(cur_v))
        out_l.append(rr[r])
        out_r.append(cur_c[r, q])
        out_s.append(cur_v[r, q])
        say("pairs", min(1.0, (lo + len(rr)) / max(1, len(rows))))
    return _concat(out_l, out_r, out_s)


def _merge_block(s, best, j, cur_v, cur_c, seed, sampled) -> None:
    """Merge block *s* (columns from *j*; *best*: each row's best in it) into each row's
    top k so far (*cur_v*, *cur_c*, changed in place). The columns of the sample *seed*
    (*sampled*: a mask over all columns) were merged first and are left out."""
    kth = cur_v.min(axis=1)
    hot = np.flatnonzero(best > kth)  # rows with a column beating their k-th
    if not len(hot):
        return
    if 2 * len(hot) < len(s):  # few rows: their copy is scanned
        sub = s[hot]
        r, c = np.nonzero(sub > kth[hot, None])
        v = sub[r, c]
    else:  # most rows: the block itself (the rows with entries are exactly the hot ones)
        sub = None
        r, c = np.nonzero(s > kth[:, None])
        v = s[r, c]
        r = np.searchsorted(hot, r)
    fresh = ~sampled[c + j]
    r, c, v = r[fresh], c[fresh], v[fresh]
    inside = seed[(seed >= j) & (seed < j + s.shape[1])] - j
    new_v, new_c = _merge_top(
        cur_v[hot], cur_c[hot], r, c + j, v, lambda: s[hot] if sub is None else sub, j, inside
    )
    cur_v[hot], cur_c[hot] = new_v, new_c


def _merge_top(cur_v, cur_c, r, c, v, rows, offset, merged) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``cur_v.shape[1]`` of its current ones and the new entries (row
    *r*, column *c*, score *v*, rows in order), laid side by side and partitioned. When
    some row has many new entries, each row of the block *rows* gives (columns from
    *offset*; its own copy, changed here) is cut to its best first, less the columns
    *merged* before."""
    b, k = cur_v.shape
    counts = np.bincount(r, minlength=b)
    m = int(counts.max()) if len(r) else 0
    if m > TOP_K_DIRECT:
        block = rows()
        block[:, merged] = -np.inf
        kk = min(k, block.shape[1])
        part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        new_v, new_c = np.take_along_axis(block, part, axis=1), part + offset
        m = kk
    else:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(len(r)) - starts[r]
        new_v = np.full((b, m), -np.inf, np.float32)
        new_c = np.full((b, m), -1, np.int64)
        new_v[r, pos], new_c[r, pos] = v, c
    all_v = np.concatenate([cur_v, new_v], axis=1)
    all_c = np.concatenate([cur_c, new_c], axis=1)
    pick = np.argpartition(-all_v, k - 1, axis=1)[:, :k]
    return np.take_along_axis(all_v, pick, axis=1), np.take_along_axis(all_c, pick, axis=1)


def _concat(lefts, rights, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not lefts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (
        np.concatenate(lefts).astype(np.int64),
        np.concatenate(rights).astype(np.int64),
        np.concatenate(scores).astype(np.float32),
    )
