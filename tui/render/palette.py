"""The xterm-256 palette, and pictures quantised to it with ordered dithering.

Over SSH ``COLORTERM`` is usually not forwarded, and a terminal that does not say it
has 24-bit colour gets 256: Rich then maps each colour to its nearest palette entry,
which turns a photo's gradients into flat bands. Here the picture is quantised before
it becomes cells: each pixel is nudged by a 4×4 Bayer threshold of about one palette
step before the nearest entry is taken, so areas between two entries mix them in a
fine, fixed pattern (no shimmer between frames, unlike error diffusion), and the eye
averages it back.

Only entries 16-255 are used: the 6×6×6 cube and the 24 greys have fixed colours in
every terminal, where the first 16 follow the user's theme.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_LEVELS = np.array([0, 95, 135, 175, 215, 255], np.float32)
#: 4×4 Bayer matrix, as thresholds in (-0.5, 0.5)
_BAYER = (
    np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) + 0.5
) / 16 - 0.5
#: how far a pixel is nudged: about the palette's step between neighbouring entries
DITHER_STRENGTH = 40.0


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


def dither(rgb: np.ndarray, strength: float = DITHER_STRENGTH) -> np.ndarray:
    """Palette indices (h, w) for an (h, w, 3) picture, ordered-dithered."""
    h, w = rgb.shape[:2]
    tile = np.tile(_BAYER, (-(-h // 4), -(-w // 4)))[:h, :w]
    nudged = np.clip(rgb.astype(np.float32) + strength * tile[..., None], 0, 255)
    return nearest(nudged)


def colours(indices: np.ndarray) -> np.ndarray:
    """The RGB (uint8) of palette *indices*."""
    return palette()[indices].astype(np.uint8)
