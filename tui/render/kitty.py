"""Real pixels through the kitty graphics protocol, with Unicode placeholders.

The picture is sent once to the terminal as PNG (``a=T,U=1``: transmit, and make a
*virtual* placement of ``c × r`` cells), and the screen then holds ordinary text cells:
each is U+10EEEE followed by two combining marks that give its row and column in the
picture, in a foreground colour that encodes the image id. Textual lays these out,
scrolls and clips them like any text, and the terminal draws the matching part of the
picture in each. That is why this works inside a Textual app at all, where images
written at a cursor position would be overwritten by the next frame.

Opt-in (``--pixels kitty``), never chosen by ``auto``: only terminals that speak the
protocol (kitty, Ghostty, WezTerm) draw it. Inside tmux the transmission is wrapped for
passthrough (``set -g allow-passthrough on``). The app sends each picture's transmission
before the cells that show it (:meth:`KittyArt.transmission`).
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import threading
import unicodedata
from functools import lru_cache

from PIL import Image
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

PLACEHOLDER = "\U0010eeee"
#: rows and columns a placement can address with the table below
MAX_CELLS = 96
#: pixels sent per cell (the terminal scales them to its cell size)
CELL_PX = (10, 20)

_ids = itertools.count((os.getpid() * 7919) % 0xFFFF00 + 1)
_id_lock = threading.Lock()


@lru_cache(maxsize=1)
def diacritics() -> tuple[str, ...]:
    """The combining marks that number rows and columns: marks of combining class 230
    that no canonical decomposition uses, in code point order (the protocol's rule; its
    first 96 are the same in every Unicode version since 6.0)."""
    used: set[int] = set()
    for cp in range(0x3000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            used.update(int(x, 16) for x in d.split())
    marks = [
        chr(cp)
        for cp in range(0x300, 0x800)
        if unicodedata.combining(chr(cp)) == 230
        and cp not in used
        and not unicodedata.decomposition(chr(cp))
    ]
    return tuple(marks[:MAX_CELLS])


def _wrap_for_tmux(seq: str) -> str:
    return "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"


class KittyArt:
    """A picture as kitty placeholder cells (a Rich renderable) plus its transmission."""

    indexed = False

    def __init__(self, im: Image.Image, width: int, height: int) -> None:
        shrink = min(1.0, MAX_CELLS / width, MAX_CELLS / height)  # keep the aspect
        self.width = max(1, min(MAX_CELLS, round(width * shrink)))
        self.height = max(1, min(MAX_CELLS, round(height * shrink)))
        with _id_lock:
            self.image_id = next(_ids) & 0xFFFFFF or 1
        small = im.convert("RGB").resize(
            (self.width * CELL_PX[0], self.height * CELL_PX[1]), Image.Resampling.LANCZOS
        )
        buf = io.BytesIO()
        small.save(buf, "PNG", optimize=False, compress_level=1)
        self.png = buf.getvalue()
        self._lines: list[list[Segment]] | None = None

    def transmission(self, env=None) -> str:
        """The escape sequences that send the picture (wrapped for tmux inside tmux)."""
        env = os.environ if env is None else env
        data = base64.standard_b64encode(self.png).decode("ascii")
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] or [""]
        parts = []
        for n, chunk in enumerate(chunks):
            more = int(n < len(chunks) - 1)
            if n == 0:
                head = (
                    f"a=T,U=1,f=100,t=d,q=2,i={self.image_id},"
                    f"c={self.width},r={self.height},m={more}"
                )
            else:
                head = f"m={more}"
            seq = f"\x1b_G{head};{chunk}\x1b\\"
            parts.append(_wrap_for_tmux(seq) if env.get("TMUX") else seq)
        return "".join(parts)

    def lines(self) -> list[list[Segment]]:
        if self._lines is None:
            i = self.image_id
            style = Style(color=Color.from_rgb((i >> 16) & 255, (i >> 8) & 255, i & 255))
            marks = diacritics()
            self._lines = [
                [
                    Segment(
                        "".join(PLACEHOLDER + marks[row] + marks[col] for col in range(self.width)),
                        style,
                    )
                ]
                for row in range(self.height)
            ]
        return self._lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for row in self.lines():
            yield from row
            yield newline

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)
