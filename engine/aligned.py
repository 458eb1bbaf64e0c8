"""Pixels of pictures too small for keypoints, compared three ways, and colour.

Icons, sprites, thumbnails and 28-32 px data sets have no keypoints worth matching, so
their copies are told by pixels (:mod:`engine.copies` decides on these scores):

* **at full size**: correlation at the smaller picture's size, as it is and under the
  turn or mirror that aligned the thumbnails (:func:`fine_score`): re-encoded and
  enlarged copies in a catalogue of look-alike products;
* **aligned at a small size** (:func:`small_scores`): both pictures trimmed, averaged down
  to SMALL_SIZE square and blurred, the best correlation over a few crops of either: a
  crop, a shrink to 20 px or JPEG moves the 16 x 16 thumbnails but not these;
  pairs that score some get a second look tilted and a third with the same crop cut
  from both (a caption covers part of a copy: :mod:`engine.alike`);
* **colour** (:func:`colour_distance`): greyscale pixels merge a flag with the same
  flag in other colours; chroma per cell does not.

Scores are cached in the index under :data:`MEASURED`: change how they are measured and
they are measured again.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from functools import lru_cache

import numpy as np
from PIL import Image

from engine import frames
from engine.copies import TILT_FROM, _unit, grey_copy, painted_box, turned
from engine.fills import FILL_SLOPE

#: Pictures are decoded at most FINE_SIDE on their long side.
FINE_SIDE = 64
#: The small-size comparison: SMALL_SIZE x SMALL_SIZE greyscale, borders trimmed (at
#: SMALL_TRIM of 255), blurred by SMALL_BLUR pixels, the best correlation over
#: SMALL_CROPS of either picture (shares cut from the top, bottom, left and right) and
#: the turn or mirror that aligned the thumbnails. Chosen on small clip-art at the
#: tuning strengths with Fashion-MNIST's test pictures as the look-alikes to leave
#: alone: 24 px against 16 and 32, blur 0.5 against 0-1.3, twelve crops against five
#: and seven, trim at 12 against 24 and 32 (each measured the same way). Then crops of
#: 16 % all round and 18 % off one side, for crops at the travelled strengths (8-15 %
#: all round, 10-20 % off one side): pair recall 0.771 -> 0.814 on those clip-art
#: copies; a finer grid (every 3 % to 18 %) and crops along one axis only added no
#: recall or a pair across Fashion-MNIST's classes.
SMALL_SIZE = 24
SMALL_BLUR = 0.5
SMALL_TRIM = 12
SMALL_CROPS = (
    (0.0, 0.0, 0.0, 0.0),
    *((s, s, s, s) for s in (0.04, 0.08, 0.12, 0.16)),
    *(
        tuple(s if k == side else 0.0 for k in range(4))
        for s in (0.06, 0.12, 0.18)
        for side in range(4)
    ),
)
#: The fourth look: the pairs given a second (tilted) look are also compared over
#: SIDE_CROPS, every side cut by its own share of SIDE_LEVELS: a crop all round of a
#: drawing on white cuts into the drawing on some sides and only into the margin on
#: others, so its trim is the original's cut unevenly.
SIDE_LEVELS = (0.0, 0.06, 0.12)
SIDE_CROPS = tuple(itertools.product(SIDE_LEVELS, repeat=4))
SIDE_GAIN = 0.05
#: The third look (:func:`engine.alike.alike_crop_scores`) cuts the same share off the
#: same side of both pictures: at most a caption's worth, ALIKE_CROPS. Cutting more off
#: both, or all round, cut away what tells look-alike products apart (a dress from
#: trousers of Fashion-MNIST became a copy). Pairs whose trims kept shares of their
#: areas APART or more apart, one UNTRIMMED or more, are also compared so as they are
#: (:func:`engine.alike.trimmed_apart`); a pair of a picture whose trim kept UNTRIMMED
#: or more of its rows or of its columns and one whose trim kept at most TRIMMED of
#: both, with frames of one shape (the logarithms of their aspect ratios within
#: SAME_FRAME), within the trimmed one's box (:func:`engine.alike.under_a_bar`). Chosen
#: on small clip-art and icons at the tuning strengths with Fashion-MNIST's test
#: pictures as the look-alikes to leave alone: pair recall 0.962 -> 0.975 and 0.974 ->
#: 0.980, precision the same, no pair across classes.
ALIKE_CROPS = tuple(
    tuple(s if k == side else 0.0 for k in range(4)) for s in (0.06, 0.12) for side in range(4)
)
UNTRIMMED = 0.95
TRIMMED = 0.9
SAME_FRAME = 0.05
APART = 0.1
#: The second look (:func:`engine.copies.worth_a_look` says which pairs get one)
#: compares against the other picture tilted by each of TILTS degrees (see
#: :func:`_tilted`): a tilt of 4-7 degrees took copies of 20-50 px to 0.6-0.75 at the
#: first look. Chosen on the tuning sets: two angles did as well as four (-8, -4, 4, 8)
#: at half the cost.
TILTS = (-6.0, 6.0)
#: Colour: chroma (YCbCr's Cb and Cr) over a COLOUR_CELLS square grid of the trimmed
#: picture; a picture none of whose cells reaches CHROMA (of 255) has no colour to
#: compare, and only cells where either picture reaches it are compared (a drawing in
#: colour on white is mostly white cells, alike in any colours).
COLOUR_CELLS = 4
CHROMA = 10.0
#: What the small-size and colour scores are measured under: scores cached under other
#: settings (in the verdict cache, in the candidate graph) are not reused.
MEASURED = (
    "measured "
    + hashlib.blake2b(
        repr(
            (
                "colour over coloured cells",  # how, beyond the numbers
                SMALL_SIZE,
                SMALL_BLUR,
                SMALL_TRIM,
                SMALL_CROPS,
                TILTS,
                TILT_FROM,
                "crops alike on both",
                ALIKE_CROPS,
                UNTRIMMED,
                TRIMMED,
                SAME_FRAME,
                APART,
                "tilted on a background or within the frame",
                "filled corners painted over",
                FILL_SLOPE,
                "frames peeled beside the trim, colour too",
                SIDE_CROPS,
                SIDE_GAIN,
                frames.MOST,
                frames.LAYERS,
                frames.LEAST,
                COLOUR_CELLS,
                CHROMA,
                FINE_SIDE,
            )
        ).encode(),
        digest_size=6,
    ).hexdigest()
)


def fine_picture(im: Image.Image) -> np.ndarray:
    """A picture as greyscale float32 at most FINE_SIDE on its long side."""
    grey = im.convert("L")
    if max(grey.size) > FINE_SIDE:
        grey.thumbnail((FINE_SIDE, FINE_SIDE), Image.Resampling.BOX)
    return np.asarray(grey, np.float32)


def fine_score(a: np.ndarray, b: np.ndarray, transform: int) -> float:
    """Correlation of two :func:`fine_picture` arrays at the smaller one's size, *b* as
    it is and under *transform* (an index of :data:`TRANSFORMS`); the better one."""
    best = -1.0
    for t in {0, int(transform)}:
        x = turned(b, t)
        small, large = (a, x) if a.size <= x.size else (x, a)
        h, w = small.shape
        if abs(large.shape[1] / large.shape[0] - w / h) > 0.1 * w / h:
            continue  # not the same shape: no copy at full size
        if large.shape != small.shape:
            img = Image.fromarray(large)
            large = np.asarray(img.resize((w, h), Image.Resampling.BOX), np.float32)
        u, v = small - small.mean(), large - large.mean()
        denom = float(np.sqrt((u * u).sum() * (v * v).sum()))
        if denom > 1e-6:
            best = max(best, float((u * v).sum() / denom))
    return best


def fine_scores(a: np.ndarray, b: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """:func:`fine_score` for many pairs of pictures of one shape at once: *a* and *b*
    (n, h, w) float32, *transforms* (n,). The same numbers, without a Python loop per
    pair (Fashion-MNIST's 70,000 pictures make some 200,000 such pairs)."""

    def corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1)
        y = y.reshape(len(y), -1)
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        out = np.full(len(x), -1.0)
        ok = denom > 1e-6
        out[ok] = (x[ok] * y[ok]).sum(axis=1) / denom[ok]
        return out

    best = corr(a, b)
    for t in np.unique(transforms):
        if t == 0:
            continue
        rows = np.flatnonzero(transforms == t)
        y = turned(b[rows], int(t), (1, 2))
        if y.shape[1:] == a.shape[1:]:
            best[rows] = np.maximum(best[rows], corr(a[rows], y))
    return best


