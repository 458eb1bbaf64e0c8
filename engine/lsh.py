"""MinHash LSH band tables in numpy, with exactly datasketch ``MinHashLSH``'s banding.

datasketch splits a signature of ``num_perm`` values into ``bands`` runs of ``rows``
values (``b * r <= num_perm``; the rest is unused), keeps one hash table per band keyed
by the run's exact values, and answers a query with every key that shares at least one
band with it. Here each band's run is folded into one 64-bit key (:func:`band_keys`),
keys are sorted once per band (:class:`BandTable`), and a query is ``bands`` binary
searches. The candidate sets are datasketch's (tested), up to 64-bit key collisions: a
false candidate needs two different runs with equal keys, about 1 in 1.8e19 per pair and
band, and is then only scored, never returned unchecked.

Why not datasketch's own tables: its Python dictionaries of sets cost about 3.9 KB per
image and 164 s to fill at a million images; these arrays are 8 bytes per image and band,
memory-mapped from disk, ready at once.
"""

from __future__ import annotations

import numpy as np

_MULT = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def _mix(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (SplitMix64's finaliser), element-wise."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The (n, bands) uint64 key of each band of each signature.

    Two bands with equal values get equal keys; bands with different values get
    different keys but for 64-bit collisions. Runs of up to two values are packed
    exactly (no collision at all).
    """
    sig = np.atleast_2d(np.asarray(signatures)).astype(np.uint64, copy=False)
    n = sig.shape[0]
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands of {rows} rows need {bands * rows} values")
    runs = sig[:, : bands * rows].reshape(n, bands, rows)
    if rows == 1:
        return np.ascontiguousarray(runs[:, :, 0])
    if rows == 2:
        return np.ascontiguousarray((runs[:, :, 0] << np.uint64(32)) | runs[:, :, 1])
    with np.errstate(over="ignore"):
        key = np.zeros((n, bands), np.uint64)
        for j in range(rows):
            key = _mix(key ^ (runs[:, :, j] * _MULT[j % len(_MULT)]) + np.uint64(j + 1))
    return key


class BandTable:
    """Sorted band keys (a :class:`engine.storage.SortedBands`, or none) for the slots
    below ``recent_start``, plus the keys of later slots, unsorted, scanned directly.
    Dead slots are filtered by the caller."""

    def __init__(self, sorted_bands, recent_keys: np.ndarray, recent_start: int) -> None:
        self.sorted = sorted_bands
        self.recent_keys = recent_keys
        self.recent_start = recent_start

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> BandTable:
        """A table of (n, bands) keys, slot i being row i, nothing sorted."""
        return cls(None, np.asarray(keys), 0)

    def query(self, key: np.ndarray, limit: int | None = None) -> np.ndarray | None:
        """Sorted unique slots sharing at least one band key with *key* (bands,); None
        as soon as more than *limit* hits (counted with repeats) are found."""
        found = []
        total = 0
        if len(self.recent_keys):
            hit = (np.asarray(self.recent_keys) == key[None, :]).any(axis=1)
            found.append(np.flatnonzero(hit).astype(np.int64) + self.recent_start)
            total += len(found[-1])
        if self.sorted is not None and self.sorted.width and hasattr(self.sorted, "lookup_all"):
            for hits in self.sorted.lookup_all(key):  # every band in one round trip
                found.append(hits)
                total += len(hits)
        elif self.sorted is not None and self.sorted.width:
            for b in range(self.sorted.bands):
                if limit is not None and total > limit:
                    return None
                hits = self.sorted.lookup(b, key[b])
                if len(hits):
                    found.append(hits)
                    total += len(hits)
        if limit is not None and total > limit:
            return None
        if not found:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(found))


def expected_jaccard(cosine: float | np.ndarray) -> float | np.ndarray:
    """Jaccard of the sign-token sets expected for two random-hyperplane codes at this
    cosine (see :mod:`engine.minhash`): ``a / (2 - a)`` with ``a = 1 - angle/pi``."""
    agree = 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi
    return agree / (2.0 - agree)


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Chance that a code at cosine *similarity* from the query shares a band with it,
    for sign-token MinHash (see :mod:`engine.minhash`): ``1 - (1 - J**r)**b``."""
    j = np.asarray(expected_jaccard(similarity), np.float64)
    return 1.0 - (1.0 - j**rows) ** bands


def reliable_similarity(bands: int, rows: int, miss: float = 0.01) -> float:
    """The lowest cosine at which a neighbour is a candidate with chance ``1 - miss``."""
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if candidate_probability(mid, bands, rows) >= 1.0 - miss:
            hi = mid
        else:
            lo = mid
    return hi
