"""The one verification pipeline: the evidence that decides whether a candidate pair is a
copy (:mod:`engine.copies`), measured where it is missing and cached where it is dear.

Used alike by duplicate triage (pairs within a folder, kept in the candidate graph) and
by the leak search (pairs across two folders). Rows here are the caller's: an
:class:`Opener` knows the picture of each row, and which rows may be opened at all.

Stages, each for the pairs that still lack its evidence:

1. aligned pixels of the 16 x 16 thumbnails (stored at indexing: no picture opened);
2. for pairs with a picture too small for keypoints, every such picture decoded once:
   pixels aligned at a small size over a few crops (all such pairs: the rule compares a
   pair with the picture's other candidates; kept in the candidate graph), then pixels
   at full size (compared in batches by shape; also cached by the files' contents);
3. local features, for the large pictures pixels could not decide: described in
   threads, a window of descriptions kept, verdicts cached in the index by the two
   files' names and contents;
4. colour, for the pairs found copies: a recoloured picture is not a copy (each
   picture of such a pair decoded small, once; cached like the others).

Cached values are read with a strict shape (:func:`engine.triage.verdicts.read_verdict`): one of
another shape is measured again and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine import aligned, copies, looks
from engine.images import ImageError, guarded, open_image
from engine.triage import keypoints
from engine.triage.selfjoin import JoinCancelled
from engine.triage.verdicts import read_verdict, verdict_text

#: Pairs verified by local features at a time, and pictures' descriptions kept meanwhile.
VERIFY_CHUNK = 256
DESCRIBED_KEPT = 2048
#: The full-size score is cached as a whole number of this many parts of one.
FINE_SCALE = 100_000

Progress = Callable[[str, float], None]


class Opener:
    """``opener(row, side, make)``: ``make`` of the row's picture decoded at about *side*
    pixels, or None when the row may not be opened (*allowed*: a stored path that leads
    out of the folder through a link) or any step fails on it. *roots*: each row's
    folder (two folders in a leak search)."""

    def __init__(self, roots, paths: list[str], allowed: np.ndarray | None = None) -> None:
        self.roots, self.paths = roots, paths
        self.allowed = allowed

    def root_of(self, row: int):
        return self.roots[row] if isinstance(self.roots, (list, tuple)) else self.roots

    def __call__(self, row: int, side: int, make):
        if self.allowed is not None and not self.allowed[row]:
            return None
        try:
            path = os.path.join(self.root_of(row), self.paths[row])
            return guarded(lambda: make(open_image(path, draft_size=side)))
        except ImageError:
            return None


def thumbnails(opener: Opener | None, stored: list[bytes | None], needed: np.ndarray) -> np.ndarray:
    """Every row's thumbnail: the stored one, or made now from the file where *needed*
    (an index of an older lookalike, or a shared one); blank where neither can be had (a
    blank thumbnail is never a pixel match)."""
    out = np.zeros((len(stored), copies.THUMB * copies.THUMB), np.uint8)
    for i, t in enumerate(stored):
        if t is not None and len(t) == out.shape[1]:
            out[i] = np.frombuffer(t, np.uint8)
        elif needed[i] and opener is not None:
            made = opener(i, 128, copies.thumbnail)
            if made is not None:
                out[i] = made
    return out


def measure_pixels(pairs: copies.Pairs, thumbs: np.ndarray, todo: np.ndarray) -> None:
    """Aligned pixels for the pairs *todo* (indices), from the rows' thumbnails."""
    if len(todo):
        px, tr = copies.pixel_scores(thumbs, pairs.left[todo], pairs.right[todo])
        pairs.pixels[todo], pairs.transform[todo] = px, tr


def pair_key(pa: str, da: bytes | None, pb: str, db: bytes | None, salt: str = "") -> bytes:
    """A pair's identity for the verdict cache: both paths and contents, and the rule
    (*salt* tells the stages apart)."""
    h = hashlib.blake2b(digest_size=16)
    for part in sorted([(os.fsencode(pa), da or b""), (os.fsencode(pb), db or b"")]):
        h.update(part[0] + b"\0" + part[1] + b"\0")
    h.update((copies.RULE + salt).encode())
    return h.digest()


