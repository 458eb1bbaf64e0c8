"""The shared store: :class:`RedisStore`, one index in Redis, written by several
machines at once (the layout and why: :mod:`engine.storage.redis`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from engine.names import printable
from engine.storage import (
    Batch,
    CentreMoved,
    IndexDamaged,
    NewerIndex,
    OlderIndex,
    Store,
    StoredFile,
    image_id,
)
from engine.storage.redis import scripts
from engine.storage.redis.annotations import RedisAnnotations
from engine.storage.redis.codec import (
    CHUNK,
    CODE_DTYPE,
    FEATURE_DTYPE,
    ID_DTYPE,
    KEY_DTYPE,
    MAX_RESERVED,
    SCHEMA_VERSION,
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
from engine.storage.redis.datasketch_lsh import DatasketchTables
from engine.storage.redis.reads import RedisReads


class RedisStore(RedisReads, RedisAnnotations, Store):
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

    def parallel_job(self) -> Any:
        """The Redis Streams job several workers share an index run through."""
        from engine.storage.redis.streams import Job

        return Job(self)

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