@lru_cache(maxsize=4096)
def _resampler(n: int, cut_lo: float, cut_hi: float) -> np.ndarray:
    """The (SMALL_SIZE, n) matrix that takes a line of *n* pixels, less the shares
    *cut_lo* and *cut_hi* at its ends, to SMALL_SIZE pixels by area averaging, then
    blurs it by SMALL_BLUR (a Gaussian, renormalised at the ends). Applied along both
    axes it makes a view of :func:`_views` with two matrix products, not an image
    resize and filter per crop (0.7 ms a picture through Pillow)."""
    lo, hi = cut_lo * n, n - cut_hi * n
    edges = lo + (hi - lo) * np.arange(SMALL_SIZE + 1) / SMALL_SIZE
    pix = np.arange(n)
    overlap = np.clip(
        np.minimum(edges[1:, None], pix[None, :] + 1) - np.maximum(edges[:-1, None], pix[None, :]),
        0,
        None,
    )
    area = overlap / overlap.sum(axis=1, keepdims=True)
    at = np.arange(SMALL_SIZE)
    blur = np.exp(-0.5 * ((at[:, None] - at[None, :]) / SMALL_BLUR) ** 2)
    blur /= blur.sum(axis=1, keepdims=True)
    return (blur @ area).astype(np.float32)


