"""Triage a collection: near-duplicate groups, identical copies, outliers, broken files.

**Near-duplicates.** Two images are near-duplicates when both of these hold:

* their *visual similarity* (cosine of the backbone's centred features, the score shown
  everywhere in lookalike) is at least the threshold (default :data:`DEFAULT_THRESHOLD`);
* their *layout* matches: the 64-bit difference hashes of their 9 x 8 greyscale
  thumbnails differ in at most :data:`HASH_BITS` bits.

Why both: on a test set of real clip-art with edited copies (downscaled to 50-80 %,
cropped by 2-5 % per side, JPEG quality 40-70, brightness ±10 %), features alone could not
separate copies from different pictures of the same subject (precision 0.95 needed a
threshold that kept only 0.87 of the copies); the layout check alone lets through
pictures that merely share a silhouette (on Fashion-MNIST, any two plain trousers).
Together, at 0.80 and 16 bits: pair precision 0.997, recall 0.948 (see
docs/BENCHMARKS.md). A lower threshold finds more heavily edited copies and, in
collections of look-alike products, more false pairs. Byte-identical files (same
SHA-256) are always near-duplicates, marked ``identical``.

**Groups without chaining.** Images are taken in the *representative order*: most pixels
first (the original outranks its downscaled copies), then the oldest modification time,
then the path. The first image not yet in a group becomes a representative; its group is
every image not yet grouped that is a near-duplicate *of it*. Every member is thus close
to its representative, never merely to some other member, and the same collection always
gives the same groups, in the same order (largest first, then by representative path).

**Outliers**: the images whose nearest neighbour is least similar, the lowest
``outlier_share`` (1 %), each with that neighbour's similarity. **Broken**: every file
that could not be indexed, with its reason.

Candidates come from the self-join on codes (:mod:`engine.selfjoin`), at a code cosine a
margin below the threshold (codes approximate features), with the layout check applied
inside the join so that dense collections stay cheap.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.images import SkippedFile
from engine.selfjoin import EXACT_MAX, self_join, unit_codes

#: Default minimum visual similarity of near-duplicates (chosen by measurement).
DEFAULT_THRESHOLD = 0.80
#: At most this many of the 64 difference-hash bits may differ between near-duplicates.
HASH_BITS = 16
#: The self-join looks this far below the threshold on codes (they approximate features).
CODE_MARGIN = 0.10
#: Beyond exact self-joins, LSH bands are made for at least this code cosine.
BANDED_FLOOR = 0.85
#: The share of images reported as outliers.
OUTLIER_SHARE = 0.01


@dataclass(frozen=True)
class Member:
    path: str
    score: float  # visual similarity to the group's representative (1.0 when identical)
    identical: bool  # byte-identical to the representative
    sha256: str | None
    pixels: int


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

    @property
    def duplicates(self) -> int:
        return sum(len(g.members) for g in self.groups)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy's ``bitwise_count`` where it has one)."""
    x = np.asarray(x, np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1).astype(np.int64)


Progress = Callable[[str, float], None]


