"""What a triage session reads: the index as one refresh saw it.

A :class:`View` holds the candidate graph brought up to date, each row's facts as
arrays (pixels, modification times, digests, quality), the rows with identical bytes,
the sections of the report (outliers, wrong labels, unusable pictures, broken files,
leaks), and, made on first use, the graph of copies that grouping works from and its
connected parts.

:func:`make` builds a new one from the index without touching the session's: the
session keeps answering actions from the view it has while the next one is made (a
refresh at 100,000 pictures takes seconds), and swaps it in when it is ready.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engine import aligned, copies
from engine.names import first_bad_relpath
from engine.triage import candidates as cand
from engine.triage import graph_blob, labels, tiny
from engine.triage.groups import IDENTICAL, Graph, components, floor_of
from engine.triage.sections import make_sections
from engine.triage.selfjoin import unit_codes
from engine.triage.verify import (
    Cache,
    Opener,
    measure_pixels,
    read_blob,
    similarities,
    thumbnails,
    verify,
    write_blob,
)

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch


@dataclass
class Facts:
    """What the index knows of each usable picture, in slot order (the order of
    :func:`engine.triage.selfjoin.unit_codes`), every path checked."""

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


def facts_of(
    search: ImageSimilaritySearch, slots: np.ndarray | None = None
) -> tuple[Facts, list[str]]:
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
    thumbs: list[bytes | None] = [raw.thumbs[i] for i in at] if raw.thumbs else [None] * len(at)
    quality: list[bytes | None] = [raw.quality[i] for i in at] if raw.quality else [None] * len(at)
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


def fingerprint(search: ImageSimilaritySearch) -> str:
    """What a candidate graph is only valid under: the codes' identity, the centre they
    are taken around, the copy rule and what its scores are measured under."""
    meta = search.store.get_meta()
    keys = ("backbone", "weights_id", "hash_dim", "precision", "input_size", "feature_dim")
    ident = "|".join(str(meta.get(k)) for k in keys)
    rule = f"{copies.RULE}|{aligned.MEASURED}|tiny {tiny.TINY} {tiny.PER_PICTURE}"
    return f"{rule}|{ident}|centre {meta.get('centre_gen')}|v{graph_blob.VERSION}"


@dataclass
class Row:
    """A graph row's facts, kept while its file is set aside (the index forgets it)."""

    pixels: int
    mtime: int
    digest: bytes | None
    quality: bytes | None


class Paths:
    """What the session learns once per path, for every view: whether it may be
    opened (and listed), and each folder's real path and links."""

    def __init__(self, search: ImageSimilaritySearch) -> None:
        self.search = search
        self.allowed: dict[str, bool] = {}
        self.folders: dict[str, tuple[str, set[str]]] = {}
        self.lock = threading.Lock()

    def allowed_rows(self, paths: list[str]) -> np.ndarray:
        """Whether each path may be opened (and listed): asked of the search once per
        path (:meth:`engine.search.ImageSimilaritySearch.openable`)."""
        with self.lock:
            new = [p for p in paths if p not in self.allowed]
            if new:
                self.allowed.update(zip(new, self.search.openable(new)))
            return np.array([self.allowed[p] for p in paths], bool)

    def link(self, path: str) -> tuple[bool, str]:
        """Whether *path* is a symbolic link, and its real path: each folder's real path
        and links found once (one ``scandir``), a link followed alone."""
        head, _, name = path.rpartition("/")
        with self.lock:
            known = self.folders.get(head)
            if known is None:
                root = str(self.search.root)
                where = os.path.join(root, head) if head else root
                links = set()
                with contextlib.suppress(OSError), os.scandir(where) as entries:
                    links = {e.name for e in entries if e.is_symlink()}
                known = self.folders[head] = (os.path.realpath(where), links)
        real_head, links = known
        if name in links:
            return True, os.path.realpath(os.path.join(real_head, name))
        return False, os.path.join(real_head, name)