class Cache:
    """The verdict cache of one store, for pairs of rows named by *paths* (with their
    *digests*): strict reads, writes that a read-only or full index goes without."""

    def __init__(self, store, paths: list[str], digests: list[bytes | None]) -> None:
        self.store, self.paths, self.digests = store, paths, digests

    def keys(self, pairs: copies.Pairs, todo: np.ndarray, salt: str = "") -> list[bytes]:
        p, d = self.paths, self.digests
        return [
            pair_key(p[a], d[a], p[b], d[b], salt)
            for a, b in zip(pairs.left[todo].tolist(), pairs.right[todo].tolist())
        ]

    def read(self, keys: list[bytes]) -> dict[bytes, tuple[bool, int, str]]:
        out = {}
        for k, v in self.store.verdicts(keys).items():
            got = read_verdict(v)
            if got is not None:  # any other shape is measured again, and replaced
                out[k] = got
        return out

    def write(self, items: dict[bytes, str]) -> None:
        with contextlib.suppress(Exception):
            self.store.put_verdicts(items)  # a cache: a read-only or full index goes without


def decode_small(
    rows: np.ndarray, opener: Opener, pictures: dict[int, np.ndarray | None], cancel
) -> None:
    """Each of *rows* not in *pictures* yet, decoded as a :func:`aligned.fine_picture`
    (None where it cannot be had); one thread: decoding a picture this small is mostly
    Python, and threads fighting over the interpreter took three times as long."""
    side = aligned.FINE_SIDE * 2
    for n, r in enumerate(rows.tolist()):
        if n % 4096 == 0 and cancel.is_set():
            raise JoinCancelled
        if r not in pictures:
            pictures[r] = opener(int(r), side, aligned.fine_picture)


def _rows_of(pairs: copies.Pairs, idx: np.ndarray) -> np.ndarray:
    """The rows the pairs *idx* involve, each once, in order."""
    return np.unique(np.concatenate([pairs.left[idx], pairs.right[idx]]))


def _cached_scores(pairs: copies.Pairs, todo: np.ndarray, cache: Cache, salt: str, field: str):
    """The scores of the pairs *todo* that the cache knows, set in *field*; returns the
    pairs left to measure and their keys."""
    keys = cache.keys(pairs, todo, salt)
    known = cache.read(keys)
    values = getattr(pairs, field)
    fresh, fresh_keys = [], []
    for i, k in zip(todo.tolist(), keys):
        if k in known:
            values[i] = known[k][1] / FINE_SCALE if known[k][0] or known[k][1] else -1.0
        else:
            fresh.append(i)
            fresh_keys.append(k)
    return np.array(fresh, np.int64), fresh_keys


def _cache_scores(pairs, fresh, keys, cache: Cache, field: str, bar: float) -> None:
    values = getattr(pairs, field)
    cache.write(
        {
            k: verdict_text(
                float(values[i]) >= bar, max(0, round(float(values[i]) * FINE_SCALE)), ""
            )
            for i, k in zip(fresh.tolist(), keys)
        }
    )


def measure_small(
    pairs: copies.Pairs,
    todo: np.ndarray,
    opener: Opener,
    pictures: dict[int, np.ndarray | None],
    cancel: threading.Event,
) -> None:
    """Aligned small-size scores (:func:`aligned.small_scores`) for the pairs *todo*,
    and the other looks (:func:`engine.looks.more_looks`). Pictures
    decoded here are kept in *pictures* for the full-size stage. Not put in the verdict
    cache: the candidate graph keeps them, and for a graph made again, writing and
    reading them back cost about as much as measuring them (Fashion-MNIST's 78,000
    pairs: 2.5 s against 2.6 s)."""
    if not len(todo):
        return
    decode_small(_rows_of(pairs, todo), opener, pictures, cancel)
    trims: dict[int, np.ndarray] = {}
    boxes: dict[int, tuple[int, int, int, int]] = {}
    pairs.small[todo] = aligned.small_scores(
        pictures,
        pairs.left[todo],
        pairs.right[todo],
        pairs.transform[todo],
        trims=trims,
        boxes=boxes,
    )
    looks.more_looks(pairs, todo, pictures, trims, boxes)


