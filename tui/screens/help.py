"""The help screen: every key, in one place."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui import keys


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        lines, heading = [], None
        for place, shown, what in keys.help_rows():
            if place != heading:
                heading = place
                lines.append(Text(("\n" if lines else "") + place, style="bold underline"))
            lines.append(Text.assemble((f"{shown:>16}", "bold"), f"  {what}"))
        with VerticalScroll(id="help-box"):
            yield Static(Text("lookalike — keys", style="bold"), id="help-title")
            yield Static(Text("\n").join(lines))
            yield Static(Text("\nescape closes", style="dim"))

    def action_dismiss(self) -> None:
        self.dismiss(None)
