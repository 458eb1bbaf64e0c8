"""Triage a collection: copies, identical files, outliers, broken files.

**Copies.** Two pictures are grouped when one is a copy of the other: the same picture
after everyday edits (resized, cropped, framed, mirrored, turned, tilted, brightened,
greyed, captioned, re-encoded), never merely the same kind of thing. The decision is made
per candidate pair by :mod:`engine.copies` on evidence that survives those edits
(identical bytes, local features verified geometrically, aligned pixels that stand out
from the picture's other look-alikes), and each member says why it was grouped.

*Candidates* are each picture's :data:`engine.copies.CANDIDATES` nearest neighbours by
code cosine, from the self-join (:mod:`engine.selfjoin`): on held-out edited clip-art
they hold 95-100 % of the true pairs, so recall is decided by the second stage.

``threshold`` keeps its meaning, the minimum *visual similarity* (cosine of the
backbone's centred features, the score shown everywhere in lookalike) of a pair that is
grouped; its default, 0, leaves the decision to the copy rule (heavily edited copies,
turned or cropped, can score 0.3). Byte-identical files are always grouped. Pairs the
user marked as not duplicates (``store.reject``) never are.

**Which copy is kept.** Images are taken in the *keeper order*: first the ones the user
chose (``prefer``: ``k`` in the app), then those under a kept folder (``keep_in``:
``--keep-in``, czkawka's reference folders), then files before symbolic links (a link is
never kept over its target, which would then be moved from under it), then most pixels
(the original outranks its downscaled copies), the oldest modification time, the
shortest path, and the path itself. The first image not yet in a group becomes a
representative; its group is every image not yet grouped that is a copy *of it*. Every
member is thus a copy of its representative, never merely of some other member, and the
same collection always gives the same groups, in the same order (largest first, then by
representative path). Members under a kept folder are marked ``kept``: never moved.
Byte-identical members come first in their group (score 1.0), one identical set.

:func:`regroup` recomputes the groups of a report for another threshold, kept folders or
chosen keepers without looking at a single picture again (the app's ``k``, ``+``, ``-``).

**Outliers**: the images whose nearest neighbour is least similar, the lowest
``outlier_share`` (1 %), each with that neighbour's similarity; never one with a copy.
**Broken**: every file that could not be indexed, with its reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine import copies
from engine.dataset import Mislabel, Unusable, mislabeled, unusable
from engine.images import SkippedFile
from engine.leaks import Leak
from engine.quarantine import Keep
from engine.selfjoin import EXACT_MAX, JoinCancelled, self_join, unit_codes

#: Default minimum visual similarity of a grouped pair: none, the copy rule decides.
DEFAULT_THRESHOLD = 0.0
#: Candidates come from codes at least this similar (their nearest ones are kept).
CANDIDATE_FLOOR = 0.0
#: Beyond exact self-joins, candidates are pairs of at least this code cosine, found by
#: LSH bands strict enough for it (heavily edited copies may be missed there).
BANDED_FLOOR = 0.85
#: Pairs verified by local features at a time, and pictures' descriptions kept meanwhile.
VERIFY_CHUNK = 256
DESCRIBED_KEPT = 2048
#: The share of images reported as outliers.
OUTLIER_SHARE = 0.01


@dataclass(frozen=True)
class Member:
    path: str
    score: float  # visual similarity to the group's representative (1.0 when identical)
    identical: bool  # byte-identical to the representative
    sha256: str | None
    pixels: int
    why: str = ""  # the evidence, in words ("mirrored copy · 212 matching points")
    kept: bool = False  # under a kept folder: never moved


@dataclass
class Group:
    id: int
    representative: Member
    members: list[Member]  # the others, most similar first


@dataclass(frozen=True)
class Outlier:
    path: str
    score: float  # visual similarity to its nearest neighbour
    neighbour: str


@dataclass
class TriageReport:
    threshold: float
    groups: list[Group]
    outliers: list[Outlier]
    broken: list[SkippedFile]
    images: int
    seconds: float
    method: str
    #: Every image whose nearest neighbour scores below this is among the outliers
    #: examined exactly (1.0: every score is exact).
    outliers_certain_below: float = 1.0
    notes: list[str] = field(default_factory=list)
    candidates: int = 0  # candidate pairs looked at
    verified: int = 0  # pairs whose local features were compared in this run (not cached)
    keep_in: tuple[str, ...] = ()  # kept folders, relative to the root
    prefer: frozenset[str] = frozenset()  # keepers the user chose
    graph: Graph | None = field(default=None, repr=False)
    #: data-set triage (engine.dataset, engine.leaks)
    mislabeled: list[Mislabel] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def movable(self) -> list[str]:
        """Every member that a move sets aside: not a representative, not kept."""
        return [m.path for g in self.groups for m in g.members if not m.kept]

    def kept_members(self) -> list[str]:
        return [m.path for g in self.groups for m in g.members if m.kept]

    def keep(self) -> Keep:
        """What a move must leave in place: every keeper, the kept copies, the kept
        folders (compared by real location when files move)."""
        stay = [g.representative.path for g in self.groups] + self.kept_members()
        return Keep(tuple(stay), self.keep_in)


@dataclass
class Graph:
    """Every copy pair found (``edges[a][b] = (similarity, why)``, both ways) and the
    facts the keeper order needs, per row: what :func:`regroup` works from."""

    edges: dict[int, dict[int, tuple[float, str]]]
    paths: list[str]
    pixels: np.ndarray
    mtimes: np.ndarray
    digests: list[bytes | None]
    links: set[int]  # rows whose file is a symbolic link
    #: each grouped row's real path (links resolved), and the folder's: a kept folder
    #: keeps what lies in it by real path too (``alias/x.png`` when ``alias -> orig``)
    real: dict[int, str] = field(default_factory=dict)
    root: str = ""


def kept_folder(root: Path, given: str | os.PathLike[str]) -> str:
    """*given* (absolute, relative to the working folder, or to *root*) as a folder
    relative to *root* (``"."`` for the root itself); ValueError when it is not a folder
    under *root*."""
    path = Path(given).expanduser()
    if not path.is_absolute() and not path.exists():
        path = root / path
    try:
        rel = path.resolve().relative_to(root)
    except (ValueError, OSError):
        raise ValueError(f"not a folder under {root}: {given}") from None
    if not path.is_dir():
        raise ValueError(f"not a folder: {given}")
    return rel.as_posix()


def under(path: str, folders: tuple[str, ...]) -> bool:
    """Whether relative *path* lies in one of relative *folders*."""
    return any(f == "." or path.startswith(f.rstrip("/") + "/") for f in folders)


Progress = Callable[[str, float], None]


def triage(
    search,
    threshold: float = DEFAULT_THRESHOLD,
    outlier_share: float = OUTLIER_SHARE,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_in: tuple[str, ...] = (),
    prefer: frozenset[str] = frozenset(),
) -> TriageReport:
    """Triage *search*'s index as it is (bring it up to date first). *keep_in*: kept
    folders relative to the root (:func:`kept_folder`); *prefer*: paths to keep first."""
    t0 = time.perf_counter()
    say = on_progress or (lambda _phase, _done: None)
    cancel = cancel or threading.Event()
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the threshold is a similarity between 0 and 1")
    vec = search.vectors()
    units, slots = unit_codes(vec)
    n = len(slots)
    broken = search.failures()
    if n < 2:
        return TriageReport(threshold, [], [], broken, n, time.perf_counter() - t0, "none")
    facts, row_of_fact, paths = aligned_facts(search, slots)
    joined = self_join(
        vec,
        CANDIDATE_FLOOR if n <= EXACT_MAX else BANDED_FLOOR,
        outliers=outlier_share,
        on_progress=say,
        cancel=cancel,
        banding_tau=None if n <= EXACT_MAX else BANDED_FLOOR,
        top_k=copies.CANDIDATES,
    )
    rows = _RowOf(slots)
    left, right = rows.of(joined.left), rows.of(joined.right)
    left, right, rank = _nearest_candidates(left, right, joined.score, n)
    # a stored path that leads out of the folder through a link here (another machine's,
    # in a shared index) is neither opened nor listed
    hidden = ~np.array(search.openable(paths), bool)
    if hidden.any():
        keep = ~(hidden[left] | hidden[right])
        left, right, rank = left[keep], right[keep], rank[keep]
    digests = [facts.digests[i] for i in row_of_fact]
    pairs = copies.Pairs(left, right, rank)
    pairs.similarity = _similarities(vec, slots, left, right)
    say("checking", 0.0)
    stored = [facts.thumbs[i] for i in row_of_fact] if facts.thumbs else [None] * n
    needed = np.zeros(n, bool)
    needed[pairs.left] = needed[pairs.right] = True
    thumbs = thumbnails(search, paths, stored, needed)
    sides = np.sqrt(np.maximum(facts.pixels[row_of_fact], 0)).astype(np.int64)
    copies.pixel_verdicts(pairs, thumbs, sides)
    opener = lambda r, side, make: _from_picture(search, paths[r], side, make)  # noqa: E731
    verify_fine(opener, pairs, sides, cancel)
    verified = verify_points(
        search.store,
        search.settings.decode_workers,
        opener,
        pairs,
        paths,
        digests,
        sides,
        say,
        cancel,
    )
    edges: dict[int, dict[int, tuple[float, str]]] = defaultdict(dict)
    for i in np.flatnonzero(pairs.copy):
        a, b = int(pairs.left[i]), int(pairs.right[i])
        edges[a][b] = edges[b][a] = (float(pairs.similarity[i]), pairs.why[i])
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        if d is not None and not hidden[i]:
            by_digest[d].append(i)
    for same in by_digest.values():
        for a in same:
            for b in same:
                if a != b:
                    edges[a][b] = (1.0, "identical bytes")
    rejected = search.store.rejections()
    for a in list(edges):
        for b in list(edges[a]):
            if tuple(sorted((paths[a], paths[b]))) in rejected:
                del edges[a][b]
    edges = {a: near for a, near in edges.items() if near}
    measured = [facts.quality[i] for i in row_of_fact] if facts.quality else [None] * n
    row_of_path = {p: i for i, p in enumerate(paths)} if hidden.any() else {}
    flagged, quality_note = unusable(paths, measured, search.store.damaged)
    flagged = [u for u in flagged if not hidden[row_of_path[u.path]]] if hidden.any() else flagged
    suspects, labels_note = mislabeled(paths, pairs.left, pairs.right, pairs.similarity)
    links = {i for i in edges if os.path.islink(search.root / paths[i])}
    real = {i: os.path.realpath(search.root / paths[i]) for i in edges}
    graph = Graph(
        edges, paths, facts.pixels[row_of_fact], facts.mtimes[row_of_fact], digests, links,
        real, str(search.root),
    )  # fmt: skip
    copied = set(edges) | set(np.flatnonzero(hidden).tolist())
    outliers, certain = _outliers(joined, vec, slots, rows, paths, outlier_share, copied)
    notes = [x for x in (quality_note, labels_note) if x]
    if rejected:
        notes.append(f"{len(rejected)} pairs marked not duplicates are never grouped")
    report = TriageReport(
        threshold,
        [],
        outliers,
        broken,
        n,
        0.0,
        joined.method,
        certain,
        notes,
        candidates=len(pairs.left),
        verified=verified,
        graph=graph,
        mislabeled=suspects,
        unusable=flagged,
    )
    report = regroup(report, threshold, tuple(keep_in), frozenset(prefer))
    report.seconds = time.perf_counter() - t0
    return report


def regroup(
    report: TriageReport,
    threshold: float | None = None,
    keep_in: tuple[str, ...] | None = None,
    prefer: frozenset[str] | None = None,
) -> TriageReport:
    """*report* with its groups made again for another threshold, kept folders or chosen
    keepers (``None``: as before), from the pairs it found: no picture is opened."""
    threshold = report.threshold if threshold is None else threshold
    keep_in = report.keep_in if keep_in is None else tuple(keep_in)
    prefer = report.prefer if prefer is None else frozenset(prefer)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("the threshold is a similarity between 0 and 1")
    groups = [] if report.graph is None else group_pairs(report.graph, threshold, keep_in, prefer)
    return replace(report, threshold=threshold, keep_in=keep_in, prefer=prefer, groups=groups)


def aligned_facts(search, slots: np.ndarray):
    """The index's image facts, the fact row of each live slot (both in slot order),
    and their paths, every one checked (a crafted path is the damaged-index error)."""
    facts = search.store.image_facts()
    row_of_fact = np.searchsorted(facts.slots, slots)
    if len(slots) and (
        not len(facts.slots)
        or not np.array_equal(facts.slots[np.minimum(row_of_fact, len(facts.slots) - 1)], slots)
    ):
        raise search.store.damaged("image records and vectors disagree")
    paths = [facts.paths[i] for i in row_of_fact]
    for p in paths:
        search.check_stored_path(p)
    return facts, row_of_fact, paths


def _nearest_candidates(left, right, score, n: int):
    """Keep each pair that is among the first CANDIDATES of either picture; its rank is
    the better of the two (0: each other's nearest)."""
    if not len(left):
        return left, right, np.zeros(0, np.int64)
    a = np.concatenate([left, right])
    s = np.concatenate([score, score])
    idx = np.concatenate([np.arange(len(left)), np.arange(len(left))])
    order = np.lexsort((-s, a))
    a_sorted = a[order]
    starts = np.concatenate([[0], np.flatnonzero(a_sorted[1:] != a_sorted[:-1]) + 1])
    pos = np.arange(len(a_sorted)) - np.repeat(starts, np.diff(np.append(starts, len(a_sorted))))
    rank = np.full(len(left), np.iinfo(np.int64).max)
    np.minimum.at(rank, idx[order], pos)
    keep = rank < copies.CANDIDATES
    return left[keep], right[keep], rank[keep]


def _from_picture(search, path: str, side: int, make):
    """``make(picture)`` for the stored *path*, decoded at about *side* pixels; None when
    it may not be opened (a link out of the root) or any step fails on it."""
    from engine.images import ImageError, guarded, open_image

    if not search.may_open(path):
        return None
    try:
        return guarded(lambda: make(open_image(search.root / path, draft_size=side)))
    except ImageError:
        return None


def thumbnails(search, paths: list[str], stored: list[bytes | None], needed) -> np.ndarray:
    """Every picture's thumbnail: the stored one, or made now from the file (an index of
    an older lookalike, or a shared one); blank where neither can be had (a blank
    thumbnail is never a pixel match)."""
    out = np.zeros((len(paths), copies.THUMB * copies.THUMB), np.uint8)
    for i, (p, t) in enumerate(zip(paths, stored)):
        if t is not None and len(t) == out.shape[1]:
            out[i] = np.frombuffer(t, np.uint8)
            continue
        if needed[i]:
            made = _from_picture(search, p, 128, copies.thumbnail)
            if made is not None:
                out[i] = made
    return out


def verify_fine(opener, pairs, sides, cancel) -> None:
    """Pairs with a picture too small for keypoints, compared pixel by pixel at full
    size (:func:`engine.copies.fine_score`); each picture decoded once."""
    todo = np.flatnonzero(copies.needs_fine(pairs, sides))
    if not len(todo):
        return
    rows = np.unique(np.concatenate([pairs.left[todo], pairs.right[todo]]))
    side = copies.FINE_SIDE * 2
    # one thread: decoding a picture this small is mostly Python, and threads fighting
    # over the interpreter took three times as long (70,000 pictures: 25 s against 8.4)
    made = []
    for k, r in enumerate(rows):
        if k % 4096 == 0 and cancel.is_set():
            raise JoinCancelled
        made.append(opener(int(r), side, copies.fine_picture))
    fine = dict(zip(rows.tolist(), made))
    alike: dict[tuple[int, ...], list[int]] = defaultdict(list)  # both of one shape
    for i in todo:
        a, b = fine[int(pairs.left[i])], fine[int(pairs.right[i])]
        if a is None or b is None:
            continue
        if a.shape == b.shape:
            alike[a.shape].append(int(i))
            continue
        score = copies.fine_score(a, b, pairs.transform[i])
        if score >= copies.FINE:
            pairs.copy[i] = True
            pairs.why[i] = f"{score:.3f} pixels alike at full size"
    for group in alike.values():
        for lo in range(0, len(group), VERIFY_CHUNK * 64):  # 16,384 pairs: ~100 MB at 28 px
            idx = np.array(group[lo : lo + VERIFY_CHUNK * 64])
            a = np.stack([fine[int(r)] for r in pairs.left[idx]])
            b = np.stack([fine[int(r)] for r in pairs.right[idx]])
            scores = copies.fine_scores(a, b, pairs.transform[idx])
            for i, score in zip(idx[scores >= copies.FINE], scores[scores >= copies.FINE]):
                pairs.copy[i] = True
                pairs.why[i] = f"{score:.3f} pixels alike at full size"


def verify_points(store, workers, opener, pairs, paths, digests, sides, say, cancel) -> int:
    """Local features for the pairs pixels could not decide (verdicts cached in *store*
    by the files' names and contents); ``opener(row, side, make)`` gives ``make`` of
    row's picture, or None. Returns how many pairs were verified now."""
    todo = np.flatnonzero(copies.needs_points(pairs, sides))
    if not len(todo):
        return 0
    keys = [
        _pair_key(
            paths[pairs.left[i]],
            digests[pairs.left[i]],
            paths[pairs.right[i]],
            digests[pairs.right[i]],
        )
        for i in todo
    ]
    # a cached verdict of any other shape than lookalike writes is verified again (and
    # replaced): a crafted cache must not decide
    cached = {k: v for k, v in store.verdicts(keys).items() if copies.read_verdict(v)}
    fresh: dict[bytes, str] = {}

    def describe_row(r: int) -> copies.Described | None:
        return opener(r, copies.DESCRIBE_SIDE * 2, copies.describe)

    # Pairs in order of their left picture; descriptions kept for a window of recent
    # pictures only (a photo's is ~250 KB: all of a large collection would not fit).
    order = [k for k in np.argsort(pairs.left[todo], kind="stable") if keys[k] not in cached]
    described: OrderedDict[int, copies.Described | None] = OrderedDict()
    with ThreadPoolExecutor(workers, thread_name_prefix="lookalike-describe") as pool:
        for lo in range(0, len(order), VERIFY_CHUNK):
            if cancel.is_set():
                raise JoinCancelled
            chunk = [int(todo[k]) for k in order[lo : lo + VERIFY_CHUNK]]
            rows = {int(pairs.left[i]) for i in chunk} | {int(pairs.right[i]) for i in chunk}
            missing = sorted(r for r in rows if r not in described)
            for r, d in zip(missing, pool.map(describe_row, missing)):
                described[r] = d
            for r in rows:
                described.move_to_end(r)
            while len(described) > max(DESCRIBED_KEPT, len(rows)):
                described.popitem(last=False)

            def verify(i: int, described=described):
                a, b = described[int(pairs.left[i])], described[int(pairs.right[i])]
                return None if a is None or b is None else copies.point_verdict(a, b)

            for k, got in zip(order[lo : lo + VERIFY_CHUNK], pool.map(verify, chunk)):
                if got is not None:
                    ok, m, why = got
                    fresh[keys[k]] = copies.verdict_text(ok, m, why)
            say("checking", min(1.0, (lo + VERIFY_CHUNK) / max(1, len(order))))
    for i, key in zip(todo, keys):
        verdict = fresh.get(key) or cached.get(key)
        if verdict is None:
            continue
        read = copies.read_verdict(verdict)
        if read is not None:
            pairs.copy[i], pairs.why[i] = read[0], read[2]
    with contextlib.suppress(Exception):
        store.put_verdicts(fresh)  # a cache: a read-only or full index goes without
    return len(fresh)


def _pair_key(pa: str, da: bytes | None, pb: str, db: bytes | None) -> bytes:
    """A pair's identity for the verdict cache: both paths and contents, and the rule."""
    h = hashlib.blake2b(digest_size=16)
    for part in sorted([(os.fsencode(pa), da or b""), (os.fsencode(pb), db or b"")]):
        h.update(part[0] + b"\0" + part[1] + b"\0")
    h.update(copies.RULE.encode())
    return h.digest()


def _similarities(vec, slots: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Visual similarity of each pair of rows: the features of the rows involved are read
    once, kept as float16 (2.5 KB per picture of EfficientNet-Lite0)."""
    if not len(left):
        return np.zeros(0, np.float32)
    involved = np.unique(np.concatenate([left, right]))
    feats = feature_units_rows(vec, slots, involved, np.float16)
    a, b = np.searchsorted(involved, left), np.searchsorted(involved, right)
    return row_dots(feats, a, feats, b)


def row_dots(fa: np.ndarray, a: np.ndarray, fb: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``fa[a[i]] · fb[b[i]]`` for every i, in float32, a block of pairs at a time (the
    rows are float16: converted per block, never all at once)."""
    out = np.empty(len(a), np.float32)
    step = 1 << 16
    for lo in range(0, len(a), step):
        x = fa[a[lo : lo + step]].astype(np.float32)
        y = fb[b[lo : lo + step]].astype(np.float32)
        out[lo : lo + step] = np.einsum("ij,ij->i", x, y)
    return out


class _RowOf:
    """Rows of slots (the live slots, ascending), for arrays and one at a time."""

    def __init__(self, slots: np.ndarray) -> None:
        self.slots = slots

    def of(self, slots: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.slots, np.asarray(slots, np.int64)).astype(np.int64)

    def __getitem__(self, slot: int) -> int:
        return int(np.searchsorted(self.slots, slot))


def feature_units_rows(vec, slots: np.ndarray, rows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Centred unit features (or codes, for an index without features) of some rows,
    read in blocks, as *dtype*."""
    use_features = vec.snap.features is not None
    source = vec.snap.features if use_features else vec.snap.codes
    centre = None
    if vec.centre is not None:
        centre = vec.centre.features if use_features else vec.centre.codes
    out = np.empty((len(rows), source.shape[1]), dtype)
    step = 1 << 14
    for lo in range(0, len(rows), step):
        x = np.asarray(source[slots[rows[lo : lo + step]]], np.float32)
        if centre is not None:
            x = x - centre
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out[lo : lo + step] = x
    return out


def _really_under(graph: Graph, row: int, folders: tuple[str, ...]) -> bool:
    """Whether *row*'s file lies, by real path, in one of the kept *folders*."""
    real = graph.real.get(row)
    if real is None or not graph.root or not folders:
        return False
    for f in folders:
        top = os.path.realpath(os.path.join(graph.root, f))
        if real.startswith(top.rstrip("/") + "/"):
            return True
    return False


def group_pairs(graph: Graph, threshold: float, keep_in, prefer) -> list[Group]:
    """Representatives in the keeper order, each taking every ungrouped copy of its own
    at least *threshold* similar (identical bytes always)."""
    paths, pixels, digests = graph.paths, graph.pixels, graph.digests
    kept = {i for i in graph.edges if under(paths[i], keep_in) or _really_under(graph, i, keep_in)}

    def order(i: int):
        return (
            paths[i] not in prefer,
            i not in kept,
            i in graph.links,
            -int(pixels[i]),
            int(graph.mtimes[i]),
            len(paths[i]),
            paths[i],
        )

    def near(i: int) -> dict[int, tuple[float, str]]:
        return {
            j: e
            for j, e in graph.edges[i].items()
            if e[0] >= threshold or e[1] == "identical bytes"
        }

    taken: set[int] = set()
    out: list[Group] = []
    for rep in sorted(graph.edges, key=order):
        if rep in taken:
            continue
        copies_of = near(rep)
        mine = [j for j in copies_of if j not in taken]
        if not mine:
            continue
        taken.add(rep)
        taken.update(mine)

        def member(i: int, score: float, why: str, rep: int = rep) -> Member:
            d = digests[i]
            same = d is not None and d == digests[rep] and i != rep
            sha = d.hex() if d else None
            return Member(paths[i], score, same, sha, int(pixels[i]), why, i in kept)

        members = sorted((member(j, *copies_of[j]) for j in mine), key=lambda m: (-m.score, m.path))
        out.append(Group(0, member(rep, 1.0, ""), members))
    out.sort(key=lambda g: (-len(g.members), g.representative.path))
    for i, g in enumerate(out, 1):
        g.id = i
    return out


def _outliers(joined, vec, slots, rows, paths, share, copied) -> tuple[list[Outlier], float]:
    """The lowest *share* by nearest-neighbour score, never an image with a copy (*copied*:
    rows in a copy or identical pair): it is like something else by definition."""
    live = ~np.isnan(joined.nearest[slots])
    scores = joined.nearest[slots]
    exact = joined.nearest_exact[slots]
    alone = np.ones(len(slots), bool)
    alone[list(copied)] = False
    want = max(1, int(round(share * len(slots))))
    order = np.argsort(np.where(live & exact & alone, scores, np.inf), kind="stable")[:want]
    order = [i for i in order if exact[i] and alone[i] and scores[i] < joined.nearest_certain]
    neighbour_rows = [rows[int(joined.nearest_slot[slots[i]])] for i in order]
    sims = _similarities(vec, slots, np.array(order, np.int64), np.array(neighbour_rows, np.int64))
    out = [Outlier(paths[i], float(s), paths[j]) for i, j, s in zip(order, neighbour_rows, sims)]
    out.sort(key=lambda o: (o.score, o.path))
    return out, joined.nearest_certain
