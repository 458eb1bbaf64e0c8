"""The help screen: every key, in one place."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, str]] = [
    ("↑ ↓ / j k", "move in the tree or the results"),
    ("enter", "tree: search with the image, or open/close the folder"),
    ("enter", "results: make that match the new query"),
    ("tab / shift+tab", "move between the tree and the results"),
    ("backspace", "back to the previous query"),
    ("[ / ]", "fewer / more results"),
    ("x", "exact search (score every image) or auto (LSH where it is sure)"),
    ("i", "re-scan the folder and update the index"),
    ("ctrl+x", "cancel the running index"),
    ("f", "list files that could not be indexed, with the reason"),
    ("d", "triage: near-duplicate groups, identical copies, outliers, broken files"),
    ("  ↑ ↓ / ← →", "triage: move between groups / between images of a group"),
    ("  space / a", "triage: mark a duplicate to set aside / mark every duplicate"),
    ("  m / u", "triage: move the marked into .lookalike/quarantine / undo the last move"),
    ("  enter / escape", "triage: search with that image / back"),
    ("c", "copy the highlighted path to the clipboard (OSC 52, works over SSH)"),
    ("/", "filter the tree by path; enter keeps it, escape clears it"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"[b]{key:>16}[/b]  {what}" for key, what in KEYS)
        with VerticalScroll(id="help-box"):
            yield Static("[b]lookalike — keys[/b]\n", id="help-title")
            yield Static(rows)
            yield Static("\n[dim]escape closes[/dim]")

    def action_dismiss(self) -> None:
        self.dismiss(None)