@dataclass
class View:
    """See the module's notes. Read by actions under the session's lock; changed in
    place only by those (a move takes pictures out of the sections, an undo puts them
    back)."""

    graph: cand.CandidateGraph | None
    pixels: np.ndarray
    mtimes: np.ndarray
    digests: list[bytes | None]
    quality: list[bytes | None]
    same_bytes: list[list[int]]
    row_of_path: dict[str, int]
    allowed: np.ndarray
    sections: dict = field(default_factory=dict)
    verified: int = 0  # pairs with a local-feature verdict, cached ones included
    verified_now: int = 0  # of them, compared in this refresh
    copies: Graph | None = None
    floor: float = 0.0
    parts: dict[int, int] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.graph.method if self.graph is not None else "none"

    def shown(self, away: set[str]) -> np.ndarray:
        """Rows shown: on disk in the folder (not set aside) and openable from here."""
        shown = self.allowed.copy()
        for p in away:
            i = self.row_of_path.get(p)
            if i is not None:
                shown[i] = False
        return shown

    def identical(self, shown: np.ndarray) -> list[list[int]]:
        """The sets of shown rows with the same bytes (two or more each)."""
        out = []
        for same in self.same_bytes:
            mine = [i for i in same if shown[i]]
            if len(mine) > 1:
                out.append(mine)
        return out

    def digest(self, path: str) -> bytes:
        r = self.row_of_path.get(path)
        d = self.digests[r] if r is not None else None
        return d or b""

    def row_facts(self, path: str) -> Row | None:
        r = self.row_of_path.get(path)
        if r is None:
            return None
        return Row(int(self.pixels[r]), int(self.mtimes[r]), self.digests[r], self.quality[r])

    def copies_graph(self, root: str, paths_of: Paths) -> Graph:
        """The copies among openable pictures (identical bytes too), made on first use:
        what grouping works from, with its connected parts and the copy rule's floor."""
        graph = self.graph
        if graph is None:
            return Graph({}, [], np.zeros(0), np.zeros(0), [], set(), {}, root)
        if self.copies is None:
            pairs, paths = graph.pairs, graph.paths
            edges: dict[int, dict[int, tuple[float, str]]] = defaultdict(dict)
            both = pairs.copy & self.allowed[pairs.left] & self.allowed[pairs.right]
            for a, b, sim, why in zip(
                pairs.left[both].tolist(),
                pairs.right[both].tolist(),
                pairs.similarity[both].tolist(),
                pairs.why[both].tolist(),
            ):
                edges[a][b] = edges[b][a] = (sim, why)
            for same in self.identical(self.allowed):
                for a in same:
                    for b in same:
                        if a != b:
                            edges[a][b] = (1.0, IDENTICAL)
            apart: dict[int, set[int]] = defaultdict(set)
            other = copies._recoloured(pairs) & self.allowed[pairs.left] & self.allowed[pairs.right]
            for a, b in zip(pairs.left[other].tolist(), pairs.right[other].tolist()):
                apart[a].add(b)
                apart[b].add(a)
            links, real = set(), {}
            for i in edges:
                link, where = paths_of.link(paths[i])
                if link:
                    links.add(i)
                real[i] = where
            base = Graph(
                dict(edges), paths, self.pixels, self.mtimes, self.digests, links, real, root
            )
            base.apart = dict(apart)
            self.copies, self.floor, self.parts = base, floor_of(base), components(base)
        return self.copies


@dataclass
class Ask:
    """What a refresh is asked, copied from the session when it starts."""

    away: set[str]  # set aside by the session: kept in the graph
    kept_rows: dict[str, Row]  # the facts of those rows, from when they were set aside
    outlier_share: float
    against: str | None = None
    against_store: str | None = None
    not_leaks: set[tuple[str, str]] = field(default_factory=set)
    labels_top: int | None = None  # list the N likeliest wrong labels (None: the cut)
    labels_cut: float = labels.CUT


def make(
    search: ImageSimilaritySearch, previous, ask: Ask, paths_of: Paths, say, cancel
) -> tuple[View, list[str]]:
    """A new view of *search*'s index: the candidate graph of *previous* (or the one
    kept in the index, or a new one) brought up to date, measured where it lacks
    evidence, written back when it changed; then the sections. Returns the view and the
    marks of the other folder (``--against``)."""
    say("reading the index", 0.0)
    facts, paths = facts_of(search)
    store = search.store
    fp = fingerprint(search)
    graph = previous if previous is not None and previous.fingerprint == fp else None
    if graph is None:
        graph = graph_blob.decode(read_blob(store, graph_blob.BLOB), fp)
    if graph is not None and graph.method.startswith("LSH"):
        graph = None  # made from bands, which miss edited copies: made again
    vec_box: list = []

    def vectors():
        if not vec_box:
            vec = search.vectors()
            units, slots = unit_codes(vec)
            if not np.array_equal(slots, facts.slots):
                raise store.damaged("image records and vectors disagree")
            vec_box.append((vec, units, slots))
        return vec_box[0]

    dirty, first_new = False, 0
    if graph is None:
        if len(paths) >= 2:
            vec, _units, _slots = vectors()
            graph = cand.build(vec, paths, facts.tags, fp, ask.outlier_share, say, cancel)
            index_of = np.arange(len(paths), dtype=np.int64)
            dirty = True
        else:
            graph, index_of = None, np.zeros(0, np.int64)
    else:
        graph, index_of, change = cand.update(
            graph, paths, facts.tags, ask.away, lambda: vectors()[1:], say, cancel
        )
        dirty, first_new = change.any, len(graph) - change.new
    view = _rows_of(graph, index_of, facts, ask.kept_rows, paths_of)
    if graph is not None and dirty:
        _tiny_pairs(graph, view, index_of, facts, first_new, vectors, say, cancel)
    if graph is not None:
        measured, view.verified_now = _measure(
            search, view, index_of, facts, vectors, paths_of, say, cancel
        )
        view.verified = int((graph.pairs.points >= 0).sum())
        if dirty or measured:
            write_blob(store, graph_blob.encode(graph), graph_blob.BLOB)

    def codes() -> np.ndarray:  # the wrong-label classifier's inputs
        vec, units, slots = vectors()
        return labels.inputs(vec.snap.features, units, slots)

    view.sections, test_marks = make_sections(
        search, view, ask, index_of, codes if graph is not None else None, fp, say, cancel
    )
    view.copies_graph(str(search.root), paths_of)  # made now, not at the first action
    return view, test_marks


