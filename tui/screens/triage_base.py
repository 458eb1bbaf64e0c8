"""The triage screen's frame: its layout, the session's work in workers, the rows in
view and the cursor; :mod:`tui.screens.triage` adds what the keys do."""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState

from engine.names import count, printable
from tui import keys
from tui.layout import COMPACT, Tier
from tui.screens.base import AppScreen, TierChanged
from tui.text import line, plain
from tui.widgets.footer import KeysFooter
from tui.widgets.line import Line
from tui.widgets.triage_card import Kind, TriageCard, TriageState
from tui.widgets.triage_rows import Row, Rows, RowView

if TYPE_CHECKING:
    from engine.triage import TriageReport


#: A report's cursor: the picture the cursor is on when the report arrives (a refresh
#: lands while the person keeps moving).
HERE = "\0here"


class TriageReady(Message):
    """A report to lay out, the cursor's place (a path, a (row, col), or None: where it
    was), and a line saying what happened (shown in the status)."""

    def __init__(self, report: TriageReport, cursor=None, said: str = "") -> None:
        super().__init__()
        self.report, self.cursor, self.said = report, cursor, said


class TriageProgress(Message):
    def __init__(self, phase: str, done: float) -> None:
        super().__init__()
        self.phase, self.done = phase, done


class IndexChanged(Message, bubble=False):
    """Indexing ended with new or removed pictures: triage takes them in."""