def measure_fine(
    pairs: copies.Pairs,
    todo: np.ndarray,
    opener: Opener,
    cache: Cache,
    cancel: threading.Event,
    pictures: dict[int, np.ndarray | None] | None = None,
) -> None:
    """Full-size pixel scores for the pairs *todo* (indices): cached ones read, the rest
    measured (each picture decoded once, or taken from *pictures*) and cached."""
    if not len(todo):
        return
    fresh, keys = _cached_scores(pairs, todo, cache, ":fine", "fine")
    if not len(fresh):
        return
    fine = {} if pictures is None else pictures
    decode_small(_rows_of(pairs, fresh), opener, fine, cancel)
    alike: dict[tuple[int, ...], list[int]] = defaultdict(list)  # both of one shape
    ready = {r: p for r, p in fine.items() if p is not None}
    for i in fresh.tolist():
        a, b = ready.get(int(pairs.left[i])), ready.get(int(pairs.right[i]))
        if a is None or b is None:
            pairs.fine[i] = -1.0
        elif a.shape == b.shape:
            alike[a.shape].append(i)
        else:
            pairs.fine[i] = aligned.fine_score(a, b, pairs.transform[i])
    for group in alike.values():
        for lo in range(0, len(group), VERIFY_CHUNK * 64):  # 16,384 pairs: ~100 MB at 28 px
            idx = np.array(group[lo : lo + VERIFY_CHUNK * 64])
            a = np.stack([ready[int(r)] for r in pairs.left[idx]])
            b = np.stack([ready[int(r)] for r in pairs.right[idx]])
            pairs.fine[idx] = aligned.fine_scores(a, b, pairs.transform[idx])
    _cache_scores(pairs, fresh, keys, cache, "fine", copies.FINE)


def measure_colour(
    pairs: copies.Pairs, todo: np.ndarray, opener: Opener, cache: Cache, cancel
) -> None:
    """How far the colours of the pairs *todo* lie apart (:func:`aligned.colour_distance`):
    cached ones read, the rest measured (each picture decoded once, small) and cached."""
    if not len(todo):
        return
    fresh, keys = _cached_scores(pairs, todo, cache, ":colour " + aligned.MEASURED, "colour")
    if not len(fresh):
        return
    cells = {}
    for n, r in enumerate(_rows_of(pairs, fresh).tolist()):
        if n % 1024 == 0 and cancel.is_set():
            raise JoinCancelled
        cells[r] = opener(r, aligned.FINE_SIDE * 2, aligned.colour_cells)
    for i in fresh.tolist():
        a, b = cells[int(pairs.left[i])], cells[int(pairs.right[i])]
        known = a is not None and b is not None
        pairs.colour[i] = aligned.colour_distance(a, b, int(pairs.transform[i])) if known else -1.0
    _cache_scores(pairs, fresh, keys, cache, "colour", copies.RECOLOURED)


def measure_points(
    pairs: copies.Pairs,
    todo: np.ndarray,
    opener: Opener,
    cache: Cache,
    workers: int,
    say: Progress,
    cancel: threading.Event,
) -> int:
    """Local-feature verdicts for the pairs *todo* (indices): cached ones read, the rest
    verified and cached. Returns how many pairs were verified now."""
    if not len(todo):
        return 0
    keys = cache.keys(pairs, todo)
    known = cache.read(keys)
    fresh: dict[bytes, str] = {}
    verdicts: dict[bytes, tuple[bool, int, str]] = dict(known)

    def describe_row(r: int) -> keypoints.Described | None:
        return opener(r, keypoints.DESCRIBE_SIDE * 2, keypoints.describe)

    # Pairs in order of their left picture; descriptions kept for a window of recent
    # pictures only (a photo's is ~250 KB: all of a large collection would not fit).
    order = [k for k in np.argsort(pairs.left[todo], kind="stable") if keys[k] not in known]
    described: OrderedDict[int, keypoints.Described | None] = OrderedDict()
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
                return None if a is None or b is None else keypoints.point_verdict(a, b)

            for k, got in zip(order[lo : lo + VERIFY_CHUNK], pool.map(verify, chunk)):
                ok, m, why = got if got is not None else (False, 0, "")
                verdicts[keys[k]] = (ok, m, why)
                if got is not None:
                    fresh[keys[k]] = verdict_text(ok, m, why)
            say("checking", min(1.0, (lo + VERIFY_CHUNK) / max(1, len(order))))
    for i, key in zip(todo.tolist(), keys):
        ok, m, why = verdicts[key]
        pairs.points[i], pairs.point_copy[i], pairs.point_why[i] = m, ok, why
    cache.write(fresh)
    return len(fresh)


