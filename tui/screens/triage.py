"""The triage screen: a live session over every group, outlier, broken file, leak, wrong
label and unusable picture, whatever their number.

Rows come in sections (copies, outliers, broken, leaks, wrong labels, unusable); the
bar under the header counts each, and ``1``-``6`` (or ``tab``) jump between them. A
group's row shows its keeper first (and the rule that chose it), then its copies, most
similar first; ``←``/``→`` walk along a row, ``↑``/``↓``, ``PageUp``/``PageDown``,
``Home``/``End`` between rows. Only the rows in view exist as widgets: moving rebinds
them, and their thumbnails are drawn by a worker as soon as they are in view.

Every action goes to the engine's session (:class:`engine.triage.TriageSession`) in a
worker and comes back as a report the screen lays out: marks and keepers are written to
the index as they are made; ``m`` moves the marked (this folder's copies, wrong labels
and unusable pictures, and the other folder's leaked copies) with progress, and the
moved pictures leave their groups at once; ``u`` puts the last move back; ``k`` keeps
another picture; ``n`` says a pair is no copy, or a leak none; ``+``/``-`` step the
threshold from the copy rule's own. When the index changes (indexing ends, ``i``), only
the new pictures are triaged and the screen says so.
"""

from __future__ import annotations

import threading
from pathlib import Path
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
from tui.screens.base import AppScreen
from tui.screens.confirm import ConfirmMove
from tui.text import line, plain
from tui.widgets.footer import KeysFooter
from tui.widgets.line import Line
from tui.widgets.results import CardData
from tui.widgets.triage_card import COMPARED, Kind, TriageCard, TriageState
from tui.widgets.triage_rows import Row, Rows, RowView

if TYPE_CHECKING:
    from engine.triage import TriageReport

#: How far ``+`` and ``-`` move the threshold.
THRESHOLD_STEP = 0.05
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


#: How ``z`` names the two sides, by the kind of the row's first picture.
COMPARED_NAMES = {
    Kind.KEEP: ("keep", "copy"),
    Kind.LEAK: ("leak", "original"),
    Kind.MISLABELED: ("wrong label?", "neighbour"),
}


def _compared_why(first, other) -> str:
    """What the compare view says beside the score of *other*, compared with *first*."""
    if other.kind == Kind.NEIGHBOUR:
        return f"filed under {other.path.rpartition('/')[0] or '.'}"
    if other.kind == Kind.SOURCE:
        return first.why  # the leak's reason
    return "identical bytes" if other.identical and not other.why else other.why