def _tiny_pairs(
    graph, view: View, index_of, facts: Facts, first_new: int, vectors, say, cancel
) -> None:
    """The tiny pictures' candidates by thumbnail (:mod:`engine.triage.tiny`) for the
    graph rows from *first_new* on (new), from the thumbnails stored at indexing (a
    picture without one is left out)."""
    sides = np.sqrt(np.maximum(view.pixels, 0))
    usable = (index_of >= 0) & view.allowed
    stored = [facts.thumbs[i] if i >= 0 else None for i in index_of.tolist()]
    left, right = tiny.pairs(stored, sides, usable, say, cancel, first_new, graph.pairs)

    def code_score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        units = vectors()[1]
        return np.einsum("nd,nd->n", units[index_of[a]], units[index_of[b]])

    cand.with_pixel_pairs(graph, left, right, code_score)


def _rows_of(graph, index_of: np.ndarray, facts: Facts, kept: dict[str, Row], paths_of) -> View:
    """Each graph row's facts as arrays in graph order: from the index, or, for a row
    whose file is set aside (the index forgot it), kept from when it was set aside;
    and the sets of rows with identical bytes."""
    if graph is None:
        none = np.zeros(0, np.int64)
        return View(None, none, none, [], [], [], {}, np.zeros(0, bool))
    at = np.maximum(index_of, 0)
    have = len(facts.paths) > 0
    pixels = np.where(index_of >= 0, facts.pixels[at] if have else 0, 0).astype(np.int64)
    mtimes = np.where(index_of >= 0, facts.mtimes[at] if have else 0, 0).astype(np.int64)
    digests = [facts.digests[i] if i >= 0 else None for i in index_of.tolist()]
    quality = [facts.quality[i] if i >= 0 else None for i in index_of.tolist()]
    for r in np.flatnonzero(index_of < 0).tolist():
        row = kept.get(graph.paths[r])
        if row is not None:
            pixels[r], mtimes[r] = row.pixels, row.mtime
            digests[r], quality[r] = row.digest, row.quality
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        if d is not None:
            by_digest[d].append(i)
    return View(
        graph,
        pixels,
        mtimes,
        digests,
        quality,
        [rows for rows in by_digest.values() if len(rows) > 1],
        {p: i for i, p in enumerate(graph.paths)},
        paths_of.allowed_rows(graph.paths),
    )


def _measure(
    search: ImageSimilaritySearch, view: View, index_of, facts, vectors, paths_of, say, cancel
):
    """The evidence the pairs lack: visual similarity, aligned pixels, each row's
    thumbnail spread, then what the rule needs (full-size pixels, local features).
    Returns whether anything was measured, and how many pairs by local features."""
    graph = view.graph
    assert graph is not None  # measured only where there is a graph
    pairs = graph.pairs
    present = index_of >= 0
    todo_sim = np.flatnonzero(np.isnan(pairs.pixels))
    rows_needed = np.zeros(len(graph), np.bool_)
    rows_needed[pairs.left[todo_sim]] = rows_needed[pairs.right[todo_sim]] = True
    rows_needed |= np.isnan(graph.flat)
    rows_needed &= present
    measured = bool(len(todo_sim)) or bool(rows_needed.any())
    opener = Opener(str(search.root), graph.paths, view.allowed)
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
    sides = np.sqrt(np.maximum(view.pixels, 0)).astype(np.int64)

    def unmeasured() -> list[int]:
        missing = [int(np.isnan(x).sum()) for x in (pairs.fine, pairs.small, pairs.colour)]
        return [*missing, int((pairs.points < 0).sum())]

    before = unmeasured()
    cache = Cache(search.store, graph.paths, view.digests)
    flat = np.nan_to_num(graph.flat, nan=0.0)
    verified = verify(
        pairs, flat, sides, opener, cache, search.settings.decode_workers, say, cancel
    )
    return measured or before != unmeasured(), verified
