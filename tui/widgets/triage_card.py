"""What the triage screen shows and remembers: a card per picture (:class:`Slot`,
:class:`TriageCard`) and the session the app keeps between visits (:class:`TriageState`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from tui.layout import Tier
from tui.text import NEWLINE, line, plain
from tui.widgets.results import CardData, ResultCard

if TYPE_CHECKING:
    from engine.triage import TriageSession


@dataclass
class TriageState:
    """What the app keeps of triage between visits: the session (its report, choices
    and moves) and where the cursor was."""

    keep_in: tuple[str, ...] = ()
    against: str | None = None  # a test folder: its copies of this one are leaks
    session: TriageSession | None = None
    cursor: tuple[int, int] | str = (0, 0)
    #: the index changed since the session last looked: refresh on the next visit
    stale: bool = False


class Kind(str, Enum):
    """What a card stands for."""

    KEEP = "keep"  # the picture a group of copies keeps
    DUPLICATE = "duplicate"  # a copy of it
    OUTLIER = "outlier"
    BROKEN = "broken"
    LEAK = "leak"  # a TEST picture that copies one of DIR
    SOURCE = "source"  # the DIR picture a leak copies
    MISLABELED = "mislabeled"  # a suspected wrong label
    NEIGHBOUR = "neighbour"  # one of its voters
    UNUSABLE = "unusable"  # hard to learn from


@dataclass
class Slot:
    """One card on the screen and what it stands for."""

    path: str  # relative to the root (or to ``base``)
    kind: Kind
    score: float
    identical: bool = False
    marked: bool = False
    why: str = ""  # the evidence; a mislabeled picture's suggested folder; flags
    kept: bool = False  # under a kept folder: never moved
    base: Path | None = None  # the folder *path* is in, when not the root (a leak)
    #: what the row stands for, where an action needs it: a leak; for a copy of a copy,
    #: the path of the copy it copies
    extra: Any = None

    @property
    def movable(self) -> bool:
        """Whether ``m`` may set it aside: copies not kept, suspected wrong labels and
        unusable pictures of this folder, and a leak's copy in the other folder."""
        if self.kind == Kind.DUPLICATE:
            return not self.kept
        return self.kind in (Kind.MISLABELED, Kind.UNUSABLE, Kind.LEAK)

    @property
    def test(self) -> bool:
        """A picture of the other folder (``--against``)."""
        return self.kind == Kind.LEAK


#: Rows whose first card is compared with the others by ``z``.
COMPARED = (Kind.KEEP, Kind.LEAK, Kind.MISLABELED)


class TriageCard(ResultCard):
    """A card the screen binds to one slot after another (a pool: rows scroll by
    rebinding, never by mounting)."""

    def __init__(self, slot: Slot, root: Path, tier: Tier) -> None:
        self.slot = slot
        self.root = root
        where = (slot.base or root) / slot.path
        super().__init__(CardData(0, slot.score, where, slot.path), tier)

    def bind(self, slot: Slot) -> None:
        """Show *slot* (its thumbnail comes later, from a worker). The same picture as
        before keeps its drawing: only its label is made again (a card redrawn for
        nothing costs a terminal frame)."""
        same = (
            slot.path == self.slot.path and slot.base == self.slot.base and slot.kind != Kind.BROKEN
        )
        self.slot = slot
        if same and self.slot.path:
            self.refresh_label()
            return
        where = (slot.base or self.root) / slot.path
        self.set_data(CardData(0, slot.score, where, slot.path))

    def set_data(self, data: CardData) -> None:
        super().set_data(data)
        self._head: Text | None = None  # the result card's own label was just drawn over it
        self.refresh_label()
        if self.slot.kind == Kind.BROKEN:
            self._thumb.update(
                line(("cannot read", "red"), NEWLINE, plain(self.slot.why)), layout=False
            )
            self._thumb.add_class("-broken")

    def refresh_label(self) -> None:
        s = self.slot
        mark = ("  ✓", "bold yellow") if s.marked else ""
        if s.kind == Kind.KEEP:
            head = line(("keep", "bold green"), (f" · {s.why}", "green") if s.why else "")
        elif s.kind == Kind.OUTLIER:
            head = line(("nearest ", "dim"), f"{s.score:.3f}")
        elif s.kind == Kind.BROKEN:
            head = line(("broken", "bold red"))
        elif s.kind == Kind.LEAK:
            head = line(("leak ", "bold red"), f"{s.score:.3f}", mark)
        elif s.kind in (Kind.SOURCE, Kind.NEIGHBOUR):
            head = line((s.kind.value, "dim"))
        elif s.kind == Kind.MISLABELED:
            head = line(("→ ", "bold"), (s.why, "bold"), f" {s.score:.2f}", mark)
        elif s.kind == Kind.UNUSABLE:
            head = line((s.why, "bold red"), mark)
        else:
            head = line(
                f"{s.score:.3f}",
                (" =identical", "bold") if s.identical else "",
                (" kept", "bold green") if s.kept else "",
                ("  ✓ set aside", "bold yellow") if s.marked else "",
            )
        if head != getattr(self, "_head", None):
            self._head = head
            self._score.update(head, layout=False)
        self.set_class(s.marked, "-marked")
