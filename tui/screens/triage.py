"""The triage screen: groups of copies side by side, outliers, broken files.

Each row is a group: its representative ("keep") first, then its copies, most similar
first, as pixel art with their scores; identical copies are marked ``=``. The line under
the header says why the highlighted picture was grouped; ``n`` says it is not a copy
(remembered in the index). Below come the
outliers and the files that could not be read. Marked duplicates are moved, on ``m``,
into ``ROOT/.lookalike/quarantine/`` with a manifest; ``u`` puts the last move back.
Triage, moves and thumbnails run in workers; the screen only lays out what they send.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static

from tui import keys
from tui.layout import COMPACT, Tier
from tui.text import line, plain
from tui.widgets.results import CardData, ResultCard

if TYPE_CHECKING:
    from engine.triage import TriageReport

#: Groups drawn at most (the command line lists them all).
MAX_GROUPS = 100


@dataclass
class Slot:
    """One card on the screen and what it stands for."""

    path: str  # relative to the root
    kind: str  # "keep", "duplicate", "outlier"
    score: float
    identical: bool = False
    marked: bool = False
    why: str = ""


class TriageCard(ResultCard):
    def __init__(self, slot: Slot, root: Path, tier: Tier) -> None:
        self.slot = slot
        super().__init__(CardData(0, slot.score, root / slot.path, slot.path), tier)

    def set_data(self, data: CardData) -> None:
        super().set_data(data)
        self.refresh_label()

    def refresh_label(self) -> None:
        s = self.slot
        if s.kind == "keep":
            head = line(("keep", "bold green"))
        elif s.kind == "outlier":
            head = line(("nearest ", "dim"), f"{s.score:.3f}")
        else:
            head = line(
                f"{s.score:.3f}",
                (" =identical", "bold") if s.identical else "",
                ("  ✓ set aside", "bold yellow") if s.marked else "",
            )
        self._score.update(head)
        self.set_class(s.marked, "-marked")


class TriageReady(Message):
    def __init__(self, report: TriageReport) -> None:
        super().__init__()
        self.report = report


class TriageProgress(Message):
    def __init__(self, phase: str, done: float) -> None:
        super().__init__()
        self.phase, self.done = phase, done


class TriageScreen(Screen[None]):
    """Near-duplicates, outliers and broken files of the app's folder."""

    BINDINGS = keys.bindings("triage")

    def __init__(self, search, threshold: float | None = None, tier: Tier = COMPACT) -> None:
        super().__init__()
        self.search = search
        self.threshold = threshold
        self.tier = tier
        self.rows: list[list[TriageCard]] = []
        self.row, self.col = 0, 0
        self.report: TriageReport | None = None
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="triage-head"):
            yield Static(line(("finding copies…", "dim")), id="triage-status")
            yield ProgressBar(total=1.0, show_eta=False, id="triage-bar")
            yield Static("", id="triage-why")
        rows = VerticalScroll(id="triage-rows")
        rows.can_focus = False  # the arrows move the cursor, not the scroll
        yield rows
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#triage-rows").border_title = "triage"
        self.run_triage()

    def on_unmount(self) -> None:
        self._cancel.set()

    # --- work ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def run_triage(self) -> None:
        from engine.triage import DEFAULT_THRESHOLD, triage

        report = triage(
            self.search,
            self.threshold or DEFAULT_THRESHOLD,
            on_progress=lambda phase, done: self.post_message(TriageProgress(phase, done)),
            cancel=self._cancel,
        )
        self.post_message(TriageReady(report))

    def on_triage_progress(self, message: TriageProgress) -> None:
        self.query_one("#triage-bar", ProgressBar).update(progress=message.done)
        self.query_one("#triage-status", Static).update(
            line(("finding copies: ", "dim"), message.phase)
        )

    async def on_triage_ready(self, message: TriageReady) -> None:
        report = message.report
        self.query_one("#triage-bar", ProgressBar).update(progress=1.0)
        shown = f" (the first {MAX_GROUPS} shown)" if len(report.groups) > MAX_GROUPS else ""
        self.query_one("#triage-status", Static).update(
            line(
                (f"{len(report.groups)} groups", "bold"),
                f" of copies{shown}: {report.duplicates} images could go · ",
                (f"{len(report.outliers)} outliers", "bold"),
                " · ",
                (f"{len(report.broken)} broken", "bold red" if report.broken else "bold"),
            )
        )
        await self._layout(report)
        self.report = report  # last: the rows on screen are this report's

    async def _layout(self, report: TriageReport) -> None:
        box = self.query_one("#triage-rows", VerticalScroll)
        await box.remove_children()
        self.rows = []
        rows_widgets = []
        root = self.search.root
        for g in report.groups[:MAX_GROUPS]:
            slots = [Slot(g.representative.path, "keep", 1.0)]
            slots += [Slot(m.path, "duplicate", m.score, m.identical, why=m.why) for m in g.members]
            cards = [TriageCard(s, root, self.tier) for s in slots]
            self.rows.append(cards)
            rows_widgets.append(Static(line((f"group {g.id}", "bold")), classes="triage-label"))
            rows_widgets.append(Horizontal(*cards, classes="triage-row"))
        if report.outliers:
            cards = [
                TriageCard(Slot(o.path, "outlier", o.score), root, self.tier)
                for o in report.outliers
            ]
            self.rows.append(cards)
            rows_widgets.append(
                Static(line(("outliers: least like anything else", "bold")), classes="triage-label")
            )
            rows_widgets.append(Horizontal(*cards, classes="triage-row"))
        if report.broken:
            text = [line((f"{len(report.broken)} broken files", "bold red"))]
            text += [line("  ", plain(b.path), ": ", (b.reason, "dim")) for b in report.broken]
            rows_widgets.append(Static(Text("\n").join(text), id="triage-broken"))
        if not rows_widgets:
            rows_widgets.append(
                Static("no copies, outliers or broken files", classes="triage-label")
            )
        await box.mount_all(rows_widgets)
        self.row = self.col = 0
        self._paint()
        self.load_thumbs([c for row in self.rows for c in row])

    @work(thread=True, exclusive=True, group="triage-thumbs", exit_on_error=False)
    def load_thumbs(self, cards: list[TriageCard]) -> None:
        thumbs = self.app.thumbs
        for card in cards:
            if self._cancel.is_set():
                return
            thumb = thumbs.get(card.data.path, *self.tier.thumb)
            self.app.call_from_thread(self.app.present, thumb)
            self.app.call_from_thread(card.show_thumb, thumb)

    # --- moving around ------------------------------------------------------------------

    @property
    def current(self) -> TriageCard | None:
        if 0 <= self.row < len(self.rows) and self.rows[self.row]:
            return self.rows[self.row][min(self.col, len(self.rows[self.row]) - 1)]
        return None

    def _paint(self) -> None:
        for r, cards in enumerate(self.rows):
            for c, card in enumerate(cards):
                card.set_class(r == self.row and c == min(self.col, len(cards) - 1), "-cursor")
        card = self.current
        if card is not None:
            card.scroll_visible(animate=False)
        why = self.query_one("#triage-why", Static)
        if card is None:
            why.update("")
        elif card.slot.kind == "duplicate":
            why.update(line(plain(card.slot.path), ": ", card.slot.why))
        else:
            why.update(line(plain(card.slot.path)))

    def action_move(self, dx: int, dy: int) -> None:
        if not self.rows:
            return
        self.row = min(max(self.row + dy, 0), len(self.rows) - 1)
        self.col = 0 if dy else min(max(self.col + dx, 0), len(self.rows[self.row]) - 1)
        self._paint()

    def action_mark(self) -> None:
        card = self.current
        if card is None or card.slot.kind != "duplicate":
            self.app.notify("only duplicates can be set aside (the first of a group is kept)")
            return
        card.slot.marked = not card.slot.marked
        card.refresh_label()

    def action_mark_all(self) -> None:
        for cards in self.rows:
            for card in cards:
                if card.slot.kind == "duplicate":
                    card.slot.marked = True
                    card.refresh_label()

    def marked(self) -> list[str]:
        return [c.slot.path for cards in self.rows for c in cards if c.slot.marked]

    def action_move_marked(self) -> None:
        marked = self.marked()
        if not marked:
            self.app.notify("nothing marked: space marks a duplicate, a marks them all")
            return
        self.move_worker(marked)

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def move_worker(self, marked: list[str]) -> None:
        from engine.quarantine import QUARANTINE, move_aside

        report = move_aside(self.search.root, marked, self.search.root / QUARANTINE)
        skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
        self.app.call_from_thread(
            self.app.say,
            f"set {len(report.moved)} files aside in {QUARANTINE}{skipped} · u puts them back",
        )
        self.app.call_from_thread(self._refresh_after_move)

    def action_undo(self) -> None:
        self.undo_worker()

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def undo_worker(self) -> None:
        from engine.quarantine import MoveError, undo

        try:
            report = undo(self.search.root)
        except MoveError as exc:
            self.app.call_from_thread(self.app.say, str(exc))
            return
        skipped = f", {len(report.skipped)} not put back" if report.skipped else ""
        self.app.call_from_thread(self.app.say, f"put back {len(report.moved)} files{skipped}")
        self.app.call_from_thread(self._refresh_after_move)

    def _refresh_after_move(self) -> None:
        """The folder changed: bring the index up to date, then triage again."""
        self.report = None
        self.query_one("#triage-status", Static).update(line(("updating the index…", "dim")))
        self.reindex_then_triage()

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def reindex_then_triage(self) -> None:
        from engine.storage import IndexBusy

        with contextlib.suppress(IndexBusy):  # the app's own run catches up; triage what is in
            self.search.index()
        self.app.call_from_thread(self.run_triage)

    def action_not_duplicate(self) -> None:
        card = self.current
        if card is None or card.slot.kind != "duplicate":
            self.app.notify("n applies to a copy (not the first of its group)")
            return
        self.reject_worker(self.rows[self.row][0].slot.path, card.slot.path)

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def reject_worker(self, keep: str, other: str) -> None:
        self.search.store.reject(keep, other)
        self.app.call_from_thread(
            self.app.say, f"{other} is not a copy of {keep}: never grouped again"
        )
        self.app.call_from_thread(self.run_triage)

    def action_search(self) -> None:
        card = self.current
        if card is None:
            return
        path = card.data.path
        self.dismiss(None)
        self.app.run_search(path)

    def action_close(self) -> None:
        self.dismiss(None)