def triage(
    search,
    threshold: float = DEFAULT_THRESHOLD,
    outlier_share: float = OUTLIER_SHARE,
    on_progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> TriageReport:
    """Triage *search*'s index as it is (bring it up to date first)."""
    t0 = time.perf_counter()
    say = on_progress or (lambda _phase, _done: None)
    if not 0.0 < threshold <= 1.0:
        raise ValueError("the threshold is a similarity between 0 and 1")
    vec = search.vectors()
    facts = search.store.image_facts()
    units, slots = unit_codes(vec)
    n = len(slots)
    broken = search.failures()
    if n < 2:
        return TriageReport(threshold, [], [], broken, n, time.perf_counter() - t0, "none")
    # facts and units are both in slot order; align them row for row
    row_of_fact = np.searchsorted(facts.slots, slots)
    if not np.array_equal(facts.slots[np.minimum(row_of_fact, len(facts.slots) - 1)], slots):
        raise search.store.damaged("image records and vectors disagree")
    dhash = facts.dhash[row_of_fact]
    known = facts.known[row_of_fact]

    def same_layout(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return known[a] & known[b] & (popcount64(dhash[a] ^ dhash[b]) <= HASH_BITS)

    code_tau = max(threshold - CODE_MARGIN, -1.0)
    joined = self_join(
        vec,
        code_tau,
        outliers=outlier_share,
        on_progress=say,
        cancel=cancel,
        pair_filter=same_layout,
        banding_tau=None if n <= EXACT_MAX else BANDED_FLOOR,
    )
    say("checking", 0.0)
    # slots back to rows
    rows = {int(s): i for i, s in enumerate(slots)}
    left = np.array([rows[int(s)] for s in joined.left], np.int64)
    right = np.array([rows[int(s)] for s in joined.right], np.int64)
    feats = _feature_units(vec, slots, np.unique(np.concatenate([left, right])))
    sim = np.array([feats[a] @ feats[b] for a, b in zip(left, right)], np.float32)
    keep = sim >= threshold
    edges: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, s in zip(left[keep], right[keep], sim[keep]):
        edges[int(a)][int(b)] = edges[int(b)][int(a)] = float(s)
    digests = [facts.digests[i] for i in row_of_fact]
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        if d is not None:
            by_digest[d].append(i)
    for same in by_digest.values():
        for a in same:
            for b in same:
                if a != b:
                    edges[a][b] = 1.0
    paths = [facts.paths[i] for i in row_of_fact]
    pixels = facts.pixels[row_of_fact]
    mtimes = facts.mtimes[row_of_fact]
    groups = _group(edges, paths, pixels, mtimes, digests)
    outliers, certain = _outliers(joined, vec, slots, rows, paths, outlier_share, set(edges))
    notes = []
    if not known.all():
        notes.append(
            f"{int((~known).sum())} images have no layout hash (indexed by an older"
            " lookalike or without pixels): only their identical copies are grouped"
        )
    return TriageReport(
        threshold,
        groups,
        outliers,
        broken,
        n,
        time.perf_counter() - t0,
        joined.method,
        certain,
        notes,
    )


def _feature_units(vec, slots: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Centred unit features (or codes, for an index without features) of some rows."""
    if not len(rows):
        return {}
    if vec.snap.features is not None:
        x = np.asarray(vec.snap.features[slots[rows]], np.float32)
        if vec.centre is not None and vec.centre.features is not None:
            x = x - vec.centre.features
    else:
        x = np.asarray(vec.snap.codes[slots[rows]], np.float32)
        if vec.centre is not None:
            x = x - vec.centre.codes
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return dict(zip(rows.tolist(), x))


def _group(edges, paths, pixels, mtimes, digests) -> list[Group]:
    """Representatives in order (most pixels, oldest, path), each taking every ungrouped
    near-duplicate of its own."""
    involved = sorted(edges, key=lambda i: (-int(pixels[i]), int(mtimes[i]), paths[i]))
    taken: set[int] = set()
    out: list[Group] = []
    for rep in involved:
        if rep in taken:
            continue
        mine = [j for j in edges[rep] if j not in taken]
        if not mine:
            continue
        taken.add(rep)
        taken.update(mine)

        def member(i: int, score: float, rep: int = rep) -> Member:
            d = digests[i]
            same = d is not None and d == digests[rep] and i != rep
            return Member(paths[i], score, same, d.hex() if d else None, int(pixels[i]))

        members = sorted((member(j, edges[rep][j]) for j in mine), key=lambda m: (-m.score, m.path))
        out.append(Group(0, member(rep, 1.0), members))
    out.sort(key=lambda g: (-len(g.members), g.representative.path))
    for i, g in enumerate(out, 1):
        g.id = i
    return out


def _outliers(joined, vec, slots, rows, paths, share, copied) -> tuple[list[Outlier], float]:
    """The lowest *share* by nearest-neighbour score, never an image with a copy (*copied*:
    rows in a near-duplicate or identical pair): it is like something else by definition."""
    live = ~np.isnan(joined.nearest[slots])
    scores = joined.nearest[slots]
    exact = joined.nearest_exact[slots]
    alone = np.ones(len(slots), bool)
    alone[list(copied)] = False
    want = max(1, int(round(share * len(slots))))
    order = np.argsort(np.where(live & exact & alone, scores, np.inf), kind="stable")[:want]
    order = [i for i in order if exact[i] and alone[i] and scores[i] < joined.nearest_certain]
    neighbour_rows = [rows[int(joined.nearest_slot[slots[i]])] for i in order]
    feats = _feature_units(vec, slots, np.unique(np.array(order + neighbour_rows, np.int64)))
    out = [
        Outlier(paths[i], float(feats[i] @ feats[j]), paths[j])
        for i, j in zip(order, neighbour_rows)
    ]
    out.sort(key=lambda o: (o.score, o.path))
    return out, joined.nearest_certain
