"""A triage session: the use-case layer the command line and the app both drive.

A session holds everything a triage knows: the candidate graph with each pair's
evidence (:mod:`engine.triage.candidates`), the facts of each picture, what the person
chose (keepers, marks, pairs that are no copies, leaks that are none: all remembered in
the index), the threshold, and the sections of the report. Each action is a small
update of what it holds, never a triage again:

* **open / refresh** reads the index's facts and brings the graph up to date: only new
  pictures' candidates (and those of pictures that lost one) are joined and verified;
  with nothing new, nothing is measured and no vector is read;
* **keep, not a copy, threshold** regroup from the pairs found (milliseconds);
* **set aside, relabel, undo** move files (in the caller's worker, with progress) and
  take the moved pictures out of, or put them back into, their groups at once; the
  index forgets moved files as before, and the pictures brought back are indexed again
  by the next run, which finds them in the graph unchanged;
* **marks** and **keepers** are written to the index as they are made, so the next
  session, the command line included, starts where this one stopped. A choice holds
  while the file keeps its content.

:func:`triage` is a session opened once: what ``lookalike triage DIR`` prints.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from engine.names import count
from engine.quarantine import Keep, MoveReport, relabel, set_aside, undo_latest
from engine.triage import candidates as cand
from engine.triage import labels
from engine.triage.groups import DEFAULT_THRESHOLD, Graph, group_pairs, numbered
from engine.triage.leaks import Leak, open_against
from engine.triage.report import TriageReport
from engine.triage.sections import confusions, drop_from, put_back
from engine.triage.verify import quietly
from engine.triage.view import Ask, Paths, Row, View, make

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch

#: The share of images reported as outliers.
OUTLIER_SHARE = 0.01

Progress = Callable[[str, float], None]


@dataclass
class Move:
    """A move made in this session: which folder (``"train"`` or ``"test"``), what moved,
    and what it took out of the report's sections (an undo puts it back)."""

    side: str
    report: MoveReport
    stash: dict = field(default_factory=dict)


