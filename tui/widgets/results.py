"""The results panel: a reflowing grid of pixel-art cards, best match first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from tui import keys
from tui.layout import NORMAL, Tier
from tui.text import NEWLINE, fit_path, line
from tui.thumbs import Thumb


@dataclass(frozen=True)
class CardData:
    rank: int
    score: float
    path: Path  # absolute
    name: str  # relative to the indexed root
    label: str = ""  # the score in words (engine.labels)


class ResultCard(Vertical):
    """One match: rank and score, thumbnail, file name."""

    def __init__(self, data: CardData, tier: Tier, width: int | None = None) -> None:
        super().__init__(classes="card")
        self.data = data
        self._score = Static("", classes="card-score")
        self._thumb = Static("…", classes="card-thumb")
        self._caption = Static("", classes="card-name")
        self.set_tier(tier, width)
        self.set_data(data)

    def compose(self):
        yield self._score
        yield self._thumb
        yield self._caption

    def set_tier(self, tier: Tier, width: int | None = None) -> None:
        """The tier's thumbnail, in a card *width* cells wide (the grid's column; at least
        the tier's card width)."""
        self.tier = tier
        self.card_width = max(tier.card_width, width or 0)
        self.styles.width = self.card_width
        self._thumb.styles.width, self._thumb.styles.height = tier.thumb
        spare = self.card_width - 4 - tier.thumb[0]  # border and padding
        self._thumb.styles.margin = (0, 0, 0, max(0, spare // 2))  # centred in the card

    def set_data(self, data: CardData) -> None:
        """Reuse this card for another match: updating beats mounting a new widget."""
        self.data = data
        room = self.card_width - 4  # border and padding
        score = f"{data.score:.3f}"
        word = f" {data.label}" if data.label else ""
        # the rank gives way to the score's word where both do not fit (the order says it)
        rank = f"#{data.rank} " if len(f"#{data.rank} {score}{word}") <= room else ""
        # the card's parts have fixed sizes: no layout of the screen for a new content
        self._score.update(line((rank, "bold"), score, (word, "italic")), layout=False)
        self._caption.update(fit_path(data.name, room), layout=False)
        self._thumb.update("…", layout=False)
        self._thumb.remove_class("-broken")

    def on_click(self) -> None:
        """A click selects the card (enter then searches with it)."""
        if isinstance(self.parent, ResultsGrid):
            self.parent.select(self)

    def show_thumb(self, thumb: Thumb) -> None:
        if thumb.art is not None:
            self._thumb.update(thumb.art, layout=False)
        else:
            self._thumb.update(
                line(("cannot show", "red"), NEWLINE, thumb.error or ""), layout=False
            )
            self._thumb.add_class("-broken")


class ResultsGrid(VerticalScroll, can_focus=True):
    """Cards in as many columns as the width allows; arrows move, enter re-queries."""

    BINDINGS = keys.bindings("results")

    cursor: reactive[int] = reactive(0)

    class Chosen(Message):
        """Enter on a card: make it the new query."""

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

    @property
    def card_width(self) -> int:
        """Each column's width: the room there is, shared (a wider card shows the whole
        score word and more of the path)."""
        return max(self.tier.card_width, (self.size.width - 2) // self.columns)

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self.columns
        width = self.card_width
        for card in self.cards:
            if card.card_width != width:
                card.set_tier(self.tier, width)
                card.set_data(card.data)

    def show(self, cards: list[CardData]) -> None:
        """Show *cards*, best first (UI thread). Existing card widgets are reused and only
        the difference in count is mounted or removed: re-mounting a dozen cards per
        search costs hundreds of milliseconds, updating them a few."""
        keep = self.cards[: len(cards)]
        for card in self.cards[len(cards) :]:
            card.remove()
        width = self.card_width
        for card, data in zip(keep, cards):
            card.set_tier(self.tier, width)
            card.set_data(data)
        new = [ResultCard(c, self.tier, width) for c in cards[len(keep) :]]
        self.cards = keep + new
        self.styles.grid_size_columns = self.columns
        if new:
            self.mount_all(new)
        self.cursor = 0
        self.scroll_home(animate=False)
        self._paint_cursor()

    def select(self, card: ResultCard) -> None:
        if card in self.cards:
            self.cursor = self.cards.index(card)
            self.focus()

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

    def action_move(self, dx: int, dy: int) -> None:
        if not self.cards:
            return
        new = self.cursor + dx + dy * self.columns
        self.cursor = min(max(new, 0), len(self.cards) - 1)

    def action_choose(self) -> None:
        if self.current is not None:
            self.post_message(self.Chosen(self.current))
