"""Leaks between two splits: pictures of TEST that are copies of pictures of TRAIN.

Each folder has its own index, made with the same backbone and code settings (the
second is opened with the first's). Candidates are each TEST picture's
:data:`engine.copies.CANDIDATES` nearest TRAIN pictures by code cosine, scored exactly
in blocks (TEST rows against every TRAIN row), and byte-identical files are matched by
their digests whatever the codes say. Each candidate pair is then decided by the same
copy rule as duplicate triage (:mod:`engine.copies`: aligned pixels, local features),
with verdicts cached in TRAIN's index. Every leaked TEST picture is reported once, with
its best TRAIN match (identical bytes first, then the most similar).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Set
from typing import TYPE_CHECKING

import numpy as np

from engine import copies
from engine.triage import tiny
from engine.triage.report import Leak
from engine.triage.selfjoin import JoinCancelled, unit_codes
from engine.triage.verify import (
    Cache,
    Opener,
    feature_units_rows,
    measure_pixels,
    row_dots,
    thumbnails,
    verify,
)

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch

#: TEST rows scored against every TRAIN row at a time (a 512 x 60,000 block is 120 MB).
BLOCK = 512
#: How TEST paths are told apart from TRAIN ones in the verdict cache's keys.
TEST_MARK = "\0test\0"


def open_against(train: ImageSimilaritySearch, folder, store: str | None = None):
    """The other folder's search, with *train*'s backbone and code settings (its own
    index: TEST/.lookalike, or *store*). An existing index made otherwise is refused."""
    from engine.search import ImageSimilaritySearch

    same = {
        "backbone": train.identity.backbone,
        "hash_dim": train.identity.hash_dim,
        "num_perm": train.identity.num_perm,
        "seed": train.identity.seed,
        "input_size": train.identity.input_size,
        "store": store,
        "index_path": None,
    }
    if train.identity.precision not in (None, "auto"):
        same["precision"] = train.identity.precision
    return ImageSimilaritySearch(folder, settings=train.settings.with_(**same))


def _candidates(ua: np.ndarray, ub: np.ndarray, say, cancel: threading.Event):
    """Each TEST row's nearest TRAIN rows by code cosine, in blocks: the pairs' left
    (TRAIN) and right (TEST, numbered after TRAIN's) rows and their ranks."""
    na, nb = len(ua), len(ub)
    k = min(copies.CANDIDATES, na)
    left, right, rank = [], [], []
    for lo in range(0, nb, BLOCK):
        if cancel.is_set():
            raise JoinCancelled
        scores = ub[lo : lo + BLOCK] @ ua.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        picked = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        left.append(top.reshape(-1))
        right.append(np.repeat(np.arange(lo, lo + len(top)), k) + na)
        rank.append(np.tile(np.arange(k), len(top)))
        say("leaks: candidates", min(1.0, (lo + BLOCK) / nb))
    return (np.concatenate(x).astype(np.int64) for x in (left, right, rank))


def _same_bytes(digests: list, paths_a: list[str], na: int) -> dict[int, int]:
    """TEST row -> the TRAIN row with the same bytes (the first by path)."""
    by_digest: dict[bytes, int] = {}
    for i in range(na):
        d = digests[i]
        if d is not None and (d not in by_digest or paths_a[i] < paths_a[by_digest[d]]):
            by_digest[d] = i
    same = {}
    for j in range(len(digests) - na):
        d = digests[na + j]
        if d is not None and d in by_digest:
            same[j] = by_digest[d]
    return same


def find_leaks(
    train: ImageSimilaritySearch,
    test,
    on_progress: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
    rejected: Set[tuple[str, str]] = frozenset(),
) -> list[Leak]:
    """Every picture of *test* that is a copy of one in *train* (both indexes up to
    date), but pairs (train path, test path) in *rejected* (marked not a leak)."""
    from engine.triage.view import facts_of

    say = on_progress or (lambda _phase, _done: None)
    cancel = cancel or threading.Event()
    va, vb = train.vectors(), test.vectors()
    ua, sa = unit_codes(va)
    ub, sb = unit_codes(vb)
    if not len(ua) or not len(ub):
        return []
    if ua.shape[1] != ub.shape[1]:
        raise ValueError("the two indexes hold codes of different sizes")
    fa, paths_a = facts_of(train, sa)
    fb, paths_b = facts_of(test, sb)
    na, nb = len(sa), len(sb)
    lefts, rights, ranks = _candidates(ua, ub, say, cancel)
    digests = list(fa.digests) + list(fb.digests)
    same = _same_bytes(digests, paths_a, na)
    # pictures whose stored path leads out of their folder through a link are left out
    allowed = np.array(train.openable(paths_a) + test.openable(paths_b), bool)
    if not allowed.all():
        keep = allowed[lefts] & allowed[rights]
        lefts, rights, ranks = lefts[keep], rights[keep], ranks[keep]
        same = {j: i for j, i in same.items() if allowed[na + j] and allowed[i]}
    stored = list(fa.thumbs) + list(fb.thumbs)
    sides = np.sqrt(np.maximum(np.concatenate([fa.pixels, fb.pixels]), 0)).astype(np.int64)
    more = _tiny_candidates(stored, sides, allowed, na, lefts * (na + nb) + rights, say, cancel)
    lefts, rights = np.concatenate([lefts, more[0]]), np.concatenate([rights, more[1]])
    ranks = np.concatenate([ranks, np.full(len(more[0]), tiny.RANK)])
    pairs = copies.Pairs(lefts, rights, ranks)
    pairs.similarity = _cross_similarity(va, sa, vb, sb, pairs.left, pairs.right - na)
    needed = np.zeros(na + nb, bool)
    needed[pairs.left] = needed[pairs.right] = True
    opener = Opener([train.root] * na + [test.root] * nb, paths_a + paths_b, allowed)
    thumbs = thumbnails(opener, stored, needed)
    measure_pixels(pairs, thumbs, np.arange(len(pairs)))
    keyed = paths_a + [TEST_MARK + p for p in paths_b]
    verify(
        pairs,
        copies.flatness(thumbs),
        sides,
        opener,
        Cache(train.store, keyed, digests),
        train.settings.decode_workers,
        lambda _phase, done: say("leaks: checking", done),
        cancel,
        one_sided=na,
    )
    best: dict[int, Leak] = {}
    for j, i in same.items():
        best[j] = Leak(paths_a[i], paths_b[j], 1.0, True, "identical bytes")
    for p in np.flatnonzero(pairs.copy):
        i, j = int(pairs.left[p]), int(pairs.right[p]) - na
        leak = Leak(paths_a[i], paths_b[j], float(pairs.similarity[p]), False, pairs.why[p])
        if j not in best or (not best[j].identical and leak.score > best[j].score):
            best[j] = leak
    found = [x for x in best.values() if (x.path, x.other) not in rejected]
    return sorted(found, key=lambda x: (x.other, x.path))


def _tiny_candidates(stored, sides, allowed, na: int, have: np.ndarray, say, cancel):
    """Each tiny TEST picture's nearest TRAIN pictures by aligned thumbnail
    (:mod:`engine.triage.tiny`), but the pairs *have* (packed left * n + right):
    (TRAIN rows, TEST rows)."""
    n = len(stored)
    training = np.arange(n) < na
    lo, hi = tiny.pairs(stored, sides, allowed, say, cancel, first_new=na, among=training)
    new = ~np.isin(lo * n + hi, have)
    return lo[new], hi[new]


def _cross_similarity(va, sa, vb, sb, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Visual similarity of TRAIN row *rows_a[i]* and TEST row *rows_b[i]*: each side's
    centred unit features, read once per picture involved."""
    if not len(rows_a):
        return np.zeros(0, np.float32)
    ia, ib = np.unique(rows_a), np.unique(rows_b)
    fa = feature_units_rows(va, sa, ia, np.float16)
    fb = feature_units_rows(vb, sb, ib, np.float16)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError("the two indexes hold features of different sizes")
    return row_dots(fa, np.searchsorted(ia, rows_a), fb, np.searchsorted(ib, rows_b))


def leaks_against(
    search: ImageSimilaritySearch,
    folder: str,
    store: str | None = None,
    update: Callable | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
    rejected: Set[tuple[str, str]] | None = None,
) -> tuple[list[Leak], list[str]]:
    """The leaks of TEST (*folder*, its index at *store*) into *search*'s folder, and the
    pictures of TEST marked to set aside: what the command line and a session both ask.
    *update(test)* brings TEST's index up to date first (None: compared as it is);
    *rejected*: pairs marked not a leak (None: those remembered in *search*'s index)."""
    if rejected is None:
        chosen = search.store.choices("not-leak").items()
        rejected = {(p, os.fsdecode(v)) for p, v in chosen}
    with open_against(search, folder, store) as test:
        if update is not None:
            update(test)
        marks = list(test.store.choices("mark"))
        return find_leaks(search, test, on_progress, cancel, rejected), marks