def verify(
    pairs: copies.Pairs,
    flat: np.ndarray,
    sides: np.ndarray,
    opener: Opener,
    cache: Cache,
    workers: int,
    say: Progress,
    cancel: threading.Event,
    one_sided: int = 0,
) -> int:
    """Decide every pair, measuring the full-size and local-feature evidence the rule
    needs and the pairs lack (aligned pixels must be measured already). Returns how many
    pairs were verified by local features now."""
    pictures: dict[int, np.ndarray | None] = {}  # small pictures, decoded once
    need = copies.needs_small(pairs, sides) & np.isnan(pairs.small)
    if one_sided:  # a leak search asks it only for the margin of tiny pictures' full size
        need &= np.minimum(sides[pairs.left], sides[pairs.right]) <= copies.TINY
    measure_small(pairs, np.flatnonzero(need), opener, pictures, cancel)
    copies.decide(pairs, flat, sides, one_sided)
    fine = np.flatnonzero(copies.needs_fine(pairs, sides) & np.isnan(pairs.fine))
    measure_fine(pairs, fine, opener, cache, cancel, pictures)
    del pictures
    points = np.flatnonzero(copies.needs_points(pairs, sides) & (pairs.points < 0))
    say("checking", 0.0)
    verified = measure_points(pairs, points, opener, cache, workers, say, cancel)
    if len(fine) or len(points):  # the new evidence decides: again (nothing else changed)
        copies.decide(pairs, flat, sides, one_sided)
    colour = np.flatnonzero(pairs.copy & np.isnan(pairs.colour))
    measure_colour(pairs, colour, opener, cache, cancel)
    if len(colour):
        copies.decide(pairs, flat, sides, one_sided)
    return verified


# --- visual similarity ---------------------------------------------------------------------


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


def row_dots(fa: np.ndarray, a: np.ndarray, fb: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``fa[a[i]] · fb[b[i]]`` for every i, in float32, a block of pairs at a time (the
    rows are float16: converted per block, never all at once). Blocks of 2,048 pairs
    (10 MB of float32 rows) stay in cache: measured, 65,536 pairs took 290 ms this way
    against 360-630 ms in blocks of 65,536 (each a fresh 330 MB), with the same sums."""
    out = np.empty(len(a), np.float32)
    step = 1 << 11
    for lo in range(0, len(a), step):
        x = fa[a[lo : lo + step]].astype(np.float32)
        y = fb[b[lo : lo + step]].astype(np.float32)
        out[lo : lo + step] = np.einsum("ij,ij->i", x, y)
    return out


def similarities(vec, slots: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Visual similarity of each pair of rows (rows index *slots*): the features of the
    rows involved are read once, kept as float16 (2.5 KB per picture of
    EfficientNet-Lite0)."""
    if not len(left):
        return np.zeros(0, np.float32)
    involved = np.unique(np.concatenate([left, right]))
    feats = feature_units_rows(vec, slots, involved, np.float16)
    a, b = np.searchsorted(involved, left), np.searchsorted(involved, right)
    return row_dots(feats, a, feats, b)


def read_blob(store, name: str) -> bytes | None:
    try:
        return store.get_blob(name)
    except Exception:  # a cache: an index that cannot give it makes it again
        return None


def write_blob(store, data: bytes, name: str) -> None:
    if not store.readonly:
        with contextlib.suppress(Exception):  # a cache: read-only or full, it goes without
            store.put_blob(name, data)


def quietly(fn, *args) -> None:
    """A write to the index that may fail (read-only media, a full disk) without the
    action failing: what it records is a convenience for the next session."""
    with contextlib.suppress(Exception):
        fn(*args)
