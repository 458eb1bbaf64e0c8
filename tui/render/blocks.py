"""Text renderers: half-blocks, quadrants and sextants, all in numpy.

A cell shows ``pw × ph`` pixels with two colours: the character's ink (foreground)
covers the pixels its glyph fills, the background the rest.

* **half-blocks** (1 × 2): ``▄`` with the lower pixel as ink and the upper as background:
  every pixel keeps its own colour. Drawn by every font.
* **quadrants** (2 × 2) and **sextants** (2 × 3): twice and three times the pixels per
  cell, but a cell still has two colours, so its pixels are split into two groups: along
  the colour channel that varies most within the cell, at the middle of its range, then
  refined once (each pixel to the nearer of the two groups' means). The glyph is the one
  whose filled parts are the first group. Quadrants are in Block Elements (in nearly
  every font); sextants are in Symbols for Legacy Computing (Unicode 13), which fewer
  fonts draw: offered, never chosen by ``auto``.

Pictures for a 256-colour terminal are dithered to the palette first
(:mod:`tui.render.palette`); a cell's two colours are then the palette entries nearest
its groups' means.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tui.render import palette
from tui.render.cells import CellArt, pack_rgb

#: quadrant glyph by mask (bit 0 upper left, 1 upper right, 2 lower left, 3 lower right)
QUADRANTS = " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"


@lru_cache(maxsize=1)
def sextants() -> tuple[str, ...]:
    """Sextant glyph by mask (bit i: sixth i+1, in rows of two from the top left)."""
    table = [""] * 64
    table[0], table[63] = " ", "█"
    table[0b010101], table[0b101010] = "▌", "▐"  # the left and the right column
    for code in range(0x1FB00, 0x1FB3C):
        name = unicodedata.name(chr(code))
        digits = name.rsplit("-", 1)[1]
        table[sum(1 << (int(d) - 1) for d in digits)] = chr(code)
    assert all(table), "a sextant without a glyph"
    return tuple(table)


@dataclass(frozen=True)
class BlockRenderer:
    name: str
    px: tuple[int, int]  # pixels per cell: wide, high

    def glyphs(self) -> np.ndarray:
        if self.px == (2, 2):
            return np.array(list(QUADRANTS))
        return np.array(sextants())

    def cells(self, rgb: np.ndarray, indexed: bool) -> CellArt:
        """Cells for an (h·ph, w·pw, 3) uint8 picture."""
        pw, ph = self.px
        h, w = rgb.shape[0] // ph, rgb.shape[1] // pw
        rgb = rgb[: h * ph, : w * pw]
        if indexed:
            rgb = palette.colours(palette.dither(rgb))
        if self.px == (1, 2):
            top, bottom = rgb[0::2], rgb[1::2]
            chars = np.full((h, w), "▄")
            return _art(chars, bottom, top, indexed)
        n = pw * ph
        pix = rgb.reshape(h, ph, w, pw, 3).transpose(0, 2, 1, 3, 4).reshape(h, w, n, 3)
        pix = pix.astype(np.float32)
        spread = pix.max(axis=2) - pix.min(axis=2)  # (h, w, 3)
        axis = np.argmax(spread, axis=-1)
        v = np.take_along_axis(pix, axis[:, :, None, None], axis=3)[..., 0]  # (h, w, n)
        mask = v > ((v.max(-1) + v.min(-1)) / 2)[..., None]
        fg, bg = _means(pix, mask)
        # refine once: each pixel to the nearer mean
        mask = ((pix - fg[:, :, None]) ** 2).sum(-1) < ((pix - bg[:, :, None]) ** 2).sum(-1)
        fg, bg = _means(pix, mask)
        bits = (mask * (1 << np.arange(n))).sum(-1)
        chars = self.glyphs()[bits]
        fg8 = np.clip(np.rint(fg), 0, 255).astype(np.uint8)
        bg8 = np.clip(np.rint(bg), 0, 255).astype(np.uint8)
        return _art(chars, fg8, bg8, indexed)


def _means(pix: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the masked and of the other pixels of each cell (a group that is
    empty takes the other's mean)."""
    m = mask[..., None].astype(np.float32)
    n_in = m.sum(2)
    n_out = mask.shape[2] - n_in
    total = pix.sum(2)
    fg_sum = (pix * m).sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fg = np.where(n_in > 0, fg_sum / n_in, total / mask.shape[2])
        bg = np.where(n_out > 0, (total - fg_sum) / n_out, fg)
    return fg, bg


def _art(chars: np.ndarray, fg: np.ndarray, bg: np.ndarray, indexed: bool) -> CellArt:
    if indexed:
        return CellArt(chars, palette.nearest(fg), palette.nearest(bg), True)
    return CellArt(chars, pack_rgb(fg), pack_rgb(bg), False)


HALFBLOCK = BlockRenderer("halfblock", (1, 2))
QUADRANT = BlockRenderer("quadrant", (2, 2))
SEXTANT = BlockRenderer("sextant", (2, 3))
