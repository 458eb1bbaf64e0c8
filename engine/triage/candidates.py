"""The candidate graph: each picture's nearest pictures and the evidence about each pair,
kept in the index and brought up to date by what changed, never made again whole.

**What it holds.** Per picture (a *row*): its path and a tag of its content (the first
8 bytes of its SHA-256), its thumbnail's spread, its nearest neighbour's code cosine.
Per candidate pair: code cosine, visual similarity, aligned pixels and transform, the
full-size pixel score, the local-feature verdict (:class:`engine.copies.Pairs`).
Candidates are each picture's :data:`engine.copies.CANDIDATES` nearest by code cosine
(a pair is kept when it is among the first of either picture), exactly up to
:data:`engine.selfjoin.EXACT_MAX` pictures, from strict LSH bands beyond.

**Why it is kept.** A first triage of 100,000 pictures spends minutes on the self-join,
the features and the full-size pixels; everything after that is milliseconds. The graph
is stored in the index (one blob, :func:`encode`) with the settings it was made under
(backbone, weights, code size, precision, the centre's generation, the copy rule):
a graph made otherwise is not used.

**How it follows the index** (:func:`update`). Pictures are matched by path and content
tag. A picture gone (deleted, moved, changed) leaves with its pairs; the pictures that
lost a candidate with it, and every new picture, get their nearest pictures exactly
(a block product of those rows against all); an old picture gains a new one as a
candidate when it beats its current last candidate. Then each pair keeps its rank among
either picture's candidates, as a whole join would give. Only new pairs are measured.

**Read as untrusted.** The blob comes from the index, which whoever has the folder can
write: its header is bounded JSON, every array's type and length is checked against it
and against the blob's size, every row number is in range. Anything else and the graph
is made again, as if there were none.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine import copies
from engine.selfjoin import EXACT_MAX, rows_top_k, self_join

#: The blob's name in the index, its first bytes and format version.
BLOB = "triage-graph"
MAGIC = b"lookalike candidate graph\n"
VERSION = 1
#: The header is JSON of at most this many bytes; texts are stored as lengths, then bytes.
HEADER_MAX = 1 << 16
TEXT_LENGTH = np.dtype("<u4")
#: Beyond EXACT_MAX pictures, candidates are pairs of at least this code cosine, found by
#: LSH bands strict enough for it (heavily edited copies may be missed there).
BANDED_FLOOR = 0.85
#: Past this share of new or lost pictures, the whole join is made again (it is faster
#: than many rows against all).
REBUILD_SHARE = 0.3

ROW_ARRAYS: dict[str, np.dtype] = {
    "tags": np.dtype("<i8"),
    "flat": np.dtype("<f4"),
    "nearest": np.dtype("<f4"),
    "nearest_row": np.dtype("<i8"),
    "nearest_exact": np.dtype("u1"),
}
PAIR_ARRAYS: dict[str, np.dtype] = {
    "left": np.dtype("<i8"),
    "right": np.dtype("<i8"),
    "rank": np.dtype("<i8"),
    "score": np.dtype("<f4"),
    "similarity": np.dtype("<f4"),
    "pixels": np.dtype("<f4"),
    "transform": np.dtype("<i8"),
    "fine": np.dtype("<f4"),
    "points": np.dtype("<i4"),
    "point_copy": np.dtype("u1"),
    "point_why": np.dtype("<i4"),
}

Progress = Callable[[str, float], None]


@dataclass
class CandidateGraph:
    paths: list[str]
    tags: np.ndarray  # int64
    flat: np.ndarray  # float32: each thumbnail's spread (NaN: not known yet)
    nearest: np.ndarray  # float32: the nearest neighbour's code cosine (NaN: none)
    nearest_row: np.ndarray  # int64 (-1: none)
    nearest_exact: np.ndarray  # bool
    pairs: copies.Pairs
    fingerprint: str
    method: str = "exact blocks"
    certain: float = 1.0  # every row whose nearest is below this has an exact one
    #: rows by (path, tag), made on first use
    _where: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def row_of(self, path: str, tag: int) -> int | None:
        if not self._where:
            self._where = {(p, int(t)): i for i, (p, t) in enumerate(zip(self.paths, self.tags))}
        return self._where.get((path, int(tag)))


def tag_of(digest: bytes | None, mtime: int) -> int:
    """What tells two versions of a file apart: its content digest's first 8 bytes (the
    modification time where no digest is stored)."""
    if digest:
        return int.from_bytes(digest[:8], "little", signed=True)
    return int(mtime)


# --- making and following ------------------------------------------------------------------


def _by_row(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The order that sorts entries by row *a*, best score *s* first within a row: one
    argsort of one key (scores are cosines, in [-1, 1]), three times faster than a
    lexsort of two."""
    return np.argsort(a * 4.0 + (1.0 - np.clip(s, -1.0, 1.0)), kind="stable")


