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
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from engine import copies
from engine.dataset import mislabeled, unusable
from engine.names import first_bad_relpath
from engine.quarantine import Keep, MoveReport, relabel, set_aside, undo_latest
from engine.selfjoin import unit_codes
from engine.triage import candidates as cand
from engine.triage.groups import (
    DEFAULT_THRESHOLD,
    IDENTICAL,
    Graph,
    components,
    floor_of,
    group_pairs,
    numbered,
)
from engine.triage.leaks import Leak, find_leaks, open_against
from engine.triage.report import Outlier, TriageReport
from engine.triage.verify import (
    Cache,
    Opener,
    measure_pixels,
    similarities,
    thumbnails,
    verify,
)

#: The share of images reported as outliers.
OUTLIER_SHARE = 0.01

Progress = Callable[[str, float], None]


@dataclass
class Facts:
    """What the index knows of each usable picture, in slot order (the order of
    :func:`engine.selfjoin.unit_codes`), every path checked."""

    slots: np.ndarray
    paths: list[str]
    digests: list[bytes | None]
    pixels: np.ndarray
    mtimes: np.ndarray
    thumbs: list[bytes | None]
    quality: list[bytes | None]

    @property
    def tags(self) -> np.ndarray:
        return np.array(
            [cand.tag_of(d, int(m)) for d, m in zip(self.digests, self.mtimes)], np.int64
        )


def facts_of(search, slots: np.ndarray | None = None) -> tuple[Facts, list[str]]:
    """The index's facts, aligned with *slots* (the live slots of its vectors; None: in
    the store's own slot order), and their paths; a crafted path, or records and vectors
    that disagree, is the damaged-index error."""
    raw = search.store.image_facts()
    at = np.arange(len(raw.slots))
    if slots is not None:
        at = np.searchsorted(raw.slots, slots)
        if len(slots) and (
            not len(raw.slots)
            or not np.array_equal(raw.slots[np.minimum(at, len(raw.slots) - 1)], slots)
        ):
            raise search.store.damaged("image records and vectors disagree")
    paths = [raw.paths[i] for i in at]
    bad = first_bad_relpath(paths)
    if bad is not None:
        search.check_stored_path(paths[bad])  # the damaged-index error, naming it
    thumbs = [raw.thumbs[i] for i in at] if raw.thumbs else [None] * len(at)
    quality = [raw.quality[i] for i in at] if raw.quality else [None] * len(at)
    facts = Facts(
        raw.slots[at],
        paths,
        [raw.digests[i] for i in at],
        raw.pixels[at],
        raw.mtimes[at],
        thumbs,
        quality,
    )
    return facts, paths


def fingerprint(search) -> str:
    """What a candidate graph is only valid under: the codes' identity, the centre they
    are taken around, and the copy rule."""
    meta = search.store.get_meta()
    keys = ("backbone", "weights_id", "hash_dim", "precision", "input_size", "feature_dim")
    ident = "|".join(str(meta.get(k)) for k in keys)
    return f"{copies.RULE}|{ident}|centre {meta.get('centre_gen')}|v{cand.VERSION}"


@dataclass
class _Row:
    """A graph row's facts, kept while its file is set aside (the index forgets it)."""

    pixels: int
    mtime: int
    digest: bytes | None
    quality: bytes | None


@dataclass
class Move:
    """A move made in this session: which folder (``"train"`` or ``"test"``), what moved,
    and what it took out of the report's sections (an undo puts it back)."""

    side: str
    report: MoveReport
    stash: dict = field(default_factory=dict)


#: How each section is ordered (what an undo sorts back into).
SECTION_ORDER = {
    "outliers": lambda o: (o.score, o.path),
    "mislabeled": lambda m: (-m.confidence, m.path),
    "unusable": lambda u: u.path,
    "leaks": lambda x: (x.other, x.path),
}


