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
    P work, P job, P walker, P upkeep     the distributed run (:mod:`engine.shared`)

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
"""

from __future__ import annotations

import functools
import json
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from engine.names import printable
from engine.storage import (
    Batch,
    CentreMoved,
    ImageFacts,
    IndexDamaged,
    IndexFileError,
    NewerIndex,
    OlderIndex,
    Rows,
    Snapshot,
    SnapshotMoved,
    StoredFile,
    image_id,
    row_runs,
)

#: 1: the first shared layout.
SCHEMA_VERSION = 1
#: Rows per vector string (a features string of Lite0 is then 40 MiB, under Redis' 512).
#: One less than a power of two: a full string plus its header then fits a jemalloc size
#: class exactly (2**14 rows would round up by a quarter).
CHUNK = (1 << 14) - 1
#: Slots handed out to batches that never set their bits (killed workers) may reach this
#: many past the live bitmap before the counter counts as damaged.
MAX_RESERVED = 1 << 20
CODE_DTYPE = np.dtype("<f4")
FEATURE_DTYPE = np.dtype("<f2")
KEY_DTYPE = np.dtype("<u8")
ID_DTYPE = np.dtype("<i8")
#: size, mtime, slot, pixels, dhash, flags, digest length, path length
_HEAD = struct.Struct("<qqqqQBBH")
_OK, _DHASH, _PIXELS, _QUALITY = 1, 2, 4, 8
#: the quality measurements an ok record carries after its path (engine.quality.SIZE)
QUALITY_SIZE = 28
DEFAULT_PORT = 6379

# Swap image records and flip live bits at once. ARGV: triples of id, record (empty:
# delete), new slot (-1: none). Returns the slots retired (replaced or deleted).
_COMMIT = """
local retired = {}
for i = 1, #ARGV, 3 do
  local id, rec, slot = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[1], id)
  if old and #old >= 24 then
    local was = struct.unpack('<i8', old, 17)
    if was >= 0 and was ~= slot then
      redis.call('SETBIT', KEYS[2], was, 0)
      retired[#retired + 1] = was
    end
  end
  if rec == '' then
    redis.call('HDEL', KEYS[1], id)
  else
    redis.call('HSET', KEYS[1], id, rec)
    if slot >= 0 then redis.call('SETBIT', KEYS[2], slot, 1) end
  end
end
return retired
"""

# Remove slots from datasketch's tables: each bucket it is in (emptied buckets lose
# their field in the band's hash too), then its own list. ARGV: basename, bands, keys.
_LSH_REMOVE = """
local base, nb = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local key = ARGV[i]
  local list = base .. '_keys' .. key
  for j, h in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local table = base .. '_bucket_' .. struct.pack('>I2', (j - 1) % nb)
    redis.call('SREM', table .. h, key)
    if redis.call('EXISTS', table .. h) == 0 then redis.call('HDEL', table, h) end
  end
  redis.call('DEL', list)
  redis.call('HDEL', base .. '_keys', key)
end
return 1
"""

# Re-create full vector strings at their exact size: SETRANGE grows a string greedily
# (up to twice its length, or 1 MB more), which cost a fifth of the vectors' memory.
# Atomic, so a row another worker writes later (within the length) is never lost.
_TIGHTEN = """
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then redis.call('SET', k, v) end
end
return 1
"""

# Delete a lease only if this process still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def parse_url(url: str) -> tuple[dict, str, str]:
    """Connection keywords for redis-py, the index name, and the URL without password
    (with its ``features=0`` where given).

    Refuses anything it cannot use with a one-line :class:`IndexFileError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise IndexFileError(f"not a Redis URL: {printable(url)}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise IndexFileError(f"bad port in {printable(_without_password(url))}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise IndexFileError(f"the database in a Redis URL is a number, not {printable(path)!r}")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    name = (query.get("name") or ["default"])[0]
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise IndexFileError(
            f"index name {printable(name)!r}: use letters, digits, '-', '_' or '.' (64 at most)"
        )
    password = urllib.parse.unquote(parts.password) if parts.password else None
    kwargs = {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "db": int(path or 0),
        "password": password or _password((query.get("password_file") or [""])[0]),
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "ssl": parts.scheme == "rediss",
        "socket_connect_timeout": 5.0,
        "socket_timeout": _timeout(),
        "health_check_interval": 30,
    }
    host = kwargs["host"]
    location = f"{parts.scheme}://{host}:{port}/{kwargs['db']}?name={name}"
    if not keeps_features(url):
        location += "&features=0"
    return kwargs, name, location


def _password(path: str) -> str | None:
    """The password when the URL holds none: from ``password_file=PATH`` in the URL or
    ``LOOKALIKE_REDIS_PASSWORD_FILE`` (the file's first line), else
    ``LOOKALIKE_REDIS_PASSWORD``. A password in the URL itself shows in ``ps`` when the
    URL is given as ``--store``; these do not."""
    import os

    path = path or os.environ.get("LOOKALIKE_REDIS_PASSWORD_FILE", "")
    if path:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n") or None
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise IndexFileError(
                f"cannot read the Redis password file {printable(path)}: {why}"
            ) from None
    return os.environ.get("LOOKALIKE_REDIS_PASSWORD") or None


def keeps_features(url: str) -> bool:
    """Whether a new index at *url* stores the backbone's pooled features (``features=0``
    in the URL: no, for a little under half the memory; see the README)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return (query.get("features") or ["1"])[0].lower() not in ("0", "no", "off", "false")


def _timeout() -> float:
    """Seconds to wait for a Redis reply before the server counts as gone
    (``LOOKALIKE_REDIS_TIMEOUT``, default 30)."""
    import os

    try:
        return max(float(os.environ.get("LOOKALIKE_REDIS_TIMEOUT") or 30.0), 0.1)
    except ValueError:
        return 30.0


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _translate(location: str, exc: Exception) -> IndexFileError | None:
    """The one-line error for a Redis client error (None: not one of those)."""
    import redis

    if isinstance(exc, redis.exceptions.AuthenticationError):
        return IndexFileError(f"Redis at {location} refused the password (wrong or missing)")
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc)
        if "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text:
            return IndexFileError(f"Redis at {location} refused the password (wrong or missing)")
        if "OOM" in text:
            return IndexFileError(
                f"Redis at {location} is out of memory (maxmemory): nothing more can be stored"
            )
        return IndexFileError(f"Redis at {location}: {printable(text)[:200]}")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        why = printable(str(exc).split("\n")[0])[:160] or type(exc).__name__
        return IndexFileError(
            f"lost or could not make the connection to Redis at {location} ({why});"
            " everything committed is kept"
        )
    if isinstance(exc, redis.exceptions.RedisError):
        return IndexFileError(f"Redis at {location}: {printable(str(exc))[:200]}")
    return None


def guarded(method):
    """Turn Redis client errors raised in *method* into one-line
    :class:`IndexFileError`s (its object has ``errors()``, as the store and a job do)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.errors():
            return method(self, *args, **kwargs)

    return wrapper


def _record(
    path: str,
    size: int,
    mtime: int,
    slot: int,
    ok: bool,
    digest,
    dhash,
    pixels,
    error: str = "",
    quality: bytes | None = None,
) -> bytes:
    """An image's record: a fixed head, the digest, the path, then the error of a failed
    file or the quality measurements of a usable one."""
    import os

    raw = os.fsencode(path)
    digest = digest if isinstance(digest, bytes) and len(digest) == 32 else b""
    measured = quality if ok and isinstance(quality, bytes) and len(quality) == 28 else None
    flags = (_OK if ok else 0) | (_DHASH if dhash is not None else 0)
    flags |= _PIXELS if pixels is not None else 0
    flags |= _QUALITY if measured is not None else 0
    head = _HEAD.pack(
        int(size),
        int(mtime),
        int(slot),
        int(pixels or 0),
        int(dhash or 0) & ((1 << 64) - 1),
        flags,
        len(digest),
        len(raw),
    )
    return head + digest + raw + (measured or error.encode("utf-8", "replace"))


class _Record:
    __slots__ = (
        "path",
        "size",
        "mtime",
        "slot",
        "ok",
        "digest",
        "dhash",
        "pixels",
        "error",
        "quality",
    )

    def __init__(self, raw: bytes, damaged) -> None:
        import os

        if not isinstance(raw, bytes) or len(raw) < _HEAD.size:
            raise damaged("an image record is too short")
        size, mtime, slot, pixels, dhash, flags, dlen, plen = _HEAD.unpack_from(raw)
        if dlen not in (0, 32) or _HEAD.size + dlen + plen > len(raw) or slot < -1:
            raise damaged("an image record is malformed")
        at = _HEAD.size
        self.digest = raw[at : at + dlen] or None
        self.path = os.fsdecode(raw[at + dlen : at + dlen + plen])
        tail = raw[at + dlen + plen :]
        self.quality = None
        if flags & _QUALITY:
            if len(tail) != QUALITY_SIZE:
                raise damaged("a quality record is not 28 bytes")
            self.quality, tail = tail, b""
        self.error = tail.decode("utf-8", "replace")
        self.size, self.mtime, self.slot = size, mtime, slot
        self.ok = bool(flags & _OK)
        self.dhash = dhash if flags & _DHASH else None
        self.pixels = pixels if flags & _PIXELS else None


class RemoteRows(Rows):
    """Rows of a chunked vector in Redis, read by ``GETRANGE`` in one pipelined round
    trip (runs of consecutive rows at once): the features of a short list."""

    def __init__(self, store: RedisStore, kind: str, dtype: np.dtype, shape: tuple[int, int]):
        self.store, self.kind, self.dtype, self.shape = store, kind, np.dtype(dtype), shape

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self.store._read_rows(self.kind, rows, self.dtype, self.shape[1])


class RedisBands:
    """The LSH buckets of a shared index: every band of a query in one round trip."""

    def __init__(self, store: RedisStore, bands: int, width: int) -> None:
        self.store, self.bands, self.width = store, bands, width

    def lookup_all(self, key: np.ndarray) -> list[np.ndarray]:
        return self.store._lsh_lookup(np.asarray(key, np.uint64))


class RedisStore:
    """:class:`engine.storage.Store` on a Redis server, for an index shared by machines.

    Unlike the embedded store, several processes may write at once (``writer()`` does
    not exclude anyone): each batch takes its own slots, and the distributed run in
    :mod:`engine.shared` gives each image to one worker. Readers keep a local copy of
    the codes, band keys and ids, fetched once and then only for rows committed since.
    """

    shared = True
    readonly = False
    readonly_why = ""

    def __init__(self, url: str, root: str | None = None) -> None:
        import redis

        kwargs, self.name, self.location = parse_url(url)
        self.keep_features = keeps_features(url)
        self.root = root
        self.url = url
        self.prefix = f"lookalike:{self.name}:".encode()
        self._pool = redis.ConnectionPool(**_pool_kwargs(kwargs))
        self.r = redis.Redis(connection_pool=self._pool)
        self._lock = threading.RLock()
        self._have = np.zeros(0, bool)
        self._mirror: dict[str, np.ndarray] = {}
        self._mirror_dims: tuple[int, int, int] | None = None
        self._mirror_gen = None
        self._lsh_obj = None
        self._fold: dict[bytes, bytes] = {}
        self._commit_script = self.r.register_script(_COMMIT)
        self._remove_script = self.r.register_script(_LSH_REMOVE)
        self._release_script = self.r.register_script(_RELEASE)
        self._tighten_script = self.r.register_script(_TIGHTEN)
        self._attach()

    def k(self, name: str) -> bytes:
        return self.prefix + name.encode()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Redis client errors inside become one-line :class:`IndexFileError`s."""
        try:
            yield
        except Exception as exc:
            if "WRONGTYPE" in str(exc):  # a key lookalike made holds another kind of value
                raise self.damaged("a key holds the wrong kind of value") from None
            mapped = _translate(self.location, exc)
            if mapped is None:
                raise
            raise mapped from None

    # --- attaching --------------------------------------------------------------------

    @guarded
    def _attach(self) -> None:
        self.r.ping()
        raw = self.r.hget(self.k("meta"), "schema")
        if raw is None:
            if self.r.exists(self.k("img"), self.k("slots")):
                raise self.damaged("no schema version")
            self.r.hsetnx(self.k("meta"), "schema", json.dumps(SCHEMA_VERSION))
            return
        try:
            version = json.loads(raw)
        except ValueError:
            version = None
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.damaged("schema version is not a number")
        if version > SCHEMA_VERSION:
            raise NewerIndex(
                f"{self.location} was written by a newer lookalike (schema {version});"
                " upgrade, or rebuild with --rebuild"
            )
        if version < SCHEMA_VERSION:
            raise OlderIndex(
                f"{self.location} was written by an older lookalike (schema {version});"
                f" run lookalike index {self.root or 'DIR'} --rebuild"
            )

    def damaged(self, why: str) -> IndexDamaged:
        return IndexDamaged(self.location, why, self.root)

    # --- metadata and file states ----------------------------------------------------------

    def _decode_meta(self, raw: dict, slots) -> dict:
        out = {}
        for k, v in raw.items():
            key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            try:
                out[key] = json.loads(v)
            except (TypeError, ValueError, RecursionError):
                raise self.damaged(f"metadata {printable(repr(key))} is not valid JSON") from None
        out["slots"] = self._whole_count(slots)
        return out

    def _check_counter(self, slots: int, live_bytes: int) -> None:
        """The slot counter and the live bitmap agree: bits are set only in slots handed
        out, and slots are handed out only to batches about to set their bits (those of
        workers killed meanwhile stay clear, a few batches' worth)."""
        if live_bytes > (slots + 7) // 8:
            raise self.damaged("the live bitmap is longer than the slot counter allows")
        if slots > 8 * live_bytes + MAX_RESERVED:
            raise self.damaged("the slot counter is far beyond the stored images")

    def _whole_count(self, raw) -> int:
        try:
            value = int(raw or 0)
        except ValueError:
            raise self.damaged("the slot counter is not a number") from None
        if not 0 <= value < 1 << 40:
            raise self.damaged("the slot counter is out of range")
        return value

    @guarded
    def get_meta(self) -> dict:
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(self.k("meta"))
        pipe.get(self.k("slots"))
        raw, slots = pipe.execute()
        return self._decode_meta(raw, slots)

    @guarded
    def set_meta(self, values: dict) -> None:
        # the slot counter and the schema version are the store's own
        values = {k: v for k, v in values.items() if k not in ("slots", "schema")}
        if values:
            self.r.hset(
                self.k("meta"),
                mapping={k: json.dumps(v, allow_nan=False) for k, v in values.items()},
            )

    @guarded
    def claim_meta(self, values: dict) -> dict:
        """Store *values* unless another process stored its own first (one transaction
        keyed on the first name); returns the metadata that holds now. How every worker
        of a shared index ends up with one centre."""
        payload = [json.dumps(values[k], allow_nan=False) for k in values]
        script = (
            "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end "
            "for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end "
            "return 1"
        )
        flat = [x for pair in zip(values, payload) for x in pair]
        self.r.eval(script, 1, self.k("meta"), *flat)
        return self.get_meta()

    def _records(self) -> Iterator[_Record]:
        for _id, raw in self.r.hscan_iter(self.k("img"), count=5000):
            yield _Record(raw, self.damaged)

    @guarded
    def file_states(self) -> dict[str, StoredFile]:
        return {rec.path: StoredFile(rec.size, rec.mtime, rec.ok) for rec in self._records()}

    @guarded
    def states_of(self, paths: list[str]) -> list[StoredFile | None]:
        """The stored state of each path (None where it has none): one round trip."""
        if not paths:
            return []
        raws = self.r.hmget(self.k("img"), [_id_bytes(p) for p in paths])
        out: list[StoredFile | None] = []
        for p, raw in zip(paths, raws):
            rec = _Record(raw, self.damaged) if raw is not None else None
            out.append(StoredFile(rec.size, rec.mtime, rec.ok) if rec and rec.path == p else None)
        return out

    @guarded
    def failures(self) -> list[tuple[str, str]]:
        return sorted((rec.path, rec.error) for rec in self._records() if not rec.ok)

    @guarded
    def count(self) -> int:
        return int(self.r.bitcount(self.k("live")))

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Shared: any number of processes write at once (see :mod:`engine.shared`)."""
        yield

    # --- committing ----------------------------------------------------------------------

    def _dims(self, meta: dict) -> tuple[int, int, int]:
        def whole(key: str, hi: int) -> int:
            v = meta.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
                raise self.damaged(f"{key} {printable(repr(v)[:40])} is out of range")
            return v

        return whole("hash_dim", 1 << 16), whole("feature_dim", 1 << 16), whole("bands", 1 << 12)

    def _write_rows(self, pipe, kind: str, start: int, data: np.ndarray) -> None:
        """SETRANGE rows *start*... of chunked vector *kind* (split at chunk borders)."""
        data = np.ascontiguousarray(data)
        row = data.shape[1] * data.dtype.itemsize
        at = 0
        while at < len(data):
            slot = start + at
            chunk, off = divmod(int(slot), CHUNK)
            n = min(len(data) - at, CHUNK - off)
            pipe.setrange(self.k(f"{kind}:{chunk}"), int(off * row), data[at : at + n].tobytes())
            at += n

    @guarded
    def commit(self, batch: Batch) -> list[tuple[str, str]]:
        """Store *batch* at once (see the module's notes); returns the paths refused, with
        why (an id shared with another path)."""
        meta = self.get_meta()
        self._check_counter(meta["slots"], int(self.r.strlen(self.k("live"))))
        if batch.centre_gen is not None and meta.get("centre_gen") not in (None, batch.centre_gen):
            raise CentreMoved(f"the centre of {self.location} was refitted meanwhile")
        hash_dim, feature_dim, bands = self._dims(meta)
        refused: list[tuple[str, str]] = []
        ok_rows = list(range(len(batch.paths)))
        # Refuse paths whose id another path holds (never merged).
        every = [*batch.paths, *(f[0] for f in batch.failed), *batch.delete]
        if every:
            ids = [_id_bytes(p) for p in every]
            held = dict(zip(every, self.r.hmget(self.k("img"), ids)))
            seen: dict[bytes, str] = {}
            clash = set()
            for p, i in zip(every, ids):
                raw = held[p]
                other = _Record(raw, self.damaged).path if raw is not None else seen.get(i, p)
                if other != p:
                    clash.add(p)
                    refused.append((p, f"its id collides with {other}"))
                seen.setdefault(i, p)
            ok_rows = [i for i in ok_rows if batch.paths[i] not in clash]
        n = len(batch.paths)
        start = 0
        args: list = []
        if n:
            start = int(self.r.incrby(self.k("slots"), n)) - n
            codes = np.asarray(batch.codes, CODE_DTYPE).reshape(n, hash_dim)
            keys = np.asarray(batch.band_keys, KEY_DTYPE).reshape(n, bands)
            ids = np.array([image_id(p) for p in batch.paths], ID_DTYPE).reshape(n, 1)
            pipe = self.r.pipeline(transaction=False)
            self._write_rows(pipe, "codes", start, codes)
            self._write_rows(pipe, "bands", start, keys)
            self._write_rows(pipe, "ids", start, ids)
            if feature_dim:
                feats = np.asarray(batch.features, FEATURE_DTYPE).reshape(n, feature_dim)
                self._write_rows(pipe, "feats", start, feats)
            pipe.execute()
            first, last = start // CHUNK, (start + n) // CHUNK
            for chunk in range(first, last):  # this batch wrote the last row of these
                kinds = ("codes", "bands", "ids", "feats")
                self._tighten_script(keys=[self.k(f"{kind}:{chunk}") for kind in kinds])
            self._lsh_insert(meta, [start + i for i in ok_rows], keys[ok_rows])
            dhashes = batch.dhashes or [None] * n
            pixels = batch.pixels or [None] * n
            measured = batch.quality or [None] * n
            for i in ok_rows:
                p = batch.paths[i]
                rec = _record(
                    p,
                    batch.sizes[i],
                    batch.mtimes[i],
                    start + i,
                    True,
                    batch.digests[i] if batch.digests else None,
                    dhashes[i],
                    pixels[i],
                    quality=measured[i],
                )
                args += [_id_bytes(p), rec, start + i]
        clashed = {r[0] for r in refused}
        for p, size, mtime, why in batch.failed:
            if p not in clashed:
                args += [
                    _id_bytes(p),
                    _record(p, size, mtime, -1, False, None, None, None, why),
                    -1,
                ]
        for p in batch.delete:
            if p not in clashed:  # never delete the record of the path that holds the id
                args += [_id_bytes(p), b"", -1]
        if args:
            retired = self._commit_script(keys=[self.k("img"), self.k("live")], args=args)
            if retired:
                self._lsh_remove([int(s) for s in retired], int(meta.get("bands", 0)))
        return refused

    # --- the LSH (datasketch's MinHashLSH on Redis) -------------------------------------------

    def _lsh_base(self) -> bytes:
        return self.k("lsh")

    def _lsh(self, meta: dict):
        if self._lsh_obj is None:
            from datasketch import MinHashLSH

            self._lsh_obj = MinHashLSH(
                num_perm=int(meta["num_perm"]),
                params=(int(meta["bands"]), int(meta["rows"])),
                storage_config={
                    "type": "redis",
                    "basename": self._lsh_base(),
                    "redis": {"connection_pool": self._pool},
                    "redis_buffer": {"transaction": False},
                },
                prepickle=False,
                hashfunc=self._fold_band,
            )
        return self._lsh_obj

    def _fold_band(self, run: bytes) -> bytes:
        """datasketch's per-band hash: this project's 64-bit band key of the run."""
        key = self._fold.get(run)
        if key is None:
            from engine.lsh import band_keys

            values = np.frombuffer(run, _signature_dtype().newbyteorder(">")).astype(np.uint64)
            key = int(band_keys(values[None], 1, len(values))[0, 0]).to_bytes(8, "big")
        return key

    def _lsh_insert(self, meta: dict, slots: list[int], keys: np.ndarray) -> None:
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

        lsh = self._lsh(meta)
        seed = int(meta.get("seed", 1))
        num_perm = int(meta["num_perm"])
        dtype = _signature_dtype()
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

    def _lsh_remove(self, slots: list[int], bands: int) -> None:
        if slots and bands:
            step = 512
            for i in range(0, len(slots), step):
                keys = [str(s).encode() for s in slots[i : i + step]]
                self._remove_script(args=[self._lsh_base(), bands, *keys])

    def _bucket(self, band: int, key: int) -> bytes:
        return (
            self._lsh_base() + b"_bucket_" + struct.pack(">H", band) + int(key).to_bytes(8, "big")
        )

    @guarded
    def _lsh_lookup(self, key: np.ndarray) -> list[np.ndarray]:
        pipe = self.r.pipeline(transaction=False)
        for b, k in enumerate(key):
            pipe.smembers(self._bucket(b, int(k)))
        out = []
        for members in pipe.execute():
            try:
                out.append(np.array(sorted(int(m) for m in members), np.int64))
            except ValueError:
                raise self.damaged("an LSH bucket holds something that is not a slot") from None
        return out

    # --- reading -------------------------------------------------------------------------

    @guarded
    def snapshot(self) -> Snapshot:
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(self.k("meta"))
        pipe.get(self.k("slots"))
        pipe.get(self.k("live"))
        raw_meta, raw_slots, live_raw = pipe.execute()
        meta = self._decode_meta(raw_meta, raw_slots)
        slots = meta["slots"]
        hash_dim, feature_dim, bands = self._dims(meta)
        live_raw = live_raw or b""
        self._check_counter(slots, len(live_raw))
        live = np.unpackbits(np.frombuffer(live_raw, np.uint8))[:slots].astype(bool)
        # Rows past the last live one are never read (reserved by a batch not committed
        # yet, or never written): the snapshot ends there.
        slots = int(np.flatnonzero(live)[-1]) + 1 if live.any() else 0
        live = live[:slots]
        gen = meta.get("band_gen", 0)
        with self._lock:
            self._refresh_mirror(live, (hash_dim, feature_dim, bands), gen)
            codes = self._mirror["codes"][:slots]
            keys = self._mirror["bands"][:slots]
        dead = np.flatnonzero(~live).astype(np.int64)
        feats = (
            RemoteRows(self, "feats", FEATURE_DTYPE, (slots, feature_dim)) if feature_dim else None
        )
        return Snapshot(
            slots,
            codes,
            feats,
            keys,
            dead,
            meta,
            generation=hash(("redis", gen)),
            lsh_base=slots,
            lsh=RedisBands(self, bands, int(live.sum())) if bands else None,
        )

    def _refresh_mirror(self, live: np.ndarray, dims: tuple[int, int, int], gen) -> None:
        """Bring the local copy of codes, band keys and ids up to the live slots."""
        hash_dim, _, bands = dims
        slots = len(live)
        if self._mirror_dims != dims or self._mirror_gen != gen or len(self._have) > slots:
            self._mirror = {
                "codes": np.zeros((0, hash_dim), CODE_DTYPE),
                "bands": np.zeros((0, bands), KEY_DTYPE),
                "ids": np.zeros((0, 1), ID_DTYPE),
            }
            self._have = np.zeros(0, bool)
            self._mirror_dims, self._mirror_gen = dims, gen
        if len(self._have) < slots:
            # the last live slot's code must be stored before anything is sized by it
            chunk, off = divmod(slots - 1, CHUNK)
            if self.r.strlen(self.k(f"codes:{chunk}")) < (off + 1) * hash_dim * 4:
                raise self.damaged("live slots beyond the stored rows")
            cap = max(slots, 2 * len(self._have))
            for name, arr in self._mirror.items():
                grown = np.zeros((cap, arr.shape[1]), arr.dtype)
                grown[: len(arr)] = arr
                self._mirror[name] = grown
            have = np.zeros(cap, bool)
            have[: len(self._have)] = self._have
            self._have = have
        need = np.flatnonzero(live & ~self._have[:slots])
        if not len(need):
            return
        for name, dtype in (("codes", CODE_DTYPE), ("bands", KEY_DTYPE), ("ids", ID_DTYPE)):
            width = self._mirror[name].shape[1]
            self._mirror[name][need] = self._read_rows(name, need, dtype, width)
        self._have[need] = True

    def _read_rows(self, kind: str, rows: np.ndarray, dtype: np.dtype, width: int) -> np.ndarray:
        """Rows of a chunked vector: one pipelined round trip, a GETRANGE per run."""
        row = width * dtype.itemsize
        out = np.empty((len(rows), width), dtype)
        if not len(rows) or not row:
            return out
        order, srt, starts, ends = row_runs(rows, CHUNK)
        pipe = self.r.pipeline(transaction=False)
        for a, b in zip(starts, ends):
            chunk, off = divmod(int(srt[a]), CHUNK)
            pipe.getrange(self.k(f"{kind}:{chunk}"), int(off * row), int((off + b - a) * row - 1))
        buf = np.empty((len(rows), width), dtype)
        for (a, b), data in zip(zip(starts, ends), pipe.execute()):
            if len(data) != (b - a) * row:
                raise self.damaged(f"the {kind} rows are shorter than the index says")
            buf[a:b] = np.frombuffer(data, dtype).reshape(b - a, width)
        out[order] = buf
        return out

    @guarded
    def version(self) -> tuple:
        """Changes whenever a commit, removal or refit does: one round trip."""
        pipe = self.r.pipeline(transaction=True)
        pipe.get(self.k("slots"))
        pipe.bitcount(self.k("live"))
        pipe.hmget(self.k("meta"), ["band_gen", "centre_gen"])
        slots, live, gens = pipe.execute()
        return (slots, live, *gens)

    @guarded
    def paths_of(self, slots: np.ndarray) -> list[str]:
        slots = np.asarray(slots, np.int64)
        with self._lock:
            if len(slots) and (slots.max() >= len(self._have) or not self._have[slots].all()):
                raise SnapshotMoved
            ids = [int(i).to_bytes(8, "little", signed=True) for i in self._mirror["ids"][slots, 0]]
        raws = self.r.hmget(self.k("img"), ids) if ids else []
        out = []
        for slot, raw in zip(slots, raws):
            if raw is None:
                raise SnapshotMoved
            rec = _Record(raw, self.damaged)
            if rec.slot != slot:
                raise SnapshotMoved
            out.append(rec.path)
        return out

    @guarded
    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None:
        raw = self.r.hget(self.k("img"), _id_bytes(path))
        if raw is None:
            return None
        rec = _Record(raw, self.damaged)
        if rec.path != path:
            return None
        return StoredFile(rec.size, rec.mtime, rec.ok), rec.slot if rec.slot >= 0 else None

    @guarded
    def image_facts(self) -> ImageFacts:
        recs = sorted((r for r in self._records() if r.ok), key=lambda r: r.slot)
        return ImageFacts(
            slots=np.array([r.slot for r in recs], np.int64),
            paths=[r.path for r in recs],
            mtimes=np.array([r.mtime for r in recs], np.int64),
            dhash=np.array([r.dhash or 0 for r in recs], np.uint64),
            known=np.array([r.dhash is not None for r in recs], bool),
            pixels=np.array([r.pixels or 0 for r in recs], np.int64),
            digests=[r.digest for r in recs],
            quality=[r.quality for r in recs],
        )

    # --- whole rewrites ----------------------------------------------------------------------

    @guarded
    def rewrite_band_keys(self, band_keys: np.ndarray, meta: dict) -> None:
        """Replace every slot's band keys and LSH entries (after the centre moved)."""
        old = self.get_meta()
        keys = np.asarray(band_keys, KEY_DTYPE)
        pipe = self.r.pipeline(transaction=False)
        self._write_rows(pipe, "bands", 0, keys)
        pipe.execute()
        self._clear_lsh()
        self._lsh_obj = None
        dead = self.snapshot().dead
        live = np.ones(len(keys), bool)
        live[dead[dead < len(keys)]] = False
        idx = np.flatnonzero(live)
        self._lsh_insert({**old, **meta}, idx.tolist(), keys[idx])
        self.set_meta({**meta, "band_gen": old.get("band_gen", 0) + 1})

    def _clear_lsh(self) -> None:
        self._unlink_matching(self._lsh_base() + b"_")

    def _unlink_matching(self, prefix: bytes) -> None:
        """UNLINK every key starting with *prefix*, in batches (SCAN, never KEYS)."""
        batch = []
        for key in self.r.scan_iter(match=_glob_escape(prefix) + b"*", count=10000):
            batch.append(key)
            if len(batch) >= 5000:
                self.r.unlink(*batch)
                batch = []
        if batch:
            self.r.unlink(*batch)

    # --- copy verdicts and rejected pairs (hashes of their own) --------------------------------

    @guarded
    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        if not keys:
            return {}
        got = self.r.hmget(self.k("verdicts"), keys)
        return {k: v.decode("utf-8", "replace") for k, v in zip(keys, got) if v is not None}

    @guarded
    def put_verdicts(self, items: dict[bytes, str]) -> None:
        if items:
            self.r.hset(self.k("verdicts"), mapping=items)

    @guarded
    def forget_verdicts(self) -> None:
        self.r.delete(self.k("verdicts"))

    @guarded
    def rejections(self) -> set[tuple[str, str]]:
        import os

        out = set()
        for raw in self.r.smembers(self.k("rejected")):
            a, sep, b = raw.partition(b"\0")
            if sep:
                out.add((os.fsdecode(a), os.fsdecode(b)))
        return out

    @guarded
    def reject(self, a: str, b: str) -> None:
        import os

        a, b = sorted((a, b))
        self.r.sadd(self.k("rejected"), os.fsencode(a) + b"\0" + os.fsencode(b))

    @guarded
    def forget_rejections(self) -> int:
        n = int(self.r.scard(self.k("rejected")))
        self.r.delete(self.k("rejected"))
        return n

    def build_lsh_tables(self) -> None:
        """Nothing to sort: the LSH is kept up to date at every commit."""

    def sweep(self) -> None:
        """Nothing to sweep: rows are rewritten in place, never as new generations."""

    def compact(self) -> int:
        """Not done on a shared index (other machines may be writing into it); the rows of
        replaced and deleted images stay until ``--rebuild``."""
        return 0

    @guarded
    def clear(self) -> None:
        """Forget everything (``--rebuild``)."""
        self._unlink_matching(self.prefix)
        self.r.hset(self.k("meta"), "schema", json.dumps(SCHEMA_VERSION))
        with self._lock:
            self._mirror_dims = None
            self._lsh_obj = None

    def close(self) -> None:
        self._pool.disconnect()


@functools.lru_cache(maxsize=1)
def _signature_dtype() -> np.dtype:
    """The dtype of datasketch's hash values for this project's scheme (its runs are
    handed to ``hashfunc`` as their big-endian bytes)."""
    from datasketch import MinHash

    from engine.minhash import SCHEME

    return np.dtype(MinHash(num_perm=2, scheme=SCHEME).hashvalues.dtype)


def _pool_kwargs(kwargs: dict) -> dict:
    out = dict(kwargs)
    if out.pop("ssl", False):
        import redis

        out["connection_class"] = redis.SSLConnection
    return out


def _id_bytes(path: str) -> bytes:
    return image_id(path).to_bytes(8, "little", signed=True)


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for c in raw:
        if c in b"*?[]\\":
            out += b"\\"
        out.append(c)
    return bytes(out)


def remove_all(url: str) -> None:
    """Delete the index at *url* whole (``--rebuild`` of one too old or damaged to open)."""
    import redis

    kwargs, name, location = parse_url(url)
    r = redis.Redis(**_pool_kwargs(kwargs))
    prefix = f"lookalike:{name}:".encode()
    try:
        keys = list(r.scan_iter(match=_glob_escape(prefix) + b"*", count=10000))
        for i in range(0, len(keys), 5000):
            r.unlink(*keys[i : i + 5000])
    except redis.exceptions.RedisError as exc:
        raise IndexFileError(f"Redis at {location}: {printable(str(exc))[:200]}") from None
    finally:
        r.close()
