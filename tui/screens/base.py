"""What every screen of the app shares: the app, typed as lookalike's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message
from textual.screen import Screen

if TYPE_CHECKING:
    from tui.app import LookalikeApp


class AppScreen(Screen[None]):
    """A screen of :class:`tui.app.LookalikeApp`: ``self.app`` has its attributes (the
    engine, the thumbnail cache, the tier) for the type checker."""

    if TYPE_CHECKING:
        app: LookalikeApp


class TierChanged(Message, bubble=False):
    """The terminal's size asks for other thumbnail sizes (the app's ``tier``)."""
