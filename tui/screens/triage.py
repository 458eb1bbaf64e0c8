"""The triage screen: groups of copies side by side, outliers, broken files.

Each row is a group: its keeper first, then its copies, most similar first, as pixel
art with their scores; identical copies are marked ``=``, copies under a kept folder
``kept``. Rows scroll sideways, so every card of a wide group can be reached and is in
view when highlighted. Below come the outliers and the files that could not be read,
reachable the same way. The line under the header says why the highlighted picture was
grouped, and the next one how many files are marked and the threshold.

``space`` marks a copy, ``a`` a whole group, ``A`` every group; ``k`` keeps the
highlighted picture instead (the group is made again around it); ``+``/``-`` change the
threshold and regroup; ``z`` compares a copy with its keeper; ``m`` shows the plan (how
many files leave each folder) and moves them, once confirmed, into
``ROOT/.lookalike/quarantine/`` with a record; ``u`` puts the last move back. Marks,
keepers, the threshold and the last report live in :class:`TriageState`, which the app
keeps, so a trip to search or compare and back loses nothing. Triage, regrouping, moves
and thumbnails run in workers; the screen only lays out what they send.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import HorizontalScroll, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static
from textual.worker import Worker, WorkerState

from engine import quarantine
from tui import keys
from tui.layout import COMPACT, Tier
from tui.screens.confirm import ConfirmMove
from tui.text import NEWLINE, line, plain
from tui.widgets.results import CardData
from tui.widgets.triage_card import COMPARED, Slot, TriageCard, TriageState

if TYPE_CHECKING:
    from engine.triage import TriageReport

#: Groups drawn at most (the command line lists them all).
MAX_GROUPS = 100
#: How far ``+`` and ``-`` move the threshold.
THRESHOLD_STEP = 0.05


class TriageReady(Message):
    def __init__(self, report: TriageReport, cursor: tuple[int, int] | str | None = None) -> None:
        super().__init__()
        self.report = report
        self.cursor = cursor  # where to put the cursor: a place, a path, or where it was


class TriageProgress(Message):
    def __init__(self, phase: str, done: float) -> None:
        super().__init__()
        self.phase, self.done = phase, done


class TriageScreen(Screen[None]):
    """Near-duplicates, outliers and broken files of the app's folder."""

    BINDINGS = keys.bindings("triage")
    HELP_PLACES = ("triage",)

    def __init__(self, search, state: TriageState | None = None, tier: Tier = COMPACT) -> None:
        super().__init__()
        self.search = search
        self.state = state or TriageState()
        self.tier = tier
        self.rows: list[list[TriageCard]] = []
        self.group_of_row: list[int | None] = []  # the group's index, None for other rows
        self.row, self.col = 0, 0
        self.report: TriageReport | None = None
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="triage-head"):
            yield Static(line(("finding copies…", "dim")), id="triage-status")
            yield ProgressBar(total=1.0, show_eta=False, id="triage-bar")
            yield Static("", id="triage-why")
            yield Static("", id="triage-marks")
        rows = VerticalScroll(id="triage-rows")
        rows.can_focus = False  # the arrows move the cursor, not the scroll
        yield rows
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#triage-rows").border_title = "triage"
        self._show_marks()
        if self.state.report is not None:
            self.post_message(TriageReady(self.state.report, self.state.cursor))
        else:
            self.run_triage()

    def on_unmount(self) -> None:
        self._cancel.set()
        self.state.cursor = (self.row, self.col)

    # --- work ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def run_triage(self, cursor: tuple[int, int] | str | None = None) -> None:
        from engine.triage import triage

        report = triage(
            self.search,
            self.state.threshold,
            on_progress=lambda phase, done: self.post_message(TriageProgress(phase, done)),
            cancel=self._cancel,
            keep_in=self.state.keep_in,
            prefer=frozenset(self.state.prefer),
        )
        if self.state.against:
            from engine.leaks import find_leaks, open_against
            from engine.storage import IndexBusy

            def indexing(p) -> None:
                self.post_message(
                    TriageProgress("indexing the other folder", p.done / max(1, p.total))
                )

            with open_against(self.search, self.state.against) as test:
                with contextlib.suppress(IndexBusy):
                    test.index(on_progress=indexing, cancel=self._cancel)
                report.leaks = find_leaks(
                    self.search,
                    test,
                    on_progress=lambda phase, done: self.post_message(TriageProgress(phase, done)),
                    cancel=self._cancel,
                )
        self.post_message(TriageReady(report, cursor))

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def regroup(self, cursor: tuple[int, int] | str | None = None) -> None:
        from engine.triage import regroup

        report = self.report or self.state.report
        if report is None:
            return
        new = regroup(report, self.state.threshold, prefer=frozenset(self.state.prefer))
        self.post_message(TriageReady(new, cursor))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A triage that failed (a damaged index, say) says so where the groups would be;
        the app also shows it as a notification."""
        if event.state == WorkerState.ERROR and event.worker.group == "triage":
            error = event.worker.error
            self.query_one("#triage-status", Static).update(
                line(("triage failed", "bold red"), ": ", str(error) or type(error).__name__)
            )

    def on_triage_progress(self, message: TriageProgress) -> None:
        self.query_one("#triage-bar", ProgressBar).update(progress=message.done)
        self.query_one("#triage-status", Static).update(
            line(("finding copies: ", "dim"), message.phase)
        )

    async def on_triage_ready(self, message: TriageReady) -> None:
        report = message.report
        self.state.report = report
        self.query_one("#triage-bar", ProgressBar).update(progress=1.0)
        shown = f" (the first {MAX_GROUPS} shown)" if len(report.groups) > MAX_GROUPS else ""
        parts: list = [
            (f"{len(report.groups)} groups", "bold"),
            f" of copies{shown}: {report.duplicates} images could go · ",
            (f"{len(report.outliers)} outliers", "bold"),
            " · ",
            (f"{len(report.broken)} broken", "bold red" if report.broken else "bold"),
        ]
        for n, what in (
            (len(report.leaks), "leaks"),
            (len(report.mislabeled), "wrong labels?"),
            (len(report.unusable), "unusable"),
        ):
            if n:
                parts += [" · ", (f"{n} {what}", "bold")]
        progress = self.app.index_progress
        if self.app.indexing and progress is not None:
            parts += [
                NEWLINE,
                (
                    f"the index is still being built ({progress.done} of {progress.total} new"
                    " pictures encoded): these groups cover what is indexed so far",
                    "yellow",
                ),
            ]
        self.query_one("#triage-status", Static).update(line(*parts))
        cursor = message.cursor if message.cursor is not None else (self.row, self.col)
        await self._layout(report, cursor)
        self.report = report  # last: the rows on screen are this report's
        self._show_marks()

    async def _layout(self, report: TriageReport, cursor: tuple[int, int] | str) -> None:
        box = self.query_one("#triage-rows", VerticalScroll)
        await box.remove_children()
        self.rows, self.group_of_row = [], []
        widgets = []
        root = self.search.root
        marks = self.state.marks

        def add_row(label: Text, slots: list[Slot], group: int | None) -> None:
            cards = [TriageCard(s, root, self.tier) for s in slots]
            self.rows.append(cards)
            self.group_of_row.append(group)
            widgets.append(Static(label, classes="triage-label"))
            row = HorizontalScroll(*cards, classes="triage-row")
            row.can_focus = False
            widgets.append(row)

        for i, g in enumerate(report.groups[:MAX_GROUPS]):
            slots = [Slot(g.representative.path, "keep", 1.0)]
            for m in g.members:
                movable = not m.kept
                slots.append(
                    Slot(
                        m.path,
                        "duplicate",
                        m.score,
                        m.identical,
                        marked=movable and m.path in marks,
                        why=m.why,
                        kept=m.kept,
                    )
                )
            wide = f" · {len(slots)} pictures, ←/→ to see all" if len(slots) > 4 else ""
            add_row(line((f"group {g.id}", "bold"), (wide, "dim")), slots, i)
        if report.outliers:
            slots = [Slot(o.path, "outlier", o.score, why=o.neighbour) for o in report.outliers]
            add_row(line(("outliers: least like anything else", "bold")), slots, None)
        if report.broken:
            slots = [Slot(b.path, "broken", 0.0, why=b.reason) for b in report.broken]
            add_row(line((f"{len(slots)} broken files", "bold red")), slots, None)
        test = Path(self.state.against).resolve() if self.state.against else None
        for x in report.leaks[:MAX_GROUPS]:
            slots = [
                Slot(x.other, "leak", x.score, x.identical, why=x.why, base=test),
                Slot(x.path, "source", x.score),
            ]
            add_row(
                line(("leak: ", "bold red"), plain(x.other), " copies ", plain(x.path)), slots, None
            )
        for m in report.mislabeled[:MAX_GROUPS]:
            slots = [
                Slot(m.path, "mislabeled", m.confidence, marked=m.path in marks, why=m.suggested)
            ]
            slots += [Slot(n, "neighbour", 0.0) for n in m.neighbours]
            label = line(
                ("filed under ", "dim"), plain(m.folder), ("; its neighbours say ", "dim"),
                plain(m.suggested), (" · l moves it there", "dim"),
            )  # fmt: skip
            add_row(label, slots, None)
        if report.unusable:
            slots = [
                Slot(u.path, "unusable", 0.0, marked=u.path in marks, why=" ".join(u.flags))
                for u in report.unusable
            ]
            add_row(line((f"{len(slots)} pictures hard to learn from", "bold")), slots, None)
        if not widgets:
            widgets.append(Static("no copies, outliers or broken files", classes="triage-label"))
        await box.mount_all(widgets)
        # a mark holds only while its picture may still be set aside (not a keeper now)
        movable = {c.slot.path for row in self.rows for c in row if c.slot.movable}
        self.state.marks &= movable
        self.row, self.col = self._place(cursor)
        self._paint()
        self.load_thumbs([c for row in self.rows for c in row if c.slot.kind != "broken"])

    def _place(self, cursor: tuple[int, int] | str) -> tuple[int, int]:
        """The cursor's row and column: the card of a path, or a place kept in range."""
        if isinstance(cursor, str):
            for r, cards in enumerate(self.rows):
                for c, card in enumerate(cards):
                    if card.slot.path == cursor:
                        return r, c
            cursor = (self.row, self.col)
        if not self.rows:
            return 0, 0
        r = min(max(cursor[0], 0), len(self.rows) - 1)
        return r, min(max(cursor[1], 0), len(self.rows[r]) - 1)

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
            card.scroll_visible(animate=False, immediate=True)
        why = self.query_one("#triage-why", Static)
        if card is None:
            why.update("")
        elif card.slot.kind == "duplicate":
            kept = " · under a kept folder: never moved" if card.slot.kept else ""
            why.update(line(plain(card.slot.path), ": ", card.slot.why, (kept, "green")))
        elif card.slot.kind == "outlier":
            why.update(line(plain(card.slot.path), (" · nearest: ", "dim"), plain(card.slot.why)))
        elif card.slot.kind == "broken":
            why.update(line(plain(card.slot.path), ": ", (card.slot.why, "red")))
        elif card.slot.kind == "leak":
            why.update(line(plain(card.data.path), ": ", card.slot.why))
        elif card.slot.kind == "mislabeled":
            why.update(
                line(plain(card.slot.path), ": its neighbours say ", plain(card.slot.why),
                     f" (confidence {card.slot.score:.2f}) · l moves it there")
            )  # fmt: skip
        elif card.slot.kind == "unusable":
            why.update(line(plain(card.slot.path), ": ", (card.slot.why, "red")))
        else:
            why.update(line(plain(card.slot.path), (" · kept in this group", "dim")))

    def _show_marks(self) -> None:
        n = len(self.state.marks)
        self.query_one("#triage-marks", Static).update(
            line(
                (f"{n} marked", "bold yellow" if n else "bold"),
                (" · m moves them" if n else " · space marks, a a group, A all", "dim"),
                (f" · threshold {self.state.threshold:.2f} (+/-)", "dim"),
            )
        )

    def action_move(self, dx: int, dy: int) -> None:
        if not self.rows:
            return
        self.row = min(max(self.row + dy, 0), len(self.rows) - 1)
        self.col = 0 if dy else min(max(self.col + dx, 0), len(self.rows[self.row]) - 1)
        self._paint()

    # --- marking ------------------------------------------------------------------------

    def _set_mark(self, card: TriageCard, on: bool) -> None:
        card.slot.marked = on
        (self.state.marks.add if on else self.state.marks.discard)(card.slot.path)
        card.refresh_label()

    def action_mark(self) -> None:
        card = self.current
        if card is None or not card.slot.movable:
            why = (
                "it is under a kept folder"
                if card and card.slot.kept
                else "only copies, wrong labels and unusable pictures of this folder can be"
            )
            self.app.notify(f"not marked: {why}")
            return
        self._set_mark(card, not card.slot.marked)
        self._show_marks()

    def _toggle(self, rows: list[list[TriageCard]]) -> None:
        cards = [c for cards in rows for c in cards if c.slot.movable]
        on = not all(c.slot.marked for c in cards)
        for card in cards:
            self._set_mark(card, on)
        self._show_marks()

    def action_mark_group(self) -> None:
        if self.current is not None and self.group_of_row[self.row] is not None:
            self._toggle([self.rows[self.row]])

    def action_mark_all(self) -> None:
        self._toggle([r for r, g in zip(self.rows, self.group_of_row) if g is not None])

    # --- deciding -----------------------------------------------------------------------

    def _group_card(self, what: str, kinds=("keep", "duplicate")) -> TriageCard | None:
        card = self.current
        if card is None or card.slot.kind not in kinds:
            self.app.notify(f"{what} applies to a picture of a group")
            return None
        return card

    def action_keep(self) -> None:
        card = self._group_card("k")
        if card is None or card.slot.kind == "keep" or self.report is None:
            return
        group = self.rows[self.row]
        for other in group:
            self.state.prefer.discard(other.slot.path)
        self.state.prefer.add(card.slot.path)
        self.state.marks.discard(card.slot.path)
        self.regroup(card.slot.path)

    def action_threshold(self, step: float) -> None:
        new = round(min(max(self.state.threshold + step * THRESHOLD_STEP, 0.0), 1.0), 2)
        if new == self.state.threshold or self.report is None:
            return
        self.state.threshold = new
        self._show_marks()
        card = self.current
        self.regroup(card.slot.path if card is not None else None)

    def action_compare(self) -> None:
        card = self.current
        row = self.rows[self.row] if card is not None else []
        if card is None or row[0].slot.kind not in COMPARED or len(row) < 2:
            self.app.notify("z compares a copy with its keeper, a leak or a wrong label")
            return
        from tui.screens.compare import CompareScreen

        keeper = self.rows[self.row][0]
        others = self.rows[self.row][1:]
        index = max(0, others.index(card)) if card in others else 0
        cards = [
            CardData(i + 1, c.slot.score, c.data.path, c.slot.path) for i, c in enumerate(others)
        ]
        self.app.push_screen(
            CompareScreen(keeper.data.path, keeper.slot.path, cards, index, "keep", "copy")
        )

    def action_move_marked(self) -> None:
        marked = sorted(self.state.marks)
        if not marked:
            self.app.notify("nothing marked: space marks a copy, a its group, A every group")
            return
        from engine.quarantine import QUARANTINE, plan

        planned = plan(marked, self.search.root / QUARANTINE)

        def answered(yes: bool | None) -> None:
            if yes:
                self.move_worker(planned.paths)

        self.app.push_screen(ConfirmMove(planned, self.search.root), answered)

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def move_worker(self, marked: list[str]) -> None:
        from engine.errors import LookalikeError
        from engine.quarantine import QUARANTINE

        try:
            keep = self.state.report.keep() if self.state.report is not None else None
            report = quarantine.set_aside(self.search, marked, keep=keep)
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc), severity="error")
            return
        self.state.marks.difference_update(report.moved)
        skipped = f"; {len(report.skipped)} not moved" if report.skipped else ""
        first = f" ({report.skipped[0][0]}: {report.skipped[0][1]})" if report.skipped else ""
        self.app.call_from_thread(
            self.app.say,
            f"set {len(report.moved)} files aside in {QUARANTINE}{skipped}{first} · u puts them back",
            severity="error" if report.skipped else "information",
        )
        self.app.call_from_thread(self._refresh_after_move)

    def action_undo(self) -> None:
        self.undo_worker()

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def undo_worker(self) -> None:
        from engine.errors import LookalikeError

        try:
            report = quarantine.undo_latest(self.search)
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc))
            return
        skipped = f", {len(report.skipped)} not put back" if report.skipped else ""
        self.app.call_from_thread(self.app.say, f"put back {len(report.moved)} files{skipped}")
        self.app.call_from_thread(self._refresh_after_move)

    def _refresh_after_move(self) -> None:
        """The folder changed: bring the index up to date, then triage again (the cursor
        stays where it was)."""
        self.report = None
        self.state.report = None
        self._show_marks()
        self.query_one("#triage-status", Static).update(line(("updating the index…", "dim")))
        self.reindex_then_triage((self.row, self.col))

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def reindex_then_triage(self, cursor: tuple[int, int]) -> None:
        from engine.storage import IndexBusy

        with contextlib.suppress(IndexBusy):  # the app's own run catches up; triage what is in
            self.search.index()
        self.app.call_from_thread(self.run_triage, cursor)

    def action_relabel(self) -> None:
        card = self.current
        if card is None or card.slot.kind != "mislabeled":
            self.app.notify("l moves a suspected wrong label to the folder its neighbours say")
            return
        self.relabel_worker(card.slot.path, card.slot.why)

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def relabel_worker(self, path: str, label: str) -> None:
        from engine.errors import LookalikeError

        try:
            report = quarantine.relabel(self.search, path, label)
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc), severity="error")
            return
        self.state.marks.discard(path)
        if report.skipped:
            self.app.call_from_thread(
                self.app.say, f"not moved {path}: {report.skipped[0][1]}", severity="error"
            )
            return
        self.app.call_from_thread(self.app.say, f"moved {path} into {label}/ · u puts it back")
        self.app.call_from_thread(self._refresh_after_move)

    def action_not_duplicate(self) -> None:
        card = self.current
        if card is None or card.slot.kind != "duplicate":
            self.app.notify("n applies to a copy (not the first of its group)")
            return
        self.reject_worker(self.rows[self.row][0].slot.path, card.slot.path)

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def reject_worker(self, keep: str, other: str) -> None:
        self.search.store.reject(keep, other)
        self.state.marks.discard(other)
        self.app.call_from_thread(
            self.app.say, f"{other} is not a copy of {keep}: never grouped again"
        )
        self.app.call_from_thread(self.run_triage, (self.row, self.col))

    def action_search(self) -> None:
        card = self.current
        if card is None or card.slot.kind in ("broken", "leak"):
            return
        path = card.data.path
        self.dismiss(None)
        self.app.search_view.run_search(path)

    def action_close(self) -> None:
        self.dismiss(None)
