"""From a real-valued code to a MinHash: the vector-to-set mapping.

MinHash estimates the Jaccard similarity of *sets*, so each code ``v`` (``hash_dim``
numbers) is first turned into the set of its sign tokens::

    S(v) = { 2*i + (v[i] > 0)  for i in range(hash_dim) }

Every set has exactly ``hash_dim`` members, one per dimension. Two codes that agree
in sign on ``m`` of their ``d`` dimensions share ``m`` tokens, so their Jaccard is
``m / (2d - m)``. The encoder's hash layer is a random rotation of centred features,
so each dimension is a random hyperplane and the chance that two codes agree in sign
is ``1 - angle/pi`` (Charikar's SimHash argument). Jaccard is therefore a monotone
function of the angle, i.e. of cosine similarity::

    a = 1 - arccos(cos)/pi,    J = a / (2 - a)

cos = 1 gives J = 1, orthogonal codes give J = 1/3, opposite codes J = 0. This is why
LSH buckets on these MinHashes gather codes with high cosine, which the search then
re-ranks exactly.

The fast path: the token universe is only ``2*hash_dim`` values, and MinHash is a
minimum over per-token hash values, so we ask datasketch once for the signature of
every single-token set and take element-wise minima with numpy. The result is
bit-for-bit what ``MinHash.update_batch`` gives for the same tokens (tested), at a
fraction of the cost, for a whole batch at once.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.lsh import expected_jaccard  # noqa: F401  (part of this module's story)

if TYPE_CHECKING:
    from datasketch import LeanMinHash, MinHash

#: datasketch's permutation scheme; stored with the index so signatures never mix.
SCHEME = "affine32"


def tokens_for(vector: np.ndarray) -> np.ndarray:
    """The sign tokens of one code (see module docstring), as int64."""
    v = np.asarray(vector).reshape(-1)
    return 2 * np.arange(v.shape[0], dtype=np.int64) + (v > 0)


def token_bytes(token: int) -> bytes:
    """How a token is fed to datasketch: its decimal text, ASCII encoded."""
    return str(int(token)).encode("ascii")


@lru_cache(maxsize=8)
def _token_table(hash_dim: int, num_perm: int, seed: int) -> np.ndarray:
    """Signature of every one-token set, shape (2*hash_dim, num_perm): asked of datasketch
    once per machine and kept in the user's cache folder, sealed like the cached models
    (:mod:`engine.encoding.sealed`). Importing datasketch takes 0.4-0.9 s of CPU (it
    imports SciPy), which every index run paid beside the CNN for this table alone."""
    path = _table_path(hash_dim, num_perm, seed)
    table = _cached_table(path, (2 * hash_dim, num_perm))
    if table is None:
        from datasketch import MinHash

        rows = []
        for token in range(2 * hash_dim):
            m = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
            m.update(token_bytes(token))
            rows.append(m.hashvalues)
        table = np.stack(rows)
        _keep_table(path, table)
    table.setflags(write=False)
    return table


def _table_path(hash_dim: int, num_perm: int, seed: int) -> Path:
    from engine.encoding.chooser import package_version
    from engine.paths import user_cache_dir

    version = package_version("datasketch")
    name = f"tokens-{SCHEME}-{hash_dim}-{num_perm}-{seed}-datasketch{version}.npy"
    return user_cache_dir() / "minhash" / name


def _cached_table(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached table if its seal holds and it has the shape and type asked; a
    damaged one is removed (and made again)."""
    from engine.encoding import sealed

    if sealed.checked(path, [path], "MinHash token table") is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            table = np.load(fh, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if table.shape != shape or table.dtype not in (np.dtype(np.uint32), np.dtype(np.uint64)):
        sealed.remove(path, [path])
        return None
    return table


def _keep_table(path: Path, table: np.ndarray) -> None:
    """Write the table and its seal (atomically); where the cache cannot be written,
    the next run asks datasketch again, no harm done."""
    from engine.encoding import sealed

    raw = io.BytesIO()
    np.save(raw, table, allow_pickle=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sealed.write_whole(path, raw.getvalue())
        sealed.write_seal(path, [path])
    except OSError:
        pass


def signatures(codes: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signatures of a batch of codes, shape (n, num_perm), datasketch's dtype."""
    codes = np.atleast_2d(np.asarray(codes))
    n, dim = codes.shape
    table = _token_table(dim, num_perm, seed)
    tokens = 2 * np.arange(dim) + (codes > 0)  # (n, dim)
    out = np.empty((n, num_perm), dtype=table.dtype)
    # Chunked so the (chunk, dim, num_perm) gather stays around 16 MB.
    step = max(1, (1 << 22) // max(1, dim * num_perm))
    for start in range(0, n, step):
        np.minimum.reduce(
            table[tokens[start : start + step]], axis=1, out=out[start : start + step]
        )
    return out


def create_minhash(vector: np.ndarray, num_perm: int = 128, seed: int = 1) -> LeanMinHash:
    """A code to a datasketch :class:`LeanMinHash` of its sign-token set."""
    return as_minhash(signatures(vector, num_perm, seed)[0], seed)


def as_minhash(signature: np.ndarray, seed: int = 1) -> LeanMinHash:
    """Wrap a stored signature row as a LeanMinHash (no hashing involved)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=signature, scheme=SCHEME)


def minhash_reference(vector: np.ndarray, num_perm: int = 128, seed: int = 1) -> MinHash:
    """The slow, obvious path: datasketch hashes each token itself. Used by tests and
    the benchmark's seed-style baseline."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
    for token in tokens_for(vector):
        m.update(token_bytes(token))
    return m


def band_keys(
    codes: np.ndarray, centre_codes: np.ndarray, num_perm: int, seed: int, bands: int, rows: int
) -> np.ndarray:
    """LSH band keys of *codes* around *centre_codes*: the sign-token MinHash of each
    centred code, cut into *bands* bands of *rows* values, each band hashed to 64 bits
    (:func:`engine.lsh.band_keys`). What the index stores per image, and what a query
    looks up."""
    from engine.lsh import band_keys as keys_of

    return keys_of(signatures(codes - centre_codes, num_perm, seed), bands, rows)
