"""Pictures nobody can learn from: blank, dark, bright, blurry, tiny, odd aspect.

Measured once, at indexing, from the picture already decoded for the CNN (no second
decode), and stored with it as seven numbers (:data:`FIELDS`, 28 bytes):

* ``width``, ``height``: the file's pixel size (as shown, EXIF orientation applied);
* ``mean``, ``std``: luminance (0-1) of a greyscale copy at most :data:`SIDE` pixels on
  its long side (never enlarged);
* ``low``, ``high``: its 1st and 99th luminance percentiles;
* ``sharpness``: the variance of its Laplacian over the variance of its luminance. The
  ratio is about how much of the picture's contrast sits in fine detail, whatever the
  contrast; a blur moves contrast out of fine detail, so it falls. Measured at a fixed
  scale (the long side at :data:`SIDE`, or the file's own when smaller).

:func:`flags` turns them into words with the thresholds below, chosen by measurement on
ordinary pictures (Fashion-MNIST, clip-art, photographs) against planted faults
(``python -m benchmarks.run --only dataset``, docs/BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

FIELDS = ("width", "height", "mean", "std", "low", "high", "sharpness")
SIZE = 4 * len(FIELDS)
#: The long side the luminance is measured at (pictures are never enlarged): the same
#: greyscale copy the thumbnail of :mod:`engine.copies` is made from.
SIDE = 128

#: ``blank``: almost no variation at all (a standard deviation under 2/255).
BLANK_STD = 2 / 255
#: ``dark``: 99 % of the picture under this luminance (near-black).
DARK_HIGH = 0.12
#: ``bright``: 99 % of the picture over this luminance (washed out).
BRIGHT_LOW = 0.88
#: ``blurry``: fine detail under this share of the contrast (see the module's docstring)
#: for a picture measured at SIDE pixels. A smaller picture is measured at its own size,
#: where every edge spans fewer pixels and the share is higher: the floor rises as
#: (SIDE / side) ** BLURRY_POWER (Fashion-MNIST's 28 px: 0.12; its clean pictures measure
#: 0.27 and up, blurred ones 0.07 and under).
BLURRY = 0.02
BLURRY_POWER = 1.18
#: ``tiny``: under this many pixels, unless such pictures are ordinary in the
#: collection (a quarter of it or more, as in Fashion-MNIST): then under a quarter of
#: the collection's median pixel count.
TINY_PIXELS = 64 * 64
TINY_SHARE = 0.25
#: ``tiny`` too, whatever the collection: a side under this many pixels (a rule, a
#: banner, a dot: 1200 x 8 shrinks to 224 x 1.5 in front of the CNN).
TINY_SIDE = 16
#: ``odd-aspect``: one side more than this many times the other.
ODD_ASPECT = 4.0


def measure(im: Image.Image, grey: Image.Image | np.ndarray | None = None) -> bytes:
    """The seven measurements of a decoded picture (RGB), packed little-endian float32.
    *grey*: its :func:`engine.copies.grey_copy` at :data:`SIDE` (or that as an array), when
    already made."""
    from engine.copies import grey_copy

    w, h = im.info.get("size") or im.size
    if (w > h) != (im.width > im.height):
        w, h = h, w  # the file's size was read before the EXIF turn
    u8 = np.asarray(grey if grey is not None else grey_copy(im, SIDE), np.uint8)
    a = u8.astype(np.float32) / 255.0
    low, high = _percentiles(u8, (0.01, 0.99))
    std = float(a.std())
    if min(a.shape) >= 3:
        lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1]
        # less what 8-bit rounding alone puts there: it dominates a low-contrast picture
        sharp = max(float(lap.var()) - ROUNDING, 0.0) / max(std * std, 1e-6)
    else:
        sharp = 0.0
    values = [w, h, float(a.mean()), std, float(low), float(high), min(sharp, 1e6)]
    return np.asarray(values, "<f4").tobytes()


def _percentiles(u8: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(u8 / 255, qs)`` (linear) of an 8-bit picture, from its histogram:
    18 us against 46 at 28 px, one of the costs every indexed picture pays."""
    n = u8.size
    below = np.cumsum(np.bincount(u8.reshape(-1), minlength=256))  # values <= v
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(pos)
        at = np.searchsorted(below, [lo, min(lo + 1, n - 1)], side="right")
        out.append((float(at[0]) + (float(at[1]) - float(at[0])) * (pos - lo)) / 255.0)
    return out


#: The variance the Laplacian gets from rounding to 8 bits alone: each pixel's error is
#: uniform over one step (variance 1/12 step²), and the kernel's weights square-sum to 20.
ROUNDING = 20 / 12 / 255**2


def table(blobs: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Stored measurements back (None: indexed before they were taken): which rows have
    them, and their values (rows of :data:`FIELDS`, float64). ValueError when one cannot
    be lookalike's (a crafted index). All at once: a hundred thousand pictures in
    milliseconds."""
    have = np.array([b is not None for b in blobs], bool)
    present = [b for b in blobs if b is not None]
    if any(not isinstance(b, bytes) or len(b) != SIZE for b in present):
        raise ValueError("a quality record is not 28 bytes")
    v = np.frombuffer(b"".join(present), "<f4").reshape(-1, 7).astype(np.float64)
    if len(v):
        bad = ~np.isfinite(v).all(axis=1)
        bad |= (v[:, 0] < 1) | (v[:, 1] < 1) | (v[:, 0] > 1 << 24) | (v[:, 1] > 1 << 24)
        bad |= (v[:, 2:6] < 0).any(axis=1) | (v[:, 2:6] > 1).any(axis=1) | (v[:, 6] < 0)
        if bad.any():
            raise ValueError("a quality record holds impossible values")
    return have, v


def flags_of(v: np.ndarray, floor: Floors) -> list[tuple[str, ...]]:
    """The words that apply to each row of measurements (``blank`` says nothing about
    detail, which a blank picture has none of; the ``blurry`` floor rises for a picture
    measured under SIDE pixels, see :data:`BLURRY`)."""
    w, h, _mean, std, low, high, sharp = v.T
    side = np.minimum(np.maximum(w, h), SIDE)
    blurry_floor = BLURRY * (SIDE / np.maximum(side, 3)) ** BLURRY_POWER
    blank = std < BLANK_STD
    words = [
        ("blank", blank),
        ("blurry", ~blank & (sharp < blurry_floor)),
        ("dark", high < DARK_HIGH),
        ("bright", low > BRIGHT_LOW),
        ("tiny", (w * h < floor.tiny) | (np.minimum(w, h) < TINY_SIDE)),
        ("odd-aspect", np.maximum(w, h) > ODD_ASPECT * np.minimum(w, h)),
    ]
    out: list[tuple[str, ...]] = [()] * len(v)
    for i in np.flatnonzero(np.any([m for _, m in words], axis=0)) if len(v) else []:
        out[i] = tuple(word for word, m in words if m[i])
    return out


@dataclass(frozen=True)
class Floors:
    """What counts as ``tiny`` in one collection."""

    tiny: float  # pixels


def floors(measured: np.ndarray) -> Floors:
    """The floors of a collection from its measurements (rows of :data:`FIELDS`)."""
    if not len(measured):
        return Floors(TINY_PIXELS)
    pixels = measured[:, 0] * measured[:, 1]
    tiny = float(TINY_PIXELS)
    if np.mean(pixels < TINY_PIXELS) >= TINY_SHARE:
        tiny = TINY_SHARE * float(np.median(pixels))
    return Floors(tiny)