def _positions(a_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For entries sorted by row: where each row starts, how many it has, and each
    entry's place within its row."""
    starts = np.concatenate([[0], np.flatnonzero(a_sorted[1:] != a_sorted[:-1]) + 1])
    counts = np.diff(np.append(starts, len(a_sorted)))
    return starts, counts, np.arange(len(a_sorted)) - np.repeat(starts, counts)


def nearest_candidates(left, right, score, n: int, k: int = copies.CANDIDATES):
    """Keep each pair that is among the first *k* of either picture; its rank is the
    better of the two (0: each other's nearest). Returns the kept indices and ranks."""
    if not len(left):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate([left, right])
    s = np.concatenate([score, score])
    idx = np.concatenate([np.arange(len(left)), np.arange(len(left))])
    order = _by_row(a, s)
    _starts, _counts, pos = _positions(a[order])
    rank = np.full(len(left), np.iinfo(np.int64).max)
    np.minimum.at(rank, idx[order], pos)
    keep = np.flatnonzero(rank < k)
    return keep, rank[keep]


def last_candidate(pairs: copies.Pairs, n: int, k: int = copies.CANDIDATES) -> np.ndarray:
    """Each row's k-th best code cosine among its pairs (-inf with fewer than k): what a
    new picture must beat to become one of its candidates."""
    out = np.full(n, -np.inf, np.float32)
    if not len(pairs):
        return out
    a = np.concatenate([pairs.left, pairs.right])
    s = np.concatenate([pairs.score, pairs.score])
    order = _by_row(a, s)
    a, s = a[order], s[order]
    starts, counts, _pos = _positions(a)
    full = counts >= k
    out[a[starts[full]]] = s[starts[full] + k - 1]
    return out


def _nearest_from_pairs(pairs: copies.Pairs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best pair: its score and the other row (NaN and -1 for none)."""
    best = np.full(n, np.nan, np.float32)
    at = np.full(n, -1, np.int64)
    if len(pairs):
        a = np.concatenate([pairs.left, pairs.right])
        b = np.concatenate([pairs.right, pairs.left])
        s = np.concatenate([pairs.score, pairs.score])
        order = _by_row(a, s)
        starts, _counts, _pos = _positions(a[order])
        pick = order[starts]
        best[a[pick]], at[a[pick]] = s[pick], b[pick]
    return best, at


def build(
    vec, paths: list[str], tags: np.ndarray, fingerprint: str, outliers: float, say, cancel
) -> CandidateGraph:
    """A new graph of the live pictures of *vec* (rows in the order of
    :func:`engine.selfjoin.unit_codes`): the whole self-join, no evidence yet."""
    from engine.selfjoin import unit_codes

    units, slots = unit_codes(vec)
    n = len(slots)
    exact = n <= EXACT_MAX
    joined = self_join(
        vec,
        0.0 if exact else BANDED_FLOOR,
        outliers=outliers,
        on_progress=say,
        cancel=cancel,
        banding_tau=None if exact else BANDED_FLOOR,
        top_k=copies.CANDIDATES,
    )
    rows = np.searchsorted(slots, joined.left), np.searchsorted(slots, joined.right)
    keep, rank = nearest_candidates(rows[0], rows[1], joined.score, n)
    pairs = copies.Pairs(rows[0][keep], rows[1][keep], rank)
    pairs.score = joined.score[keep].astype(np.float32)
    nearest = joined.nearest[slots].astype(np.float32)
    at = joined.nearest_slot[slots]
    nearest_row = np.where(at >= 0, np.searchsorted(slots, np.maximum(at, 0)), -1)
    return CandidateGraph(
        list(paths),
        np.asarray(tags, np.int64),
        np.full(n, np.nan, np.float32),
        nearest,
        nearest_row.astype(np.int64),
        joined.nearest_exact[slots].astype(bool),
        pairs,
        fingerprint,
        joined.method,
        float(joined.nearest_certain),
    )


@dataclass
class Change:
    """What :func:`update` found: rows new to the graph, rows gone from it."""

    new: int = 0
    gone: int = 0
    rebuilt: bool = False

    @property
    def any(self) -> bool:
        return bool(self.new or self.gone or self.rebuilt)


def _merged(joined: copies.Pairs, n: int) -> copies.Pairs:
    """*joined* with one of each pair (the one with evidence first), kept where it is
    among either picture's first candidates, ranked."""
    packed = joined.left * n + joined.right
    measured = ~np.isnan(joined.pixels)
    order = np.lexsort((~measured, packed))
    first = order[np.concatenate([[True], packed[order][1:] != packed[order][:-1]])]
    merged = joined.take(np.sort(first))
    keep_at, rank = nearest_candidates(merged.left, merged.right, merged.score, n)
    merged = merged.take(keep_at)
    merged.rank = rank
    return merged


def update(
    graph: CandidateGraph,
    paths: list[str],
    tags: np.ndarray,
    keep: set[str],
    units_of: Callable[[], tuple[np.ndarray, np.ndarray]],
    say: Progress,
    cancel: threading.Event,
) -> tuple[CandidateGraph, np.ndarray, Change]:
    """*graph* brought up to the pictures now in the index (*paths*, *tags*, in the
    order of *units_of*'s rows). Rows of *keep* paths stay though the index has them no
    more (moved aside by this session: an undo brings them back). Returns the graph, the
    index row of each graph row (-1 for one kept that is not in the index), and what
    changed. *units_of* gives the centred unit codes of the index's rows and is called
    only when a join is needed."""
    index_row = {(p, int(t)): i for i, (p, t) in enumerate(zip(paths, tags))}
    old_to_index = np.array(
        [index_row.get((p, int(t)), -1) for p, t in zip(graph.paths, graph.tags)], np.int64
    )
    stay = (old_to_index >= 0) | np.array([p in keep for p in graph.paths], bool)
    seen = np.zeros(len(paths), bool)
    seen[old_to_index[old_to_index >= 0]] = True
    new_index_rows = np.flatnonzero(~seen)
    change = Change(new=len(new_index_rows), gone=int((~stay).sum()))
    if not change.any:
        return graph, old_to_index, change
    # rows kept, in their order, then the new ones
    kept_rows = np.flatnonzero(stay)
    remap = np.full(len(graph), -1, np.int64)
    remap[kept_rows] = np.arange(len(kept_rows))
    pairs = graph.pairs
    alive = (remap[pairs.left] >= 0) & (remap[pairs.right] >= 0)
    ends = remap[np.concatenate([pairs.left[~alive], pairs.right[~alive]])]
    lost = np.zeros(len(kept_rows), bool)  # rows that lost a candidate with a gone picture
    lost[ends[ends >= 0]] = True
    old = pairs.take(alive)
    old.left, old.right = remap[old.left], remap[old.right]
    added = len(new_index_rows)
    n = len(kept_rows) + added
    index_of = np.concatenate([old_to_index[kept_rows], new_index_rows]).astype(np.int64)
    near = graph.nearest_row[kept_rows]
    grown = CandidateGraph(
        [graph.paths[i] for i in kept_rows] + [paths[i] for i in new_index_rows],
        np.concatenate([graph.tags[kept_rows], np.asarray(tags, np.int64)[new_index_rows]]),
        np.concatenate([graph.flat[kept_rows], np.full(added, np.nan, np.float32)]),
        np.concatenate([graph.nearest[kept_rows], np.full(added, np.nan, np.float32)]),
        np.concatenate([np.where(near >= 0, remap[np.maximum(near, 0)], -1), np.full(added, -1)]),
        np.concatenate([graph.nearest_exact[kept_rows], np.zeros(added, bool)]),
        old,
        graph.fingerprint,
        graph.method,
        graph.certain,
    )
    # the rows that need their nearest pictures: the new ones and those that lost one;
    # only rows in the index take part in a join
    present = index_of >= 0
    todo = np.flatnonzero(np.concatenate([lost, np.ones(added, bool)]) & present)
    units, _slots = units_of()
    own = units[index_of[present]]  # the graph's rows in the index, in graph order
    graph_row = np.flatnonzero(present)
    where = np.full(n, -1, np.int64)
    where[graph_row] = np.arange(len(graph_row))
    accept = last_candidate(grown.pairs, n)[graph_row]
    accept[where[todo]] = np.inf  # their own lists are made whole below
    found_l, found_r, found_s = rows_top_k(own, where[todo], copies.CANDIDATES, accept, say, cancel)
    left, right = graph_row[found_l], graph_row[found_r]
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    fresh = copies.Pairs(lo, hi, np.zeros(len(lo), np.int64))
    fresh.score = found_s.astype(np.float32)
    merged = _merged(copies.Pairs.join([grown.pairs, fresh]), n)
    grown.pairs = merged
    best, at = _nearest_from_pairs(merged, n)
    exact = grown.method == "exact blocks"
    fix = todo if not exact else np.arange(n)
    grown.nearest[fix], grown.nearest_row[fix] = best[fix], at[fix]
    grown.nearest_exact[todo] = True
    if not exact:  # a new candidate may beat an old row's nearest
        better = ~np.isnan(best) & (np.isnan(grown.nearest) | (best > grown.nearest))
        grown.nearest[better], grown.nearest_row[better] = best[better], at[better]
    return grown, index_of, change


# --- kept in the index -------------------------------------------------------------------------


def encode(graph: CandidateGraph) -> bytes:
    """The graph as one blob: magic, header length, header (JSON), then the arrays."""
    named = np.flatnonzero(graph.pairs.point_why != "")
    texts = graph.pairs.point_why[named]
    whys = sorted(set(texts.tolist()))
    code = {w: i for i, w in enumerate(whys)}
    codes = np.full(len(graph.pairs), -1, np.int32)
    codes[named] = [code[w] for w in texts.tolist()]
    arrays = {
        "tags": graph.tags,
        "flat": graph.flat,
        "nearest": graph.nearest,
        "nearest_row": graph.nearest_row,
        "nearest_exact": graph.nearest_exact,
        **{k: getattr(graph.pairs, k) for k in PAIR_ARRAYS if k != "point_why"},
        "point_why": np.asarray(codes, np.int32).reshape(-1),
    }
    paths = [p.encode("utf-8", "surrogateescape") for p in graph.paths]
    encoded = [w.encode("utf-8", "surrogateescape") for w in whys]
    header = {
        "version": VERSION,
        "fingerprint": graph.fingerprint,
        "method": graph.method,
        "certain": graph.certain,
        "rows": len(graph),
        "pairs": len(graph.pairs),
        "whys": len(encoded),
    }
    head = json.dumps(header).encode()
    body = [MAGIC, struct.pack("<I", len(head)), head]
    for name, dtype in {**ROW_ARRAYS, **PAIR_ARRAYS}.items():
        body.append(np.ascontiguousarray(arrays[name], dtype).tobytes())
    for strings in (paths, encoded):  # lengths, then the bytes
        body.append(np.array([len(x) for x in strings], TEXT_LENGTH).tobytes())
        body += strings
    return b"".join(body)


def decode(blob: object, fingerprint: str) -> CandidateGraph | None:
    """The graph in *blob* if it is exactly what :func:`encode` writes and was made under
    *fingerprint*; else None."""
    try:
        return _decode(blob, fingerprint)
    except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError, RecursionError):
        return None


def _consistent(arrays: dict[str, np.ndarray], n: int, m: int, whys: int) -> bool:
    """Whether the arrays of a graph of *n* rows and *m* pairs (with *whys* reasons) hold
    only what lookalike writes: rows in range, pairs ordered, finite scores."""
    left, right, why = arrays["left"], arrays["right"], arrays["point_why"]
    if m and (left.min() < 0 or right.max() >= n or (left >= right).any()):
        return False
    if m and (why.min() < -1 or why.max() >= whys):
        return False
    near = arrays["nearest_row"]
    if n and (near.min() < -1 or near.max() >= n):
        return False
    if m and ((arrays["transform"] < 0).any() or (arrays["transform"] > 7).any()):
        return False
    return bool(np.isfinite(arrays["score"]).all() and np.isfinite(arrays["similarity"]).all())


def _decode(blob, fingerprint: str) -> CandidateGraph | None:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        return None
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        return None
    at = len(MAGIC)
    (size,) = struct.unpack_from("<I", view, at)
    at += 4
    if size > HEADER_MAX:
        return None
    header = json.loads(bytes(view[at : at + size]))
    at += size
    if not isinstance(header, dict) or header.get("version") != VERSION:
        return None
    if header.get("fingerprint") != fingerprint:
        return None
    n, m, w = header["rows"], header["pairs"], header["whys"]
    for v in (n, m, w):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1 << 32:
            return None
    arrays = {}
    for name, dtype in {**ROW_ARRAYS, **PAIR_ARRAYS}.items():
        count = n if name in ROW_ARRAYS else m
        need = count * dtype.itemsize
        if at + need > len(view):
            return None
        arrays[name] = np.frombuffer(view[at : at + need], dtype).copy()
        at += need
    texts = []
    for count in (n, w):
        need = count * TEXT_LENGTH.itemsize
        if at + need > len(view):
            return None
        lengths = np.frombuffer(view[at : at + need], TEXT_LENGTH).tolist()
        at += need
        if sum(lengths) > len(view) - at or max(lengths, default=0) > 1 << 16:
            return None
        out = []
        for x in lengths:
            out.append(bytes(view[at : at + x]).decode("utf-8", "surrogateescape"))
            at += x
        texts.append(out)
    if at != len(view):
        return None
    paths, whys = texts
    from engine.names import first_bad_relpath

    if first_bad_relpath(paths) is not None or len(set(paths)) != n:
        return None
    if not _consistent(arrays, n, m, len(whys)):
        return None
    left, right, why = arrays["left"], arrays["right"], arrays["point_why"]
    pairs = copies.Pairs(left, right, arrays["rank"])
    for name in ("score", "similarity", "pixels", "transform", "fine", "points"):
        setattr(pairs, name, arrays[name])
    pairs.point_copy = arrays["point_copy"].astype(bool)
    table = np.array(["", *whys], object)
    pairs.point_why = table[why + 1]
    certain = header.get("certain")
    method = header.get("method")
    if not isinstance(certain, (int, float)) or not isinstance(method, str) or len(method) > 80:
        return None
    return CandidateGraph(
        paths,
        arrays["tags"],
        arrays["flat"],
        arrays["nearest"],
        arrays["nearest_row"],
        arrays["nearest_exact"].astype(bool),
        pairs,
        fingerprint,
        method,
        float(certain),
    )
