"""The searchable vectors of one snapshot: exact scoring, LSH candidates, the planner.

A query is answered in two stages:

1. **Codes.** Cosine between centred codes (``hash_dim`` float32), over every live slot
   (*exact*) or over the LSH candidates (*lsh*). The stored codes are not centred (the
   centre moves while a collection grows), so a score is computed as
   ``(codes @ q' - m·q') / |code - m|`` with ``q' = q - m``: one matrix-vector product
   over the memory-mapped codes, then a per-row scale.
2. **Features.** The best ``shortlist(k)`` slots of stage 1 are re-scored by cosine
   between the backbone's centred full features (float16 on disk, read only for them),
   which ranks better than the short code (measured: precision@10 by class on a varied
   set 0.501 from codes alone, 0.552 re-ranked, 0.553 for full features everywhere).

Exact scoring in float32 with numpy's BLAS was measured fastest here (1M codes: 11.6 ms
against 14.8 for torch bf16 and 358 for numpy float16; see docs/BENCHMARKS.md).

The planner: below :data:`LSH_MIN_SIZE` images exact scoring costs about a millisecond
and is always used. Above, LSH is tried first while it pays: its answer is kept only when
the candidates hold the true short list with high probability (the last short-listed
candidate's similarity is at least the banding's reliable similarity), else every image
is scored. Its measured cost and success rate decide whether trying it is worth it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.centre import Centre
from engine.lsh import BandTable, reliable_similarity
from engine.storage import Snapshot

#: Below this many images, exact search is always used (about 1 ms here).
LSH_MIN_SIZE = 50_000
#: LSH gives up when its candidates (with repeats) pass 1/LSH_MAX_SHARE of the index
#: (and 2,000, below which scoring them costs under a millisecond anyway).
LSH_MAX_SHARE = 10
#: Re-score at least this many stage-1 results on full features (and 10 per result).
SHORTLIST = 100


def shortlist(k: int) -> int:
    return max(SHORTLIST, 10 * k)


@dataclass
class Scored:
    slots: np.ndarray  # best first
    scores: np.ndarray
    mode: str
    candidates: int
    reranked: int


class VectorIndex:
    """Scoring over one :class:`Snapshot`; cheap to build (nothing is read up front)."""

    def __init__(
        self, snap: Snapshot, centre: Centre | None, bands: int, rows: int, damaged
    ) -> None:
        self.snap = snap
        self.centre = centre
        self.bands, self.rows = bands, rows
        self._damaged = damaged
        self._inv_norm: np.ndarray | None = None
        self._live: np.ndarray | None = None
        self._lock = threading.Lock()
        self.table = BandTable(snap.lsh, snap.band_keys[snap.lsh_base :], snap.lsh_base)
        self.reliable = reliable_similarity(bands, rows)
        self.dead = np.unique(snap.dead)
        self.count = snap.slots - len(self.dead)

    def follows(self, old: VectorIndex) -> None:
        """Take over *old*'s per-slot state where this snapshot only appended to it (the
        same arrays and centre, more slots): a growing index is not re-read per batch."""
        if (
            old._inv_norm is None
            or old.snap.generation != self.snap.generation
            or old.centre is not self.centre
            or old.snap.slots > self.snap.slots
        ):
            return
        with old._lock:
            inv = np.zeros(self.snap.slots, np.float32)
            inv[: old.snap.slots] = old._inv_norm
            inv[old.snap.slots :] = self._inverse_norms(old.snap.slots, self.snap.slots)
            self._finish(inv)

    # --- per-slot state, computed once per snapshot ----------------------------------

    def _inverse_norms(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(stop - start, np.float32)
        m = self.centre.codes if self.centre is not None else None
        step = 1 << 16
        for lo in range(start, stop, step):
            block = np.asarray(self.snap.codes[lo : min(lo + step, stop)], np.float32)
            if m is not None:
                block = block - m
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            if not np.isfinite(norms).all():
                raise self._damaged("a code that is not finite")
            out[lo - start : lo - start + len(norms)] = 1.0 / np.maximum(norms, 1e-12)
        return out

    def _finish(self, inv: np.ndarray) -> None:
        live = np.ones(self.snap.slots, bool)
        live[self.dead] = False
        inv[self.dead] = 0.0
        self._live = live
        self._inv_norm = inv

    def prepare(self) -> None:
        """Compute every live code's inverse centred norm (touches all codes: call ahead
        of the first query to take that cost when you choose)."""
        with self._lock:
            if self._inv_norm is None:
                self._finish(self._inverse_norms(0, self.snap.slots))

    @property
    def live(self) -> np.ndarray:
        self.prepare()
        assert self._live is not None  # made by prepare()
        return self._live

    # --- stage 1: codes ----------------------------------------------------------------

    def _query_terms(self, code: np.ndarray) -> tuple[np.ndarray, float]:
        q = np.asarray(code, np.float32).reshape(-1)
        m = self.centre.codes if self.centre is not None else np.zeros_like(q)
        qc = q - m
        qn = float(np.linalg.norm(qc)) or 1e-12
        qu = qc / qn
        return qu, float(m @ qu)

    def exact_scores(self, code: np.ndarray) -> np.ndarray:
        """Centred cosine of *code* with every slot (dead slots score -inf)."""
        self.prepare()
        qu, mq = self._query_terms(code)
        scores = np.asarray(self.snap.codes @ qu)
        scores -= mq
        scores *= self._inv_norm
        scores[self.dead] = -np.inf
        return scores

    def scores_of(self, code: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Centred cosine of *code* with the given slots only."""
        self.prepare()
        inv_norm = self._inv_norm
        assert inv_norm is not None  # made by prepare()
        qu, mq = self._query_terms(code)
        order = np.argsort(slots)  # read the file in order
        ordered = slots[order]
        block = np.asarray(self.snap.codes[ordered], np.float32)
        out = np.empty(len(slots), np.float32)
        out[order] = (block @ qu - mq) * inv_norm[ordered]
        return out

    def lsh_candidates(self, key: np.ndarray, limit: int | None = None) -> np.ndarray | None:
        """Live slots sharing a band with *key*, or None past *limit* hits (a table naming
        slots that do not exist, as only a damaged one would, loses them here)."""
        cands = self.table.query(key, limit)
        if cands is None:
            return None
        cands = cands[(cands >= 0) & (cands < self.snap.slots)]
        return cands[self.live[cands]]

    # --- stage 2: features ---------------------------------------------------------------

    def rerank(self, features: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Centred cosine of the query's *features* with the given slots' features."""
        q = np.asarray(features, np.float32).reshape(-1)
        m = (
            self.centre.features
            if self.centre is not None and self.centre.features is not None
            else 0.0
        )
        qc = q - m
        qc = qc / (np.linalg.norm(qc) or 1e-12)
        stored = self.snap.features
        if stored is None:  # asked only of an index that keeps features
            raise ValueError("this index keeps no features to re-rank with")
        block = np.asarray(stored[slots], np.float32) - m
        norms = np.linalg.norm(block, axis=1)
        return (block @ qc) / np.maximum(norms, 1e-12)

    # --- the answer ----------------------------------------------------------------------

    def search(
        self,
        code: np.ndarray,
        features: np.ndarray | None,
        key: np.ndarray | Callable[[], np.ndarray] | None,
        k: int,
        planner: Planner,
        mode: str = "auto",
        exclude: int | None = None,
    ) -> Scored:
        """The *k* best slots for a query (its code, full features if any, band keys or a
        function giving them, called only if LSH is tried).

        *mode*: ``auto`` (the planner decides), ``exact``, or ``lsh`` (LSH's answer even
        when it may have missed some: for measurements).

        The LSH answer is kept (``auto``) only when every result's code similarity is at
        least the banding's reliable similarity: then any image at least as close as the
        results was a candidate with chance 0.99 or more, so the answer is the exact one
        but for such misses (measured: recall@10 against exact 0.999 on Fashion-MNIST and
        on a varied set, where LSH's answer alone kept 0.96 and 0.76).
        """
        others = self.count - int(exclude is not None and bool(self.live[exclude]))
        want = min(k, max(others, 0))
        unsure = False
        if key is not None and (mode == "lsh" or (mode == "auto" and planner.try_lsh(self.count))):
            t0 = time.perf_counter()
            key = key() if callable(key) else key
            # Scoring a candidate (a random read) costs about ten times a row of the exact
            # scan: past a tenth of the index LSH cannot win, so the planner stops there.
            limit = None if mode == "lsh" else max(self.count // LSH_MAX_SHARE, 2000)
            cands = self.lsh_candidates(key, limit)
            found = None
            if cands is not None:
                if exclude is not None:
                    cands = cands[cands != exclude]
                sc = self.scores_of(code, cands) if len(cands) else np.zeros(0, np.float32)
                found = self._answer(cands, sc, features, k)
            sure = (
                found is not None
                and len(found.slots) >= want
                and (want == 0 or float(self.scores_of(code, found.slots).min()) >= self.reliable)
            )
            planner.lsh_done(time.perf_counter() - t0, sure)
            if found is not None and (sure or mode == "lsh"):
                found.mode = "lsh"
                return found
            unsure = True
        t0 = time.perf_counter()
        scores = self.exact_scores(code)
        if exclude is not None:
            scores[exclude] = -np.inf
        slots = np.flatnonzero(scores > -np.inf) if others < shortlist(k) else None
        planner.exact_done(time.perf_counter() - t0, self.snap.slots)
        if slots is not None:  # fewer images than a short list: all of them
            found = self._answer(slots, scores[slots], features, k)
        else:
            found = self._answer(np.arange(len(scores)), scores, features, k)
        found.mode = "exact-lsh-unsure" if unsure else "exact"
        found.candidates = others
        return found

    def _answer(
        self, slots: np.ndarray, code_scores: np.ndarray, features: np.ndarray | None, k: int
    ) -> Scored:
        """From scored *slots*: the short list by code, re-ranked on features, top *k*."""
        top = _top(code_scores, min(shortlist(k), len(code_scores)))
        short, scores = slots[top], code_scores[top]
        reranked = 0
        if features is not None and self.snap.features is not None and len(short):
            scores = self.rerank(features, short)
            reranked = len(short)
        best = _top(scores, min(k, len(scores)))
        best = best[np.lexsort((short[best], -scores[best]))]
        return Scored(short[best], scores[best], "", len(slots), reranked)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the *k* highest scores, best first (ties: lower index first)."""
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


class Planner:
    """Decides, query by query, whether trying LSH first is worth it.

    Trying LSH costs ``L`` seconds and succeeds with rate ``p``; exact search costs
    ``E``. Trying first pays when ``L < p * E``. All three are measured as queries run
    (moving averages); every 16th query tries LSH regardless, so ``p`` stays current.
    """

    def __init__(self) -> None:
        self.lsh_cost = 0.0005
        self.exact_cost_per_row = 15e-9
        self.success = 0.5
        self.queries = 0

    def try_lsh(self, n: int) -> bool:
        self.queries += 1
        if n < LSH_MIN_SIZE:
            return False
        if self.queries % 16 == 0:
            return True
        return self.lsh_cost < self.success * self.exact_cost_per_row * n

    def lsh_done(self, seconds: float, sure: bool) -> None:
        self.lsh_cost = 0.8 * self.lsh_cost + 0.2 * seconds
        self.success = 0.8 * self.success + 0.2 * float(sure)

    def exact_done(self, seconds: float, n: int) -> None:
        if n:
            self.exact_cost_per_row = 0.8 * self.exact_cost_per_row + 0.2 * seconds / n
