"""Data-set triage from the index: suspected wrong labels and unusable pictures.

**Labels** are the first folder level under the root (the ImageFolder layout:
``DIR/cat/001.png`` is a ``cat``). They are used only when they look like classes: at
least two of them, 90 % of the pictures inside one, and pictures whose nearest
neighbours share their folder far more often than chance (the mean share at least
:data:`AGREEMENT` and twice what random folders would give). Folders by year or by
camera fail that test, and no wrong label is reported for them.

**Wrong labels.** Each picture's :data:`VOTERS` nearest neighbours (the same candidates
duplicate triage finds, ranked by visual similarity) vote for their own labels, each
with its similarity (negative ones count 0); ``share(L)`` is the part of the votes for
label L. Some classes look alike (shirts and T-shirts), so what a vote means depends on
what is usual: ``usual(o, L)`` is the mean share of votes for L among all pictures
filed under o. A picture filed under o is suspected of being a ``best`` when its best
other label beats its own (``share(best) > share(o)``) and its *confidence*

    ((share(best) - usual(o, best)) - (share(o) - usual(o, o))) / 2,   clipped to [0, 1]

is at least :data:`MIN_CONFIDENCE`. The best other label is the one whose share most
exceeds what is usual. A bag among shirts scores near 1 (bags' neighbours are bags); a
shirt among T-shirts much less (shirts' neighbours are often T-shirts).

**Unusable pictures**: :mod:`engine.quality`'s flags, from measurements stored at
indexing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import quality

#: Neighbours that vote on a picture's label, and how many of them a report names.
VOTERS = 10
SHOWN = 4
#: Suspected when the best other label beats the own one by this share of the votes.
MIN_CONFIDENCE = 0.5
#: Folders count as classes when neighbours share theirs at least this often on average.
AGREEMENT = 0.5
#: ... and at least this share of the pictures are in a class folder.
LABELLED_SHARE = 0.9


@dataclass(frozen=True)
class Mislabel:
    path: str
    folder: str  # its label now
    suggested: str  # the label its neighbours give it
    confidence: float  # see the module's docstring, in [0, 1]
    neighbours: tuple[str, ...] = ()  # its most similar voters, most similar first


@dataclass(frozen=True)
class Unusable:
    path: str
    flags: tuple[str, ...]
    values: dict[str, float]


def label_of(path: str) -> str | None:
    return path.split("/", 1)[0] if "/" in path else None


def mislabeled(
    paths: list[str], left: np.ndarray, right: np.ndarray, similarity: np.ndarray
) -> tuple[list[Mislabel], str]:
    """Suspected wrong labels from neighbour pairs (rows of *paths*, both ways), most
    confident first, and a note when labels were not used (empty when they were)."""
    labels = [label_of(p) for p in paths]
    names = sorted({x for x in labels if x is not None})
    n = len(paths)
    labelled = sum(x is not None for x in labels)
    if len(names) < 2 or labelled < LABELLED_SHARE * max(n, 1) or not len(left):
        return [], "no class folders: wrong labels not looked for"
    index = {x: i for i, x in enumerate(names)}
    lab = np.array([index[x] if x is not None else -1 for x in labels], np.int64)
    # every pair both ways, each row's VOTERS most similar neighbours
    a = np.concatenate([left, right])
    b = np.concatenate([right, left])
    s = np.concatenate([similarity, similarity]).astype(np.float64)
    order = np.lexsort((-s, a))
    a, b, s = a[order], b[order], s[order]
    starts = np.concatenate([[0], np.flatnonzero(a[1:] != a[:-1]) + 1])
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.append(starts, len(a))))
    keep = (rank < VOTERS) & (lab[b] >= 0)
    a, b, w = a[keep], b[keep], np.maximum(s[keep], 0.0)
    total = np.zeros(n)
    np.add.at(total, a, w)
    same = np.zeros(n)
    np.add.at(same, a, np.where(lab[b] == lab[a], w, 0.0))
    voted = (total > 0) & (lab >= 0)
    agreement = float(np.mean(same[voted] / total[voted])) if voted.any() else 0.0
    counts = np.bincount(lab[lab >= 0], minlength=len(names)) / max(1, labelled)
    chance = float(np.sum(counts**2))
    if agreement < max(AGREEMENT, 2 * chance):
        return [], (
            f"folders do not look like classes (neighbours share a folder {agreement:.0%}"
            f" of the time, by chance {chance:.0%}): wrong labels not looked for"
        )
    # votes per (picture, label), summed
    key = a * len(names) + lab[b]
    uniq, inv = np.unique(key, return_inverse=True)
    votes = np.zeros(len(uniq))
    np.add.at(votes, inv, w)
    rows, labs = uniq // len(names), uniq % len(names)
    share = votes / np.maximum(total[rows], 1e-12)
    # usual[o, L]: the mean share of votes for L among pictures filed under o
    usual = np.zeros((len(names), len(names)))
    np.add.at(usual, (lab[rows], labs), share)
    filed = np.bincount(lab[voted], minlength=len(names))
    usual /= np.maximum(filed, 1)[:, None]
    own = np.zeros(n)
    own_hit = labs == lab[rows]
    own[rows[own_hit]] = share[own_hit]
    # the best other label by surprise: its share beyond what is usual for the own label
    other = ~own_hit
    surprise = share[other] - usual[lab[rows[other]], labs[other]]
    order = np.argsort(surprise, kind="stable")  # ascending: the best written last
    r_o, l_o = rows[other][order], labs[other][order]
    best = np.zeros(n)
    best_lab = np.full(n, -1)
    best[r_o] = share[other][order]
    best_lab[r_o] = l_o
    gap = np.full(n, -1.0)
    gap[r_o] = surprise[order]
    own_gap = own - usual[lab, lab]
    conf = np.clip((gap - own_gap) / 2, 0.0, 1.0)
    conf[best <= own] = 0.0
    out = []
    for i in np.flatnonzero(voted & (best_lab >= 0) & (conf >= MIN_CONFIDENCE)):
        lo, hi = np.searchsorted(a, i), np.searchsorted(a, i, side="right")
        near = tuple(paths[j] for j in b[lo:hi][:SHOWN])
        out.append(
            Mislabel(paths[i], names[lab[i]], names[best_lab[i]], round(float(conf[i]), 6), near)
        )
    out.sort(key=lambda m: (-m.confidence, m.path))
    return out, ""


def unusable(paths: list[str], blobs: list[bytes | None], damaged) -> tuple[list[Unusable], str]:
    """Pictures with quality flags, in path order, and a note on pictures measured by no
    lookalike yet (indexed by an older one). *damaged* makes the error for a crafted
    record."""
    try:
        have, table = quality.table(blobs)
    except ValueError as exc:
        raise damaged(str(exc)) from None
    rows = np.flatnonzero(have)
    note = ""
    if len(rows) < len(paths):
        note = (
            f"{len(paths) - len(rows)} pictures were indexed before quality was measured:"
            " lookalike index DIR --rebuild measures them"
        )
    if not len(rows):
        return [], note
    floor = quality.floors(table)
    out = []
    for i, v, words in zip(rows, table, quality.flags_of(table, floor)):
        if words:
            values = {k: round(float(x), 4) for k, x in zip(quality.FIELDS, v)}
            out.append(Unusable(paths[i], words, values))
    out.sort(key=lambda u: u.path)
    return out, note
