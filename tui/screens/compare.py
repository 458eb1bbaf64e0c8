"""The compare view: the query and one result side by side, as large as the terminal
allows, with their scores, sizes and paths; arrows step through the results.

Pictures are rendered in a worker (through the app's thumbnail cache, so stepping back
is instant); the screen only lays out what comes back.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui import keys
from tui.screens.base import AppScreen
from tui.text import line
from tui.thumbs import Thumb
from tui.widgets.footer import KeysFooter
from tui.widgets.query import show_picture
from tui.widgets.results import CardData

#: rows the panes need besides the picture: border (2), title, path, sizes
CHROME_ROWS = 5


class ComparePane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", classes="compare-title")
        yield Static("…", classes="compare-art")
        yield Static("", classes="compare-info")

    def show(self, title, path: Path, rel: str, thumb: Thumb | None) -> None:
        self.query_one(".compare-title", Static).update(title)
        show_picture(
            self.query_one(".compare-art", Static),
            self.query_one(".compare-info", Static),
            path,
            rel,
            thumb,
            "cannot show this image",
        )


class CompareScreen(AppScreen):
    """Query on the left, result *index* of *cards* on the right. *left* names the left
    picture (``keep`` when triage compares copies with their keeper)."""

    BINDINGS = keys.bindings("compare")
    HELP_PLACES = ("compare",)

    def __init__(
        self,
        query: Path,
        query_rel: str,
        cards: list[CardData],
        index: int,
        left: str = "query",
        right: str = "result",
    ) -> None:
        super().__init__()
        self.left, self.right = left, right
        self.query_path, self.query_rel = query, query_rel
        self.cards = cards
        self.index = index

    def compose(self) -> ComposeResult:
        with Horizontal(id="compare"):
            yield ComparePane(id="compare-query")
            yield ComparePane(id="compare-result")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#compare-query").border_title = self.left
        self._show()

    def on_resize(self) -> None:
        self._show()

    @property
    def box(self) -> tuple[int, int]:
        """Cells for each picture: half the width, the height less the panes' chrome."""
        w = max(4, self.size.width // 2 - 4)
        h = max(2, self.size.height - CHROME_ROWS - 1)
        return w, h

    def _title(self, card: CardData):
        return line(
            (f"#{card.rank}", "bold"),
            f"  {card.score:.3f}",
            (f" {card.label}", "italic") if card.label else "",
            (f"   {self.index + 1} of {len(self.cards)} · ←/→ step, esc back", "dim"),
        )

    def _show(self) -> None:
        card = self.cards[self.index]
        box = self.box
        thumbs = self.app.thumbs
        q = self.query_one("#compare-query", ComparePane)
        r = self.query_one("#compare-result", ComparePane)
        r.border_title = f"{self.right} #{card.rank}"
        cached_q, cached_r = thumbs.peek(self.query_path, *box), thumbs.peek(card.path, *box)
        self.app.present(cached_q)
        self.app.present(cached_r)
        q.show(line((self.left, "bold")), self.query_path, self.query_rel, cached_q)
        r.show(self._title(card), card.path, card.name, cached_r)
        self.load(self.index, box)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self, index: int, box: tuple[int, int]) -> None:
        thumbs = self.app.thumbs
        q = thumbs.get(self.query_path, *box)
        card = self.cards[index]
        r = thumbs.get(card.path, *box)
        self.app.call_from_thread(self._loaded, index, box, q, r)

    def _loaded(self, index: int, box: tuple[int, int], q: Thumb, r: Thumb) -> None:
        if index != self.index or box != self.box:
            return  # stepped on or resized meanwhile: a newer load follows
        card = self.cards[index]
        self.query_one("#compare-query", ComparePane).show(
            line((self.left, "bold")), self.query_path, self.query_rel, q
        )
        self.query_one("#compare-result", ComparePane).show(
            self._title(card), card.path, card.name, r
        )

    def action_move(self, dx: int, dy: int = 0) -> None:
        new = min(max(self.index + dx + dy, 0), len(self.cards) - 1)
        if new != self.index:
            self.index = new
            self._show()

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_search(self) -> None:
        path = self.cards[self.index].path
        while len(self.app.screen_stack) > 1:  # back to the main screen (from triage too)
            self.app.pop_screen()
        self.app.search_view.run_search(path)
