"""The shared store: one index in Redis, written by several machines at once.

URL: ``redis://[:PASSWORD@]HOST:PORT/DB?name=INDEX`` (``rediss://`` for TLS). Every
key of an index starts with ``lookalike:INDEX:``, so named indexes in one Redis never
see each other. Layout (``P`` is that prefix)::

    P meta            hash: JSON values (schema, encoder identity, MinHash scheme, centre)
    P slots           counter: array rows handed out so far (INCRBY reserves a batch's)
    P live            bitmap: bit s set while slot s holds a usable image
    P img             hash: image id (8 bytes) -> packed record (path bytes, size,
                      mtime, status, slot, digest, difference hash, pixel count, error)
    P codes:C         string: float32 codes of slots C*CHUNK ... (C+1)*CHUNK-1
    P feats:C         string: float16 pooled features, same rows
    P bands:C         string: uint64 band keys, same rows
    P ids:C           string: the image id of each slot, same rows
    P lsh_bucket_*    datasketch MinHashLSH's Redis tables (basename ``P lsh``)
    P lsh_keys*       datasketch's per-key lists of bucket hashes
    P work, P job, P walker, P upkeep     the distributed run (:mod:`engine.storage.redis.streams`)

Why this shape: vectors are rows of a few big strings (``SETRANGE``/``GETRANGE``), not
one key per image, so they cost their bytes and nothing more; a reader fetches a whole
index's codes in a few large replies and afterwards only the rows committed since. Paths
and file states live in one hash under the stable image id (64 bits of BLAKE2b of the
path relative to the indexed folder), so machines that mount the data at different
places share one index.

Commits: a batch reserves its slots (``INCRBY``), writes its rows and its LSH entries,
then one Lua script swaps the image records and flips the ``live`` bits at once. A
process killed before that script leaves rows and LSH entries that no reader looks at
(their ``live`` bit is clear); after it, the batch is complete. Readers take ``slots``,
``live`` and the metadata in one transaction.

The LSH is datasketch's own ``MinHashLSH`` on Redis (``prepickle=False``, the slot as a
decimal bytes key, so small buckets are Redis intsets). Its ``hashfunc`` folds each band
to this project's 64-bit band key (:func:`engine.lsh.band_keys`), so a query reads all
its bands' buckets in one pipelined round trip, by name, without asking datasketch. That
relies on datasketch's key layout, which is why its version is pinned and a test checks
these lookups against ``MinHashLSH.query``. Removal does not use datasketch's
``deletion_session`` (it leaves every bucket's field behind): a Lua script removes a
slot from each of its buckets and drops emptied buckets' fields.

Nothing read from Redis is ever unpickled: metadata is JSON, everything else raw bytes,
each checked before it sizes anything.

The modules: :mod:`~engine.storage.redis.connection` (the URL, the password, client
errors), :mod:`~engine.storage.redis.codec` (records and vector rows),
:mod:`~engine.storage.redis.scripts` (the Lua scripts),
:mod:`~engine.storage.redis.datasketch_lsh` (the LSH tables),
:mod:`~engine.storage.redis.store` (:class:`RedisStore`) and
:mod:`~engine.storage.redis.streams` (several workers indexing one index).
"""

from __future__ import annotations

from engine.storage.redis.connection import keeps_features, parse_url, remove_all
from engine.storage.redis.store import RedisStore

__all__ = ["RedisStore", "keeps_features", "parse_url", "remove_all"]
