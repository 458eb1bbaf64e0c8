"""The report's sections besides the groups: made from a view of the index (outliers,
wrong labels, pictures hard to learn from, broken files, leaks), and changed by moves
(the moved pictures taken out at once, put back in order by an undo)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from engine.triage import labels
from engine.triage.dataset import unusable
from engine.triage.leaks import leaks_against
from engine.triage.report import Confusion, Leak, Mislabel, Outlier
from engine.triage.verify import read_blob, write_blob

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch
    from engine.triage.view import Ask, View

#: How each section is ordered (what an undo sorts back into).
SECTION_ORDER = {
    "outliers": lambda o: (o.score, o.path),
    "mislabeled": lambda m: (-m.confidence, m.path),
    "unusable": lambda u: u.path,
    "leaks": lambda x: (x.other, x.path),
}


def make_sections(
    search: ImageSimilaritySearch,
    view: View,
    ask: Ask,
    index_of: np.ndarray,
    codes,
    fp: str,
    say,
    cancel,
) -> tuple[dict, list[str]]:
    """Outliers, wrong labels, pictures hard to learn from, broken files and leaks, and
    the other folder's marks. *index_of*: each graph row's place in the index's facts
    (and in *codes()*), -1 for none."""
    graph = view.graph
    out: dict = {"broken": search.failures(), "notes": [], "certain": 1.0}
    if graph is None or len(graph) < 2:
        out.update(outliers=[], mislabeled=[], unusable=[], leaks=[], candidates=0, confusions=[])
        out["images"] = len(graph) if graph is not None else 0
        return out, []
    shown = view.shown(ask.away)
    pairs = graph.pairs
    both = shown[pairs.left] & shown[pairs.right]
    paths = graph.paths
    copied = np.zeros(len(graph), bool)
    copied[pairs.left[pairs.copy & both]] = copied[pairs.right[pairs.copy & both]] = True
    for same in view.identical(shown):
        copied[same] = True
    out["outliers"] = _outliers(graph, shown & ~copied, ask.outlier_share)
    out["certain"] = graph.certain
    flagged, quality_note = unusable(paths, view.quality, search.store.damaged)
    out["unusable"] = [u for u in flagged if u.path not in ask.away]
    say("weighing labels", 0.0)
    found = _labels(search, view, ask, shown & (index_of >= 0), index_of, codes, fp, cancel)
    out["mislabeled"], out["confusions"] = found.listed, found.confusions
    out["labels_under_cut"] = found.under_cut
    out["notes"] = [x for x in (quality_note, found.note) if x]
    out["candidates"] = len(pairs)
    out["images"] = int(shown.sum())
    test_marks: list[str] = []
    out["leaks"] = []
    if ask.against:
        out["leaks"], test_marks = _leaks(search, ask, say, cancel)
    return out, test_marks


def _labels(
    search: ImageSimilaritySearch, view: View, ask: Ask, rows, index_of, codes, fp: str, cancel
) -> labels.Labels:
    """Wrong labels among the *rows* shown (a mask of graph rows), from their candidate
    pairs and codes; the classifier's work kept in the index under what it depends on."""
    graph = view.graph
    assert graph is not None  # wrong labels are looked for only where there is a graph
    sel = np.flatnonzero(rows)
    at = np.full(len(graph), -1, np.int64)
    at[sel] = np.arange(len(sel))
    pairs = graph.pairs
    keep = (at[pairs.left] >= 0) & (at[pairs.right] >= 0)
    left, right = at[pairs.left[keep]], at[pairs.right[keep]]
    similarity = pairs.similarity[keep]
    paths = [graph.paths[r] for r in sel.tolist()]
    digests = b"".join(view.digests[r] or b"-" for r in sel.tolist())
    key = labels.cache_key(fp, "\n".join(paths), digests, left, right, similarity)
    store = search.store
    cache = (
        key,
        lambda: read_blob(store, labels.BLOB),
        lambda b: write_blob(store, b, labels.BLOB),
    )

    def sel_codes() -> np.ndarray:
        return codes()[index_of[sel]]

    return labels.wrong_labels(
        paths, sel_codes, left, right, similarity, cache, ask.labels_top, ask.labels_cut, cancel
    )


def _outliers(graph, alone: np.ndarray, share: float) -> list[Outlier]:
    """The lowest *share* by nearest-neighbour score, never an image with a copy: it is
    like something else by definition."""
    n = len(graph)
    want = max(1, int(round(share * n)))
    score = graph.nearest
    ok = alone & graph.nearest_exact & ~np.isnan(score) & (score < graph.certain)
    order = np.argsort(np.where(ok, score, np.inf), kind="stable")[:want]
    order = order[ok[order]]
    # the visual similarity to that neighbour: a candidate pair's, where it is one
    pairs = graph.pairs
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


def _leaks(search: ImageSimilaritySearch, ask: Ask, say, cancel) -> tuple[list[Leak], list[str]]:
    from engine.storage import IndexBusy

    def indexing(p) -> None:
        say("indexing the other folder", p.done / max(1, p.total))

    def update(test) -> None:
        # another process may be bringing it up to date: compare with what is there
        with contextlib.suppress(IndexBusy):
            test.index(on_progress=indexing, cancel=cancel)

    assert ask.against is not None  # asked only with another folder
    return leaks_against(search, ask.against, ask.against_store, update, say, cancel, ask.not_leaks)


def drop_from(sections: dict, gone: set[str]) -> dict:
    """Take the pictures *gone* out of the report's sections; what was taken out."""
    out: dict = {}
    if not gone:
        return out
    for key in ("outliers", "mislabeled", "unusable", "leaks"):
        items = sections.get(key, [])
        sections[key] = [x for x in items if x.path not in gone]
        out[key] = [x for x in items if x.path in gone]
    before = sections.get("confusions", [])
    sections["confusions"] = confusions(before, lambda m: m.path not in gone)
    out["confusions"] = confusions(before, lambda m: m.path in gone)
    sections["images"] = sections.get("images", 0) - len(gone)
    return out


def put_back(sections: dict, stash: dict, count: int) -> None:
    for key, back in stash.items():
        if key == "confusions":
            sections[key] = confusions(sections.get(key, []) + back, lambda _m: True)
        else:
            sections[key] = sorted(sections.get(key, []) + back, key=SECTION_ORDER[key])
    sections["images"] = sections.get("images", 0) + count


def confusions(confusions: list, take) -> list:
    """The pairs of confused classes made again from the pictures of *confusions* that
    *take* keeps (a pair given twice is one), most pictures first."""
    by: dict[tuple[str, str], dict[str, Mislabel]] = {}
    for c in confusions:
        by.setdefault(c.classes, {}).update({m.path: m for m in c.pictures if take(m)})
    out = [
        Confusion(k, tuple(sorted(v.values(), key=SECTION_ORDER["mislabeled"])))
        for k, v in by.items()
        if v
    ]
    return sorted(out, key=lambda c: (-c.count, c.classes))
