"""Each picture's nearest pictures past :data:`engine.triage.selfjoin.EXACT_MAX`: an
inverted file over the centred unit codes.

**Why not LSH bands there.** Bands strict enough to stay fast find a pair only when its
code cosine is high (0.85): a copy turned, mirrored or cropped hard sits at 0.3-0.6 from
its original and is still, most of the time, among its ten nearest. The bands kept 0.52-0.67
of such copies where the exact ten nearest kept 0.93-1.00 (``--only candidates``). Nearest
by rank needs a nearest-neighbour search, not a similarity threshold.

**How.** Spherical k-means (``lists`` centroids, trained on a sample) cuts the codes into
cells; every code lives in the cell of its nearest centroid. A code's neighbours are
looked for in the ``probes`` cells whose centroids are nearest to it, exactly (BLAS
block products of the cell's members against every code that probes it), and each code
keeps its ``k`` best. Work grows as ``n * probes * n / lists``: with lists at about
``4 * sqrt(n)``, as ``n ** 1.5`` rather than ``n ** 2``. A neighbour in a cell not probed
is missed: how often is measured against the exact ten nearest of planted copies among a
million codes (docs/BENCHMARKS.md, "Triage: candidates past 120,000 pictures").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from engine.triage.exact_join import JOIN_SEED, JoinCancelled, _concat

Progress = Callable[[str, float], None]

#: Cells per square root of the number of codes (4 * sqrt(1M) = 4,000 cells of about 250).
LISTS_PER_ROOT = 4
#: Cells each code looks in: on the tuned sets among a million codes, 8 kept 0.951 of the
#: planted copies (53-66 s), 12 kept 0.959 (82 s), 16 kept 0.959 (98 s); exact: 0.985.
PROBES = 12
#: Codes the centroids are trained on, per cell, and the rounds of training.
TRAIN_PER_LIST = 24
TRAIN_ROUNDS = 6
#: Rows per block when codes are compared with every centroid.
ASSIGN_ROWS = 8192
#: Codes that probe one cell, compared with its members in blocks of at most this many.
QUERY_ROWS = 4096


def shape_for(n: int, lists: int | None = None, probes: int = PROBES) -> tuple[int, int]:
    """(cells, cells probed) for *n* codes: by default about ``LISTS_PER_ROOT * sqrt(n)``
    cells, never more than codes; never more probed than there are."""
    lists = min(lists or round(LISTS_PER_ROOT * math.sqrt(n)), n)
    lists = max(1, lists)
    return lists, min(probes, lists)


def train(units: np.ndarray, lists: int, seed: int = JOIN_SEED) -> np.ndarray:
    """*lists* unit centroids: spherical k-means on a sample of *units*, started from
    codes of the sample; a cell left empty is started again from a code picked at random."""
    rng = np.random.RandomState(seed)
    n = len(units)
    sample = units[np.sort(rng.choice(n, min(n, lists * TRAIN_PER_LIST), replace=False))]
    cents = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(TRAIN_ROUNDS):
        home = _best_cells(sample, cents, 1)[:, 0]
        order = np.argsort(home, kind="stable")
        counts = np.bincount(home, minlength=lists)
        sums = np.zeros_like(cents)
        used = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums[used] = np.add.reduceat(sample[order], starts[used], axis=0)
        empty = np.flatnonzero(counts == 0)
        sums[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        cents = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    return cents


def _best_cells(units: np.ndarray, cents: np.ndarray, probes: int, cancel=None, say=None):
    """Each row's *probes* nearest centroids, nearest first (int64). torch's top-k: 4x
    numpy's argpartition on rows of 4,000 scores (measured on 2 cores)."""
    out = np.empty((len(units), probes), np.int64)
    import torch  # here, not at the top: a search that reads known copies needs no torch

    tc = torch.from_numpy(np.ascontiguousarray(cents.T))
    for lo in range(0, len(units), ASSIGN_ROWS):
        if cancel is not None and cancel.is_set():
            raise JoinCancelled
        s = torch.from_numpy(units[lo : lo + ASSIGN_ROWS]) @ tc
        out[lo : lo + len(s)] = torch.topk(s, probes, dim=1, sorted=True).indices.numpy()
        if say is not None:
            say("sorting codes into cells", min(1.0, (lo + ASSIGN_ROWS) / len(units)))
    return out


def top_k(
    units: np.ndarray,
    k: int,
    say: Progress | None = None,
    cancel: threading.Event | None = None,
    lists: int | None = None,
    probes: int = PROBES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's *k* best other rows of *units* (unit vectors) found in its *probes*
    nearest cells of *lists*: pairs (row, other, score), unordered, a pair possibly twice
    (once from each side)."""
    say = say or (lambda _phase, _done: None)
    cancel = cancel or threading.Event()
    n = len(units)
    k = min(k, max(n - 1, 0))
    if not k:
        return _concat([], [], [])
    lists, probes = shape_for(n, lists, probes)
    cents = train(units, lists)
    near = _best_cells(units, cents, probes, cancel, say)
    home = near[:, 0]
    members = np.argsort(home, kind="stable")
    counts = np.bincount(home, minlength=lists)
    m_start = np.concatenate([[0], np.cumsum(counts)])
    place = np.empty(n, np.int64)  # each row's position among its cell's members
    place[members] = np.arange(n) - m_start[home[members]]
    # who probes each cell
    probed = near.ravel()
    askers = np.argsort(probed, kind="stable")
    asker_row = askers // probes
    q_start = np.concatenate([[0], np.cumsum(np.bincount(probed, minlength=lists))])
    # products and top-k both in torch: numpy's products (faster alone at these shapes)
    # between torch's top-k took 137 s for a million against 82 s, the two thread pools
    # taking turns on the same cores
    import torch

    tu = torch.from_numpy(units)
    best_v = torch.full((n, k), -torch.inf)
    best_c = torch.full((n, k), -1, dtype=torch.int64)
    for cell in range(lists):
        if cancel.is_set():
            raise JoinCancelled
        mem = torch.from_numpy(members[m_start[cell] : m_start[cell + 1]])
        if not len(mem):
            continue
        cols = tu[mem].T
        kk = min(k, len(mem))
        asking = asker_row[q_start[cell] : q_start[cell + 1]]
        for lo in range(0, len(asking), QUERY_ROWS):
            q = asking[lo : lo + QUERY_ROWS]
            s = tu[q] @ cols
            own = np.flatnonzero(home[q] == cell)
            s[own, place[q[own]]] = -torch.inf  # a code is not its own neighbour
            new = torch.topk(s, kk, dim=1, sorted=False)
            tq = torch.from_numpy(q)
            all_v = torch.cat([best_v[tq], new.values], dim=1)
            all_c = torch.cat([best_c[tq], mem[new.indices]], dim=1)
            pick = torch.topk(all_v, k, dim=1, sorted=False).indices
            best_v[tq] = torch.gather(all_v, 1, pick)
            best_c[tq] = torch.gather(all_c, 1, pick)
        if cell % 64 == 0:
            say("pairs", cell / lists)
    say("pairs", 1.0)
    v, c = best_v.numpy(), best_c.numpy()
    r, j = np.nonzero((c >= 0) & np.isfinite(v))
    return _concat([r], [c[r, j]], [v[r, j]])
