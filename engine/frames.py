"""A frame added around a copy, peeled off layer by layer.

A copy framed in a colour (a border all round, or bars top and bottom) around a drawing
on white trims (:func:`engine.aligned.trim_box`) to the frame's inside, white margins
and all, where its original trims to the drawing: the small-size looks then compare two
framings of one picture (0.50-0.70 for copies framed by 8-14 %). :func:`peeled` takes
off one uniform band after another, each side in its own colour, so that the copy comes
down to the drawing as its original does. It is a second framing, compared beside the
trim, never instead of it: a picture whose own design is bands (a flag in a frame of one
colour) peels to a depth that JPEG's noise on its copy's edge changes, and the trim
keeps such pairs as they were.
"""

from __future__ import annotations

import math

import numpy as np

#: At most this share of each side is peeled, all layers together (the trim's own cap).
MOST = 0.3
#: Layers taken off each side at most (a frame, the margin inside it, and one more).
LAYERS = 3
#: A picture comes down to no less than this many pixels on a side.
LEAST = 4


def peel_box(grey: np.ndarray, tol: float, most: float = MOST) -> tuple[int, int, int, int]:
    """The box (top, bottom, left, right) left of *grey* after taking off, side by side
    and again up to :data:`LAYERS` times, each run of rows or columns that lie within
    *tol* of the colour of the side's outermost line, where that line is uniform."""
    h, w = grey.shape
    box = [0, h, 0, w]
    if h < 8 or w < 8:
        return 0, h, 0, w
    cap = (math.ceil(h * most), math.ceil(h * most), math.ceil(w * most), math.ceil(w * most))
    for _ in range(LAYERS):
        moved = False
        for side in range(4):
            top, bottom, left, right = box
            inside = grey[top:bottom, left:right]
            lines = (inside, inside[::-1], inside.T, inside.T[::-1])[side]
            ref = float(np.median(lines[0]))
            near: np.ndarray = np.asarray((np.abs(lines - ref) <= tol).all(axis=1))
            if not near[0]:
                continue
            run = int(np.argmin(near)) if not near.all() else len(near)
            taken = (top, h - bottom, left, w - right)[side]
            length = bottom - top if side < 2 else right - left
            run = min(run, cap[side] - taken, length - LEAST)
            if run <= 0:
                continue
            box[side] += run if side in (0, 2) else -run
            moved = True
        if not moved:
            break
    return box[0], box[1], box[2], box[3]


def peeled(bare: np.ndarray, box: tuple[int, int, int, int], tol: float) -> np.ndarray | None:
    """*bare* (a picture as :func:`engine.aligned.trim_box` paints it) peeled
    (:func:`peel_box`), or None where that leaves the same as its trim *box*."""
    peel = peel_box(bare, tol)
    if peel == tuple(box):
        return None
    top, bottom, left, right = peel
    return bare[top:bottom, left:right]