@dataclass
class TriageSession:
    """See the module's notes. Not thread-safe by itself: the app runs one action at a
    time (its workers are exclusive); :attr:`lock` guards what a reader copies."""

    search: object
    keep_in: tuple[str, ...] = ()
    outlier_share: float = OUTLIER_SHARE
    against: str | None = None
    against_store: str | None = None
    #: the threshold asked for; None: the copy rule's own (:attr:`TriageReport.floor`)
    threshold: float | None = None
    report: TriageReport | None = None
    graph: cand.CandidateGraph | None = None
    marks: set[str] = field(default_factory=set)
    test_marks: set[str] = field(default_factory=set)
    prefer: set[str] = field(default_factory=set)
    away: set[str] = field(default_factory=set)  # set aside in this session
    lock: threading.RLock = field(default_factory=threading.RLock)
    moves: list[Move] = field(default_factory=list)
    _rows: dict[str, _Row] = field(default_factory=dict, repr=False)
    _allowed: dict[str, bool] = field(default_factory=dict, repr=False)
    _folders: dict[str, tuple[str, set[str]]] = field(default_factory=dict, repr=False)
    _allowed_of: np.ndarray | None = field(default=None, repr=False)
    _copies_graph: Graph | None = field(default=None, repr=False)
    _floor: float = 0.0
    _parts: dict[int, int] = field(default_factory=dict, repr=False)
    _row_of_path: dict[str, int] = field(default_factory=dict, repr=False)
    _rejected: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _not_leaks: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _sections: dict = field(default_factory=dict, repr=False)
    _verified: int = 0

    # --- reading the index ------------------------------------------------------------------

    def open(self, on_progress: Progress | None = None, cancel=None) -> TriageReport:
        """Triage the index as it is (bring it up to date first): the first call."""
        return self.refresh(on_progress, cancel)

    def refresh(self, on_progress: Progress | None = None, cancel=None) -> TriageReport:
        """Bring the session up to the index: new pictures joined and verified, gone ones
        dropped, the sections made again; the groups keep every choice made. Actions
        wait meanwhile (they would change what it is reading)."""
        with self.lock:
            return self._refresh(on_progress, cancel)

    def _refresh(self, on_progress: Progress | None, cancel) -> TriageReport:
        t0 = time.perf_counter()
        say = on_progress or (lambda _phase, _done: None)
        cancel = cancel or threading.Event()
        search = self.search
        say("reading the index", 0.0)
        facts, paths = facts_of(search)
        store = search.store
        self._load_choices(facts)
        fp = fingerprint(search)
        graph = self.graph if self.graph is not None and self.graph.fingerprint == fp else None
        if graph is None:
            graph = cand.decode(_read_blob(store), fp)
        tags = facts.tags
        vec_box: list = []

        def vectors():
            if not vec_box:
                vec = search.vectors()
                units, slots = unit_codes(vec)
                if not np.array_equal(slots, facts.slots):
                    raise store.damaged("image records and vectors disagree")
                vec_box.append((vec, units, slots))
            return vec_box[0]

        dirty = False
        if graph is None:
            if len(paths) >= 2:
                vec, _units, _slots = vectors()
                graph = cand.build(vec, paths, tags, fp, self.outlier_share, say, cancel)
                index_of = np.arange(len(paths), dtype=np.int64)
                dirty = True
            else:
                graph, index_of = None, np.zeros(0, np.int64)
        else:
            graph, index_of, change = cand.update(
                graph, paths, tags, self.away, lambda: vectors()[1:], say, cancel
            )
            dirty = change.any
        self._keep_rows(graph, index_of, facts)
        verified = 0
        if graph is not None:
            measured, verified = self._measure(graph, index_of, facts, vectors, say, cancel)
            dirty |= measured
            if dirty:
                _write_blob(store, cand.encode(graph))
        self.graph = graph
        self._allowed_of = None  # the rows may have changed
        self._copies_graph = None
        self._verified = verified
        self._sections = self._make_sections(graph, say, cancel)
        self.report = self._assemble(time.perf_counter() - t0)
        return self.report

    def _load_choices(self, facts: Facts) -> None:
        """The choices remembered in the index that still hold (a file changed since is
        chosen no more)."""
        store = self.search.store
        digest = dict(zip(facts.paths, facts.digests))
        self.prefer = {p for p, v in store.choices("keep").items() if digest.get(p) == v}
        self.marks = {p for p, v in store.choices("mark").items() if digest.get(p) == v}
        self._rejected = store.rejections()
        self._not_leaks = {(p, os.fsdecode(v)) for p, v in store.choices("not-leak").items()}

    def _keep_rows(self, graph, index_of: np.ndarray, facts: Facts) -> None:
        """Each graph row's facts as arrays in graph order (what every action reads):
        from the index, or, for a row whose file is set aside (the index forgot it),
        kept from when it was set aside; and the sets of rows with identical bytes."""
        if graph is None:
            self._pixels, self._mtimes, self._digests, self._quality = (
                np.zeros(0, np.int64), np.zeros(0, np.int64), [], []
            )  # fmt: skip
            self._same_bytes = []
            return
        at = np.maximum(index_of, 0)
        self._pixels = np.where(index_of >= 0, facts.pixels[at] if len(facts.paths) else 0, 0)
        self._mtimes = np.where(index_of >= 0, facts.mtimes[at] if len(facts.paths) else 0, 0)
        self._digests = [facts.digests[i] if i >= 0 else None for i in index_of.tolist()]
        self._quality = [facts.quality[i] if i >= 0 else None for i in index_of.tolist()]
        for r in np.flatnonzero(index_of < 0).tolist():
            kept = self._rows.get(graph.paths[r])
            if kept is not None:
                self._pixels[r], self._mtimes[r] = kept.pixels, kept.mtime
                self._digests[r], self._quality[r] = kept.digest, kept.quality
        by_digest: dict[bytes, list[int]] = defaultdict(list)
        for i, d in enumerate(self._digests):
            if d is not None:
                by_digest[d].append(i)
        self._same_bytes = [rows for rows in by_digest.values() if len(rows) > 1]
        self._row_of_path = {p: i for i, p in enumerate(graph.paths)}

    def _remember_rows(self, paths: list[str]) -> None:
        """Keep the facts of rows being set aside: the index forgets them, an undo
        brings them back."""
        for p in paths:
            r = self._row_of_path.get(p)
            if r is not None:
                self._rows[p] = _Row(
                    int(self._pixels[r]), int(self._mtimes[r]), self._digests[r], self._quality[r]
                )

    def _measure(self, graph, index_of, facts: Facts, vectors, say, cancel) -> tuple[bool, int]:
        """The evidence the pairs lack: visual similarity, aligned pixels, each row's
        thumbnail spread, then what the rule needs (full-size pixels, local features).
        Returns whether anything was measured, and how many pairs by local features."""
        pairs = graph.pairs
        present = index_of >= 0
        todo_sim = np.flatnonzero(np.isnan(pairs.pixels))
        rows_needed = np.zeros(len(graph), bool)
        rows_needed[pairs.left[todo_sim]] = rows_needed[pairs.right[todo_sim]] = True
        rows_needed |= np.isnan(graph.flat)
        rows_needed &= present
        measured = bool(len(todo_sim)) or bool(rows_needed.any())
        allowed = self._allowed_rows(graph.paths)
        opener = Opener(str(self.search.root), graph.paths, allowed)
        if measured:
            say("measuring pixels", 0.0)
            stored = [
                facts.thumbs[i] if i >= 0 and rows_needed[r] else None
                for r, i in enumerate(index_of.tolist())
            ]
            thumbs = thumbnails(opener, stored, rows_needed)
            graph.flat[rows_needed] = copies.flatness(thumbs[rows_needed])
            ok = todo_sim[present[pairs.left[todo_sim]] & present[pairs.right[todo_sim]]]
            measure_pixels(pairs, thumbs, ok)
            if len(ok):
                vec, _units, slots = vectors()
                row_slots = np.where(present, slots[np.maximum(index_of, 0)], -1)
                pairs.similarity[ok] = similarities(vec, row_slots, pairs.left[ok], pairs.right[ok])
        sides = self._sides(graph)
        before = (np.isnan(pairs.fine).sum(), int((pairs.points < 0).sum()))
        cache = Cache(self.search.store, graph.paths, self._digests)
        flat = np.nan_to_num(graph.flat, nan=0.0)
        verified = verify(
            pairs, flat, sides, opener, cache, self.search.settings.decode_workers, say, cancel
        )
        after = (np.isnan(pairs.fine).sum(), int((pairs.points < 0).sum()))
        return measured or before != after, verified

    def _sides(self, graph) -> np.ndarray:
        return np.sqrt(np.maximum(self._pixels, 0)).astype(np.int64)

    def _allowed_rows(self, paths: list[str]) -> np.ndarray:
        """Whether each path may be opened (and listed): asked of the search once per
        path (:meth:`engine.search.ImageSimilaritySearch.openable`)."""
        new = [p for p in paths if p not in self._allowed]
        if new:
            self._allowed.update(zip(new, self.search.openable(new)))
        return np.array([self._allowed[p] for p in paths], bool)

    # --- the sections -------------------------------------------------------------------------

    def _shown(self, graph) -> np.ndarray:
        """Rows shown: on disk in the folder (not set aside) and openable from here."""
        if self._allowed_of is None or len(self._allowed_of) != len(graph):
            self._allowed_of = self._allowed_rows(graph.paths)
        shown = self._allowed_of.copy()
        for p in self.away:
            i = self._row_of_path.get(p)
            if i is not None:
                shown[i] = False
        return shown

    def _make_sections(self, graph, say, cancel) -> dict:
        """Outliers, wrong labels, pictures hard to learn from, broken files and leaks:
        made at each refresh (a move or an undo updates them in place)."""
        search = self.search
        out: dict = {"broken": search.failures(), "notes": []}
        if graph is None or len(graph) < 2:
            out.update(outliers=[], mislabeled=[], unusable=[], leaks=[], candidates=0)
            out["images"] = len(graph) if graph is not None else 0
            return out
        shown = self._shown(graph)
        pairs = graph.pairs
        both = shown[pairs.left] & shown[pairs.right]
        paths = graph.paths
        copied = np.zeros(len(graph), bool)
        copied[pairs.left[pairs.copy & both]] = copied[pairs.right[pairs.copy & both]] = True
        for same in self._identical(paths, shown):
            copied[same] = True
        out["outliers"] = self._outliers(graph, shown & ~copied)
        out["certain"] = graph.certain
        flagged, quality_note = unusable(paths, self._quality, search.store.damaged)
        out["unusable"] = [u for u in flagged if u.path not in self.away]
        sub = pairs.take(both)
        suspects, labels_note = mislabeled(paths, sub.left, sub.right, sub.similarity)
        out["mislabeled"] = [m for m in suspects if m.path not in self.away]
        out["notes"] = [x for x in (quality_note, labels_note) if x]
        out["candidates"] = len(pairs)
        out["images"] = int(shown.sum())
        out["leaks"] = self._leaks(say, cancel) if self.against else []
        return out

    def _outliers(self, graph, alone: np.ndarray) -> list[Outlier]:
        """The lowest share by nearest-neighbour score, never an image with a copy: it is
        like something else by definition."""
        n = int(alone.sum() + (~alone).sum())
        want = max(1, int(round(self.outlier_share * n)))
        score = graph.nearest
        ok = alone & graph.nearest_exact & ~np.isnan(score) & (score < graph.certain)
        order = np.argsort(np.where(ok, score, np.inf), kind="stable")[:want]
        order = order[ok[order]]
        # the visual similarity to that neighbour: a candidate pair's, where it is one
        pairs, n = graph.pairs, len(graph)
        packed = pairs.left * n + pairs.right
        by_key = np.argsort(packed)
        out = []
        for i in order.tolist():
            j = int(graph.nearest_row[i])
            if j < 0:
                continue
            key = min(i, j) * n + max(i, j)
            at = int(np.searchsorted(packed, key, sorter=by_key))
            hit = at < len(packed) and packed[by_key[min(at, len(packed) - 1)]] == key
            s = float(pairs.similarity[by_key[at]]) if hit else float(score[i])
            out.append(Outlier(graph.paths[i], s, graph.paths[j]))
        out.sort(key=lambda o: (o.score, o.path))
        return out

    def _leaks(self, say, cancel) -> list[Leak]:
        from engine.storage import IndexBusy

        def indexing(p) -> None:
            say("indexing the other folder", p.done / max(1, p.total))

        with open_against(self.search, self.against, self.against_store) as test:
            # another process may be bringing it up to date: compare with what is there
            with contextlib.suppress(IndexBusy):
                test.index(on_progress=indexing, cancel=cancel)
            self.test_marks = set(test.store.choices("mark"))
            return find_leaks(self.search, test, say, cancel, self._not_leaks)

    # --- the groups ---------------------------------------------------------------------------

    def _graph_of_copies(self) -> Graph:
        """The copies among the pictures (identical bytes too): what grouping works
        from. Made once per refresh; what is set aside and what is marked no copy are
        left out while grouping, so a choice regroups without making it again."""
        graph = self.graph
        root = str(self.search.root)
        if graph is None:
            return Graph({}, [], np.zeros(0), np.zeros(0), [], set(), {}, root)
        base = self._copies_graph
        if base is None:
            allowed = self._allowed_rows(graph.paths)
            pairs, paths = graph.pairs, graph.paths
            edges: dict[int, dict[int, tuple[float, str]]] = defaultdict(dict)
            both = pairs.copy & allowed[pairs.left] & allowed[pairs.right]
            for a, b, sim, why in zip(
                pairs.left[both].tolist(),
                pairs.right[both].tolist(),
                pairs.similarity[both].tolist(),
                pairs.why[both].tolist(),
            ):
                edges[a][b] = edges[b][a] = (sim, why)
            for same in self._identical(paths, allowed):
                for a in same:
                    for b in same:
                        if a != b:
                            edges[a][b] = (1.0, IDENTICAL)
            links, real = set(), {}
            for i in edges:
                link, where = self._link(paths[i])
                if link:
                    links.add(i)
                real[i] = where
            base = Graph(
                dict(edges), paths, self._pixels, self._mtimes, self._digests, links, real, root
            )
            self._copies_graph = base
            self._floor = floor_of(base)
            self._parts = components(base)
        base.hidden = {self._row_of_path[p] for p in self.away if p in self._row_of_path}
        base.rejected = self._rejected
        return base

    def _identical(self, paths: list[str], shown: np.ndarray) -> list[list[int]]:
        """The sets of shown rows with the same bytes (two or more each)."""
        out = []
        for same in self._same_bytes:
            mine = [i for i in same if shown[i]]
            if len(mine) > 1:
                out.append(mine)
        return out

    def _link(self, path: str) -> tuple[bool, str]:
        """Whether *path* is a symbolic link, and its real path: each folder's real path
        and links found once (one ``scandir``), a link followed alone."""
        head, _, name = path.rpartition("/")
        known = self._folders.get(head)
        if known is None:
            where = os.path.join(self.search.root, head) if head else str(self.search.root)
            links = set()
            with contextlib.suppress(OSError), os.scandir(where) as entries:
                links = {e.name for e in entries if e.is_symlink()}
            known = self._folders[head] = (os.path.realpath(where), links)
        real_head, links = known
        if name in links:
            return True, os.path.realpath(os.path.join(real_head, name))
        return False, os.path.join(real_head, name)

    def _assemble(self, seconds: float) -> TriageReport:
        """The report of what the session holds now (groups made again)."""
        copies_graph = self._graph_of_copies()
        floor = self._floor
        threshold = 0.0 if self.threshold is None else self.threshold
        groups = group_pairs(copies_graph, threshold, self.keep_in, frozenset(self.prefer))
        s = self._sections
        notes = list(s.get("notes", []))
        if self._rejected:
            notes.append(f"{len(self._rejected)} pairs marked not duplicates are never grouped")
        method = self.graph.method if self.graph is not None else "none"
        return TriageReport(
            threshold,
            groups,
            s.get("outliers", []),
            s.get("broken", []),
            s.get("images", 0),
            seconds,
            method,
            s.get("certain", 1.0),
            notes,
            candidates=s.get("candidates", 0),
            verified=self._verified,
            keep_in=self.keep_in,
            prefer=frozenset(self.prefer),
            mislabeled=s.get("mislabeled", []),
            unusable=s.get("unusable", []),
            leaks=self._leaks_shown(),
            floor=floor,
        )

    def regroup(self, touched: list[str] | None = None) -> TriageReport:
        """The report with its groups made again after a choice: those of the parts of
        the graph holding the *touched* paths only (groups never cross parts), or all
        of them (None: a threshold, a kept folder)."""
        with self.lock:
            t0 = time.perf_counter()
            report = self.report
            if touched is None or report is None or self._copies_graph is None:
                self.report = self._assemble(0.0)
            else:
                self.report = self._regroup_parts(report, touched)
            self.report.seconds = time.perf_counter() - t0
            return self.report

    def _regroup_parts(self, report: TriageReport, touched: list[str]) -> TriageReport:
        graph = self._graph_of_copies()
        rows = [self._row_of_path[p] for p in touched if p in self._row_of_path]
        parts = {self._parts[r] for r in rows if r in self._parts}
        if not parts:
            return replace(report, prefer=frozenset(self.prefer), leaks=self._leaks_shown())
        only = {r for r, part in self._parts.items() if part in parts}
        stay = [
            g
            for g in report.groups
            if self._parts.get(self._row_of_path.get(g.representative.path, -1)) not in parts
        ]
        fresh = group_pairs(graph, report.threshold, self.keep_in, frozenset(self.prefer), only)
        return replace(
            report,
            groups=numbered(stay + fresh),
            prefer=frozenset(self.prefer),
            leaks=self._leaks_shown(),
            images=self._sections.get("images", report.images),
            outliers=self._sections.get("outliers", report.outliers),
            mislabeled=self._sections.get("mislabeled", report.mislabeled),
            unusable=self._sections.get("unusable", report.unusable),
        )

    def _leaks_shown(self) -> list[Leak]:
        leaks = self._sections.get("leaks", [])
        return [x for x in leaks if (x.path, x.other) not in self._not_leaks]

    # --- choices -------------------------------------------------------------------------------

    def set_threshold(self, value: float | None) -> TriageReport:
        """Group only pairs at least *value* visually similar (None: the rule's own)."""
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("the threshold is a similarity between 0 and 1")
        self.threshold = value
        return self.regroup()

    def _digest(self, path: str) -> bytes:
        r = self._row_of_path.get(path)
        d = self._digests[r] if r is not None else None
        return d or b""

    def keep(self, path: str) -> TriageReport:
        """Keep *path* in its group: the group is made again around it, and the choice is
        remembered in the index (the other members' earlier choices are dropped)."""
        group = next(
            (g for g in self.report.groups if path in [m.path for m in (g.representative, *g.members)]),
            None,
        )  # fmt: skip
        others = [m.path for m in (group.representative, *group.members)] if group else []
        dropped = [p for p in others if p != path and p in self.prefer]
        self.prefer.difference_update(dropped)
        self.prefer.add(path)
        self.marks.discard(path)
        store = self.search.store
        _quietly(store.set_choices, "keep", {path: self._digest(path)}, dropped)
        _quietly(store.set_choices, "mark", {}, [path])
        return self.regroup([path])

    def not_copy(self, a: str, b: str) -> TriageReport:
        """*a* and *b* are no copies: never grouped again (remembered in the index)."""
        self.search.store.reject(a, b)
        self._rejected.add(tuple(sorted((a, b))))
        return self.regroup([a, b])

    def not_leak(self, leak: Leak) -> TriageReport:
        """*leak* is none: never reported again (remembered in this folder's index)."""
        self.search.store.set_choices("not-leak", {leak.path: os.fsencode(leak.other)})
        self._not_leaks.add((leak.path, leak.other))
        self.test_marks.discard(leak.other)
        return self.regroup([])

    def mark(self, paths: list[str], on: bool, test: bool = False) -> None:
        """Mark (or unmark) *paths* to set aside: this folder's, or with *test* the other
        folder's (a leak's copy). Remembered in the folder's index."""
        marks = self.test_marks if test else self.marks
        if on:
            marks.update(paths)
        else:
            marks.difference_update(paths)
        if test:
            self._mark_test(paths, on)
            return
        add = {p: self._digest(p) for p in paths} if on else {}
        _quietly(self.search.store.set_choices, "mark", add, [] if on else paths)

    def _mark_test(self, paths: list[str], on: bool) -> None:
        if not self.against:
            return
        try:
            with open_against(self.search, self.against, self.against_store) as test:
                add = {p: b"" for p in paths} if on else {}
                test.store.set_choices("mark", add, [] if on else paths)
        except Exception:  # noqa: S110  a mark the other index cannot keep stays for this session
            return

    # --- moving files --------------------------------------------------------------------------

    def set_aside(
        self, paths: list[str], on_progress: Callable[[int, int], None] | None = None
    ) -> MoveReport:
        """Move *paths* of this folder into its quarantine (undoable), never a keeper;
        the moved pictures leave their groups at once."""
        keep = self.report.keep()
        graph = self._graph_of_copies()
        links = tuple(graph.paths[i] for i in graph.links)
        keep = Keep(keep.paths, keep.folders, links)  # the kept links are known here
        report = set_aside(self.search, paths, keep=keep, on_progress=on_progress)
        self.moves.append(Move("train", report, self._moved(report.moved)))
        return report

    def set_aside_test(
        self, paths: list[str], on_progress: Callable[[int, int], None] | None = None
    ) -> MoveReport:
        """Move *paths* of the other folder (leaks' copies) into its quarantine."""
        with open_against(self.search, self.against, self.against_store) as test:
            report = set_aside(test, paths, on_progress=on_progress)
            _quietly(test.store.set_choices, "mark", {}, report.moved)
        self.test_marks.difference_update(report.moved)
        moved = set(report.moved)
        with self.lock:
            leaks = self._sections.get("leaks", [])
            self._sections["leaks"] = [x for x in leaks if x.other not in moved]
            stash = {"leaks": [x for x in leaks if x.other in moved]}
        self.moves.append(Move("test", report, stash))
        self.regroup([])
        return report

    def relabel(self, path: str, label: str) -> MoveReport:
        """Move a suspected wrong label into the folder its neighbours say (undoable)."""
        report = relabel(self.search, path, label)
        self.moves.append(Move("train", report, self._moved(report.moved)))
        return report

    def _moved(self, paths: list[str]) -> dict:
        """Take moved pictures out of their groups and sections at once; what was taken
        out of the sections, for an undo to put back."""
        with self.lock:
            self._remember_rows(paths)
            self.away.update(paths)
            self.marks.difference_update(paths)
            _quietly(self.search.store.set_choices, "mark", {}, paths)
            stash = self._drop_from_sections(set(paths))
        self.regroup(paths)
        return stash

    def _drop_from_sections(self, gone: set[str]) -> dict:
        s, out = self._sections, {}
        for key in ("outliers", "mislabeled", "unusable", "leaks"):
            items = s.get(key, [])
            s[key] = [x for x in items if x.path not in gone]
            out[key] = [x for x in items if x.path in gone]
        s["images"] = s.get("images", 0) - len(gone)
        return out

    def _put_back_in_sections(self, stash: dict, count: int) -> None:
        s = self._sections
        for key, back in stash.items():
            s[key] = sorted(s.get(key, []) + back, key=SECTION_ORDER[key])
        s["images"] = s.get("images", 0) + count

    def undo(self, on_progress: Callable[[int, int], None] | None = None) -> MoveReport:
        """Put back the newest move (of this session first, else this folder's newest);
        the pictures come back into their groups at once."""
        last = self.moves[-1] if self.moves else Move("train", MoveReport())
        if last.side == "test":
            with open_against(self.search, self.against, self.against_store) as test:
                report = undo_latest(test)
        else:
            report = undo_latest(self.search)
        if self.moves:
            self.moves.pop()
        with self.lock:
            back = set(report.moved)
            if last.side == "train":
                self.away.difference_update(back)

            # what came back (a leak moved aside is known by its copy, in the other folder)
            def came_back(key: str, item) -> bool:
                return (item.other if key == "leaks" and last.side == "test" else item.path) in back

            stash = {k: [x for x in v if came_back(k, x)] for k, v in last.stash.items()}
            self._put_back_in_sections(stash, len(back) if last.side == "train" else 0)
        self.regroup(sorted(back) if last.side == "train" else [])
        return report


