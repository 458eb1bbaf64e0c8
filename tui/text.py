"""Text for the screen: what came from the disk or an index is shown, never obeyed.

Paths, file names and error messages can hold Rich markup (``[red]a.png``) and
terminal escape sequences. Widgets get them as :class:`rich.text.Text` built here,
never as markup strings, and always through :func:`engine.names.printable`.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from engine.names import printable

#: A line break to put between parts of :func:`line` (a "\n" string part is escaped).
NEWLINE = Text("\n")


def plain(text: object, style: str = "") -> Text:
    """*text* (untrusted) as escaped plain text, optionally styled as a whole."""
    return Text(printable(text), style=style)


def line(*parts: object) -> Text:
    """Parts joined into one Text: each a string (escaped), a ``(text, style)`` pair
    (escaped, then styled), or a Text taken as it is (build those with :func:`plain`)."""
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append(part)
        elif isinstance(part, tuple):
            out.append(printable(part[0]), style=part[1])
        else:
            out.append(printable(part))
    return out


def fit_path(path: object, width: int) -> Text:
    """*path* (untrusted, escaped) in at most *width* cells, with its file name whole
    wherever the name fits: the folders are cut in the middle (``anim…/copy_01.png``),
    and a name longer than *width* keeps its start and its extension
    (``a_very_lo….png``). The file name is what tells two results apart; the start of a
    long folder path rarely does."""
    shown = printable(path)
    if cell_len(shown) <= width or width < 2:
        return Text(shown)
    head, _, name = shown.rpartition("/")
    if head and cell_len(name) + 3 <= width:
        return Text(_take(head, width - cell_len(name) - 2) + "…/" + name)
    if cell_len(name) <= width:
        return Text(name)
    stem, dot, ext = name.rpartition(".")
    tail = dot + ext if dot and stem and cell_len(ext) < width // 2 else ""
    return Text(_take(name[: len(name) - len(tail)], width - 1 - cell_len(tail)) + "…" + tail)


def _take(text: str, cells: int) -> str:
    """The longest start of *text* that fits in *cells* cells."""
    out, used = [], 0
    for ch in text:
        used += cell_len(ch)
        if used > cells:
            break
        out.append(ch)
    return "".join(out)
