"""The plan of a move, asked once before anything moves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui import keys
from tui.text import line, plain

if TYPE_CHECKING:
    from engine.quarantine import MovePlan


class ConfirmMove(ModalScreen[bool]):
    """The plan of a move, asked once: enter or y moves, escape or n does not."""

    BINDINGS = keys.bindings("confirm")
    HELP_PLACES = ("confirm",)

    def __init__(self, plan: MovePlan, root: Path) -> None:
        super().__init__()
        self.plan, self.root = plan, root

    def compose(self) -> ComposeResult:
        shown = self.plan.summary(self.root)
        names = [plain(p) for p in self.plan.paths[:8]]
        more = len(self.plan.paths) - len(names)
        body = [line((shown[0], "bold")), *(line(x) for x in shown[1:]), Text("")]
        body += [line("  ", n) for n in names]
        body += [line((f"  … and {more} more", "dim"))] if more > 0 else []
        body += [
            Text(""),
            line(("enter / y", "bold"), " moves them · ", ("esc / n", "bold"), " does not"),
        ]
        with Vertical(id="confirm"):
            yield Static(Text("\n").join(body), id="confirm-plan")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
