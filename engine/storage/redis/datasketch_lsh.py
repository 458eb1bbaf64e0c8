"""The shared index's LSH: datasketch's own ``MinHashLSH`` on Redis.

Stored with ``prepickle=False`` and the slot as a decimal bytes key, so small buckets are
Redis intsets. Its ``hashfunc`` folds each band to this project's 64-bit band key
(:func:`engine.lsh.band_keys`), so a query reads all its bands' buckets in one pipelined
round trip, by name, without asking datasketch. That relies on datasketch's key layout,
which is why its version is pinned and a test checks these lookups against
``MinHashLSH.query``. Removal does not use datasketch's ``deletion_session`` (it leaves
every bucket's field behind): a Lua script removes a slot from each of its buckets and
drops emptied buckets' fields.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Callable

import numpy as np

from engine.storage import IndexDamaged
from engine.storage.redis import scripts
from engine.storage.redis.connection import guarded, unlink_matching


class DatasketchTables:
    """datasketch's tables under *basename*, written and read by band keys."""

    def __init__(self, r, pool, basename: bytes, damaged: Callable[[str], IndexDamaged], errors):
        self.r, self.pool, self.base = r, pool, basename
        self.damaged = damaged
        #: Redis client errors inside become one-line errors, as in the store
        self.errors = errors
        self._lock = threading.Lock()
        self._fold: dict[bytes, bytes] = {}
        self._lsh = None
        self._remove = r.register_script(scripts.LSH_REMOVE)

    def minhash_lsh(self, meta: dict):
        """datasketch's own MinHashLSH over these tables (made on first use)."""
        if self._lsh is None:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(
                num_perm=int(meta["num_perm"]),
                params=(int(meta["bands"]), int(meta["rows"])),
                storage_config={
                    "type": "redis",
                    "basename": self.base,
                    "redis": {"connection_pool": self.pool},
                    "redis_buffer": {"transaction": False},
                },
                prepickle=False,
                hashfunc=self._fold_band,
            )
        return self._lsh

    def _fold_band(self, run: bytes) -> bytes:
        """datasketch's per-band hash: this project's 64-bit band key of the run."""
        key = self._fold.get(run)
        if key is None:
            from engine.lsh import band_keys

            values = np.frombuffer(run, signature_dtype().newbyteorder(">")).astype(np.uint64)
            key = int(band_keys(values[None], 1, len(values))[0, 0]).to_bytes(8, "big")
        return key

    def insert(self, meta: dict, slots: list[int], keys: np.ndarray) -> None:
        """Insert slots into datasketch's tables by their band keys.

        datasketch hashes each band's run of signature values with ``hashfunc``; the
        runs handed to it here carry the band key itself (the key, then zeros), and the
        fold table maps each run to the key's bytes. So the stored bucket of band *b* is
        exactly the one a query with the real signature reaches (its run folds to the same
        key), without keeping signatures around."""
        if not len(slots):
            return
        from datasketch import LeanMinHash

        from engine.minhash import SCHEME

        lsh = self.minhash_lsh(meta)
        seed = int(meta.get("seed", 1))
        num_perm = int(meta["num_perm"])
        dtype = signature_dtype()
        with self._lock:
            self._fold = {}
            rows = []
            for key in np.asarray(keys, np.uint64):
                values = np.zeros(num_perm, dtype)
                for b, (lo, hi) in enumerate(lsh.hashranges):
                    k = int(key[b])
                    if hi - lo == 1:  # one value per band: the key is that value
                        values[lo] = k
                    else:  # the key's 64 bits over the run's first two values
                        values[lo], values[lo + 1] = k >> 32, k & 0xFFFFFFFF
                    run = bytes(values[lo:hi].byteswap().data)
                    self._fold[run] = int(key[b]).to_bytes(8, "big")
                rows.append(values)
            with lsh.insertion_session(buffer_size=1 << 20) as session:
                for slot, values in zip(slots, rows):
                    mh = LeanMinHash(seed=seed, hashvalues=values, scheme=SCHEME)
                    session.insert(str(int(slot)).encode(), mh, check_duplication=False)
            self._fold = {}

    def remove(self, slots: list[int], bands: int) -> None:
        if slots and bands:
            step = 512
            for i in range(0, len(slots), step):
                keys = [str(s).encode() for s in slots[i : i + step]]
                self._remove(args=[self.base, bands, *keys])

    def _bucket(self, band: int, key: int) -> bytes:
        return self.base + b"_bucket_" + struct.pack(">H", band) + int(key).to_bytes(8, "big")

    @guarded
    def lookup(self, key: np.ndarray) -> list[np.ndarray]:
        """The slots in each band's bucket of *key* (one array per band)."""
        pipe = self.r.pipeline(transaction=False)
        for b, k in enumerate(np.asarray(key, np.uint64)):
            pipe.smembers(self._bucket(b, int(k)))
        out = []
        for members in pipe.execute():
            try:
                out.append(np.array(sorted(int(m) for m in members), np.int64))
            except ValueError:
                raise self.damaged("an LSH bucket holds something that is not a slot") from None
        return out

    def clear(self) -> None:
        """Remove every table (before a rewrite of every band key, or ``--rebuild``)."""
        unlink_matching(self.r, self.base + b"_")
        self._lsh = None


class RedisBands:
    """The LSH buckets of a shared index, as a snapshot's ``lsh``: every band of a query
    in one round trip."""

    def __init__(self, tables: DatasketchTables, bands: int, width: int) -> None:
        self.tables, self.bands, self.width = tables, bands, width

    def lookup_all(self, key: np.ndarray) -> list[np.ndarray]:
        return self.tables.lookup(key)


@functools.lru_cache(maxsize=1)
def signature_dtype() -> np.dtype:
    """The dtype of datasketch's hash values for this project's scheme (its runs are
    handed to ``hashfunc`` as their big-endian bytes)."""
    from datasketch import MinHash

    from engine.minhash import SCHEME

    return np.dtype(MinHash(num_perm=2, scheme=SCHEME).hashvalues.dtype)
