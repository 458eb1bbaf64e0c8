"""The results panel: a reflowing grid of pixel-art cards, best match first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from tui.layout import NORMAL, Tier
from tui.thumbs import Thumb


@dataclass(frozen=True)
class CardData:
    rank: int
    score: float
    path: Path  # absolute
    name: str  # relative to the indexed root


class ResultCard(Vertical):
    """One match: rank and score, thumbnail, file name."""

    def __init__(self, data: CardData, tier: Tier) -> None:
        super().__init__(classes="card")
        self.data = data
        self.styles.width = tier.card_width
        self._thumb_box = tier.thumb

    def compose(self):
        d = self.data
        yield Static(f"[b]#{d.rank}[/b]  {d.score:.3f}", classes="card-score")
        thumb = Static("…", classes="card-thumb")
        thumb.styles.width, thumb.styles.height = self._thumb_box
        yield thumb
        yield Static(d.name, classes="card-name")

    def show_thumb(self, thumb: Thumb) -> None:
        target = self.query_one(".card-thumb", Static)
        if thumb.pixels is not None:
            target.update(thumb.pixels)
        else:
            target.update(f"[red]cannot show[/red]\n{thumb.error}")
            target.add_class("-broken")


class ResultsGrid(VerticalScroll, can_focus=True):
    """Cards in as many columns as the width allows; arrows move, enter re-queries."""

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("enter", "choose", "Search this"),
    ]

    cursor: reactive[int] = reactive(0)

    class Chosen(Message):
        """Enter on a card: make it the new query."""

        def __init__(self, data: CardData) -> None:
            super().__init__()
            self.data = data

    class Highlighted(Message):
        def __init__(self, data: CardData) -> None:
            super().__init__()
            self.data = data

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cards: list[ResultCard] = []
        self.tier = NORMAL

    @property
    def columns(self) -> int:
        return max(1, (self.size.width - 2) // self.tier.card_width)

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self.columns

    def show(self, cards: list[CardData]) -> None:
        """Replace every card (called on the UI thread with ready data)."""
        self.remove_children()
        self.cards = [ResultCard(c, self.tier) for c in cards]
        self.styles.grid_size_columns = self.columns
        if self.cards:
            self.mount_all(self.cards)
        self.cursor = 0
        self.scroll_home(animate=False)
        self._paint_cursor()

    def card_for(self, path: Path) -> list[ResultCard]:
        return [c for c in self.cards if c.data.path == path]

    @property
    def current(self) -> CardData | None:
        if 0 <= self.cursor < len(self.cards):
            return self.cards[self.cursor].data
        return None

    def watch_cursor(self) -> None:
        self._paint_cursor()

    def _paint_cursor(self) -> None:
        for i, card in enumerate(self.cards):
            card.set_class(i == self.cursor, "-cursor")
        if self.current is not None:
            self.cards[self.cursor].scroll_visible(animate=False)
            self.post_message(self.Highlighted(self.current))

    def action_move(self, dx: int, dy: int) -> None:
        if not self.cards:
            return
        new = self.cursor + dx + dy * self.columns
        self.cursor = min(max(new, 0), len(self.cards) - 1)

    def action_choose(self) -> None:
        if self.current is not None:
            self.post_message(self.Chosen(self.current))
