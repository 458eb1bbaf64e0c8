"""Pixel-art thumbnails: decode, fit, render to half-block cells. Never on the UI thread.

Each terminal cell shows two pixels stacked (upper half in the background colour,
lower half in the foreground colour of a "▄"), which any 256-colour or truecolor
terminal draws, over SSH and inside tmux, with no graphics protocol.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich_pixels import Pixels

from engine.images import ImageError, open_image


@dataclass(frozen=True)
class Thumb:
    """A rendered thumbnail, or the reason there is none."""

    pixels: Pixels | None
    width: int  # image size in pixels, before fitting
    height: int
    error: str | None = None


def fit(width: int, height: int, cells_w: int, cells_h: int) -> tuple[int, int]:
    """Pixel size that fits a cells_w x cells_h box of half-block cells, aspect kept."""
    scale = min(cells_w / width, (2 * cells_h) / height)
    return max(1, round(width * scale)), max(2, round(height * scale))


def render(path: str | os.PathLike[str], cells_w: int, cells_h: int) -> Thumb:
    try:
        im = open_image(path, draft_size=4 * max(cells_w, cells_h))
    except ImageError as exc:
        return Thumb(None, 0, 0, str(exc))
    w, h = im.size
    im = im.resize(fit(w, h, cells_w, cells_h), Image.LANCZOS)
    return Thumb(Pixels.from_image(im), w, h)


class ThumbCache:
    """A small LRU of rendered thumbnails, keyed by file identity and box size."""

    def __init__(self, size: int = 512) -> None:
        self._items: OrderedDict[tuple, Thumb] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path, cells_w: int, cells_h: int) -> tuple:
        try:
            st = path.stat()
            ident = (st.st_mtime_ns, st.st_size)
        except OSError:
            ident = (0, 0)
        return (str(path), ident, cells_w, cells_h)

    def get(self, path: Path, cells_w: int, cells_h: int) -> Thumb:
        """The thumbnail, rendered now if not cached (call from a worker thread)."""
        key = self.key(path, cells_w, cells_h)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        thumb = render(path, cells_w, cells_h)
        with self._lock:
            self._items[key] = thumb
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return thumb

    def peek(self, path: Path, cells_w: int, cells_h: int) -> Thumb | None:
        """The cached thumbnail or None, without any I/O beyond a stat."""
        with self._lock:
            return self._items.get(self.key(path, cells_w, cells_h))
