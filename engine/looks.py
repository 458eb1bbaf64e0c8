"""The looks after the first at pairs of small pictures, each for the pairs it can help.

The first look (:func:`engine.aligned.small_scores`: both pictures trimmed, one cropped a
few ways, the other whole) suits copies shrunk, re-encoded or cropped evenly. Edits that
move the frame otherwise get a look of their own, each pair keeping its best score:

* **peeled** (:func:`engine.aligned.peeled`): a copy framed in a colour around a drawing
  on white, compared with the frame and the margin inside it taken off;
* **tilted** (:data:`engine.aligned.TILTS`): a copy turned a few degrees;
* **cut side by side** (:data:`engine.aligned.SIDE_CROPS`): a crop all round of a drawing
  on white, which cuts into the drawing on some sides and into the margin on others;
* **crops alike on both** (:mod:`engine.alike`): a caption or a mark over one side.

A look that gives a pair more chances gives a look-alike more too, and each picture's
look-alikes set the margin a copy must stand out by (:func:`engine.copies.decide`): the
looks that many pairs get (peeled, tilted, alike) are given to every pair in their range,
look-alikes included, so the margins move with them; the dearest and most permissive
(81 crops) only to pairs that stand out already, so that it cannot lift look-alikes into
the margin of a copy. Given to every pair in range instead it cost pair recall on the
clip-art tuning set (0.987 -> 0.975) and added a pair across Fashion-MNIST's classes.

What the peeled and side-cut looks cost (2 cores): a first triage of Fashion-MNIST's
70,000 took 74.5-75.3 s against 71.2-73.5 s without them (alternated runs): 18 us a
picture to peel its trim, 0.24 s for the 435 pairs that get the side-cut look.
"""

from __future__ import annotations

import numpy as np

from engine import aligned, alike, copies


def more_looks(
    pairs: copies.Pairs,
    todo: np.ndarray,
    pictures: dict[int, np.ndarray | None],
    trims: dict[int, np.ndarray],
    boxes: dict[int, tuple[int, int, int, int]],
) -> None:
    """Raise ``pairs.small`` of the pairs *todo* (scored by the first look, with the
    pictures decoded in *pictures* and trimmed in *trims* to *boxes*) to the best of
    the other looks each is given."""
    _peeled(pairs, todo, pictures, trims, boxes)
    # the looks' pairs by their first look, the margins' room measured once
    framed = copies.worth_a_look(pairs, todo, 1.0, -1.0)
    first = pairs.small[framed]
    again = framed[(first >= copies.TILT_FROM) & (first < copies.ALIGNED_SMALL)]
    closer = framed[first >= copies.TILT_FROM]
    whole = {r: p for r in trims if (p := pictures[r]) is not None}  # the trimmed, untrimmed
    if len(again):
        tilted = aligned.small_scores(
            pictures, pairs.left[again], pairs.right[again], pairs.transform[again], True, trims
        )
        pairs.small[again] = np.maximum(pairs.small[again], tilted)
        out = standing_out(pairs, again)
        cut = aligned.small_scores(
            pictures,
            pairs.left[out],
            pairs.right[out],
            pairs.transform[out],
            trims=trims,
            block=256,
            crops=aligned.SIDE_CROPS,
        )
        # adopted where cutting unevenly explains the pair clearly better than evenly
        better = cut >= pairs.small[out] + aligned.SIDE_GAIN
        pairs.small[out[better]] = cut[better]
    if len(closer):
        scores = alike.alike_crop_scores(
            trims, pairs.left[closer], pairs.right[closer], pairs.transform[closer]
        )
        pairs.small[closer] = np.maximum(pairs.small[closer], scores)
        # where the trim took more off one than off the other (JPEG's noise or a crop
        # moves a near-uniform edge in or out of the tolerance), as they are too
        unsure = closer[alike.trimmed_apart(whole, trims, pairs.left[closer], pairs.right[closer])]
        scores = alike.alike_crop_scores(
            whole, pairs.left[unsure], pairs.right[unsure], pairs.transform[unsure]
        )
        pairs.small[unsure] = np.maximum(pairs.small[unsure], scores)
    # a caption across a copy of a drawing on a background keeps the copy's margins from
    # being trimmed: whatever their first look, compared again within the other's box
    if len(framed):
        framed_scores = alike.under_a_bar(
            whole, trims, pairs.left[framed], pairs.right[framed], pairs.transform[framed]
        )
        pairs.small[framed] = np.maximum(pairs.small[framed], framed_scores)


def _peeled(pairs: copies.Pairs, todo: np.ndarray, pictures, trims, boxes) -> None:
    """The pairs of *todo* with a picture whose trim peels further, compared peeled too
    (both pictures peeled where they peel)."""
    deeper = {}
    for r, t in trims.items():
        if (d := aligned.peeled(t, pictures[r].shape, boxes[r])) is not None:
            deeper[r] = d
    if not deeper:
        return
    rows = np.fromiter(deeper, np.int64)
    sel = todo[np.isin(pairs.left[todo], rows) | np.isin(pairs.right[todo], rows)]
    layered = {**trims, **deeper}
    scores = aligned.small_scores(
        pictures, pairs.left[sel], pairs.right[sel], pairs.transform[sel], trims=layered
    )
    pairs.small[sel] = np.maximum(pairs.small[sel], scores)


def standing_out(pairs: copies.Pairs, among: np.ndarray) -> np.ndarray:
    """Which of the pairs *among* (indices) stand out from their pictures' look-alikes
    at the small look by ALIGNED_GAP already."""
    n = int(max(pairs.left.max(), pairs.right.max())) + 1 if len(pairs) else 0
    usual = copies.typical(pairs, n, pairs.small)
    most = np.maximum(usual[pairs.left[among]], usual[pairs.right[among]])
    return among[pairs.small[among] - most >= copies.ALIGNED_GAP]
