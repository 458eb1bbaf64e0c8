"""Suspected wrong labels, ranked by one score, and the classes that are confused as a rule.

**Labels** are the first folder level under the root (the ImageFolder layout:
``DIR/cat/001.png`` is a ``cat``). They are used only when they look like classes: at
least two of them, 90 % of the pictures inside one, and pictures whose nearest
neighbours share their folder far more often than chance (:data:`AGREEMENT`). Folders
by year or by camera fail that test, and no wrong label is reported for them.

**Two kinds of evidence**, each a probability for every class:

* the *classifier*: a softmax regression on the index's features (:func:`inputs`),
  trained in :data:`FOLDS` folds so that each picture's probabilities come from a model
  that never saw it (out of fold);
* the *neighbour vote*: each picture's :data:`VOTERS` most similar pictures (the
  candidate pairs duplicate triage finds) vote for their folders, weighted by similarity.

They are averaged (:data:`VOTE_WEIGHT`; the classifier alone for a picture without
voters). **The score** of a picture is ``1 - p(its folder)`` under that average: how
likely, by both, its folder is wrong; the suggested label is the most likely other one.
The vote catches what the classifier misses (a picture whose own class was learned
from few like it) and the classifier what the vote misses (a picture whose neighbours
are few or far).

**Candidates** are what cleanlab's ``find_label_issues`` finds in the averaged
probabilities (it prunes by each class's estimated count of wrong labels), the
pictures the vote alone is sure of (:func:`surprise` at least :data:`MIN_CONFIDENCE`),
and those whose folder both give under :data:`STANDS_OUT` (cleanlab's per-class
thresholds can pass over a picture no class is sure of, even one whose folder has no
chance at all: a mammal filed under gradients among 24 clip-art classes).

**Confusable classes.** Two classes whose pictures give each other, on average, at
least :data:`CONFUSABLE` of their probability (shirts and T-shirts) are confused as a
rule: a candidate filed under one and suggested the other is counted in that pair's
:class:`Confusion` (a count and a few examples) instead of listed, unless its folder's
probability is below :data:`STANDS_OUT`.

**The cut.** A candidate is listed when its score is at least :data:`CUT` (0.5: more
likely wrong than right by the evidence). On the benchmark sets (2 % of the pictures
moved to a wrong folder) 38-46 % of the listed Fashion-MNIST pictures and 9-13 % of the
listed clip-art ones were planted: the rest are mostly pictures truly between classes,
or filed wrong in the source already. On Fashion-MNIST's clean test split 2.0 % of the
pictures are listed. ``--labels-top N`` asks for the N highest scores instead,
summarised ones included.

Measured (``python -m benchmarks.run --only wrong-labels``, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

from engine.triage.dataset import label_of
from engine.triage.report import Confusion, Mislabel

#: Neighbours that vote on a picture's label, and how many of them a report names.
VOTERS = 10
SHOWN = 4
#: The vote alone makes a picture a candidate when :func:`surprise` is at least this.
MIN_CONFIDENCE = 0.5
#: Folders count as classes when neighbours share theirs well beyond chance: by at least
#: this much of the way from what random folders of the same sizes would give to always
#: (Cohen's kappa). Fashion-MNIST's folders score 0.78, clip-art in 24 folders of one kind
#: of thing each 0.35; folders by date or camera about 0.
AGREEMENT = 0.3
#: ... and at least this share of the pictures are in a class folder.
LABELLED_SHARE = 0.9
#: The vote's weight in the averaged probabilities (the classifier's: the rest).
VOTE_WEIGHT = 0.5
#: Folds of the classifier, and the most pictures each fold trains on (a random share of
#: the others beyond it), so that the label report costs what 12,500 pictures do at any
#: size: 6-9 s in all at 70,000 pictures (2-core AMD EPYC; ``--only wrong-labels``).
FOLDS = 5
TRAIN_CAP = 10_000
#: The classifier's inputs: this many principal directions of the features (see
#: :func:`inputs`).
COMPONENTS = 128
#: The classifier's L2 penalty (on inputs whose directions have a variance of 1 on
#: average): the strongest of 3e-4 ... 1e-1 (a factor of 3 apart) that kept whole-list
#: recall at 0.95 on the tuning sets, where planted wrong labels in the top N went from
#: 120 of 160 at 3e-4 to 128 (and 132 at 1e-1, with recall 0.90).
PENALTY = 1e-2
#: Two classes are confused as a rule when their mutual probability is at least this.
CONFUSABLE = 0.1
#: ... and a candidate between them is listed all the same below this folder probability
#: (a picture is a candidate whatever cleanlab says below it).
STANDS_OUT = 0.02
#: Listed when the score is at least this.
CUT = 0.5
#: The cache of the classifier's probabilities in the index.
BLOB = "triage-labels"
MAGIC = b"LKLABELS2"


@dataclass
class Labels:
    """What :func:`wrong_labels` finds: the listed pictures (highest score first), the
    confused pairs, how many candidates fell under the cut, and a note when folders
    were not used as classes."""

    listed: list[Mislabel] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)
    under_cut: int = 0
    note: str = ""


def class_folders(paths: list[str]) -> tuple[list[str], np.ndarray, str]:
    """The class names and each path's class (-1: none), or a note why the folders are
    not used as classes (fewer than two, or too few pictures inside them)."""
    labels = [label_of(p) for p in paths]
    names = sorted({x for x in labels if x is not None})
    labelled = sum(x is not None for x in labels)
    index = {x: i for i, x in enumerate(names)}
    lab = np.array([index[x] if x is not None else -1 for x in labels], np.int64)
    if len(names) < 2 or labelled < LABELLED_SHARE * max(len(paths), 1):
        return names, lab, "no class folders: wrong labels not looked for"
    return names, lab, ""


@dataclass
class Votes:
    """Each picture's :data:`VOTERS` most similar neighbours' votes: ``share[i, L]`` the
    part of picture i's votes (weighted by similarity) for label L; ``voted`` the
    pictures with a vote; ``a``/``b`` the voting pairs sorted by picture, most similar
    first (for naming neighbours)."""

    share: np.ndarray
    voted: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def neighbours(self, i: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.a, i), np.searchsorted(self.a, i, side="right")
        return self.b[lo:hi][:SHOWN]


def votes(
    lab: np.ndarray, n_labels: int, left: np.ndarray, right: np.ndarray, similarity: np.ndarray
) -> Votes:
    """The neighbour vote from candidate pairs (rows of *lab*, both ways)."""
    n = len(lab)
    a = np.concatenate([left, right]).astype(np.int64)
    b = np.concatenate([right, left]).astype(np.int64)
    s = np.concatenate([similarity, similarity]).astype(np.float64)
    order = np.lexsort((-s, a))
    a, b, s = a[order], b[order], s[order]
    starts = np.concatenate([[0], np.flatnonzero(a[1:] != a[:-1]) + 1]) if len(a) else a
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.append(starts, len(a))))
    keep = (rank < VOTERS) & (lab[b] >= 0) & (lab[a] >= 0)
    a, b, w = a[keep], b[keep], np.maximum(s[keep], 0.0)
    share = np.zeros((n, n_labels))
    np.add.at(share, (a, lab[b]), w)
    total = share.sum(axis=1)
    voted = (total > 0) & (lab >= 0)
    share[voted] /= total[voted, None]
    return Votes(share, voted, a, b)


def agreement_note(lab: np.ndarray, n_labels: int, vote: Votes) -> str:
    """Empty when neighbours share their folder far more often than chance (folders look
    like classes), else why wrong labels are not looked for."""
    have = lab >= 0
    own = vote.share[vote.voted, lab[vote.voted]]
    agreement = float(own.mean()) if len(own) else 0.0
    counts = np.bincount(lab[have], minlength=n_labels) / max(1, int(have.sum()))
    chance = float(np.sum(counts**2))
    if chance < 1 and (agreement - chance) / (1 - chance) >= AGREEMENT:
        return ""
    return (
        f"folders do not look like classes (neighbours share a folder {agreement:.0%}"
        f" of the time, by chance {chance:.0%}): wrong labels not looked for"
    )


def surprise(lab: np.ndarray, n_labels: int, vote: Votes) -> np.ndarray:
    """How sure the vote alone is that each picture's label is wrong, in [0, 1]. Some
    classes look alike, so what a vote means depends on what is usual: ``usual(o, L)``
    is the mean share of votes for L among the pictures filed under o; the surprise of
    a picture filed under o whose best other label is ``b`` (the one whose share most
    exceeds what is usual) is
    ``((share(b) - usual(o, b)) - (share(o) - usual(o, o))) / 2``, or 0 unless b has
    more votes than o. A bag among shirts scores near 1 (bags' neighbours are bags); a
    shirt among T-shirts much less (shirts' neighbours are often T-shirts)."""
    share, voted = vote.share, vote.voted
    n = len(lab)
    usual = _class_means(share, lab, voted, n_labels)
    safe = np.maximum(lab, 0)
    rows = np.arange(n)
    own = share[rows, safe]
    beyond = share - usual[safe]
    beyond[rows, safe] = -np.inf
    beyond[share <= 0] = -np.inf
    best = np.argmax(beyond, axis=1)
    gap = beyond[rows, best]
    conf = np.clip((np.where(np.isfinite(gap), gap, -1.0) - (own - usual[safe, safe])) / 2, 0, 1)
    conf[(share[rows, best] <= own) | ~np.isfinite(gap) | ~voted] = 0.0
    return conf


def _class_means(
    values: np.ndarray, lab: np.ndarray, rows: np.ndarray, n_labels: int
) -> np.ndarray:
    """``out[o]``: the mean of *values*' rows among the *rows* (a mask) filed under o."""
    out = np.zeros((n_labels, values.shape[1]))
    np.add.at(out, lab[rows], values[rows])
    return out / np.maximum(np.bincount(lab[rows], minlength=n_labels), 1)[:, None]


def inputs(features, units: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The classifier's inputs, one row per live slot (as *units*, the centred unit codes,
    and *slots* come from :func:`engine.triage.selfjoin.unit_codes`): the backbone's full
    *features* (rows by slot) where the index keeps them, else (None) the codes.

    Why the features: the codes are a random projection 10 times narrower, and on
    clip-art in class folders the classifier on them put 28 of 88 planted wrong labels in
    the top N where the features' put 37 (Fashion-MNIST: 249 and 247 of 320).
    Standardised, then turned onto their :data:`COMPONENTS` leading principal directions
    (fitted on at most :data:`TRAIN_CAP` rows) and scaled to a variance of 1 on average,
    so that the classifier costs what it does on the codes: 4 s for 10,000 pictures here,
    where all 1280 standardised features took 31 s."""
    import torch

    n = len(slots)
    # rows of the source for each live slot: the codes are by live slot, features by slot
    source, at = (units, np.arange(n)) if features is None else (features, slots)
    sample = np.sort(np.random.RandomState(0).choice(n, min(n, TRAIN_CAP), replace=False))
    x = np.asarray(source[at[sample]], np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    if x.shape[1] <= COMPONENTS:
        turn = np.eye(x.shape[1], dtype=np.float32)
    else:
        _, vecs = np.linalg.eigh((x.T @ x).astype(np.float64))
        turn = np.ascontiguousarray(vecs[:, ::-1][:, :COMPONENTS], np.float32)
    turn /= max(float((x @ turn).std(0).mean()), 1e-6)  # a variance of 1 on average
    scaled = np.ascontiguousarray(turn / std[:, None], np.float32)  # ((x - m) / s) @ turn
    shift = mean @ scaled
    out = np.empty((n, turn.shape[1]), np.float32)
    step = 1 << 14
    for lo in range(0, n, step):
        block = np.ascontiguousarray(source[at[lo : lo + step]])
        # torch casts float16 four times faster than numpy (1.0 s of 1.8 at 100,000)
        got = torch.from_numpy(block).float() @ torch.from_numpy(scaled)
        out[lo : lo + step] = got.numpy() - shift
    return out


def out_of_fold(x: np.ndarray, lab: np.ndarray, n_labels: int, cancel=None) -> np.ndarray:
    """Each picture's class probabilities from a softmax regression that never saw it
    (:data:`FOLDS` folds, each trained on at most :data:`TRAIN_CAP` of the others; a
    small L2 penalty, L-BFGS) on *x*, rows of :func:`inputs`. Rows of *lab* below 0 are
    neither trained on nor predicted (zeros)."""
    import torch

    n = len(lab)
    out = np.zeros((n, n_labels), np.float32)
    have = np.flatnonzero(lab >= 0)
    if len(have) < 2:
        return out
    xs = torch.from_numpy(np.ascontiguousarray(x[have], np.float32))
    y = torch.from_numpy(lab[have])
    rng = np.random.RandomState(0)
    fold = np.empty(len(have), np.int64)
    for c in range(n_labels):  # stratified: each class spread over the folds
        idx = np.flatnonzero(lab[have] == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % FOLDS
    for f in range(FOLDS):
        if cancel is not None and cancel.is_set():
            break
        train = np.flatnonzero(fold != f)
        if len(train) > TRAIN_CAP:
            train = np.sort(rng.choice(train, TRAIN_CAP, replace=False))
        test = np.flatnonzero(fold == f)
        w, b = _fit(xs[train], y[train], n_labels)
        with torch.no_grad():
            out[have[test]] = torch.softmax(xs[test] @ w + b, 1).numpy()
    return out


def _fit(x, y, n_labels: int):
    """The weights and biases of a softmax regression of *y* on *x* (torch tensors)."""
    import torch

    w = torch.zeros(x.shape[1], n_labels, requires_grad=True)
    b = torch.zeros(n_labels, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100, history_size=10, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ w + b, y) + PENALTY * (w * w).sum()
        value.backward()
        return value

    opt.step(loss)
    return w.detach(), b.detach()


def cache_key(*parts) -> bytes:
    """What the cached probabilities and candidates hold only under: the paths, their
    content tags, the candidate pairs and the codes' identity, and the way they were
    made (the constants of the classifier and of the candidates)."""
    h = hashlib.sha256()
    method = (FOLDS, TRAIN_CAP, COMPONENTS, PENALTY, VOTE_WEIGHT, MIN_CONFIDENCE, STANDS_OUT)
    h.update(repr(method).encode())
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else str(p).encode("utf-8", "replace"))
        h.update(b"\0")
    return h.digest()


def encode_cache(key: bytes, probs: np.ndarray, candidate: np.ndarray) -> bytes:
    n, c = probs.shape
    body = np.ascontiguousarray(probs, np.float32).tobytes() + np.packbits(candidate).tobytes()
    return MAGIC + key + struct.pack("<II", n, c) + body


def decode_cache(blob: object, key: bytes, n: int, c: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached probabilities and candidates if *blob* is exactly what
    :func:`encode_cache` wrote under *key* for *n* pictures and *c* classes; else None
    (made again)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        return None
    view = memoryview(blob)
    head = len(MAGIC) + len(key) + 8
    size = n * c * 4 + (n + 7) // 8
    if len(view) != head + size or bytes(view[: len(MAGIC)]) != MAGIC:
        return None
    if bytes(view[len(MAGIC) : len(MAGIC) + len(key)]) != key:
        return None
    if struct.unpack_from("<II", view, head - 8) != (n, c):
        return None
    probs = np.frombuffer(view[head : head + n * c * 4], np.float32).reshape(n, c).copy()
    if not np.all(np.isfinite(probs)) or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
        return None
    candidate = np.unpackbits(np.frombuffer(view[head + n * c * 4 :], np.uint8))[:n].astype(bool)
    return probs, candidate


def wrong_labels(
    paths: list[str],
    codes,
    left: np.ndarray,
    right: np.ndarray,
    similarity: np.ndarray,
    cache=None,
    top: int | None = None,
    cut: float = CUT,
    cancel=None,
) -> Labels:
    """Suspected wrong labels among *paths* (see the module's notes). *codes*: a callable
    giving each path's code (rows of *paths*), called only when the cache misses;
    *left*/*right*/*similarity*: candidate pairs (rows of *paths*); *cache*: a
    ``(key, get, put)`` of the index's cache, or None; *top*: list the N highest scores
    instead of those at least *cut*, summarised ones included."""
    names, lab, note = class_folders(paths)
    if note or not len(left):
        return Labels(note=note or "no class folders: wrong labels not looked for")
    n_labels = len(names)
    vote = votes(lab, n_labels, left, right, similarity)
    note = agreement_note(lab, n_labels, vote)
    if note:
        return Labels(note=note)
    held = decode_cache(cache[1](), cache[0], len(paths), n_labels) if cache else None
    probs = out_of_fold(codes(), lab, n_labels, cancel) if held is None else held[0]
    both = _average(probs, vote)
    if held is None:
        rows = np.arange(len(lab))
        candidate = (
            _cleanlab(lab, both)
            | (surprise(lab, n_labels, vote) >= MIN_CONFIDENCE)
            | (both[rows, np.maximum(lab, 0)] < STANDS_OUT)
        )
        if cache and not (cancel is not None and cancel.is_set()):
            cache[2](encode_cache(cache[0], probs, candidate))
    else:
        candidate = held[1]
    candidate &= lab >= 0
    return _report(paths, names, lab, probs, vote, both, candidate, top, cut)


def _average(probs: np.ndarray, vote: Votes) -> np.ndarray:
    both = np.where(
        vote.voted[:, None], (1 - VOTE_WEIGHT) * probs + VOTE_WEIGHT * vote.share, probs
    )
    return both / np.maximum(both.sum(axis=1, keepdims=True), 1e-12)


def _cleanlab(lab: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """cleanlab's label issues among the labelled rows (a mask over all rows)."""
    from cleanlab.filter import find_label_issues

    out = np.zeros(len(lab), bool)
    have = np.flatnonzero(lab >= 0)
    present = np.unique(lab[have])
    if len(present) < 2:
        return out
    # cleanlab wants the classes numbered 0..k-1, each present
    renumber = np.full(probs.shape[1], -1)
    renumber[present] = np.arange(len(present))
    p = probs[np.ix_(have, present)]
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    out[have] = find_label_issues(renumber[lab[have]], p, n_jobs=1)
    return out


def _report(paths, names, lab, probs, vote, both, candidate, top, cut) -> Labels:
    n = len(paths)
    rows = np.arange(n)
    safe = np.maximum(lab, 0)
    own = both[rows, safe]
    other = both.copy()
    other[rows, safe] = -1.0
    suggested = other.argmax(axis=1)
    mass = _class_means(both, lab, lab >= 0, len(names))
    confused = (mass + mass.T) >= CONFUSABLE
    np.fill_diagonal(confused, False)

    def item(i: int) -> Mislabel:
        return Mislabel(
            paths[i],
            names[lab[i]],
            names[suggested[i]],
            round(float(1.0 - own[i]), 6),
            tuple(paths[j] for j in vote.neighbours(i)),
            round(float(probs[i, lab[i]]), 6),
            round(float(vote.share[i, lab[i]]), 6),
        )

    order = [int(i) for i in sorted(np.flatnonzero(candidate), key=lambda i: (own[i], paths[i]))]
    if top is not None:
        return Labels([item(i) for i in order[: max(0, top)]])
    listed: list[Mislabel] = []
    pairs: dict[tuple[str, str], list[Mislabel]] = {}
    under = 0
    for i in order:
        a, b = int(lab[i]), int(suggested[i])
        if confused[a, b] and own[i] >= STANDS_OUT:
            key = (names[min(a, b)], names[max(a, b)])
            pairs.setdefault(key, []).append(item(i))
        elif 1.0 - own[i] >= cut:
            listed.append(item(i))
        else:
            under += 1
    confusions = [Confusion(k, tuple(v)) for k, v in pairs.items()]
    confusions.sort(key=lambda c: (-c.count, c.classes))
    return Labels(listed, confusions, under)