def trim_box(grey: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A greyscale picture with a tilt's filled corners painted over
    (:func:`engine.fills.unfilled`), as float32, and the box its uniform borders (at
    SMALL_TRIM) leave: how every small-size look and the colour cells frame a picture
    (:func:`engine.copies.painted_box`, as the thumbnails are framed)."""
    return painted_box(grey, SMALL_TRIM)


def _trimmed(grey: np.ndarray) -> np.ndarray:
    """A :func:`fine_picture` within its :func:`trim_box`, as float32."""
    bare, (top, bottom, left, right) = trim_box(grey)
    return bare[top:bottom, left:right]


def peeled(trimmed: np.ndarray, shape: tuple[int, ...], box) -> np.ndarray | None:
    """A :func:`_trimmed` picture (of a picture of *shape*, trimmed to *box*) peeled of
    a frame and the margins inside it (:func:`engine.frames.peeled`); None where
    nothing more comes off."""
    return frames.peeled(trimmed, frames.room(shape, box), SMALL_TRIM)


def _views(pictures: list[np.ndarray], crops=SMALL_CROPS) -> np.ndarray:
    """:func:`_trimmed` pictures as the rows compared by :func:`small_scores`: each of
    *crops* (shares off the top, bottom, left, right) averaged down to SMALL_SIZE square
    and blurred, centred and scaled to length 1 (float32, (n, len(crops),
    SMALL_SIZE**2)). Pictures of one shape are made together (a picture at a time cost
    0.2 ms, mostly Python)."""
    k, d = len(crops), SMALL_SIZE * SMALL_SIZE
    out = np.empty((len(pictures), k, d), np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(pictures):
        by_shape.setdefault(a.shape, []).append(i)
    for (h, w), at in by_shape.items():
        ys = np.stack([_resampler(h, c[0], c[1]) for c in crops])  # (K, S, h)
        xs = np.stack([_resampler(w, c[2], c[3]) for c in crops])  # (K, S, w)
        stack = np.stack([pictures[i] for i in at])  # (m, h, w)
        views = ys[None] @ stack[:, None] @ xs.transpose(0, 2, 1)[None]  # (m, K, S, S)
        out[at] = views.reshape(len(at), k, d)
    return _unit(out)


def _turn(views: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Rows of :func:`_views` (..., SMALL_SIZE**2), each under its transform (an
    index of :data:`TRANSFORMS`, see :func:`engine.copies.turned`)."""
    sq = views.reshape(*views.shape[:-1], SMALL_SIZE, SMALL_SIZE).copy()
    for t in np.unique(transforms).tolist():
        at = transforms == t
        sq[at] = turned(sq[at], t, (-2, -1))
    return sq.reshape(views.shape)


def _undo(transforms: np.ndarray) -> np.ndarray:
    """The transform that undoes each one: a turn by k quarters by 4 - k; a mirror,
    turned or not, is its own undoing."""
    return np.where(transforms >= 4, transforms, (4 - transforms) % 4)


def small_scores(
    pictures: dict[int, np.ndarray | None],
    left: np.ndarray,
    right: np.ndarray,
    transforms: np.ndarray,
    tilted: bool = False,
    trims: dict[int, np.ndarray] | None = None,
    block: int = 1024,
    crops: tuple = SMALL_CROPS,
    boxes: dict[int, tuple[int, int, int, int]] | None = None,
) -> np.ndarray:
    """The aligned small-picture correlation of each pair (rows of *pictures*, their
    :func:`fine_picture`; None: not readable, -1): the best over each picture's crops
    against the other one whole, the right one as it is and under the pair's transform.
    *tilted*: against the other one tilted by each of :data:`TILTS` instead. *trims*:
    the pictures trimmed, kept from one call to the next. Memory stays at one whole
    view per picture (per tilt): the crops are made a block of pictures at a time, each
    picture's once."""
    out = np.full(len(left), -1.0, np.float32)
    trims = {} if trims is None else trims
    involved = set(left.tolist()) | set(right.tolist())
    for r in involved:
        if r not in trims and (p := pictures[r]) is not None:
            bare, box = trim_box(p)
            trims[r] = bare[box[0] : box[1], box[2] : box[3]]
            if boxes is not None:
                boxes[r] = box
    ready = {r: trims[r] for r in involved if r in trims}
    rows = sorted(ready)
    if not rows:
        return out
    known = np.array(rows, np.int64)
    li = np.minimum(np.searchsorted(known, left), len(known) - 1)
    ri = np.minimum(np.searchsorted(known, right), len(known) - 1)
    idx = np.flatnonzero((known[li] == left) & (known[ri] == right))  # both pictures read
    li, ri, tr = li[idx], ri[idx], transforms[idx].astype(np.int64)
    if tilted:  # (n, tilts, d)
        leaning = [x for r in rows for x in _tilted(ready[r])]
        whole = _views(leaning, SMALL_CROPS[:1]).reshape(len(rows), len(TILTS), -1)
    else:
        whole = _views([ready[r] for r in rows], SMALL_CROPS[:1])  # (n, 1, d)

    # every pair as it is, and those with a turn or mirror once more under it
    moved = np.flatnonzero(tr != 0)
    both = np.concatenate([np.arange(len(li)), moved])
    turns = np.concatenate([np.zeros(len(li), np.int64), tr[moved]])

    def partner(other: np.ndarray, turn: np.ndarray) -> np.ndarray:
        return _turn(whole[other], turn)

    got = _best_over_crops(ready, rows, li[both], ri[both], turns, partner, block, crops)
    best = got[: len(li)]
    np.maximum.at(best, moved, got[len(li) :])
    out[idx] = best
    return out


def _best_over_crops(ready, rows, li, ri, tr, partner, block: int, crops=SMALL_CROPS) -> np.ndarray:
    """For pairs (*li*, *ri*: positions in *rows*, *tr*: transforms), the best
    correlation of either picture's crops against the other's views ``partner(other,
    turn)`` ((m, k, d), under the turn into the first one's frame)."""
    best = np.full(len(li), -1.0, np.float32)
    for lo in range(0, len(rows), block):
        cut = _views([ready[r] for r in rows[lo : lo + block]], crops)
        # the left picture's crops against the right one, turned into the left's frame
        for mine, other, turn in ((li, ri, tr), (ri, li, _undo(tr))):
            sel = np.flatnonzero((mine >= lo) & (mine < lo + block))
            sel = sel[np.argsort(mine[sel], kind="stable")]
            if not len(sel):
                continue
            views = partner(other[sel], turn[sel])
            starts = np.flatnonzero(np.diff(mine[sel], prepend=-1))
            ends = np.append(starts[1:], len(sel))
            for a, b in zip(starts.tolist(), ends.tolist()):  # one picture's crops at a time
                dots = cut[mine[sel[a]] - lo] @ views[a:b].reshape(-1, views.shape[2]).T
                got = dots.max(axis=0).reshape(b - a, views.shape[1]).max(axis=1)
                best[sel[a:b]] = np.maximum(best[sel[a:b]], got)
    return best


def _tilted(a: np.ndarray) -> list[np.ndarray]:
    """A :func:`_trimmed` picture tilted by each of :data:`TILTS`. On a background (at
    least half its edge within SMALL_TRIM of the edge's median: a drawing on white, a
    copy tilted with its corners filled), turned with its frame grown, the new corners
    filled with that colour, then trimmed to what differs from it. Else (a photograph,
    a drawing to its edges) turned within its frame and cut to the part the turn leaves
    whole, which a tilted copy's crops hold without their filled corners."""
    edges = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    edge = round(float(np.median(edges)))
    on_background = float(np.mean(np.abs(edges - edge) <= SMALL_TRIM)) >= 0.5
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    h, w = a.shape
    out = []
    for angle in TILTS:
        rot = img.rotate(angle, Image.Resampling.BILINEAR, expand=on_background, fillcolor=edge)
        x = np.asarray(rot, np.float32)
        if on_background:
            far = np.abs(x - edge) > SMALL_TRIM
            rows, cols = np.flatnonzero(far.any(axis=1)), np.flatnonzero(far.any(axis=0))
            if len(rows) >= 4 and len(cols) >= 4:
                x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        else:
            turn = math.radians(angle)
            inner = 1.0 / (abs(math.cos(turn)) + abs(math.sin(turn)))
            dy, dx = round(h * (1 - inner) / 2), round(w * (1 - inner) / 2)
            if h - 2 * dy >= 4 and w - 2 * dx >= 4:
                x = x[dy : h - dy, dx : w - dx]
        out.append(x)
    return out


def colour_cells(im: Image.Image) -> np.ndarray:
    """The picture's chroma (YCbCr's Cb and Cr less 128) averaged over a COLOUR_CELLS
    square grid of its :func:`trim_box` (a tilt's filled corners left out), and of the
    box it peels to (:func:`engine.frames.peel_box`; the trim's again where that is the
    same): (2, COLOUR_CELLS, COLOUR_CELLS, 2) float32. A frame in a colour around a
    drawing is in the trim's cells, not in the peeled ones."""
    grey = grey_copy(im, FINE_SIDE)
    bare, box = trim_box(np.asarray(grey))
    top, bottom, left, right = box
    inner = frames.peel_box(bare[top:bottom, left:right], SMALL_TRIM, frames.room(bare.shape, box))
    peel = (top + inner[0], top + inner[1], left + inner[2], left + inner[3])
    sx, sy = im.width / grey.width, im.height / grey.height
    ycc = im.convert("YCbCr")
    out = []
    for top, bottom, left, right in (box, peel):
        frame = (left * sx, top * sy, right * sx, bottom * sy)
        cells = ycc.resize((COLOUR_CELLS,) * 2, Image.Resampling.BOX, box=frame)
        out.append(np.asarray(cells, np.float32)[..., 1:] - 128.0)
    return np.stack(out)


def _shifts(c: np.ndarray) -> np.ndarray:
    """Cells (..., n, n, 2) moved by up to one cell each way, edges repeated: (9, ..., n,
    n, 2)."""
    n = c.shape[-2]
    pad = [(0, 0)] * (c.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    padded = np.pad(c, pad, mode="edge")
    return np.stack([padded[..., i : i + n, j : j + n, :] for i in range(3) for j in range(3)])


def colour_distance(a: np.ndarray, b: np.ndarray, transform: int) -> float:
    """How far the chroma of two :func:`colour_cells` lies apart, *b* under *transform*
    (an index of :data:`TRANSFORMS`): the nearer of the two framings (trimmed, peeled),
    each compared with the same framing of the other (:func:`_chroma_apart`)."""
    return min(_chroma_apart(a[k], b[k], transform) for k in range(len(a)))


def _chroma_apart(a: np.ndarray, b: np.ndarray, transform: int) -> float:
    """How far the chroma of two grids of cells lies apart, *b* under *transform*, over
    the cells where either has colour, as a share of the more colourful one's mean
    chroma there; -1 when either has too little colour to say (a grey picture, or a
    grey copy). Each cell is matched to the nearest of the other's cell and its eight
    neighbours, both ways: a hard crop, a caption or a tilt shifts colour by up to a
    cell, a recolouring changes every cell."""
    x = turned(b, transform)
    chroma_a, chroma_x = np.linalg.norm(a, axis=-1), np.linalg.norm(x, axis=-1)
    if min(chroma_a.max(), chroma_x.max()) < CHROMA:
        return -1.0
    on = np.maximum(chroma_a, chroma_x) >= CHROMA
    to_x = np.linalg.norm(a[None] - _shifts(x), axis=-1).min(axis=0)
    to_a = np.linalg.norm(x[None] - _shifts(a), axis=-1).min(axis=0)
    scale = max(float(chroma_a[on].mean()), float(chroma_x[on].mean()))
    return float((0.5 * (to_x + to_a))[on].mean()) / scale