class TriageScreen(AppScreen):
    """See the module's notes."""

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
            why.update(
                line(plain(s.path), ": ", s.why, (kept, "green"),
                     (f" · copy of {printable(keeper.path)} (kept: {keeper.why})", "dim"))
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

    # --- moving around ---------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        if not self.rows or not len(self.rows):
            return
        if dy:
            self.row = min(max(self.row + dy, 0), len(self.rows) - 1)
            self.col = 0
        else:
            self.col = min(max(self.col + dx, 0), len(self._slots(self.row)) - 1)
        self._paint()

    def _jump(self, row: int) -> None:
        """Put the cursor on *row*, shown at the top of the view."""
        self.row, self.col = min(max(row, 0), len(self.rows or ()) - 1), 0
        self.top = self.row
        self._paint()

    def action_page(self, direction: int) -> None:
        if self.rows and len(self.rows):
            self._jump(self.row + direction * max(1, len(self.views)))

    def action_edge(self, end: bool) -> None:
        if self.rows and len(self.rows):
            self._jump(len(self.rows) - 1 if end else 0)

    def action_section(self, number: int) -> None:
        """Jump to section *number* (1-6); 0 the next one with rows, -1 the previous."""
        rows = self.rows
        if not rows or not len(rows):
            return
        filled = [s for s in rows.sections if s.rows]
        here = rows.section_of(self.row)
        if number > 0:
            s = rows.sections[number - 1]
            if not s.rows:
                self.notify(f"no {s.title.rstrip('?')} here")
                return
        else:
            at = filled.index(here) if here in filled else 0
            s = filled[(at + (1 if number == 0 else -1)) % len(filled)]
        self._jump(s.start)

    # --- marking ----------------------------------------------------------------------------

    def action_mark(self) -> None:
        card = self.current
        if card is None or not card.slot.movable:
            why = (
                "it is under a kept folder"
                if card and card.slot.kept
                else "the keeper, a neighbour or an original stays: mark a copy"
            )
            self.notify(f"not marked: {why}")
            return
        self._set_marks([card.slot], not card.slot.marked)

    def _set_marks(self, slots: list, on: bool) -> None:
        """Mark or unmark *slots* now on screen; the session writes them to the index in
        a worker."""
        here = [s for s in slots if not s.test]
        there = [s for s in slots if s.test]
        session = self.session
        for s in slots:
            s.marked = on
        (session.marks.update if on else session.marks.difference_update)(s.path for s in here)
        (session.test_marks.update if on else session.test_marks.difference_update)(
            s.path for s in there
        )
        self._remember_marks([s.path for s in here], [s.path for s in there], on)
        for view in self.views:
            for card in view.cards:
                if card.display and card.slot in slots:
                    card.refresh_label()
        self._show_marks()

    @work(thread=True, group="triage-marks", exit_on_error=False)
    def _remember_marks(self, here: list[str], there: list[str], on: bool) -> None:
        session = self.session
        with session.lock:
            if here:
                session.mark(here, on)
            if there:
                session.mark(there, on, test=True)

    def _movable_of(self, rows: list[Row]) -> list:
        return [s for row in rows for s in row.slots if s.movable]

    def action_mark_group(self) -> None:
        row = self.current_row()
        if row is None:
            return
        slots = self._movable_of([row])
        if slots:
            self._set_marks(slots, not all(s.marked for s in slots))

    def action_mark_all(self) -> None:
        """Every copy of every group (not the keepers, not kept copies)."""
        report = self.report
        if report is None:
            return
        paths = report.movable()
        session = self.session
        on = not set(paths) <= session.marks
        (session.marks.update if on else session.marks.difference_update)(paths)
        self._remember_marks(paths, [], on)
        test_root = self.rows.test_root if self.rows is not None else None
        self.rows = Rows(report, session.marks, session.test_marks, test_root)
        self._paint()

    # --- deciding ----------------------------------------------------------------------------

    def _group_card(self, what: str) -> TriageCard | None:
        card = self.current
        if card is None or card.slot.kind not in (Kind.KEEP, Kind.DUPLICATE):
            self.notify(f"{what} applies to a picture of a group of copies")
            return None
        return card

    def action_keep(self) -> None:
        card = self._group_card("k")
        if card is None or card.slot.kind == Kind.KEEP:
            return
        path = card.slot.path
        self._act(lambda s: s.keep(path), path, f"keeping {printable(path)} (remembered)")

    def action_threshold(self, step: int) -> None:
        session, report = self.session, self.report
        if session is None or report is None:
            return
        now = report.floor if session.threshold is None else session.threshold
        new = round(min(max(now + step * THRESHOLD_STEP, 0.0), 1.0), 2)
        value = None if new <= report.floor else new
        if value == session.threshold:
            return
        card = self.current
        cursor = card.slot.path if card is not None else None
        self._act(lambda s: s.set_threshold(value), cursor)

    def action_not_duplicate(self) -> None:
        card = self.current
        if card is not None and card.slot.kind == Kind.LEAK:
            leak = card.slot.extra
            self._act(lambda s: s.not_leak(leak), (self.row, 0), "not a leak: remembered")
            return
        if card is None or card.slot.kind != Kind.DUPLICATE:
            self.notify("n applies to a copy (not the first of its group), or to a leak")
            return
        slots = self._slots(self.row)
        keeper, other = slots[0].path, card.slot.path
        # a group of two is gone after it: the next group takes its row (the keeper's path
        # may well be listed in another section, which is not where the user was)
        cursor = keeper if len(slots) > 2 else (self.row, 0)
        self._act(
            lambda s: s.not_copy(keeper, other),
            cursor,
            f"{printable(other)} is no copy of {printable(keeper)}: never grouped again",
        )

    def action_compare(self) -> None:
        card = self.current
        row = self.current_row()
        if card is None or row is None or row.slots[0].kind not in COMPARED or len(row.slots) < 2:
            self.notify("z compares a copy with its keeper, a leak or a wrong label")
            return
        from tui.screens.compare import CompareScreen

        def where(slot) -> Path:
            return (slot.base or self.search.root) / slot.path

        first, others = row.slots[0], row.slots[1:]
        index = others.index(card.slot) if card.slot in others else 0
        # each picture with what triage says of it: a copy's reason, a leak's, a neighbour's
        # folder beside the folder the picture is filed under
        cards = [
            CardData(i + 1, s.score, where(s), s.path, _compared_why(first, s))
            for i, s in enumerate(others)
        ]
        left, right = COMPARED_NAMES[first.kind]
        self.app.push_screen(CompareScreen(where(first), first.path, cards, index, left, right))

    # --- moving files ----------------------------------------------------------------------------

    def action_move_marked(self) -> None:
        session = self.session
        here, there = sorted(session.marks), sorted(session.test_marks)
        if not here and not there:
            self.notify("nothing marked: space marks a copy, a its group, A every group")
            return
        from engine.quarantine import QUARANTINE, plan

        root = self.search.root
        if here:
            kept = session.report.kept_members() if session.report is not None else []
            planned = plan(here, root / QUARANTINE, kept)
        else:  # only the other folder's pictures are marked: there is one
            root = Path(str(self.state.against)).resolve()
            planned = plan(there, root / QUARANTINE)

        def answered(yes: bool | None) -> None:
            if yes:
                self.move_worker(here, there)

        self.app.push_screen(ConfirmMove(planned, root), answered)

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def move_worker(self, here: list[str], there: list[str]) -> None:
        from engine.errors import LookalikeError

        session = self.session
        total = len(here) + len(there)

        def progress(done: int, _n: int, base: int = 0) -> None:
            self.post_message(TriageProgress("setting files aside", (base + done) / max(total, 1)))

        moved, skipped = 0, list[tuple[str, str]]()
        try:
            with session.lock:
                if here:
                    done = session.set_aside(here, progress)
                    moved, skipped = moved + len(done.moved), skipped + done.skipped
                if there:
                    done = session.set_aside_test(there, lambda d, n: progress(d, n, len(here)))
                    moved, skipped = moved + len(done.moved), skipped + done.skipped
                report = session.report
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc), severity="error")
            self.post_message(TriageReady(session.report, None))
            return
        first = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        said = f"set {moved} aside{f', {len(skipped)} not moved' if skipped else ''} · u puts them back"
        self.post_message(TriageReady(report, None, said))  # first: saying it waits
        self.app.call_from_thread(
            self.app.say, said + first, severity="error" if skipped else "information"
        )

    def action_undo(self) -> None:
        self.undo_worker()

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def undo_worker(self) -> None:
        from engine.errors import LookalikeError

        session = self.session
        self.post_message(TriageProgress("putting files back", 0.0))
        try:
            with session.lock:
                done = session.undo()
                report = session.report
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc))
            self.post_message(TriageReady(session.report, None))
            return
        skipped = f", {len(done.skipped)} not put back" if done.skipped else ""
        said = f"put back {len(done.moved)}{skipped}"
        cursor = done.moved[0] if done.moved else None
        self.post_message(TriageReady(report, cursor, said))
        self.app.call_from_thread(self.app.say, said)
        self.app.call_from_thread(self.app.index_quietly)

    def action_relabel(self) -> None:
        card = self.current
        if card is None or card.slot.kind != Kind.MISLABELED:
            self.notify("l moves a suspected wrong label to the folder it looks like it belongs in")
            return
        self.relabel_worker(card.slot.path, card.slot.why)

    @work(thread=True, exclusive=True, group="triage-move", exit_on_error=False)
    def relabel_worker(self, path: str, label: str) -> None:
        from engine.errors import LookalikeError

        session = self.session
        try:
            with session.lock:
                done = session.relabel(path, label)
                report = session.report
        except LookalikeError as exc:
            self.app.call_from_thread(self.app.say, str(exc), severity="error")
            return
        if done.skipped:
            self.app.call_from_thread(
                self.app.say, f"not moved {path}: {done.skipped[0][1]}", severity="error"
            )
            return
        said = f"moved {path} into {label}/ · u puts it back"
        self.app.call_from_thread(self.app.say, said)
        self.post_message(TriageReady(report, None, said))
        self.app.call_from_thread(self.app.index_quietly)

    def action_search(self) -> None:
        card = self.current
        if card is None or card.slot.kind in (Kind.BROKEN, Kind.LEAK):
            return
        path = card.data.path
        self.dismiss(None)
        self.app.search_view.run_search(path)

    def action_close(self) -> None:
        self.dismiss(None)
