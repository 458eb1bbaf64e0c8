"""Reading a shared index (the readers' half of :class:`engine.storage.IndexStore`): the
snapshot (codes mirrored locally, features read by rows), paths by slot, a path's slot,
every image's facts; each value read checked as untrusted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.storage import (
    ImageFacts,
    IndexDamaged,
    Rows,
    Snapshot,
    SnapshotMoved,
    StoredFile,
    row_runs,
)
from engine.storage.redis.codec import (
    CHUNK,
    CODE_DTYPE,
    FEATURE_DTYPE,
    ID_DTYPE,
    KEY_DTYPE,
    Record,
    id_bytes,
)
from engine.storage.redis.connection import (
    guarded,
)
from engine.storage.redis.datasketch_lsh import RedisBands


class RemoteRows(Rows):
    """Rows of a chunked vector in Redis, read by ``GETRANGE`` in one pipelined round
    trip (runs of consecutive rows at once): the features of a short list."""

    def __init__(self, store: RedisReads, kind: str, dtype: np.dtype, shape: tuple[int, int]):
        self.store, self.kind, self.dtype, self.shape = store, kind, np.dtype(dtype), shape

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self.store.read_rows(self.kind, rows, self.dtype, self.shape[1])


class RedisReads:
    """The reading methods of :class:`engine.storage.redis.RedisStore` (which gives the
    connection, the key names, the metadata and the damaged-index error)."""

    if TYPE_CHECKING:
        r: Any
        lsh: Any  # engine.storage.redis.datasketch_lsh.DatasketchTables
        _lock: threading.RLock
        _have: np.ndarray  # which slots' codes the local mirror holds
        _mirror: dict[str, np.ndarray]
        _mirror_dims: tuple[int, int, int] | None
        _mirror_gen: Any

        def k(self, name: str) -> bytes: ...
        def damaged(self, why: str) -> IndexDamaged: ...
        def _decode_meta(self, raw: dict, slots) -> dict: ...
        def _dims(self, meta: dict) -> tuple[int, int, int]: ...
        def _check_counter(self, slots: int, live_bytes: int) -> None: ...
        def _records(self) -> Iterator[Record]: ...

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
