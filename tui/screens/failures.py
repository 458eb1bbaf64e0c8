"""The list of files that could not be indexed, with the reason for each."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.images import SkippedFile
from engine.names import count
from tui.text import line, plain


class FailuresScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,f", "dismiss", "Close")]

    def __init__(self, failures: list[SkippedFile]) -> None:
        super().__init__()
        self.failures = failures

    def compose(self) -> ComposeResult:
        with Vertical(id="failures-box"):
            yield Static(
                line(
                    (f"{count(len(self.failures), 'file')} skipped", "bold"),
                    ("  escape closes", "dim"),
                )
            )
            table: DataTable[Text] = DataTable(cursor_type="row", zebra_stripes=True)
            table.add_columns("path", "reason")
            for f in self.failures:
                table.add_row(plain(f.path), plain(f.reason))
            yield table
