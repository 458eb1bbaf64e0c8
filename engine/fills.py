"""A tilted copy's filled corners, told from everything else and painted over.

An editor that turns a picture by a few degrees grows its frame and fills the four new
corners in one colour (black, most often). Trimmed, such a copy keeps its corners where
its original, a drawing on white, is trimmed to the drawing: the small-size looks of
:mod:`engine.aligned` then compare two different framings (0.08-0.92 for copies that
are the same drawing). :func:`unfilled` finds the fill by its shape and paints it over.
"""

from __future__ import annotations

import numpy as np

#: The thinnest a tilt's filled corner may be (short leg over long: the tangent of the
#: angle; 0.25 is 14 degrees).
FILL_SLOPE = 0.25


def unfilled(grey: np.ndarray, tol: float) -> np.ndarray:
    """*grey* with the corners a tilt filled (a copy turned a few degrees in an editor,
    its frame grown and the four corners filled in one colour, black most often)
    painted in the colour just past them, so that the copy trims to the drawing as a
    copy tilted on its background colour does. A fill is four right triangles, one per
    corner, of one colour that is not most of the picture, each as large as the one
    opposite it (a turn about the centre), long and thin (:data:`FILL_SLOPE`), with the
    picture's edge between them (the grown frame may add up to two rows or columns of
    fill beyond); pixels within *tol* of the corners' colour are fill. A uniform
    background, a frame, a round drawing's corners or a vignette is none of that and
    stays as it is.
    Measured on the 14 copies of the small benchmark sets at travelled strengths tilted
    4-7 degrees with black corners: the better of the first and tilted looks 0.08-0.92
    before; after, 12 of them 0.80-0.99 (the two also cut 16-18 % off one side, which
    breaks the symmetry, 0.19 and 0.73); pair recall +0.006 to +0.024 on those sets, no
    other row moved, and no picture of the tuning and mild sets painted but such a
    copy."""
    h, w = grey.shape
    if h < 12 or w < 12:
        return grey
    corners = sorted(float(v) for v in (grey[0, 0], grey[0, -1], grey[-1, 0], grey[-1, -1]))
    colour = (corners[1] + corners[2]) / 2
    if corners[3] - colour > tol or colour - corners[0] > tol:
        return grey
    near = np.abs(grey - colour) <= tol
    if near[:3].all() or near[-3:].all() or near[:, :3].all() or near[:, -3:].all():
        return grey  # an edge all of that colour: a background or a frame, not a fill
    if near.mean() >= 0.5:  # the picture's own colour
        return grey
    rows, cols = np.asarray(near.all(axis=1)), np.asarray(near.all(axis=0))
    top, left = _lead(rows, 2), _lead(cols, 2)
    bottom, right = h - _lead(rows[::-1], 2), w - _lead(cols[::-1], 2)
    inner = near[top:bottom, left:right]
    legs = _corner_legs(inner)
    if legs is None or min(min(leg) for leg in legs) < 1:
        return grey
    (a0, b0), (a1, b1), (a2, b2), (a3, b3) = legs
    if max(abs(a0 - a3), abs(b0 - b3), abs(a1 - a2), abs(b1 - b2)) > max(2, 0.2 * max(h, w)):
        return grey  # not a turn about the centre
    # a turn by a few degrees: each triangle long and thin (its legs a side of the
    # picture times the cosine and the sine of the angle), the long leg of one corner
    # along the rows where the next corner's is along the columns
    thin = [i for i in range(4) if max(legs[i]) >= 3]
    if len(thin) < 2 or any(min(legs[i]) > FILL_SLOPE * max(legs[i]) for i in thin):
        return grey
    long_rows = {i: legs[i][0] > legs[i][1] for i in thin}
    adjacent = ((0, 1), (2, 3), (0, 2), (1, 3))
    if any(long_rows[i] == long_rows[j] for i, j in adjacent if i in long_rows and j in long_rows):
        return grey
    ih, iw = inner.shape
    y, x = np.mgrid[0:ih, 0:iw].astype(np.float32)
    # each corner's triangle: its core all fill; painted over a pixel beyond its legs
    # (resampling blends the long edge with the picture)
    core = np.zeros((ih, iw), bool)
    tri = np.zeros((ih, iw), bool)
    beyond = np.zeros((ih, iw), bool)  # the band just past the long edge: what was turned
    for (a, b), ys, xs in zip(legs, (y, y, ih - 1 - y, ih - 1 - y), (x, iw - 1 - x, x, iw - 1 - x)):
        core |= xs / a + ys / b < 0.75
        tri |= xs / (a + 1) + ys / (b + 1) < 1
        beyond |= xs / (a + 3) + ys / (b + 3) < 1
    beyond &= ~tri
    if not beyond.any() or not core.any() or inner[core].mean() < 0.9:
        return grey
    mask = np.ones((h, w), bool)
    mask[top:bottom, left:right] = tri
    out = grey.copy()
    out[mask] = float(np.median(grey[top:bottom, left:right][beyond]))
    return out


def _corner_legs(near: np.ndarray) -> list[tuple[int, int]] | None:
    """The legs (along the rows, along the columns) of the run of *near* pixels from each
    corner (top left, top right, bottom left, bottom right), or None where a run spans
    its edge or meets the run from the next corner (a uniform background, not a fill)."""
    h, w = near.shape
    legs = [
        (_lead(near[0], w), _lead(near[:, 0], h)),
        (_lead(near[0, ::-1], w), _lead(near[:, -1], h)),
        (_lead(near[-1], w), _lead(near[::-1, 0], h)),
        (_lead(near[-1, ::-1], w), _lead(near[::-1, -1], h)),
    ]
    (a0, b0), (a1, b1), (a2, b2), (a3, b3) = legs
    if a0 + a1 >= w or a2 + a3 >= w or b0 + b2 >= h or b1 + b3 >= h:
        return None
    return legs


def _lead(flags: np.ndarray, most: int) -> int:
    """How many of *flags* lead in a row, at most *most*."""
    return min(int(np.argmin(flags)) if not flags.all() else len(flags), most)