def _read_blob(store) -> bytes | None:
    try:
        return store.get_blob(cand.BLOB)
    except Exception:  # a cache: an index that cannot give it makes it again
        return None


def _write_blob(store, data: bytes) -> None:
    if not store.readonly:
        _quietly(store.put_blob, cand.BLOB, data)


def _quietly(fn, *args) -> None:
    """A write to the index that may fail (read-only media, a full disk) without the
    action failing: what it records is a convenience for the next session."""
    with contextlib.suppress(Exception):
        fn(*args)


def triage(
    search,
    threshold: float | None = DEFAULT_THRESHOLD,
    outlier_share: float = OUTLIER_SHARE,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_in: tuple[str, ...] = (),
    prefer: frozenset[str] = frozenset(),
) -> TriageReport:
    """Triage *search*'s index as it is (bring it up to date first): a session opened
    once. *threshold*: the minimum visual similarity of a grouped pair (0 or None: the
    copy rule alone); *keep_in*: kept folders relative to the root; *prefer*: paths to
    keep first, besides the keepers remembered in the index."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError("the threshold is a similarity between 0 and 1")
    session = TriageSession(search, tuple(keep_in), outlier_share, threshold=threshold or None)
    session.open(on_progress, cancel)
    if prefer:
        session.prefer |= set(prefer)
        session.regroup()
    return session.report
