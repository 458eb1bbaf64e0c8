"""Text for the screen: what came from the disk or an index is shown, never obeyed.

Paths, file names and error messages can hold Rich markup (``[red]a.png``) and
terminal escape sequences. Widgets get them as :class:`rich.text.Text` built here,
never as markup strings, and always through :func:`engine.names.printable`.
"""

from __future__ import annotations

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
