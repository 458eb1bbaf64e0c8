"""The shared store: :class:`RedisStore`, one index in Redis, written by several
machines at once (the layout and why: :mod:`engine.storage.redis`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from engine.names import printable
from engine.storage import (
    BLOB_MAX,
    CHOICE_KINDS,
    PATH_BYTES,
    REJECTIONS_MAX,
    VERDICT_BYTES,
    Batch,
    CentreMoved,
    ImageFacts,
    IndexDamaged,
    NewerIndex,
    OlderIndex,
    Rows,
    Snapshot,
    SnapshotMoved,
    Store,
    StoredFile,
    checked_choices,
    checked_pairs,
    image_id,
    row_runs,
)
from engine.storage.redis import scripts
from engine.storage.redis.codec import (
    CODE_DTYPE,
    FEATURE_DTYPE,
    ID_DTYPE,
    KEY_DTYPE,
    Record,
    id_bytes,
    pack_record,
)
from engine.storage.redis.connection import (
    guarded,
    keeps_features,
    parse_url,
    pool_kwargs,
    translate,
    unlink_matching,
)
from engine.storage.redis.datasketch_lsh import DatasketchTables, RedisBands

#: 1: the first shared layout.
SCHEMA_VERSION = 1
#: Rows per vector string (a features string of Lite0 is then 40 MiB, under Redis' 512).
#: One less than a power of two: a full string plus its header then fits a jemalloc size
#: class exactly (2**14 rows would round up by a quarter).
CHUNK = (1 << 14) - 1
#: Slots handed out to batches that never set their bits (killed workers) may reach this
#: many past the live bitmap before the counter counts as damaged.
MAX_RESERVED = 1 << 20


class RemoteRows(Rows):
    """Rows of a chunked vector in Redis, read by ``GETRANGE`` in one pipelined round
    trip (runs of consecutive rows at once): the features of a short list."""

    def __init__(self, store: RedisStore, kind: str, dtype: np.dtype, shape: tuple[int, int]):
        self.store, self.kind, self.dtype, self.shape = store, kind, np.dtype(dtype), shape

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self.store.read_rows(self.kind, rows, self.dtype, self.shape[1])


class RedisStore(Store):
    """:class:`engine.storage.Store` on a Redis server, for an index shared by machines.

    Unlike the embedded store, several processes may write at once (``writer()`` does
    not exclude anyone): each batch takes its own slots, and the distributed run in
    :mod:`engine.storage.redis.streams` gives each image to one worker. Readers keep a local copy of
    the codes, band keys and ids, fetched once and then only for rows committed since.
    """

    shared = True
    kind = "Redis, shared"
    readonly = False
    readonly_why = ""

    def __init__(self, url: str, root: str | None = None) -> None:
        import redis

        kwargs, self.name, self.location = parse_url(url)
        self.keep_features = keeps_features(url)
        self.root = root
        self.url = url
        self.prefix = f"lookalike:{self.name}:".encode()
        self._pool = redis.ConnectionPool(**pool_kwargs(kwargs))
        self.r = redis.Redis(connection_pool=self._pool)
        self._lock = threading.RLock()
        self._have = np.zeros(0, bool)
        self._mirror: dict[str, np.ndarray] = {}
        self._mirror_dims: tuple[int, int, int] | None = None
        self._mirror_gen = None
        self.lsh = DatasketchTables(self.r, self._pool, self.k("lsh"), self.damaged, self.errors)
        self._commit_script = self.r.register_script(scripts.COMMIT)
        self.release_script = self.r.register_script(scripts.RELEASE)
        self._tighten_script = self.r.register_script(scripts.TIGHTEN)
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
            mapped = translate(self.location, exc)
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

    def _records(self) -> Iterator[Record]:
        for _id, raw in self.r.hscan_iter(self.k("img"), count=5000):
            yield Record(raw, self.damaged)

    @guarded
    def file_states(self) -> dict[str, StoredFile]:
        return {rec.path: StoredFile(rec.size, rec.mtime, rec.ok) for rec in self._records()}

    @guarded
    def states_of(self, paths: list[str]) -> list[StoredFile | None]:
        """The stored state of each path (None where it has none): one round trip."""
        if not paths:
            return []
        raws = self.r.hmget(self.k("img"), [id_bytes(p) for p in paths])
        out: list[StoredFile | None] = []
        for p, raw in zip(paths, raws):
            rec = Record(raw, self.damaged) if raw is not None else None
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
        """Shared: any number of processes write at once (see :mod:`engine.storage.redis.streams`)."""
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
            idents = [id_bytes(p) for p in every]
            held = dict(zip(every, self.r.hmget(self.k("img"), idents)))
            seen: dict[bytes, str] = {}
            clash = set()
            for p, ident in zip(every, idents):
                raw = held[p]
                other = Record(raw, self.damaged).path if raw is not None else seen.get(ident, p)
                if other != p:
                    clash.add(p)
                    refused.append((p, f"its id collides with {other}"))
                seen.setdefault(ident, p)
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
            self.lsh.insert(meta, [start + i for i in ok_rows], keys[ok_rows])
            dhashes = batch.dhashes or [None] * n
            pixels = batch.pixels or [None] * n
            measured = batch.quality or [None] * n
            for i in ok_rows:
                p = batch.paths[i]
                rec = pack_record(
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
                args += [id_bytes(p), rec, start + i]
        clashed = {r[0] for r in refused}
        for p, size, mtime, why in batch.failed:
            if p not in clashed:
                args += [
                    id_bytes(p),
                    pack_record(p, size, mtime, -1, False, None, None, None, why),
                    -1,
                ]
        for p in batch.delete:
            if p not in clashed:  # never delete the record of the path that holds the id
                args += [id_bytes(p), b"", -1]
        if args:
            retired = self._commit_script(keys=[self.k("img"), self.k("live")], args=args)
            if retired:
                self.lsh.remove([int(s) for s in retired], int(meta.get("bands", 0)))
        return refused

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
            lsh=RedisBands(self.lsh, bands, int(live.sum())) if bands else None,
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
            self._mirror[name][need] = self.read_rows(name, need, dtype, width)
        self._have[need] = True

    def read_rows(self, kind: str, rows: np.ndarray, dtype: np.dtype, width: int) -> np.ndarray:
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
            rec = Record(raw, self.damaged)
            if rec.slot != slot:
                raise SnapshotMoved
            out.append(rec.path)
        return out

    @guarded
    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None:
        raw = self.r.hget(self.k("img"), id_bytes(path))
        if raw is None:
            return None
        rec = Record(raw, self.damaged)
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
        self.lsh.clear()
        dead = self.snapshot().dead
        live = np.ones(len(keys), bool)
        live[dead[dead < len(keys)]] = False
        idx = np.flatnonzero(live)
        self.lsh.insert({**old, **meta}, idx.tolist(), keys[idx])
        self.set_meta({**meta, "band_gen": old.get("band_gen", 0) + 1})

    # --- copy verdicts and rejected pairs (hashes of their own) --------------------------------

    @guarded
    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        """Cached verdicts; values longer than :data:`~engine.storage.VERDICT_BYTES` are
        left unread (their lengths are asked first)."""
        if not keys:
            return {}
        if self.r.type(self.k("verdicts")) not in (b"hash", b"none"):
            raise self.damaged("the cached verdicts are not a hash")
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hstrlen(self.k("verdicts"), k)
        short = [k for k, n in zip(keys, pipe.execute()) if 0 < int(n) <= VERDICT_BYTES]
        if not short:
            return {}
        got = self.r.hmget(self.k("verdicts"), short)
        return {k: v.decode("utf-8", "replace") for k, v in zip(short, got) if isinstance(v, bytes)}

    @guarded
    def put_verdicts(self, items: dict[bytes, str]) -> None:
        if items:
            self.r.hset(self.k("verdicts"), mapping={k: v.encode() for k, v in items.items()})

    @guarded
    def forget_verdicts(self) -> None:
        self.r.delete(self.k("verdicts"))

    @guarded
    def rejections(self) -> set[tuple[str, str]]:
        """Pairs marked not copies; members lookalike never writes are left out."""
        import os

        key = self.k("rejected")
        if self.r.type(key) not in (b"set", b"none"):
            raise self.damaged("the rejected pairs are not a set")
        found = []
        for n, raw in enumerate(self.r.sscan_iter(key, count=1000)):
            if n >= REJECTIONS_MAX:
                break
            a, sep, b = raw.partition(b"\0")
            if sep and len(a) <= PATH_BYTES and len(b) <= PATH_BYTES:
                found.append((os.fsdecode(a), os.fsdecode(b)))
        return checked_pairs(found)

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

    @guarded
    def choices(self, kind: str) -> dict[str, bytes]:
        import os

        if kind not in CHOICE_KINDS:
            return {}
        key = self.k("choices:" + kind)
        if self.r.type(key) not in (b"hash", b"none"):
            raise self.damaged("a set of choices is not a hash")
        rows = []
        for n, (path, value) in enumerate(self.r.hscan_iter(key, count=1000)):
            if n >= REJECTIONS_MAX:
                break
            if len(path) <= PATH_BYTES:
                rows.append((os.fsdecode(path), value))
        return checked_choices(rows)

    @guarded
    def set_choices(self, kind: str, add: dict[str, bytes], remove: Sequence[str] = ()) -> None:
        import os

        if kind not in CHOICE_KINDS:
            raise ValueError(f"not a kind of choice: {kind}")
        key = self.k("choices:" + kind)
        pipe = self.r.pipeline(transaction=True)
        if remove:
            pipe.hdel(key, *[os.fsencode(p) for p in remove])
        if add:
            pipe.hset(key, mapping={os.fsencode(p): bytes(v) for p, v in add.items()})
        pipe.execute()

    @guarded
    def get_blob(self, name: str) -> bytes | None:
        key = self.k("blob:" + name)
        if self.r.type(key) != b"string" or int(self.r.strlen(key)) > BLOB_MAX:
            return None
        got = self.r.get(key)
        return got if isinstance(got, bytes) else None

    @guarded
    def put_blob(self, name: str, data: bytes) -> None:
        self.r.set(self.k("blob:" + name), data)

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
        unlink_matching(self.r, self.prefix)
        self.lsh.clear()
        self.r.hset(self.k("meta"), "schema", json.dumps(SCHEMA_VERSION))
        with self._lock:
            self._mirror_dims = None

    def close(self) -> None:
        self._pool.disconnect()
