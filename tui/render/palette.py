"""The xterm-256 palette, and pictures quantised to it with error diffusion.

Over SSH ``COLORTERM`` is usually not forwarded, and a terminal that does not say it
has 24-bit colour gets 256: Rich then maps each colour to its nearest palette entry,
which turns a photo's gradients into flat bands. Here the picture is quantised before
it becomes cells, a row at a time: each row takes its nearest entries, and what each
pixel missed by is carried to the three pixels below it (half straight down, a quarter
to each side). Areas between two entries then mix them, and the eye averages the mix
back; flat areas that an entry matches stay flat. A row is done in one numpy step, so a
thumbnail costs about a millisecond, and the same picture always gives the same cells.

Measured against the source (docs/BENCHMARKS.md, *Pictures*): a 4×4 Bayer ordered
dither added more noise than it removed banding on the benchmark set, at any strength
(mean error per cell 5.1 at the mildest against 4.9 without dithering); this diffusion
lowers it to 4.5, and to 2.4 against 3.2 over blocks of two cells.

Only entries 16-255 are used: the 6×6×6 cube and the 24 greys have fixed colours in
every terminal, where the first 16 follow the user's theme.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_LEVELS = np.array([0, 95, 135, 175, 215, 255], np.float32)
#: where a pixel's error goes in the next row: down-left, down, down-right
_SPREAD = (0.25, 0.5, 0.25)


@lru_cache(maxsize=1)
def palette() -> np.ndarray:
    """(256, 3) float32: the RGB of every xterm-256 entry (0-15: xterm's defaults)."""
    base = [
        (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
        (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0),
        (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
    ]  # fmt: skip
    cube = [(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS]
    greys = [(v, v, v) for v in range(8, 248, 10)]
    return np.array(base + cube + greys, np.float32)


def nearest(rgb: np.ndarray) -> np.ndarray:
    """The palette index (16-255) nearest each colour of (..., 3), by squared RGB
    distance."""
    pal = palette()[16:]
    flat = rgb.reshape(-1, 3).astype(np.float32)
    # |a - b|^2 = |a|^2 - 2ab + |b|^2; |a|^2 is the same for every entry
    d = (pal * pal).sum(1)[None, :] - 2 * flat @ pal.T
    return (np.argmin(d, axis=1) + 16).reshape(rgb.shape[:-1]).astype(np.int64)


def dither(rgb: np.ndarray) -> np.ndarray:
    """Palette indices (h, w) for an (h, w, 3) picture, errors diffused row to row."""
    img = rgb.astype(np.float32)
    h, w = img.shape[:2]
    out = np.empty((h, w), np.int64)
    carry = np.zeros((w, 3), np.float32)
    left, down, right = _SPREAD
    pal = palette()
    for y in range(h):
        row = np.clip(img[y] + carry, 0, 255)
        out[y] = nearest(row)
        err = row - pal[out[y]]
        carry = down * err
        carry[1:] += right * err[:-1]
        carry[:-1] += left * err[1:]
    return out


def colours(indices: np.ndarray) -> np.ndarray:
    """The RGB (uint8) of palette *indices*."""
    return palette()[indices].astype(np.uint8)
