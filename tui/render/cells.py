"""Pictures made of character cells: blocks of two colours, built from numpy arrays.

Every text renderer here turns an RGB array into *cells*: per cell one character, a
foreground colour (the character's ink) and a background colour. Which character and
which two colours is the renderer's business (:mod:`tui.render.blocks`); turning cells
into Rich segments, once, with one cached :class:`rich.style.Style` per colour pair, is
this module's. That is what makes a 40×20 thumbnail take a couple of milliseconds where
building a style per cell from text took sixteen.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich_pixels import Pixels


@lru_cache(maxsize=65536)
def _colour(value: int, indexed: bool) -> Color:
    if indexed:
        return Color.from_ansi(value)
    return Color.from_rgb(value >> 16, (value >> 8) & 255, value & 255)


@lru_cache(maxsize=65536)
def _style(fg: int, bg: int, indexed: bool) -> Style:
    """The style of a colour pair: 24-bit ``0xRRGGBB`` values, or xterm-256 indices
    (``Style.from_color`` skips the checks a style built from text needs)."""
    return Style.from_color(_colour(fg, indexed), _colour(bg, indexed))


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours as ``0xRRGGBB`` integers."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class CellArt:
    """A picture as rows of cells: a Rich renderable, measured in cells.

    ``chars`` (h, w) of one-character strings; ``fg`` and ``bg`` (h, w) of packed
    ``0xRRGGBB`` colours, or of xterm-256 indices when ``indexed``. Segments are built
    on first render and kept: a card redrawn (scrolling, focus) costs nothing more.
    """

    def __init__(self, chars: np.ndarray, fg: np.ndarray, bg: np.ndarray, indexed: bool) -> None:
        self.chars, self.fg, self.bg, self.indexed = chars, fg, bg, indexed
        self.height, self.width = chars.shape
        self._lines: list[list[Segment]] | None = None
        self._pixels: Pixels | None = None

    def lines(self) -> list[list[Segment]]:
        if self._lines is None:
            out = []
            indexed = self.indexed
            for chars, fgs, bgs in zip(self.chars.tolist(), self.fg.tolist(), self.bg.tolist()):
                row: list[Segment] = []
                run, key = "", (-1, -1)  # no colour: the first cell starts a run
                for ch, f, b in zip(chars, fgs, bgs):
                    if (f, b) == key:
                        run += ch
                        continue
                    if run:
                        row.append(Segment(run, _style(key[0], key[1], indexed)))
                    run, key = ch, (f, b)
                if run:
                    row.append(Segment(run, _style(key[0], key[1], indexed)))
                out.append(row)
            self._lines = out
        return self._lines

    def cell(self, y: int, x: int) -> tuple[str, int, int]:
        """One cell: its character and colours (for tests)."""
        return str(self.chars[y, x]), int(self.fg[y, x]), int(self.bg[y, x])

    def pixels(self) -> Pixels:
        """The same picture as rich-pixels' renderable (built once)."""
        if self._pixels is None:
            newline = Segment.line()
            self._pixels = Pixels.from_segments(
                seg for row in self.lines() for seg in (*row, newline)
            )
        return self._pixels

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.pixels()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)
