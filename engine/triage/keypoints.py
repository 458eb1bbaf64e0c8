"""Local features: the evidence of :mod:`engine.copies` that survives crops, turns,
tilts, borders and captions. SIFT on a 256 px greyscale copy of each picture (and of its
mirror image), matched with Lowe's ratio test and verified by RANSAC under a similarity
transform; many points agreeing on one transform mean the same picture. Too few points
(a small or flat picture), and the points' transform is checked on the pixels instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from engine.copies import ALIGN_POINTS, ALIGNED, MIN_POINT_SHARE, MIN_POINTS, MIN_SIDE
from engine.images import opencv

#: Side of the greyscale copy SIFT describes.
DESCRIBE_SIDE = 256
#: ... for a picture under MIN_SIDE (the square root of its pixel count): 128 px found
#: as many of the copies of 21-47 px pictures as 256 (held-out travelled clip-art: 20 of
#: 30 pairs the pixels missed against 21) in 8 ms a picture against 23 (2 cores).
SMALL_DESCRIBE_SIDE = 128
#: Keypoints kept per picture (strongest first).
MAX_KEYPOINTS = 400
#: Lowe's ratio test.
RATIO = 0.78
#: RANSAC reprojection error, in pixels of the 256 px copy.
RANSAC_PX = 6.0
#: The similarity's scale must lie in [MIN_SCALE, 1 / MIN_SCALE].
MIN_SCALE = 0.25
#: Agreeing points must spread over this share of the picture's side, both ways.
MIN_SPREAD = 0.15


class Described:
    """SIFT keypoints and descriptors of one picture (and of its mirror image)."""

    __slots__ = ("points", "desc", "mpoints", "mdesc", "grey")

    def __init__(self, points, desc, mpoints, mdesc, grey: np.ndarray) -> None:
        self.points, self.desc, self.mpoints, self.mdesc = points, desc, mpoints, mdesc
        self.grey = grey  # the greyscale copy described, for aligned comparison

    @property
    def side(self) -> int:
        """The long side of the copy described: pixel distances are measured in it."""
        return max(self.grey.shape)

    @property
    def count(self) -> int:
        return 0 if self.desc is None else len(self.desc)


def _sift():
    return opencv().SIFT_create(nfeatures=MAX_KEYPOINTS)


def describe(im: Image.Image) -> Described:
    """Keypoints of a greyscale copy of *im* (DESCRIBE_SIDE long, SMALL_DESCRIBE_SIDE for
    a small picture), and of its mirror image."""
    small = im.convert("L")
    under = small.width * small.height < MIN_SIDE * MIN_SIDE
    scale = (SMALL_DESCRIBE_SIDE if under else DESCRIBE_SIDE) / max(small.size)
    size = (max(8, round(small.width * scale)), max(8, round(small.height * scale)))
    grey = np.ascontiguousarray(np.asarray(small.resize(size, Image.Resampling.BILINEAR)))
    sift = _sift()
    kp, desc = sift.detectAndCompute(grey, None)
    mkp, mdesc = sift.detectAndCompute(np.ascontiguousarray(grey[:, ::-1]), None)

    def pts(k):
        return np.array([p.pt for p in k], np.float32).reshape(-1, 2)

    return Described(pts(kp), desc, pts(mkp), mdesc, grey)


def _inliers(pa, da, pb, db, side_a: int, side_b: int) -> tuple[int, np.ndarray | None]:
    """Matches that agree on one similarity transform, and the transform (a to b);
    *side_a*, *side_b*: the sides of the copies described, which scale the tolerances."""
    import cv2

    if da is None or db is None or len(da) < 3 or len(db) < 3:
        return 0, None
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(da, db, k=2)
    good = [m for m, *n in pairs if n and m.distance < RATIO * n[0].distance]
    # one to one: many points of a simple drawing matched to one point of the other would
    # fit a transform that shrinks everything to that point
    best: dict[int, Any] = {}  # cv2.DMatch
    for m in good:
        if m.trainIdx not in best or m.distance < best[m.trainIdx].distance:
            best[m.trainIdx] = m
    good = list(best.values())
    if len(good) < 4:
        return 0, None
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    model, mask = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_PX * side_b / DESCRIBE_SIDE,
        maxIters=500,
        confidence=0.99,
    )
    if model is None or mask is None:
        return 0, None
    scale = float(np.hypot(model[0, 0], model[1, 0])) * side_a / side_b
    if not MIN_SCALE <= scale <= 1 / MIN_SCALE:  # both copies are 256 px: no real copy
        return 0, None  # is four times larger than the other after that
    inl = mask.ravel().astype(bool)
    # the agreeing points must cover the picture, not sit in one corner
    spread = np.ptp(src[inl], axis=0) if inl.sum() else np.zeros(2)
    if float(spread.min()) < MIN_SPREAD * side_a:
        return 0, None
    return int(inl.sum()), model


def matching_points(a: Described, b: Described) -> tuple[int, bool, np.ndarray | None]:
    """Keypoints of *a* and *b* that agree on one similarity transform, whether the best
    agreement was with *b*'s mirror image, and that transform (a to b, or to b's mirror)."""
    plain, pm = _inliers(a.points, a.desc, b.points, b.desc, a.side, b.side)
    mirrored, mm = _inliers(a.points, a.desc, b.mpoints, b.mdesc, a.side, b.side)
    return (mirrored, True, mm) if mirrored > plain else (plain, False, pm)


def aligned_pixels(a: Described, b: Described, model: np.ndarray, mirrored: bool) -> float:
    """Normalised cross-correlation of *a* with *b* brought onto it by *model*, over the
    part they share (0 when they share under half of *a*): the check for pictures with
    too few keypoints to decide, a few agreeing points giving the alignment."""
    import cv2

    grey_b = np.ascontiguousarray(b.grey[:, ::-1]) if mirrored else b.grey
    h, w = a.grey.shape
    inverse = cv2.invertAffineTransform(model.astype(np.float64))
    warped = cv2.warpAffine(grey_b, inverse, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    inside = cv2.warpAffine(
        np.full(grey_b.shape, 255, np.uint8), inverse, (w, h), flags=cv2.INTER_NEAREST
    )
    share = inside > 0
    if share.mean() < 0.5:
        return 0.0
    small = (max(8, w // 4), max(8, h // 4))  # compare at 64 px: blur hides resampling
    x = cv2.resize(a.grey, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    y = cv2.resize(warped, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    m = cv2.resize(share.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    x, y = x[m] - x[m].mean(), y[m] - y[m].mean()
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom > 1e-6 else 0.0


def point_verdict(a: Described, b: Described) -> tuple[bool, int, str]:
    """Whether local features make *b* a copy of *a*, the agreeing points, and why."""
    m, mirrored, model = matching_points(a, b)
    share = m / max(1, min(a.count, b.count))
    how = "mirrored copy · " if mirrored else ""
    if m >= MIN_POINTS and share >= MIN_POINT_SHARE:
        return True, m, how + f"{m} matching points"
    if m >= ALIGN_POINTS and model is not None:
        agree = aligned_pixels(a, b, model, mirrored)
        if agree >= ALIGNED:
            return True, m, how + f"{agree:.2f} aligned pixels after {m} matching points"
    return False, m, ""