class TriageBase(AppScreen):
    """The triage screen without its actions (:class:`tui.screens.triage.TriageScreen`
    adds them): the session in workers, its reports laid out, the rows and the cursor."""

    BINDINGS = keys.bindings("triage")
    HELP_PLACES = ("triage",)

    def __init__(self, search, state: TriageState | None = None, tier: Tier = COMPACT) -> None:
        super().__init__()
        self.search = search
        self.state = state or TriageState()
        self.tier = tier
        self.rows: Rows | None = None
        self.report: TriageReport | None = None
        self.row, self.col = 0, 0
        self.top = 0  # the first row in view
        self.views: list[RowView] = []
        self._cancel = threading.Event()
        self._thumb_gen = 0
        self._said = ""

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="triage-head"):
            with Horizontal(id="triage-top"):
                yield Line(line(("finding copies…", "dim")), id="triage-status")
                yield ProgressBar(total=1.0, show_eta=False, id="triage-bar")
            yield Line("", id="triage-sections")
            yield Line("", id="triage-why")
            yield Line("", id="triage-marks")
        yield Vertical(id="triage-rows")
        yield KeysFooter()

    @property
    def session(self):
        return self.state.session

    def on_mount(self) -> None:
        self.query_one("#triage-rows").border_title = "triage"
        self._show_marks()
        session = self.session
        if session is not None and session.report is not None and not self.state.stale:
            self.post_message(TriageReady(session.report, self.state.cursor))
        else:
            self.open_session()

    def on_unmount(self) -> None:
        self._cancel.set()
        self.state.cursor = (self.row, self.col)

    def on_index_changed(self, _message: IndexChanged) -> None:
        self.state.stale = True
        if self.is_current and self.session is not None:
            self.refresh_session()

    def on_screen_resume(self) -> None:
        """Back on screen (the screen is kept between visits): new pictures triaged if
        indexing brought some meanwhile."""
        if self.state.stale and self.session is not None:
            self.refresh_session()

    async def on_tier_changed(self, _message: TierChanged) -> None:
        if self.app.tier != self.tier:
            self.tier = self.app.tier
            for view in self.views:
                await view.remove()
            self.views = []
            if self.rows is not None:
                await self._fit_views()
                self._paint()

    def _per_row(self) -> int:
        """Cards a row shows at this width."""
        width = self.query_one("#triage-rows").size.width or self.app.size.width
        return max(1, (width - 2) // self.tier.card_width)

    def _views_wanted(self) -> int:
        """Rows in view at this height: a label and a card each."""
        height = self.query_one("#triage-rows").size.height or 10
        card = self.tier.thumb[1] + 4  # border, score, name
        return max(1, (height - 2) // (card + 1))

    async def _fit_views(self) -> None:
        want, per_row = self._views_wanted(), self._per_row()
        box = self.query_one("#triage-rows", Vertical)
        while len(self.views) > want:
            await self.views.pop().remove()
        new = [RowView(self.search.root, self.tier) for _ in range(want - len(self.views))]
        if new:
            self.views += new
            await box.mount_all(new)
        for v in self.views:
            await v.fit(per_row)

    async def on_resize(self, _event: events.Resize) -> None:
        if self.rows is not None:
            await self._fit_views()
            self._paint()

    # --- work -----------------------------------------------------------------------------

    def _progress(self, phase: str, done: float) -> None:
        self.post_message(TriageProgress(phase, done))

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def open_session(self, cursor=None) -> None:
        """Open the session (the first visit), or bring it up to the index; the cursor
        goes to *cursor* (None: where the app kept it)."""
        from engine.triage import TriageSession

        state = self.state
        session = state.session
        fresh = session is None
        if session is None:
            session = TriageSession(self.search, keep_in=state.keep_in, against=state.against)
            state.session = session
            said = ""
        else:
            said = "the index changed: only the new pictures were triaged"
        before = session.report.images if session.report else 0
        run = session.open if fresh else session.refresh
        report = run(self._progress, self._cancel)
        state.stale = False
        if not fresh and report.images != before:
            n = report.images - before
            said = (
                f"refreshed: {n:+d} {'picture' if abs(n) == 1 else 'pictures'} since the last look"
            )
        self.post_message(TriageReady(report, state.cursor if cursor is None else cursor, said))

    def refresh_session(self) -> None:
        """The index changed (indexing ended, ``i``): triage the new pictures; the cursor
        stays on the picture it is on."""
        self.query_one("#triage-status", Static).update(
            line(("the index changed: triaging the new pictures…", "dim"))
        )
        self.open_session(HERE)

    def _act(self, what, cursor=None, said: str = "") -> None:
        """Run session action *what* (returns a report) in a worker; lay out its report."""
        self._run_action(what, cursor, said)

    @work(thread=True, group="triage-action", exit_on_error=False)
    def _run_action(self, what, cursor, said: str) -> None:
        session = self.session
        with session.lock:
            report = what(session)
        self.post_message(TriageReady(report, cursor, said))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A triage or an action that failed says so in the status line (the app also
        shows it as a notification)."""
        if event.state == WorkerState.ERROR and event.worker.group.startswith("triage"):
            error = event.worker.error
            self.query_one("#triage-status", Static).update(
                line(("triage failed", "bold red"), ": ", str(error) or type(error).__name__)
            )
            self.query_one("#triage-bar", ProgressBar).visible = False

    def on_triage_progress(self, message: TriageProgress) -> None:
        bar = self.query_one("#triage-bar", ProgressBar)
        bar.visible = True  # not display: showing it must not lay the screen out again
        bar.update(progress=message.done)
        self.query_one("#triage-status", Static).update(line(("triage: ", "dim"), message.phase))

    async def on_triage_ready(self, message: TriageReady) -> None:
        report = message.report
        cursor = message.cursor
        if cursor == HERE:
            card = self.current
            cursor = card.slot.path if card is not None else None
        self.query_one("#triage-bar", ProgressBar).visible = False
        self.report = report
        session = self.session
        test_root = Path(self.state.against).resolve() if self.state.against else None
        self.rows = Rows(report, session.marks, session.test_marks, test_root)
        if message.said:
            self._said = message.said
        self._show_status()
        await self._fit_views()
        self._place(cursor)
        self._paint()

    def _show_status(self) -> None:
        report = self.report
        if report is None:
            return
        parts: list = [
            (count(len(report.groups), "group"), "bold"),
            f" of copies: {count(report.duplicates, 'picture')} could go, of {report.images}",
        ]
        if self._said:
            parts += [" · ", (self._said, "green")]
        app = self.app
        progress = getattr(app, "index_progress", None)
        if getattr(app, "indexing", False) and progress is not None:
            parts += [
                " · ",
                (
                    f"indexing ({progress.done} of {progress.total} new pictures): triage"
                    " refreshes by itself when it ends",
                    "yellow",
                ),
            ]
        self.query_one("#triage-status", Static).update(line(*parts))

    # --- the cursor and the view -------------------------------------------------------------

    def _place(self, cursor) -> None:
        """Put the cursor on a path (its card), or a place kept in range."""
        if isinstance(cursor, str) and self.rows is not None:
            found = self.rows.find(cursor)
            cursor = found if found is not None else (self.row, self.col)
        if cursor is None:
            cursor = (self.row, self.col)
        n = len(self.rows) if self.rows is not None else 0
        self.row = min(max(cursor[0], 0), max(n - 1, 0))
        slots = self._slots(self.row)
        self.col = min(max(cursor[1], 0), max(len(slots) - 1, 0))

    def _slots(self, i: int) -> list:
        if self.rows is None or not 0 <= i < len(self.rows):
            return []
        return self.rows.row(i).slots

    @property
    def current(self) -> TriageCard | None:
        """The card under the cursor (None: no rows)."""
        for v in self.views:
            if v.row is not None and self._view_index(v) == self.row:
                return v.card_at(self.col)
        return None

    def _view_index(self, view: RowView) -> int:
        return self.top + self.views.index(view)

    def current_row(self) -> Row | None:
        if self.rows is None or not len(self.rows):
            return None
        return self.rows.row(self.row)

    def _paint(self) -> None:
        """Bind the row widgets to the rows in view, mark the cursor, and start drawing
        the thumbnails in view."""
        rows = self.rows
        if rows is None:
            return
        count = len(self.views)
        if self.row < self.top:
            self.top = self.row
        elif self.row >= self.top + count:
            self.top = self.row - count + 1
        self.top = max(0, min(self.top, max(len(rows) - count, 0)))
        per_row = self._per_row()
        for k, view in enumerate(self.views):
            i = self.top + k
            if i >= len(rows):
                view.bind(None, 0)
                continue
            row = rows.row(i)
            first = 0
            if i == self.row and self.col >= per_row:
                first = self.col - per_row + 1
            view.bind(row, first)
        card = self.current
        for view in self.views:
            for c in view.cards:
                if c.has_class("-cursor") and c is not card:
                    c.remove_class("-cursor")
        if card is not None and not card.has_class("-cursor"):
            card.add_class("-cursor")
        self._show_sections()
        self._show_why(card)
        self._show_marks()
        self._draw_thumbs()

    def _draw_thumbs(self) -> None:
        """Thumbnails of the cards in view: those drawn before at once, the rest by a
        worker (the newest request wins: a fast scroll never waits for a keypress)."""
        self._thumb_gen += 1
        thumbs = self.app.thumbs
        todo = []
        for view in self.views:
            for card in view.cards:
                if not card.display or card.slot.kind == Kind.BROKEN or not card.slot.path:
                    continue
                have = thumbs.peek(card.data.path, *self.tier.thumb)
                if have is not None:
                    card.show_thumb(have)
                else:
                    todo.append((card, card.data.path))
        if todo:
            self.load_thumbs(todo, self._thumb_gen)

    @work(thread=True, exclusive=True, group="triage-thumbs", exit_on_error=False)
    def load_thumbs(self, todo: list, gen: int) -> None:
        thumbs = self.app.thumbs
        for card, path in todo:
            if self._cancel.is_set() or gen != self._thumb_gen:
                return
            thumb = thumbs.get(path, *self.tier.thumb)
            self.app.call_from_thread(self._show_thumb, card, path, thumb, gen)

    def _show_thumb(self, card: TriageCard, path, thumb, gen: int) -> None:
        if gen == self._thumb_gen and card.data.path == path:
            self.app.present(thumb)
            card.show_thumb(thumb)

    def _show_sections(self) -> None:
        rows = self.rows
        if rows is None:
            return
        here = rows.section_of(self.row).name if len(rows) else ""
        parts: list = []
        for n, s in enumerate(rows.sections, 1):
            style = "reverse bold" if s.name == here else ("bold" if s.items else "dim")
            parts += [(f" {n} {s.title} {s.items} ", style), " "]
        self.query_one("#triage-sections", Static).update(line(*parts))

    def _show_why(self, card: TriageCard | None) -> None:
        why = self.query_one("#triage-why", Static)
        if card is None:
            empty = self.rows is not None and not len(self.rows)
            why.update(line(("no copies, outliers or broken files", "dim")) if empty else "")
            return
        s = card.slot
        if s.kind == Kind.KEEP:
            why.update(line(plain(s.path), (" · kept: ", "dim"), (s.why, "green")))
        elif s.kind == Kind.DUPLICATE:
            kept = " · under a kept folder: never moved" if s.kept else ""
            keeper = self._slots(self.row)[0]
            # a copy of a copy: the copy it copies, by name (its card is in the row)
            via = f" · through {printable(PurePosixPath(s.extra).name)}" if s.extra else ""
            why.update(
                line(plain(s.path), ": ", s.why, (kept, "green"),
                     (f"{via} · copy of {printable(keeper.path)} (kept: {keeper.why})", "dim"))
            )  # fmt: skip
        elif s.kind == Kind.OUTLIER:
            why.update(line(plain(s.path), (" · nearest: ", "dim"), plain(s.why)))
        elif s.kind in (Kind.BROKEN, Kind.UNUSABLE):
            why.update(line(plain(s.path), ": ", (s.why, "red")))
        elif s.kind == Kind.LEAK:
            why.update(line(plain(s.path), " (the other folder): ", s.why))
        elif s.kind == Kind.MISLABELED:
            why.update(
                line(plain(s.path), ": it looks like ", plain(s.why),
                     f" (score {s.score:.2f}: how likely its folder is wrong) · l moves it there")
            )  # fmt: skip
        elif s.kind == Kind.NEIGHBOUR:
            why.update(line(plain(s.path), (" · one of its nearest neighbours", "dim")))
        else:
            why.update(line(plain(s.path), (" · the original in this folder", "dim")))

    def _show_marks(self) -> None:
        session = self.session
        n = len(session.marks) + len(session.test_marks) if session is not None else 0
        parts: list = [
            (f"{n} marked", "bold yellow" if n else "bold"),
            (" · m moves them · " if n else " · space marks, a a group, A all · ", "dim"),
        ]
        report = self.report
        if report is not None:
            if session.threshold is None:
                parts.append((f"threshold {report.floor:.2f}: every copy found (+/-)", "dim"))
            else:
                parts.append((f"threshold {report.threshold:.2f}: only copies this alike", "dim"))
        self.query_one("#triage-marks", Static).update(line(*parts))
