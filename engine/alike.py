"""The third look at pairs of small pictures: the same crop cut from both.

A caption bar, a watermark strip or a mark along one side covers part of a copy. The
first look (:func:`engine.aligned.small_scores`) crops one picture and compares it with
the other whole, which suits a copy cropped or framed but not one covered: the
original keeps the covered part. Cutting the same share off the same side of both
leaves what they share. Which pairs get the look: :func:`engine.copies.worth_a_look`;
the settings and how they were chosen: :data:`engine.aligned.ALIKE_CROPS`. What it
costs (2 cores): Fashion-MNIST's 10,000 test pictures give 17,563 such pairs, 0.8 s;
its 70,000, 4.9 s of a first triage of 87 s.
"""

from __future__ import annotations

import math

import numpy as np

from engine.aligned import (
    ALIKE_CROPS,
    APART,
    SAME_FRAME,
    TRIMMED,
    UNTRIMMED,
    _undo,
    _views,
    trim_box,
)
from engine.copies import turned


def alike_crop_scores(
    trims: dict[int, np.ndarray],
    left: np.ndarray,
    right: np.ndarray,
    transforms: np.ndarray,
    block: int = 1024,
) -> np.ndarray:
    """For pairs of pictures (rows of *trims*: as :func:`engine.aligned._trimmed` makes them
    or as they are; missing: -1), the best correlation over the same crop of
    :data:`ALIKE_CROPS` taken from both, the right one as it is and under the pair's
    transform. The third look: a caption bar or a mark over one side covers part of a
    copy, and a crop of the copy alone then leaves the original whole, the covered part
    included (a 7 % caption took copies of 20-60 px to 0.70-0.90 at the first look,
    about 0.93-1.0 here). Made a block of pairs at a time, each (picture, turn) once in
    a block."""
    out = np.full(len(left), -1.0, np.float32)
    have = np.array(sorted(trims), np.int64)
    ok = np.flatnonzero(np.isin(left, have) & np.isin(right, have))
    for lo in range(0, len(ok), block):
        at = ok[lo : lo + block]
        # each (picture, turn) once: as a key picture * 8 + turn
        a_keys = left[at].astype(np.int64) * 8
        b_keys = right[at].astype(np.int64) * 8
        turned_keys = b_keys + transforms[at].astype(np.int64)
        keys = np.unique(np.concatenate([a_keys, b_keys, turned_keys]))
        views = _views([turned(trims[k >> 3], k & 7) for k in keys.tolist()], ALIKE_CROPS)
        a = views[np.searchsorted(keys, a_keys)]  # (m, K, d)
        for other in (b_keys, turned_keys):
            b = views[np.searchsorted(keys, other)]
            out[at] = np.maximum(out[at], np.einsum("pkd,pkd->pk", a, b).max(axis=1))
    return out


def trimmed_apart(
    frames: dict[int, np.ndarray],
    trims: dict[int, np.ndarray],
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """Which pairs' trims (*trims*, of the pictures *frames*) kept shares of their
    pictures' areas APART or more apart, one of them UNTRIMMED or more: JPEG's noise,
    a brightening or a crop moves a near-uniform edge (a sky, a wall) in or out of the
    trim's tolerance in one of them, and their views then frame other parts. Such
    pairs are also compared alike as they are. Not pairs both trimmed: margins matched
    make look-alike products on black more alike (a bag and a shirt of Fashion-MNIST:
    0.86)."""
    share = {r: trims[r].size / p.size for r, p in frames.items()}
    sa = np.array([share.get(r, np.nan) for r in left.tolist()])
    sb = np.array([share.get(r, np.nan) for r in right.tolist()])
    with np.errstate(invalid="ignore"):
        return (np.fmax(sa, sb) >= UNTRIMMED) & (np.abs(sa - sb) >= APART)


def under_a_bar(
    frames: dict[int, np.ndarray],
    trims: dict[int, np.ndarray],
    left: np.ndarray,
    right: np.ndarray,
    transforms: np.ndarray,
) -> np.ndarray:
    """For pairs of :func:`fine_picture` arrays (*frames*, trimmed in *trims*), the
    crops-alike score
    (:func:`alike_crop_scores`) of one picture's trimmed box against the same box of
    the other, which its trim left whole (-1 where not such a pair). A caption bar
    across a copy of a drawing on a background spans the frame and stops the trim, so
    the copy keeps margins the original loses. Such a pair: one picture's trim kept
    UNTRIMMED or more of its rows or of its columns, the other's at most TRIMMED of
    both, and their frames of one shape (a caption is laid over the picture's own
    frame), as they are or under the pair's transform. The other picture is cut to the
    trimmed one's box rather than compared with its margins: margins matched made
    look-alike drawings on white 0.88 alike."""
    out = np.full(len(left), -1.0, np.float32)
    # each picture's larger share of its rows or columns that its trim kept; 0 for one
    # not read
    kept = {r: max(trims[r].shape[0] / p.shape[0], trims[r].shape[1] / p.shape[1])
            for r, p in frames.items()}  # fmt: skip
    ka = np.array([kept.get(r, 0.0) for r in left.tolist()])
    kb = np.array([kept.get(r, 0.0) for r in right.tolist()])
    maybe = np.flatnonzero(
        (np.maximum(ka, kb) >= UNTRIMMED) & (np.minimum(ka, kb) <= TRIMMED) & (ka * kb > 0)
    )
    views: dict[int, np.ndarray] = {}
    pos: list[int] = []
    for i in maybe.tolist():
        a, b, t = int(left[i]), int(right[i]), int(transforms[i])
        # the trimmed one's box, and the whole one brought into its frame (the right
        # one under the transform, or the left one under its undoing)
        trimmed, whole = (a, b) if ka[i] <= kb[i] else (b, a)
        inner, other = trims[trimmed], frames[whole]
        _bare, (top, bottom, lft, rgt) = trim_box(frames[trimmed])  # as it was trimmed
        h, w = frames[trimmed].shape
        for turn in {0, t}:
            x = turned(other, turn if whole == b else int(_undo(np.array([turn]))[0]))
            if abs(math.log((w / h) / (x.shape[1] / x.shape[0]))) > SAME_FRAME:
                continue
            sy, sx = x.shape[0] / h, x.shape[1] / w
            cut = x[round(top * sy) : round(bottom * sy), round(lft * sx) : round(rgt * sx)]
            if min(cut.shape) >= 4:
                views[len(views)] = inner
                views[len(views)] = np.asarray(cut, np.float32)
                pos.append(i)
    if pos:
        firsts = np.arange(0, len(views), 2)
        got = alike_crop_scores(views, firsts, firsts + 1, np.zeros(len(pos), np.int64))
        np.maximum.at(out, np.array(pos), got)
    return out
