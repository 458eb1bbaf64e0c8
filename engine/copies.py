"""Is this picture a copy of that one? Evidence that survives everyday edits.

A pair of candidates (two pictures whose features are close, from the self-join) is a
*copy* when the pictures are the same picture after edits people make: resized, cropped,
framed or letterboxed, mirrored, turned, tilted, brightened, greyed, captioned or
re-encoded. Look-alike products, and other pictures of the same subject, are not.

Global CNN features cannot tell these apart: they say "the same kind of thing", and two
plain white shirts are as close as a shirt and its JPEG. So the decision rests on three
kinds of evidence, each robust to part of the family, and on a relative test:

* **Identical bytes** (same SHA-256): a copy, always.
* **Local features** (:mod:`engine.triage.keypoints`), SIFT on a 256 px greyscale copy
  of each picture (128 px under 48 px; and of its mirror image), matched with Lowe's
  ratio test and verified by RANSAC under a similarity transform (rotation, uniform
  scale, shift): many points that agree on one geometric transform mean the same
  picture, whatever crop, turn, tilt, border or caption. Small and flat pictures have
  few keypoints, which is why this is not enough alone.
* **Aligned pixels**: a 16 x 16 greyscale thumbnail of each picture, borders trimmed,
  compared by normalised cross-correlation under the eight turns and mirrors. Immune to
  brightness, contrast, greyscale, re-encoding and resizing; weakened by crops.
* **Standing out**: look-alike products correlate highly with many others; a copy stands
  out from the picture's other candidates. A pixel match counts only when it beats the
  picture's next best candidate by a margin.

Evidence is cached in the index by the files' contents: nothing is measured twice.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from engine.fills import unfilled
from engine.pairs import PAIR_FIELDS as PAIR_FIELDS
from engine.pairs import Pairs

#: Side of the thumbnail compared by correlation.
THUMB = 16


# --- thumbnails -------------------------------------------------------------------------


def _trim_box(grey: np.ndarray, tol: int = 12, most: float = 0.3) -> tuple[int, int, int, int]:
    """The box left after removing uniform bands at the edges (a frame, a letterbox, the
    fill of a tilt): rows and columns whose values all lie within *tol* of the edge's
    colour, at most *most* of each side. Rows are trimmed first (over the whole width),
    then columns (over the rows kept)."""
    h, w = grey.shape
    if h < 8 or w < 8:
        return 0, h, 0, w  # a rule, a banner, a dot: nothing to trim
    ref = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    near = np.abs(grey.astype(np.float32) - ref) <= tol

    def run(flags: np.ndarray) -> int:  # how many lead in a row
        return int(np.argmin(flags)) if not flags.all() else len(flags)

    cap_h, cap_w = math.ceil(h * most), math.ceil(w * most)
    rows = near.all(axis=1)
    top = min(run(rows), cap_h)
    bottom = h - min(run(rows[::-1]), cap_h, h - top - 1)
    cols = near[top:bottom].all(axis=0)
    left = min(run(cols), cap_w)
    right = w - min(run(cols[::-1]), cap_w, w - left - 1)
    if bottom - top < 4 or right - left < 4:
        return 0, h, 0, w
    return top, bottom, left, right


def painted_box(grey: np.ndarray, tol: int = 12) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """*grey* with a tilt's filled corners painted over (:func:`engine.fills.unfilled`),
    as float32, and the box its uniform borders (within *tol*) leave: how the thumbnails
    and every small-size look frame a picture."""
    bare = unfilled(np.asarray(grey, np.float32), tol)
    return bare, _trim_box(np.clip(bare, 0, 255).astype(np.uint8), tol)


def grey_copy(im: Image.Image, side: int = 128) -> Image.Image:
    """The picture in greyscale, at most *side* pixels on its long side (box-filtered;
    never enlarged): what the thumbnail and the quality measurements start from, made
    once per picture at indexing."""
    grey = im.convert("L")
    if max(grey.size) > side:
        grey = grey.resize(
            (
                max(1, grey.width * side // max(grey.size)),
                max(1, grey.height * side // max(grey.size)),
            ),
            Image.Resampling.BOX,
        )
    return grey


def thumbnail(im: Image.Image, grey: Image.Image | np.ndarray | None = None) -> np.ndarray:
    """The picture's 16 x 16 greyscale thumbnail, uniform borders trimmed (uint8, 256).
    *grey*: its :func:`grey_copy` (or that as an array), when already made.

    A tilt's filled corners are painted over first (:func:`engine.fills.unfilled`, 22 us
    a picture of 28 px, 100 us at 128 px): in a thumbnail they are four large dark
    triangles, so that any two line drawings tilted in an editor correlated 0.91-0.96
    (a copy by aligned pixels: a tilted cactus and a tilted ice cream of the held-out
    travelled clip-art were grouped so under a slightly different int8 model) and each
    under 0 with its own original. An index made before keeps its thumbnails; the
    pictures indexed after get these."""
    a = np.asarray(grey if grey is not None else grey_copy(im))
    bare, (top, bottom, left, right) = painted_box(a)
    cut = Image.fromarray(np.clip(bare[top:bottom, left:right], 0, 255).astype(np.uint8))
    return np.asarray(cut.resize((THUMB, THUMB), Image.Resampling.BOX), np.uint8).reshape(-1)


def turned(x: np.ndarray, transform: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """*x* under *transform* (an index of :data:`TRANSFORMS`) on its two picture *axes*:
    mirrored along the second when transform >= 4, then turned by transform % 4
    quarters. Every comparison of two pictures, at any size, numbers them this way."""
    if transform >= 4:
        x = np.flip(x, axes[1])
    return np.rot90(x, transform % 4, axes=axes)


def _dihedral(t: np.ndarray) -> np.ndarray:
    """The eight turns and mirrors of thumbnails (n, 256): (n, 8, 256)."""
    sq = t.reshape(-1, THUMB, THUMB)
    return np.stack([turned(sq, i, (1, 2)).reshape(len(t), t.shape[-1]) for i in range(8)], axis=1)


#: How the right picture differs from the left one when transform i of :func:`_dihedral`
#: (applied to the right one) aligns them: a turn by k quarters undoes a turn by 4 - k.
TRANSFORMS = (
    "",
    "turned 270°",
    "turned 180°",
    "turned 90°",
    "mirrored",
    "mirrored and turned 90°",
    "mirrored and turned 180°",
    "mirrored and turned 270°",
)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    x = x - x.mean(axis=-1, keepdims=True)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-6)


def pixel_scores(thumbs: np.ndarray, left: np.ndarray, right: np.ndarray):
    """For pairs (rows of *thumbs*), the best normalised cross-correlation of the left
    thumbnail with the right one under the eight transforms, and which transform."""
    if not len(left):
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    # only the rows asked about are normalised, each once: a turn or mirror moves pixels
    # and keeps their mean and length, so the right one's turns are turns of its unit
    # row (normalising every turn of every pair cost 3.5 of 72 s at 70k)
    involved = np.unique(np.concatenate([left, right]))
    units = _unit(thumbs[involved])  # (rows, 256)
    left, right = np.searchsorted(involved, left), np.searchsorted(involved, right)
    out_s = np.empty(len(left), np.float32)
    out_t = np.empty(len(left), np.int64)
    step = 1 << 15
    for lo in range(0, len(left), step):
        a = units[left[lo : lo + step]]  # (m, 256)
        b = _dihedral(units[right[lo : lo + step]])  # (m, 8, 256)
        s = np.einsum("md,mkd->mk", a, b)
        out_t[lo : lo + step] = s.argmax(axis=1)
        out_s[lo : lo + step] = s.max(axis=1)
    return out_s, out_t


def flatness(thumbs: np.ndarray) -> np.ndarray:
    """Standard deviation of each thumbnail: near zero for blank pictures, whose
    correlations mean nothing."""
    return thumbs.astype(np.float32).std(axis=1)


# --- the decision -------------------------------------------------------------------------

#: Candidates per picture: its nearest neighbours by code cosine.
CANDIDATES = 10
#: Local features decide: this many agreeing points and share of the smaller's keypoints.
MIN_POINTS, MIN_POINT_SHARE = 15, 0.2
#: Aligned pixels decide: correlation at least PIXELS, standing out from the picture's
#: fifth-best candidate by MARGIN, visual similarity at least PIXEL_SIMILARITY, and
#: thumbnails that are not blank (standard deviation at least FLAT of 255; at 8, a pale
#: gradient wallpaper's copies, 0.92-0.95 and 0.4 clear of its look-alikes, were refused:
#: 5 changed no pair of the tuning sets or of Fashion-MNIST's 10,000).
PIXELS = 0.93
MARGIN = 0.15
PIXEL_SIMILARITY = 0.30
FLAT = 5.0
#: A pair with a picture too small for keypoints: aligned pixels decide at SMALL or more
#: when they stand out by SMALL_GAP. JPEG and resampling at 20-40 px take a copy's
#: 16 x 16 correlation down to 0.85, while a catalogue of look-alike products (28 px
#: Fashion-MNIST) has its best pairs within 0.25 of each picture's fifth. Chosen on small
#: clip-art at the tuning strengths (pair recall 0.49 -> 0.75) as the most recall that
#: added no pair across classes on Fashion-MNIST's 10,000 test pictures. Not in a leak
#: search, where the margin sees one side's look-alikes only (false leaks per 1,000 test
#: pictures of Fashion-MNIST went from 1.8 to 15-26 with it).
SMALL = 0.85
SMALL_GAP = 0.25
#: Which of a picture's candidates count as "typical" for the margin (0: the best).
TYPICAL_RANK = 4
#: Local features are computed only for pairs among each other's first few candidates
#: (SIFT_RANK) with some visual similarity, and pictures at least MIN_SIDE pixels wide,
#: or over TINY where their pixels at a small size leave room for a copy
#: (:func:`needs_points`): a caption, a hard crop or a darkened line drawing keeps 10-65
#: agreeing points on pictures of 21-47 px where the pixels say 0.3-0.85. Such a pair is
#: described when its small-size score beats both pictures' usual candidate (the
#: TYPICAL_RANK-th) by POINTS_GAP: chosen over 0 and 0.05 on small clip-art and icons at
#: the tuning strengths and the travelled ones (recall the same as 0.05, 0.941 -> 0.928
#: against 0) and Fashion-MNIST's 10,000 at 28 px (100 grouped, as without points,
#: against 109 at 0; about 140 pairs described against 5,200: a first triage in 14-17
#: s, 13 without points, 34 at 0). Under MIN_SIDE only MIN_POINTS decide: a few points
#: aligning two look-alike products of 28 px gave pixels over ALIGNED for 1,285 pairs.
SIFT_RANK = 2
POINTS_GAP = 0.10
#: Too few agreeing points to decide, but at least ALIGN_POINTS: the pictures are aligned
#: by them and compared pixel by pixel, a copy at ALIGNED or more.
ALIGN_POINTS = 5
ALIGNED = 0.90
SIFT_SIMILARITY = 0.30
MIN_SIDE = 48
#: Pictures too small for keypoints (either under MIN_SIDE) are compared pixel by pixel
#: at the smaller one's size (at most FINE_SIDE), as they are and under the turn or
#: mirror that aligned their thumbnails: a copy at FINE or more. Measured on
#: Fashion-MNIST: re-encoded and enlarged copies 0.983 and up (a tenth under 0.991), the
#: closest look-alike product of the same class under 0.985 for 99.5 % of pictures.
FINE = 0.985
#: ... and only when the pair also stands out by FINE_GAP at a small size (the margin of
#: ALIGNED_GAP): at 12-20 px look-alike products correlate above FINE at full size.
#: Fashion-MNIST's test split shrunk to 16 px grouped 643 of 10,000 (47 pairs across
#: classes) without it, 41 (2) with it and the tiny pictures' candidates by thumbnail
#: (:mod:`engine.triage.tiny`); 10,000 of its train split, never looked at while
#: choosing, at 12 px 1,661 (505) -> 42 (3), at 24 px 249 (4) -> 93 (2); 0.1 cost recall
#: (0.877 -> 0.864 at the held-out strengths of small clip-art). A leak search asks it of
#: TINY pictures only (its margin sees the test side's look-alikes alone: at 28 px it lost
#: 1 planted leak of 39; at 16 px it leaves 24 of 113 leaks found among 2,000 pictures).
FINE_GAP = 0.05
TINY = 20  # tiny pictures: a side (the square root of the pixel count) of 20 px or less
BY_THUMBNAIL = 1_000  # the rank of a pair only a tiny picture's thumbnail found
#: Pictures too small for keypoints are also compared aligned over crops at a small
#: size (:func:`engine.aligned.small_scores`): a copy at ALIGNED_SMALL or more when it
#: stands out by ALIGNED_GAP from each picture's fifth-best candidate by the same
#: measure, or at FAR_SMALL when it stands out by FAR_GAP. A 4 % crop moves a 16 x 16
#: thumbnail by most of a pixel and JPEG at 20-30 px takes its correlation to 0.7-0.85;
#: aligned and blurred, the same copies score 0.9 and up. Chosen on small clip-art at the
#: tuning strengths as the most recall that added no pair across classes on
#: Fashion-MNIST's 10,000 test pictures (pair recall there 0.75 -> 0.88, precision 0.99;
#: the second bar added 0.907 -> 0.924 of recall counted by connected pairs, one pair
#: too many among 118). The CNN's visual similarity is not asked: at 20-40 px it can be
#: under 0.1 for a hard crop.
ALIGNED_SMALL = 0.89
ALIGNED_GAP = 0.15
FAR_SMALL = 0.85
FAR_GAP = 0.30
#: A second look, against the other picture tilted (:data:`engine.aligned.TILTS`), for
#: the pairs of small pictures the first look scored from TILT_FROM to under
#: ALIGNED_SMALL whose pictures' look-alikes leave room for the margin (their
#: TYPICAL_RANK-th best under 1 - ALIGNED_GAP): a tilted copy of 20-50 px scores
#: 0.6-0.75 at the first look. The second costs about 3.4 times the first per pair
#: (Fashion-MNIST's 10,000: 78,000 pairs in 2.4 s, then 17,500 of them in 1.8 s). All
#: such pairs, not only those that stand out already: look-alikes' scores set each
#: picture's margin, and a second look for the outstanding ones alone cost precision
#: (0.991 -> 0.974 on clip-art at the tuning strengths).
TILT_FROM = 0.55
#: Colour that counts: a pair whose pictures both have colour is not a copy when their
#: colours lie further apart than RECOLOURED (:func:`engine.aligned.colour_distance`: a
#: flag in other colours, a recoloured product). A grey copy of a colour picture has no
#: colour to compare: still a copy. Chosen on clip-art at the tuning strengths (full size
#: and 24-64 px) with a recoloured twin of each original (hue turned by 60-300 degrees,
#: or two channels swapped): halfway between 99 % of every pair of copies in a group
#: (0.46: brightness, contrast, crops, captions, borders and JPEG, two copies' edits
#: together; the farthest 0.57, two copies with captions of other colours) and 95 % of
#: the twins in visibly other colours (0.61; the nearest 0.55). Leaving out the edge that
#: differs most, or taking the turn that brings colours closest, narrowed that gap.
RECOLOURED = 0.53
#: Changes whenever the rule does: cached verdicts of an older rule are not reused.
RULE = "copies-6"


def typical(
    pairs: Pairs, n: int, scores: np.ndarray | None = None, rank: int = TYPICAL_RANK
) -> np.ndarray:
    """Each picture's *rank*-th best pixel correlation among its candidates (of
    *scores*, the aligned thumbnails' unless given): how alike its look-alikes are (high
    in a catalogue of look-alike products). Pairs not measured yet count as 0. One sort
    of one key (picture, then correlation best first): a million pairs in a tenth of a
    second."""
    scores = pairs.pixels if scores is None else scores
    who = np.concatenate([pairs.left, pairs.right])
    val = np.nan_to_num(np.concatenate([scores, scores]), nan=0.0)
    out = np.zeros(n, np.float32)
    if not len(who):
        return out
    # correlations lie in [-1, 1]: 1 - val in [0, 2] orders them within a picture
    order = np.argsort(who * 4.0 + (1.0 - np.clip(val, -1, 1)), kind="stable")
    who, val = who[order], val[order]
    starts = np.concatenate([[0], np.flatnonzero(who[1:] != who[:-1]) + 1])
    counts = np.diff(np.append(starts, len(who)))
    pick = starts + np.minimum(rank, counts - 1)
    out[who[pick]] = val[pick]
    return out


def decide(
    pairs: Pairs, flat: np.ndarray, sides: np.ndarray | None = None, one_sided: int = 0
) -> None:
    """Each pair's verdict and reason from the evidence measured so far, in the rule's
    order: aligned pixels that stand out from the picture's look-alikes; for a picture
    too small for keypoints, pixels alike at full size; else local features. *flat*: each
    picture's thumbnail spread (:func:`flatness`); *sides*: its side in pixels (None:
    all large). Rows under *one_sided* (the TRAIN side of a leak search, where a picture
    may be the candidate of one other only) take no part in the margin: the other side's
    look-alikes decide it. Vectorised: a whole collection's pairs take milliseconds, so
    the verdicts follow every change of the candidates (a new picture changes its
    neighbours' margins) without measuring anything again."""
    n = len(flat)
    usual = typical(pairs, n)
    usual[:one_sided] = 0.0
    px = np.nan_to_num(pairs.pixels, nan=-1.0)
    gap = px - np.maximum(usual[pairs.left], usual[pairs.right])
    textured = (flat[pairs.left] >= FLAT) & (flat[pairs.right] >= FLAT)
    big = np.ones(len(pairs), bool) if sides is None else ~needs_small(pairs, sides)
    # a leak search sees one side's look-alikes only: small pairs there go to full size
    small = (px >= SMALL) & (gap >= SMALL_GAP) & (one_sided == 0)
    # unless the small look, measured, says under TILT_FROM (thumbnails alike by two fills)
    small &= np.nan_to_num(pairs.small, nan=1.0) >= TILT_FROM
    aligned = np.where(big, (px >= PIXELS) & (gap >= MARGIN), small)
    sm = np.nan_to_num(pairs.small, nan=-1.0)
    usual_small = typical(pairs, n, pairs.small)
    usual_small[:one_sided] = 0.0
    margin = sm - np.maximum(usual_small[pairs.left], usual_small[pairs.right])
    fitted = np.zeros(len(pairs), bool)  # aligned at a small size, over crops
    if one_sided == 0:
        fitted = ~big & (
            ((sm >= ALIGNED_SMALL) & (margin >= ALIGNED_GAP))
            | ((sm >= FAR_SMALL) & (margin >= FAR_GAP))
        )
    ok = textured & ((aligned & (pairs.similarity >= PIXEL_SIMILARITY)) | fitted)
    pairs.copy = ok.copy()
    why = np.full(len(pairs), "", object)
    for i in np.flatnonzero(ok):
        how = TRANSFORMS[pairs.transform[i]]
        what = (
            f"{pairs.pixels[i]:.2f} aligned pixels"
            if aligned[i]
            else f"{pairs.small[i]:.2f} pixels alike at a small size"
        )
        why[i] = (f"{how} copy · " if how else "") + what
    if sides is not None:
        fine = needs_fine(pairs, sides) & (np.nan_to_num(pairs.fine, nan=-1.0) >= FINE)
        asked = (one_sided == 0) | (np.minimum(sides[pairs.left], sides[pairs.right]) <= TINY)
        fine &= ~asked | (margin >= FINE_GAP)
        for i in np.flatnonzero(fine):
            why[i] = f"{pairs.fine[i]:.3f} pixels alike at full size"
        points = needs_points(pairs, sides) & (pairs.points >= 0) & pairs.point_copy
        # under MIN_SIDE the points decide alone: aligned by a few, look-alikes agree
        points &= (np.minimum(sides[pairs.left], sides[pairs.right]) >= MIN_SIDE) | (
            pairs.points >= MIN_POINTS
        )
        why[points] = pairs.point_why[points]
        pairs.copy |= fine | points
    recoloured = _recoloured(pairs)
    pairs.copy &= ~recoloured
    why[recoloured] = ""
    pairs.why = why


def _recoloured(pairs: Pairs) -> np.ndarray:
    """The pairs whose colours lie too far apart to be copies, whatever else says."""
    return np.nan_to_num(pairs.colour, nan=-1.0) > RECOLOURED


def worth_a_look(
    pairs: Pairs, among: np.ndarray, upto: float = ALIGNED_SMALL, lowest: float = TILT_FROM
) -> np.ndarray:
    """Which of the pairs *among* (indices) get another look at a small size: first
    look from *lowest* to under *upto*, room for the margin among the picture's
    look-alikes by it. Tilted (TILT_FROM) under ALIGNED_SMALL; crops alike on both
    (:mod:`engine.alike`) up to 1: a caption leaves a copy at 0.89, look-alikes 0.78."""
    n = int(max(pairs.left.max(), pairs.right.max())) + 1 if len(pairs) else 0
    usual = typical(pairs, n, pairs.small)
    sm = pairs.small[among]
    most = np.maximum(usual[pairs.left[among]], usual[pairs.right[among]])
    return among[(sm >= lowest) & (sm < upto) & (most < 1.0 - ALIGNED_GAP)]


def needs_points(pairs: Pairs, sides: np.ndarray) -> np.ndarray:
    """The undecided pairs worth describing: among each other's first candidates, somewhat
    alike, both pictures large enough to have keypoints, or both over TINY and at least as
    alike at a small size as either picture's usual candidate (not a pair in other
    colours)."""
    least = np.minimum(sides[pairs.left], sides[pairs.right])
    usual = typical(pairs, len(sides), pairs.small)
    sm = np.nan_to_num(pairs.small, nan=-1.0)
    alike = sm - np.maximum(usual[pairs.left], usual[pairs.right]) >= POINTS_GAP
    return (
        ~pairs.copy
        & ~_recoloured(pairs)
        & ((least >= MIN_SIDE) | ((least > TINY) & alike))
        & ((pairs.rank <= SIFT_RANK) | (pairs.pixels >= PIXELS))
        & ((pairs.similarity >= SIFT_SIMILARITY) | (pairs.pixels >= 0.6))
    )


def needs_small(pairs: Pairs, sides: np.ndarray) -> np.ndarray:
    """The pairs with a picture too small for keypoints, all of them: a copy among them
    must stand out from the picture's other candidates by the same measure."""
    return np.minimum(sides[pairs.left], sides[pairs.right]) < MIN_SIDE


def needs_fine(pairs: Pairs, sides: np.ndarray) -> np.ndarray:
    """The undecided pairs with a picture too small for keypoints, among each other's
    first candidates, alike in their thumbnails or a tiny picture's candidates by them."""
    near = (pairs.rank <= SIFT_RANK) | (pairs.pixels >= PIXELS) | (pairs.rank >= BY_THUMBNAIL)
    return ~pairs.copy & ~_recoloured(pairs) & needs_small(pairs, sides) & near
