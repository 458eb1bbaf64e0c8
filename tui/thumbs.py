"""Thumbnails: decode, fit, render through :mod:`tui.render`. Never on the UI thread.

Cached by (path, mtime, size, cell box, renderer): a picture is decoded once per size
and way of drawing, and a file changed on disk is drawn again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.images import ImageError, guarded, open_image
from tui.render import Choice, choose, picture


@dataclass(frozen=True)
class Thumb:
    """A rendered thumbnail (any Rich renderable), or the reason there is none."""

    art: Any
    width: int  # image size in pixels, before fitting
    height: int
    error: str | None = None


def render(path: str | os.PathLike[str], cells_w: int, cells_h: int, choice: Choice) -> Thumb:
    try:
        # decode at reduced size where the format allows (JPEG draft): a thumbnail
        # needs a few pixels per cell, not the whole photo
        im = open_image(path, draft_size=6 * max(cells_w, cells_h))
        w, h = im.info.get("size", im.size)
        return Thumb(guarded(picture, im, cells_w, cells_h, choice), w, h)
    except ImageError as exc:
        return Thumb(None, 0, 0, str(exc))


class ThumbCache:
    """A small LRU of rendered thumbnails, keyed by file identity, box and renderer."""

    def __init__(self, choice: Choice | None = None, size: int = 512) -> None:
        self.choice = choice or choose()
        self._items: OrderedDict[tuple, Thumb] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def key(self, path: Path, cells_w: int, cells_h: int) -> tuple:
        try:
            st = path.stat()
            ident = (st.st_mtime_ns, st.st_size)
        except OSError:
            ident = (0, 0)
        return (str(path), ident, cells_w, cells_h, self.choice.key)

    def get(self, path: Path, cells_w: int, cells_h: int) -> Thumb:
        """The thumbnail, rendered now if not cached (call from a worker thread)."""
        key = self.key(path, cells_w, cells_h)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        thumb = render(path, cells_w, cells_h, self.choice)
        with self._lock:
            self._items[key] = thumb
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return thumb

    def peek(self, path: Path, cells_w: int, cells_h: int) -> Thumb | None:
        """The cached thumbnail or None, without any I/O beyond a stat."""
        with self._lock:
            return self._items.get(self.key(path, cells_w, cells_h))