@dataclass
class TriageSession:
    """See the module's notes. Actions run one at a time under :attr:`lock`, each in
    milliseconds; a refresh makes its new :class:`~engine.triage.view.View` without the
    lock (actions answer from the current one meanwhile) and swaps it in under it."""

    search: ImageSimilaritySearch
    keep_in: tuple[str, ...] = ()
    outlier_share: float = OUTLIER_SHARE
    against: str | None = None
    against_store: str | None = None
    #: the threshold asked for; None: the copy rule's own (:attr:`TriageReport.floor`)
    threshold: float | None = None
    #: wrong labels: the N likeliest (None: those scored at least *labels_cut*)
    labels_top: int | None = None
    labels_cut: float = labels.CUT
    report: TriageReport | None = None
    marks: set[str] = field(default_factory=set)
    test_marks: set[str] = field(default_factory=set)
    prefer: set[str] = field(default_factory=set)
    away: set[str] = field(default_factory=set)  # set aside in this session
    lock: threading.RLock = field(default_factory=threading.RLock)
    moves: list[Move] = field(default_factory=list)
    _view: View | None = field(default=None, repr=False)
    _paths: Paths | None = field(default=None, repr=False)
    _kept_rows: dict[str, Row] = field(default_factory=dict, repr=False)
    _rejected: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _not_leaks: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _refreshing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending: tuple[dict, dict] | None = field(default=None, repr=False)

    @property
    def view(self) -> View:
        """The view of the last refresh (a session is opened before any action)."""
        if self._view is None:
            raise RuntimeError("the triage session is not open yet")
        return self._view

    @property
    def opened(self) -> TriageReport:
        """The report of the last refresh or action (a session is opened first)."""
        if self.report is None:
            raise RuntimeError("the triage session is not open yet")
        return self.report

    @property
    def graph(self) -> cand.CandidateGraph | None:
        return self._view.graph if self._view is not None else None

    # --- reading the index ------------------------------------------------------------------

    def open(self, on_progress: Progress | None = None, cancel=None) -> TriageReport:
        """Triage the index as it is (bring it up to date first): the first call, which
        also reads the choices remembered in the index."""
        with self.lock:
            self._load_choices()
        return self.refresh(on_progress, cancel)

    def refresh(self, on_progress: Progress | None = None, cancel=None) -> TriageReport:
        """Bring the session up to the index: new pictures joined and verified, gone ones
        dropped, the sections made again; the groups keep every choice made, those made
        meanwhile included."""
        t0 = time.perf_counter()
        say = on_progress or (lambda _phase, _done: None)
        cancel = cancel or threading.Event()
        with self._refreshing:  # one refresh at a time
            with self.lock:
                if self._paths is None:
                    self._paths = Paths(self.search)
                ask = Ask(
                    set(self.away), dict(self._kept_rows), self.outlier_share, self.against,
                    self.against_store, set(self._not_leaks), self.labels_top, self.labels_cut,
                )  # fmt: skip
                previous = self.graph
            view, test_marks = make(self.search, previous, ask, self._paths, say, cancel)
            with self.lock:
                # what moved meanwhile leaves the new view's sections too
                drop_from(view.sections, self.away - ask.away)
                self._view = view
                self._hold_choices()
                if self.against:
                    self.test_marks = set(test_marks)
                self.report = self._assemble(time.perf_counter() - t0)
                return self.report

    def _load_choices(self) -> None:
        """The choices remembered in the index; keepers and marks are kept once the
        first view shows they still hold (a file changed since is chosen no more)."""
        store = self.search.store
        self._pending = (store.choices("keep"), store.choices("mark"))
        self._rejected = store.rejections()
        self._not_leaks = {(p, os.fsdecode(v)) for p, v in store.choices("not-leak").items()}

    def _hold_choices(self) -> None:
        """Keepers and marks read at open that still hold in the view just made."""
        if self._pending is None or self._view is None:
            return
        keeps, marks = self._pending
        self._pending = None
        digest = self._view.digest
        self.prefer |= {p for p, v in keeps.items() if v and digest(p) == v}
        self.marks |= {p for p, v in marks.items() if v and digest(p) == v}

    # --- the groups ---------------------------------------------------------------------------

    def _copies(self) -> Graph:
        """The graph of copies of the current view, with what is set aside and what is
        marked no copy left out while grouping."""
        view = self._view
        root = str(self.search.root)
        if view is None:
            return Graph({}, [], np.zeros(0), np.zeros(0), [], set(), {}, root)
        base = view.copies_graph(root, self._paths or Paths(self.search))
        base.hidden = {view.row_of_path[p] for p in self.away if p in view.row_of_path}
        base.rejected = self._rejected
        return base

    def _assemble(self, seconds: float) -> TriageReport:
        """The report of what the session holds now (groups made again)."""
        view = self._view
        copies_graph = self._copies()
        threshold = 0.0 if self.threshold is None else self.threshold
        groups = group_pairs(copies_graph, threshold, self.keep_in, frozenset(self.prefer))
        s = view.sections if view is not None else {}
        notes = list(s.get("notes", []))
        if self._rejected:
            n = len(self._rejected)
            notes.append(
                f"{count(n, 'pair')} marked not duplicates {'is' if n == 1 else 'are'} never grouped"
            )
        return TriageReport(
            threshold,
            groups,
            s.get("outliers", []),
            s.get("broken", []),
            s.get("images", 0),
            seconds,
            view.method if view is not None else "none",
            s.get("certain", 1.0),
            notes,
            candidates=s.get("candidates", 0),
            verified=view.verified if view is not None else 0,
            verified_now=view.verified_now if view is not None else 0,
            keep_in=self.keep_in,
            prefer=frozenset(self.prefer),
            mislabeled=s.get("mislabeled", []),
            confusions=s.get("confusions", []),
            labels_under_cut=s.get("labels_under_cut", 0),
            unusable=s.get("unusable", []),
            leaks=self._leaks_shown(),
            floor=view.floor if view is not None else 0.0,
        )

    def regroup(self, touched: list[str] | None = None) -> TriageReport:
        """The report with its groups made again after a choice: those of the parts of
        the graph holding the *touched* paths only (groups never cross parts), or all
        of them (None: a threshold, a kept folder)."""
        with self.lock:
            t0 = time.perf_counter()
            report = self.report
            if touched is None or report is None or self._view is None:
                self.report = self._assemble(0.0)
            else:
                self.report = self._regroup_parts(report, touched)
            self.report.seconds = time.perf_counter() - t0
            return self.report

    def _regroup_parts(self, report: TriageReport, touched: list[str]) -> TriageReport:
        view = self.view
        graph = self._copies()
        rows = [view.row_of_path[p] for p in touched if p in view.row_of_path]
        parts = {view.parts[r] for r in rows if r in view.parts}
        s = view.sections
        others = {
            "prefer": frozenset(self.prefer),
            "leaks": self._leaks_shown(),
            "images": s.get("images", report.images),
            "outliers": s.get("outliers", report.outliers),
            "mislabeled": s.get("mislabeled", report.mislabeled),
            "confusions": s.get("confusions", report.confusions),
            "unusable": s.get("unusable", report.unusable),
        }
        if not parts:
            return replace(report, **others)
        only = {r for r, part in view.parts.items() if part in parts}
        stay = [
            g
            for g in report.groups
            if view.parts.get(view.row_of_path.get(g.representative.path, -1)) not in parts
        ]
        fresh = group_pairs(graph, report.threshold, self.keep_in, frozenset(self.prefer), only)
        return replace(report, groups=numbered(stay + fresh), **others)

    def _leaks_shown(self) -> list[Leak]:
        leaks = self.view.sections.get("leaks", []) if self._view is not None else []
        return [x for x in leaks if (x.path, x.other) not in self._not_leaks]

    # --- choices -------------------------------------------------------------------------------

    def set_threshold(self, value: float | None) -> TriageReport:
        """Group only pairs at least *value* visually similar (None: the rule's own)."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("the threshold is a similarity between 0 and 1")
        with self.lock:
            self.threshold = value
            return self.regroup()

    def _digest(self, path: str) -> bytes:
        return self._view.digest(path) if self._view is not None else b""

    def keep(self, path: str) -> TriageReport:
        """Keep *path* in its group: the group is made again around it, and the choice is
        remembered in the index (the other members' earlier choices are dropped)."""
        with self.lock:
            group = next(
                (g for g in self.opened.groups
                 if path in [m.path for m in (g.representative, *g.members)]),
                None,
            )  # fmt: skip
            others = [m.path for m in (group.representative, *group.members)] if group else []
            dropped = [p for p in others if p != path and p in self.prefer]
            self.prefer.difference_update(dropped)
            self.prefer.add(path)
            self.marks.discard(path)
            store = self.search.store
            quietly(store.set_choices, "keep", {path: self._digest(path)}, dropped)
            quietly(store.set_choices, "mark", {}, [path])
            return self.regroup([path])

    def not_copy(self, a: str, b: str) -> TriageReport:
        """*a* and *b* are no copies: never grouped again (remembered in the index)."""
        with self.lock:
            self.search.store.reject(a, b)
            self._rejected.add((a, b) if a < b else (b, a))
            return self.regroup([a, b])

    def not_leak(self, leak: Leak) -> TriageReport:
        """*leak* is none: never reported again (remembered in this folder's index)."""
        with self.lock:
            self.search.store.set_choices("not-leak", {leak.path: os.fsencode(leak.other)})
            self._not_leaks.add((leak.path, leak.other))
            self.test_marks.discard(leak.other)
            return self.regroup([])

    def mark(self, paths: list[str], on: bool, test: bool = False) -> None:
        """Mark (or unmark) *paths* to set aside: this folder's, or with *test* the other
        folder's (a leak's copy). Remembered in the folder's index."""
        with self.lock:
            marks = self.test_marks if test else self.marks
            if on:
                marks.update(paths)
            else:
                marks.difference_update(paths)
            if test:
                self._mark_test(paths, on)
                return
            add = {p: self._digest(p) for p in paths} if on else {}
            quietly(self.search.store.set_choices, "mark", add, [] if on else paths)

    def _mark_test(self, paths: list[str], on: bool) -> None:
        if not self.against:
            return
        # what the other folder's index cannot keep stays for this session
        with (
            contextlib.suppress(Exception),
            open_against(self.search, self.against, self.against_store) as test,
        ):
            add = {p: b"" for p in paths} if on else {}
            test.store.set_choices("mark", add, [] if on else paths)

    # --- moving files --------------------------------------------------------------------------

    def set_aside(
        self, paths: list[str], on_progress: Callable[[int, int], None] | None = None
    ) -> MoveReport:
        """Move *paths* of this folder into its quarantine (undoable), never a keeper;
        the moved pictures leave their groups at once."""
        with self.lock:
            keep = self.opened.keep()
            graph = self._copies()
            links = tuple(graph.paths[i] for i in graph.links)
            keep = Keep(keep.paths, keep.folders, links)  # the kept links are known here
            report = set_aside(self.search, paths, keep=keep, on_progress=on_progress)
            self.moves.append(Move("train", report, self._moved(report.moved)))
            return report

    def set_aside_test(
        self, paths: list[str], on_progress: Callable[[int, int], None] | None = None
    ) -> MoveReport:
        """Move *paths* of the other folder (leaks' copies) into its quarantine."""
        with self.lock:
            with open_against(self.search, self.against, self.against_store) as test:
                report = set_aside(test, paths, on_progress=on_progress)
                quietly(test.store.set_choices, "mark", {}, report.moved)
            self.test_marks.difference_update(report.moved)
            moved = set(report.moved)
            leaks = self.view.sections.get("leaks", [])
            self.view.sections["leaks"] = [x for x in leaks if x.other not in moved]
            stash = {"leaks": [x for x in leaks if x.other in moved]}
            self.moves.append(Move("test", report, stash))
            self.regroup([])
            return report

    def relabel(self, path: str, label: str) -> MoveReport:
        """Move a suspected wrong label into the folder it most likely belongs in (undoable)."""
        with self.lock:
            report = relabel(self.search, path, label)
            self.moves.append(Move("train", report, self._moved(report.moved)))
            return report

    def _moved(self, paths: list[str]) -> dict:
        """Take moved pictures out of their groups and sections at once; what was taken
        out of the sections, for an undo to put back."""
        for p in paths:  # the index forgets them: their facts stay here, for an undo
            row = self.view.row_facts(p)
            if row is not None:
                self._kept_rows[p] = row
        self.away.update(paths)
        self.marks.difference_update(paths)
        quietly(self.search.store.set_choices, "mark", {}, paths)
        stash = drop_from(self.view.sections, set(paths))
        self.regroup(paths)
        return stash

    def undo(self, on_progress: Callable[[int, int], None] | None = None) -> MoveReport:
        """Put back the newest move (of this session first, else this folder's newest);
        the pictures come back into their groups at once."""
        with self.lock:
            last = self.moves[-1] if self.moves else Move("train", MoveReport())
            if last.side == "test":
                with open_against(self.search, self.against, self.against_store) as test:
                    report = undo_latest(test)
            else:
                report = undo_latest(self.search)
            if self.moves:
                self.moves.pop()
            back = set(report.moved)
            if last.side == "train":
                self.away.difference_update(back)

            # what came back (a leak moved aside is known by its copy, in the other folder)
            def came_back(key: str, item) -> bool:
                return (item.other if key == "leaks" and last.side == "test" else item.path) in back

            stash = {
                k: confusions(v, lambda m: m.path in back)
                if k == "confusions"
                else [x for x in v if came_back(k, x)]
                for k, v in last.stash.items()
            }
            put_back(self.view.sections, stash, len(back) if last.side == "train" else 0)
            self.regroup(sorted(back) if last.side == "train" else [])
            return report


def triage(
    search: ImageSimilaritySearch,
    threshold: float | None = DEFAULT_THRESHOLD,
    outlier_share: float = OUTLIER_SHARE,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_in: tuple[str, ...] = (),
    prefer: frozenset[str] = frozenset(),
    labels_top: int | None = None,
    labels_cut: float = labels.CUT,
) -> TriageReport:
    """Triage *search*'s index as it is (bring it up to date first): a session opened
    once. *threshold*: the minimum visual similarity of a grouped pair (0 or None: the
    copy rule alone); *keep_in*: kept folders relative to the root; *prefer*: paths to
    keep first, besides the keepers remembered in the index; *labels_top*,
    *labels_cut*: which wrong labels are listed (:mod:`engine.triage.labels`)."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError("the threshold is a similarity between 0 and 1")
    session = TriageSession(
        search, tuple(keep_in), outlier_share, threshold=threshold or None,
        labels_top=labels_top, labels_cut=labels_cut,
    )  # fmt: skip
    session.open(on_progress, cancel)
    if prefer:
        session.prefer |= set(prefer)
        session.regroup()
    return session.opened
