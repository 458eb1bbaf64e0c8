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


def room(shape: tuple[int, ...], box: tuple[int, int, int, int], most: float = MOST):
    """What the cap (*most* of each side of a picture of *shape*) leaves to peel on each
    side (top, bottom, left, right) of its trim *box*: the trim and the peel share it."""
    h, w = shape[:2]
    top, bottom, left, right = box
    cap_h, cap_w = math.ceil(h * most), math.ceil(w * most)
    return (cap_h - top, cap_h - (h - bottom), cap_w - left, cap_w - (w - right))


def peel_box(grey: np.ndarray, tol: float, left_to_peel=None) -> tuple[int, int, int, int]:
    """The box (top, bottom, left, right) left of *grey* after taking off, side by side
    and again up to :data:`LAYERS` times, each run of rows or columns that lie within
    *tol* of the colour of the side's outermost line, where that line is uniform; at
    most *left_to_peel* rows or columns off each side (see :func:`room`; None: the cap
    of *grey* itself)."""
    h, w = grey.shape
    box = [0, h, 0, w]
    if h < 8 or w < 8:
        return 0, h, 0, w
    cap = room((h, w), (0, h, 0, w)) if left_to_peel is None else left_to_peel
    for _ in range(LAYERS):
        moved = False
        for side in range(4):
            top, bottom, left, right = box
            inside = grey[top:bottom, left:right]
            lines = (inside, inside[::-1], inside.T, inside.T[::-1])[side]
            edge = lines[0]
            if float(edge.max()) - float(edge.min()) > 2 * tol:  # most pictures: at once
                continue
            ref = float(np.median(edge))
            taken = (top, h - bottom, left, w - right)[side]
            most_run = min(cap[side] - taken, len(lines) - LEAST)
            near: np.ndarray = np.asarray((np.abs(lines[:most_run] - ref) <= tol).all(axis=1))
            if not len(near) or not near[0]:
                continue
            run = int(np.argmin(near)) if not near.all() else len(near)
            box[side] += run if side in (0, 2) else -run
            moved = True
        if not moved:
            break
    return box[0], box[1], box[2], box[3]


def peeled(trimmed: np.ndarray, left_to_peel, tol: float) -> np.ndarray | None:
    """A trimmed picture peeled further (:func:`peel_box`, within *left_to_peel*: the
    cap its trim left, :func:`room`), or None where nothing more comes off. Peeling on
    from the trim, not the picture from its edges again, costs a fifth (18 against
    121 us a picture of Fashion-MNIST)."""
    top, bottom, left, right = peel_box(trimmed, tol, left_to_peel)
    if (top, bottom, left, right) == (0, trimmed.shape[0], 0, trimmed.shape[1]):
        return None
    return trimmed[top:bottom, left:right]
