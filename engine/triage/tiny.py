"""Candidates by pixels for tiny pictures: the pictures nearest by thumbnail, beside the
nearest by code.

**Why.** The candidate graph pairs each picture with its nearest by CNN code. A copy
shrunk to 6-16 px is a blur to the CNN (enlarged to its input size): among the held-out
travelled clip-art of 24-64 px, 14 copies of that size were never among their
original's 10 nearest (code cosine -0.02 to 0.25, rank 10 to 261), while their 16 x 16
thumbnails, aligned under the eight turns and mirrors, put the original among the first
three for most. So each tiny picture also gets its :data:`PER_PICTURE` nearest by that
measure (the one :func:`engine.copies.pixel_scores` gives a pair) as candidates; the
copy rule then decides them as any other pair, margin included. Measured on the small
sets (24-64 px originals): held-out travelled clip-art 0.980 / 0.796 -> 0.997 / 0.823
pair precision / recall, unseen categories travelled 0.874 / 0.850 -> 0.882 / 0.858
(with the margin of :data:`engine.copies.FINE_GAP`); Fashion-MNIST (28 px) has no tiny
picture. 2 or 5 a picture instead of 3 did worse on most rows.

**Tiny** is a side (the square root of the pixel count) of :data:`TINY` or less:
with pictures up to 32 px on their long side taken in, the held-out travelled recall
fell back (0.823 -> 0.801): more look-alikes among a picture's candidates raise the
margin a copy must clear.

**Bounded.** Each tiny picture is compared with every picture (eight products of 256
numbers a pair): at most :data:`BUDGET` tiny pictures x pictures, the smallest tiny
pictures first, and none past :data:`engine.triage.selfjoin.EXACT_MAX` pictures
(the thumbnails of all would not fit beside the codes).
"""

from __future__ import annotations

import numpy as np

from engine import copies
from engine.triage.exact_join import rows_top_k

TINY = copies.TINY  # a side of 20 px or less, the square root of the pixel count
#: Candidates by thumbnail per tiny picture.
PER_PICTURE = 3
#: At most this many (tiny picture, picture) comparisons in a refresh: 4.4-4.8 s on 2
#: cores (every picture of 10,000 tiny ones; 833 tiny ones among 120,000), against 16.5 s
#: for the rest of a first triage of 10,000 pictures of 16 px.
BUDGET = 100_000_000
#: The rank a pair found only by its thumbnails carries in the graph (code candidates
#: rank 0 to CANDIDATES - 1): kept however far apart the codes are, compared pixel by
#: pixel at the smaller one's size (:func:`engine.copies.needs_fine`) whatever its
#: thumbnails say: in a leak search that is the only verdict a small pair can have.
RANK = copies.BY_THUMBNAIL


def pairs(
    stored: list[bytes | None],
    sides: np.ndarray,
    usable: np.ndarray,
    say,
    cancel,
    first_new: int = 0,
    have: copies.Pairs | None = None,
    among: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The tiny pictures' nearest by thumbnail: pairs of rows (left < right), each
    once. *stored*: each row's thumbnail as the index keeps it (None: never paired),
    decoded only where a row is tiny; *sides* each row's side; *usable* rows that may be
    paired (in the index, openable); *among*: the rows a tiny one may be paired with
    (None: the usable ones; a leak search: the training rows). Rows from *first_new* on
    are new: each new tiny row is compared with every row; an older tiny row, given the
    pairs the rows *have*, only with the new rows, a new row joining it where it scores
    above the row's PER_PICTURE-th best among them: what a refresh adds, nothing
    measured again."""
    from engine.triage.selfjoin import EXACT_MAX
    from engine.triage.verify import thumbnails

    n = len(stored)
    none = np.zeros(0, np.int64)
    if not (usable & (sides <= TINY)).any() or n > EXACT_MAX:
        return none, none  # no thumbnail decoded (100,000 take a tenth of a second)
    thumbs = thumbnails(None, stored, np.zeros(n, bool))  # one not stored: blank
    usable = usable & (copies.flatness(thumbs) >= copies.FLAT)  # blank: correlates noise
    tiny = usable & (sides <= TINY)
    units = copies._unit(thumbs)
    paired = usable if among is None else usable & among  # who a tiny row may be paired with
    new = np.flatnonzero(paired[first_new:]) + first_new
    ask = _smallest(np.flatnonzero(tiny[first_new:]) + first_new, sides, n)
    old = _smallest(np.flatnonzero(tiny[:first_new]), sides, len(new))
    asked, old_units = copies._dihedral(units[ask]), units[old]  # each asks as it is
    units[~paired] = 0.0
    say("tiny pictures: their nearest by pixels", 0.0)
    rows, others, _score = rows_top_k(units, ask, PER_PICTURE, None, say, cancel, asked)
    if len(old) and len(new) and have is not None:
        known = copies.typical(have, n, rank=PER_PICTURE - 1)
        more = _beating(units, old, old_units, new, known[old])
        rows, others = np.concatenate([rows, more[0]]), np.concatenate([others, more[1]])
    keep = paired[others]
    lo = np.minimum(rows[keep], others[keep])
    hi = np.maximum(rows[keep], others[keep])
    packed = np.unique(lo * n + hi)
    return packed // n, packed % n


def _smallest(rows: np.ndarray, sides: np.ndarray, against: int) -> np.ndarray:
    """The smallest of *rows* that the budget allows, each compared with *against*."""
    return rows[np.argsort(sides[rows], kind="stable")][: max(1, BUDGET // max(1, against))]


def _beating(units, old: np.ndarray, old_units, new: np.ndarray, bar: np.ndarray):
    """Of the *new* rows, each *old* row's PER_PICTURE best that score above its *bar*
    (*old_units*: the old rows' unit thumbnails)."""
    out_r, out_c = [], []
    step = 256  # 8 turns x 256 rows x 16,384 columns of float32 at most: 128 MB
    for lo in range(0, len(old), step):
        rows = old[lo : lo + step]
        turned = copies._dihedral(old_units[lo : lo + step]).reshape(-1, units.shape[1])
        for j in range(0, len(new), 16_384):
            cols = new[j : j + 16_384]
            s = turned @ units[cols].T
            s = s.reshape(len(rows), 8, -1).max(axis=1)
            k = min(PER_PICTURE, s.shape[1])
            best = np.argpartition(-s, k - 1, axis=1)[:, :k]
            r, q = np.nonzero(np.take_along_axis(s, best, 1) > bar[lo : lo + step, None])
            out_r.append(rows[r])
            out_c.append(cols[best[r, q]])
    return np.concatenate(out_r), np.concatenate(out_c)
