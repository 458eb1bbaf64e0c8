"""The help screen: the keys of the screen it was opened from, then those that work
everywhere, from the one key table (:mod:`tui.keys`)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui import keys


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, places: tuple[str, ...]) -> None:
        super().__init__()
        self.places = places

    def compose(self) -> ComposeResult:
        # A table, so a long description wraps within its own column at 80 columns.
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        heading = None
        for place, shown, what in keys.help_rows(self.places):
            if place != heading:
                if heading is not None:
                    table.add_row("", "")
                heading = place
                table.add_row(Text(place, style="bold underline"), "")
            table.add_row(shown, what)
        with VerticalScroll(id="help-box"):
            yield Static(Text("lookalike — keys", style="bold"), id="help-title")
            yield Static(table)
            yield Static(Text("\nescape closes · every action by name: ctrl+p", style="dim"))
