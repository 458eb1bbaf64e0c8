"""How pictures reach the terminal: one seam, several renderers.

Widgets ask for a picture of a given size in cells (:func:`picture`) and get a Rich
renderable; how it is drawn is chosen once, by :func:`choose`:

* ``--pixels`` (or ``LOOKALIKE_PIXELS``): ``auto`` (half-blocks: every terminal and font
  draws them), ``halfblock``, ``quadrant`` (2×2 pixels per cell), ``sextant`` (2×3, where
  the font has Unicode 13's sextants), or ``kitty`` (the kitty graphics protocol, real
  pixels, where the terminal speaks it: opt-in, never chosen by ``auto``).
* ``--colors`` (or ``LOOKALIKE_COLORS``): ``auto`` (24-bit when the terminal says it has it,
  by ``COLORTERM`` as Rich reads it, else the 256-colour palette, dithered), ``truecolor``
  or ``256``. Over SSH ``COLORTERM`` is usually not forwarded: see docs/HOW-IT-WORKS.md.

Any renderer falls back to half-blocks where it cannot run (kitty outside a kitty-speaking
terminal), and says why in :attr:`Choice.why`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tui.render.blocks import HALFBLOCK, QUADRANT, SEXTANT, BlockRenderer

PIXEL_MODES = ("auto", "halfblock", "quadrant", "sextant", "kitty")
COLOUR_MODES = ("auto", "truecolor", "256")
BLOCKS: dict[str, BlockRenderer] = {r.name: r for r in (HALFBLOCK, QUADRANT, SEXTANT)}


class RenderError(ValueError):
    """A ``--pixels`` or ``--colors`` value that is not one of the choices."""


@dataclass(frozen=True)
class Choice:
    """How pictures are drawn in this session."""

    pixels: str  # halfblock, quadrant, sextant, kitty
    colours: str  # truecolor or 256
    why: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.pixels, self.colours)


def kitty_terminal(env: Mapping[str, str]) -> bool:
    """Whether the terminal says it speaks the kitty graphics protocol (kitty itself,
    Ghostty, WezTerm), also from inside tmux (whose passthrough must then be on)."""
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    return bool(
        env.get("KITTY_WINDOW_ID")
        or "kitty" in term
        or "ghostty" in term
        or program in ("ghostty", "WezTerm")
    )


def choose(
    pixels: str | None = None,
    colours: str | None = None,
    env: Mapping[str, str] | None = None,
    color_system: str | None = None,
) -> Choice:
    """The renderer for this terminal. *color_system* is what Rich made of it
    (``truecolor``, ``256``, ``standard``...; None: read ``COLORTERM`` here)."""
    env = os.environ if env is None else env
    pixels = (pixels or env.get("LOOKALIKE_PIXELS") or "auto").lower()
    colours = (colours or env.get("LOOKALIKE_COLORS") or "auto").lower()
    if pixels not in PIXEL_MODES:
        raise RenderError(f"--pixels must be one of {', '.join(PIXEL_MODES)}, not {pixels!r}")
    if colours not in COLOUR_MODES:
        raise RenderError(f"--colors must be one of {', '.join(COLOUR_MODES)}, not {colours!r}")
    why = []
    if colours == "auto":
        if color_system is None:
            truecolor = env.get("COLORTERM", "").lower() in ("truecolor", "24bit")
        else:
            truecolor = color_system == "truecolor"
        colours = "truecolor" if truecolor else "256"
        if not truecolor:
            why.append("256 colours, dithered: the terminal did not say it has 24-bit colour")
    if pixels == "kitty" and not kitty_terminal(env):
        why.append("half-blocks: this terminal does not say it speaks the kitty protocol")
        pixels = "halfblock"
    if pixels == "auto":
        pixels = "halfblock"
    return Choice(pixels, colours, "; ".join(why))


def fit(width: int, height: int, cells_w: int, cells_h: int) -> tuple[int, int]:
    """The cells (wide, high) a *width* × *height* picture takes in a box of
    *cells_w* × *cells_h*, aspect kept (a cell is about twice as high as wide)."""
    scale = min(cells_w / width, (2 * cells_h) / height)
    return max(1, round(width * scale)), max(1, round(height * scale / 2))


def picture(im: Image.Image, cells_w: int, cells_h: int, choice: Choice):
    """*im* as a renderable of at most *cells_w* × *cells_h* cells."""
    w, h = fit(im.width, im.height, cells_w, cells_h)
    if choice.pixels == "kitty":
        from tui.render.kitty import KittyArt

        return KittyArt(im, w, h)
    renderer = BLOCKS[choice.pixels]
    pw, ph = renderer.px
    # reducing_gap: shrink by a whole factor first (a box filter), then Lanczos over the
    # last steps: the same picture at a fraction of the cost for large images
    size = (w * pw, h * ph)
    rgb = np.asarray(im.convert("RGB").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
    return renderer.cells(rgb, choice.colours == "256")


def reconstruct(art, px: tuple[int, int] = (6, 6)) -> np.ndarray:
    """What a cell picture looks like, as RGB pixels (*px* per cell): each glyph's
    filled parts in its ink, the rest in its background. For measuring colour error."""
    from tui.render import palette
    from tui.render.blocks import QUADRANTS, sextants

    masks: dict[str, np.ndarray] = {}

    def mask(ch: str) -> np.ndarray:
        if ch not in masks:
            m = np.zeros((6, 6), bool)
            if ch == "▄":
                m[3:] = True
            elif ch in QUADRANTS:
                bits = QUADRANTS.index(ch)
                for i in range(4):
                    if bits >> i & 1:
                        r, c = divmod(i, 2)
                        m[r * 3 : r * 3 + 3, c * 3 : c * 3 + 3] = True
            if ch in sextants() and ch not in QUADRANTS:
                bits = sextants().index(ch)
                for i in range(6):
                    if bits >> i & 1:
                        r, c = divmod(i, 2)
                        m[r * 2 : r * 2 + 2, c * 3 : c * 3 + 3] = True
            masks[ch] = m
        return masks[ch]

    def rgb(values: np.ndarray) -> np.ndarray:
        if art.indexed:
            return palette.colours(values)
        v = values.astype(np.int64)
        return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)

    fg, bg = rgb(art.fg), rgb(art.bg)
    out = np.zeros((art.height, 6, art.width, 6, 3), np.uint8)
    for y in range(art.height):
        for x in range(art.width):
            m = mask(str(art.chars[y, x]))
            out[y, :, x, :] = np.where(m[..., None], fg[y, x], bg[y, x])
    img = out.reshape(art.height * 6, art.width * 6, 3)
    if px != (6, 6):
        img = np.asarray(
            Image.fromarray(img).resize(
                (art.width * px[0], art.height * px[1]), Image.Resampling.BOX
            )
        )
    return img
