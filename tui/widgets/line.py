"""A line of text whose size never changes with its content."""

from __future__ import annotations

from textual.widgets import Static


class Line(Static):
    """A fixed-height text (its height set in the styles): a new content is drawn
    without a layout of the whole screen, which :class:`Static` asks for by default and
    which costs a tenth of a second on a screen full of pictures."""

    def update(self, content="", *, layout: bool = False) -> None:
        super().update(content, layout=layout)
