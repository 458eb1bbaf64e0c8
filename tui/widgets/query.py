"""The query panel: the highlighted image as pixel art, with its path and sizes."""

from __future__ import annotations

from pathlib import Path

from textual.containers import Vertical
from textual.widgets import Static

from tui.text import NEWLINE, fit_path, line, plain
from tui.thumbs import Thumb


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class QueryPanel(Vertical):
    def compose(self):
        yield Static("", id="query-art")
        yield Static(
            line(("highlight an image in the tree; enter searches", "dim")), id="query-info"
        )

    def show(self, path: Path, rel: str, thumb: Thumb) -> None:
        show_picture(
            self.query_one("#query-art", Static),
            self.query_one("#query-info", Static),
            path,
            rel,
            thumb,
            "✗ cannot show this image",
        )


def show_picture(
    art: Static, info: Static, path: Path, rel: str, thumb: Thumb | None, broken: str
) -> None:
    """A picture and, below it, its path, pixel size and file size (*broken* and the
    reason where it cannot be shown; a placeholder while it is drawn)."""
    try:
        size = human_size(path.stat().st_size)
    except OSError:
        size = "?"
    # the file name whole, the folders cut to the width (not wrapped mid-name)
    name = fit_path(rel, info.size.width) if info.size.width else plain(rel)
    name.stylize("bold")
    if thumb is None:
        art.update("…")
        info.update(line(name, NEWLINE, size))
    elif thumb.art is None:
        art.update(line((broken, "red")))
        info.update(line(name, NEWLINE, (thumb.error or "", "red"), f" · {size}"))
    else:
        art.update(thumb.art)
        info.update(line(name, NEWLINE, f"{thumb.width}×{thumb.height} px · {size}"))
