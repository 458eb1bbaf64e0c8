"""The triage screen's rows: every group, outlier, broken file, leak, wrong label and
unusable picture, in sections, made on demand; and the widget that shows one row.

A report of 100,000 pictures has tens of thousands of rows: they are never all made.
:class:`Rows` knows how many each section holds and makes a row when it is shown
(:meth:`Rows.row`); the screen keeps a few :class:`RowView` widgets and binds them to
the rows in view, so scrolling rebinds widgets and never mounts any.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical

from tui.layout import Tier
from tui.text import line, plain
from tui.widgets.line import Line
from tui.widgets.triage_card import Kind, Slot, TriageCard

if TYPE_CHECKING:
    from engine.triage import TriageReport

#: Single pictures (outliers, broken files, unusable pictures) per row.
CHUNK = 12
#: The sections, in order: (name, title in the section bar).
SECTIONS = (
    ("copies", "copies"),
    ("outliers", "outliers"),
    ("broken", "broken"),
    ("leaks", "leaks"),
    ("labels", "wrong labels?"),
    ("unusable", "unusable"),
)


@dataclass(frozen=True)
class Row:
    section: str
    label: Text
    slots: list[Slot]
    group: int | None = None  # the group's index in the report (copies only)


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    items: int  # groups, pictures or leaks it holds
    start: int  # its first row
    rows: int


class Rows:
    """The rows of a report, made on demand; *marks* and *test_marks* are the marked
    paths of this folder and of the other one (``--against``)."""

    def __init__(
        self,
        report: TriageReport,
        marks: set[str],
        test_marks: set[str],
        test_root: Path | None = None,
    ) -> None:
        self.report, self.marks, self.test_marks = report, marks, test_marks
        self.test_root = test_root
        items = {
            "copies": len(report.groups),
            "outliers": len(report.outliers),
            "broken": len(report.broken),
            "leaks": len(report.leaks),
            "labels": len(report.mislabeled),
            "unusable": len(report.unusable),
        }
        chunked = {"outliers", "broken", "unusable"}
        self.sections: list[Section] = []
        start = 0
        for name, title in SECTIONS:
            n = items[name]
            rows = -(-n // CHUNK) if name in chunked else n
            if name == "labels":  # then one row per pair of classes confused as a rule
                rows += len(report.confusions)
            self.sections.append(Section(name, title, n, start, rows))
            start += rows
        self.count = start
        self._where: dict[str, tuple[int, int]] | None = None

    def __len__(self) -> int:
        return self.count

    def section_of(self, i: int) -> Section:
        for s in self.sections:
            if s.start <= i < s.start + s.rows:
                return s
        return self.sections[-1]

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def row(self, i: int) -> Row:
        s = self.section_of(i)
        k = i - s.start
        return getattr(self, f"_{s.name}")(k, s)

    # --- one row per kind -----------------------------------------------------------------

    def _copies(self, k: int, s: Section) -> Row:
        g = self.report.groups[k]
        slots = [Slot(g.representative.path, Kind.KEEP, 1.0, why=g.kept_because)]
        for m in g.members:
            slots.append(
                Slot(
                    m.path, Kind.DUPLICATE, m.score, m.identical,
                    marked=not m.kept and m.path in self.marks, why=m.why, kept=m.kept,
                    extra=m.via or None,
                )
            )  # fmt: skip
        wide = f" · {len(slots)} pictures, ←/→ to see all" if len(slots) > 4 else ""
        label = line(
            (f"group {g.id} of {s.items}", "bold"),
            (" · keep: ", "dim"),
            (g.kept_because, "green"),
            (wide, "dim"),
        )
        return Row("copies", label, slots, k)

    def _chunk(self, k: int, items: list, what: str) -> tuple[list, Text]:
        part = items[k * CHUNK : (k + 1) * CHUNK]
        first, last = k * CHUNK + 1, k * CHUNK + len(part)
        return part, line((f"{what} {first}-{last} of {len(items)}", "bold"))

    def _outliers(self, k: int, s: Section) -> Row:
        part, label = self._chunk(k, self.report.outliers, "outliers")
        slots = [Slot(o.path, Kind.OUTLIER, o.score, why=o.neighbour) for o in part]
        return Row("outliers", line(label, (": least like anything else", "dim")), slots)

    def _broken(self, k: int, s: Section) -> Row:
        part, label = self._chunk(k, self.report.broken, "broken files")
        return Row("broken", label, [Slot(b.path, Kind.BROKEN, 0.0, why=b.reason) for b in part])

    def _leaks(self, k: int, s: Section) -> Row:
        x = self.report.leaks[k]
        slots = [
            Slot(
                x.other, Kind.LEAK, x.score, x.identical, marked=x.other in self.test_marks,
                why=x.why, base=self.test_root, extra=x,
            ),
            Slot(x.path, Kind.SOURCE, x.score),
        ]  # fmt: skip
        label = line(
            (f"leak {k + 1} of {s.items}: ", "bold red"), plain(x.other), " copies ",
            plain(x.path), (" · space marks the copy, n: not a leak", "dim"),
        )  # fmt: skip
        return Row("leaks", label, slots)

    def _labels(self, k: int, s: Section) -> Row:
        if k >= len(self.report.mislabeled):
            return self._confusion(k - len(self.report.mislabeled))
        m = self.report.mislabeled[k]
        slots = [
            Slot(
                m.path, Kind.MISLABELED, m.confidence, marked=m.path in self.marks, why=m.suggested
            )
        ]
        slots += [Slot(n, Kind.NEIGHBOUR, 0.0) for n in m.neighbours]
        label = line(
            (f"{k + 1} of {s.items}: ", "bold"), ("filed under ", "dim"), plain(m.folder),
            ("; it looks like ", "dim"), plain(m.suggested), (" · l moves it there", "dim"),
        )  # fmt: skip
        return Row("labels", label, slots)

    def _confusion(self, k: int) -> Row:
        c = self.report.confusions[k]
        slots = [
            Slot(
                m.path, Kind.MISLABELED, m.confidence, marked=m.path in self.marks, why=m.suggested
            )
            for m in c.pictures[:CHUNK]
        ]
        more = f", the {CHUNK} likeliest wrong shown" if c.count > CHUNK else ""
        label = line(
            plain(c.text()), (f" (confused as a rule, not listed one by one{more})", "dim")
        )
        return Row("labels", label, slots)

    def _unusable(self, k: int, s: Section) -> Row:
        part, label = self._chunk(k, self.report.unusable, "hard to learn from")
        slots = [
            Slot(u.path, Kind.UNUSABLE, 0.0, marked=u.path in self.marks, why=" ".join(u.flags))
            for u in part
        ]
        return Row("unusable", label, slots)

    # --- finding a picture ----------------------------------------------------------------

    def find(self, path: str) -> tuple[int, int] | None:
        """The row and column of the first card of *path* (made on first use)."""
        if self._where is None:
            where: dict[str, tuple[int, int]] = {}
            for s in self.sections:
                for k in range(s.rows):
                    if s.name == "copies":
                        g = self.report.groups[k]
                        names = [g.representative.path, *(m.path for m in g.members)]
                    else:
                        names = [slot.path for slot in self.row(s.start + k).slots]
                    for c, p in enumerate(names):
                        where.setdefault(p, (s.start + k, c))
            self._where = where
        return self._where.get(path)


class RowView(Vertical):
    """One row on screen: its label and a strip of cards, rebound as the view moves."""

    def __init__(self, root: Path, tier: Tier) -> None:
        super().__init__(classes="triage-rowview")
        self.root, self.tier = root, tier
        self.label = Line("", classes="triage-label")
        self.strip = Horizontal(classes="triage-row")
        self.cards: list[TriageCard] = []
        self.row: Row | None = None
        self.first = 0  # the row's first card shown

    def compose(self):
        yield self.label
        yield self.strip

    async def fit(self, count: int) -> None:
        """Hold *count* card widgets (the cards the width shows)."""
        while len(self.cards) > count:
            await self.cards.pop().remove()
        new: list[TriageCard] = []
        while len(self.cards) + len(new) < count:
            new.append(TriageCard(Slot("", Kind.OUTLIER, 0.0), self.root, self.tier))
        if new:
            self.cards += new
            await self.strip.mount_all(new)

    def bind(self, row: Row | None, first: int) -> None:
        """Show *row* from its card *first* on (None: nothing, the view is past the end)."""
        self.row, self.first = row, first
        if self.display != (row is not None):
            self.display = row is not None
        if row is None:
            return
        if row.label != getattr(self, "_label", None):
            self._label = row.label
            self.label.update(row.label)
        for j, card in enumerate(self.cards):
            k = first + j
            shown = k < len(row.slots)
            if card.display != shown:
                card.display = shown
            if shown:
                card.bind(row.slots[k])

    def card_at(self, col: int) -> TriageCard | None:
        j = col - self.first
        return self.cards[j] if 0 <= j < len(self.cards) and self.cards[j].display else None
