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

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from engine.names import printable
from tui.screens.confirm import ConfirmMove
from tui.screens.triage_base import TriageBase, TriageProgress, TriageReady
from tui.widgets.results import CardData
from tui.widgets.triage_card import COMPARED, Kind, TriageCard
from tui.widgets.triage_rows import Row, Rows

if TYPE_CHECKING:
    pass

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


#: How far ``+`` and ``-`` move the threshold.
THRESHOLD_STEP = 0.05


class TriageScreen(TriageBase):
    """Triage, live: the frame (:class:`TriageBase`) and what each key does."""

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

    def action_search(self) -> None:
        card = self.current
        if card is None or card.slot.kind in (Kind.BROKEN, Kind.LEAK):
            return
        path = card.data.path
        self.dismiss(None)
        self.app.search_view.run_search(path)

    def action_close(self) -> None:
        self.dismiss(None)
