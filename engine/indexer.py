"""Bringing a store up to date with a folder: walk, diff, decode, encode, commit.

One run: the walk is compared with the stored file states (size and mtime), gone files
are dropped, and new or changed ones are decoded in a thread pool (one read per file,
hashed on the way for identical-copy detection) while the CNN encodes the batch before.
Each batch is committed at once (:meth:`engine.storage.Store.commit`): a run killed or
cancelled keeps every committed batch, and the next run picks up from there.

After the batches: when the collection has doubled since the centre was fitted, it is
refitted and every band key recomputed from the stored codes (no CNN); when a quarter of
the array rows belong to no image any more, the arrays are compacted; when many images
came in since the LSH tables were sorted, they are sorted again. The centre is refitted
there, once per run, and not as batches come in: so every store, a shared one written
by several machines included, ends a run with the centre of the same images (and one
refit costs one pass over the codes where refitting at every doubling cost many).

A shared store (``store.shared``) is indexed by several workers at once: the run is
split through the store's own queue (:mod:`engine.indexer_shared`), and each chunk goes
through the same batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from engine import centre as centres
from engine import identity as identities
from engine.encoding import chooser, encode_batch, feature_dim
from engine.identity import Identity
from engine.images import FileEntry, ImageError, SkippedFile, walk_images
from engine.indexer_shared import SharedRun
from engine.live import LiveView
from engine.names import count
from engine.prepare import Decoding
from engine.results import IndexStats, Progress
from engine.settings import Settings
from engine.storage import Batch, CentreMoved, IndexFileError, Store

#: Compact the arrays when this share of their rows belongs to no image.
COMPACT_SHARE = 0.25
#: A run removes more than this share of the index only when asked (``prune``).
PRUNE_SHARE = 0.5
#: Sort the LSH tables again once this share of the images came in since the last sort.
RESORT_SHARE = 0.10

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class IndexContext:
    """What a run needs from the engine that starts it, and no more."""

    root: Path
    settings: Settings
    identity: Identity
    #: the centre and the searchable view, told after every commit so searches see it
    view: LiveView
    #: the encoder, built (and checked against the index) on first call; its argument
    #: hears of each way of running the CNN timed meanwhile (the first run on a machine)
    encoder: Callable[..., Any]


class Indexer(SharedRun):
    """One index run over the context's folder into its store."""

    def __init__(self, ctx: IndexContext) -> None:
        self.ctx = ctx
        self.view = ctx.view
        self.store: Store = ctx.view.store

    def _claim_identity(self, emit=None, timing: Callable[[], None] | None = None) -> None:
        """Load the encoder and record it and the LSH settings in a new index (fails
        early, before any picture is encoded, when the weights are missing). The first
        run on a machine times the ways the CNN can run here (seconds to a minute):
        *emit* says so, step by step, and *timing* hears of it first."""

        def step(path, i: int, n: int) -> None:
            if timing is not None:
                timing()
            if emit is not None:
                emit(i - 1, n, chooser.step_text(path, i, n), "preparing", force=True)

        if emit is not None:
            emit(0, 0, "loading the CNN", "preparing", force=True)
        enc = self.ctx.encoder(step)
        identities.record(self.store, self.ctx.identity, enc, feature_dim(enc), self.ctx.root)

    def diff(self, stats: IndexStats, known: dict, cancel: threading.Event, on_entry=None):
        """Walk the folder against the stored file states: the entries to encode (new or
        changed) and the stored paths gone from disk. Skips, and failures seen earlier, go
        into *stats*; a cancel mid-walk reports nothing as gone."""
        old_errors = dict(self.store.failures())
        todo: list[FileEntry] = []
        seen: set[str] = set()
        from engine.quarantine import excluded

        leave_out = excluded(self.store.get_meta())
        for entry in walk_images(self.ctx.root, self.ctx.settings.follow_links, leave_out):
            if cancel.is_set():
                stats.cancelled = True
                return todo, []
            if isinstance(entry, SkippedFile):
                stats.failed.append(entry)
                continue
            seen.add(entry.relpath)
            old = known.get(entry.relpath)
            if old and old.size == entry.size and old.mtime_ns == entry.mtime_ns:
                stats.unchanged += 1
                if not old.ok:
                    err = old_errors.get(entry.relpath) or "failed earlier"
                    stats.failed.append(SkippedFile(entry.relpath, err))
            else:
                todo.append(entry)
            if on_entry is not None:
                on_entry(entry, len(todo))
        stats.found = len(seen)
        return todo, [p for p in known if p not in seen]

    def pending(self, stats: IndexStats) -> IndexStats:
        """What a run would do to a store that cannot be written: count only."""
        todo, gone = self.diff(stats, self.store.file_states(), threading.Event())
        stats.pending = len(todo) + len(gone)
        stats.readonly = True
        stats.readonly_why = self.store.readonly_why
        return stats

    def _emitter(self, stats: IndexStats, on_progress, interval: float):
        started = time.perf_counter()
        last_emit = [0.0]

        def emit(done: int, total: int, current: str, phase: str, force: bool = False) -> None:
            now = time.perf_counter()
            if on_progress is None or (not force and now - last_emit[0] < interval):
                return
            last_emit[0] = now
            elapsed = now - started
            on_progress(
                Progress(
                    done,
                    total,
                    len(stats.failed),
                    done / elapsed if elapsed else 0.0,
                    current,
                    phase,
                )
            )

        return emit

    def run(
        self,
        stats: IndexStats,
        on_progress: ProgressCallback | None,
        cancel: threading.Event,
        interval: float,
    ) -> IndexStats:
        emit = self._emitter(stats, on_progress, interval)
        if self.store.shared:
            return self._run_shared(stats, cancel, emit)
        emit(0, 0, "", "scanning", force=True)
        todo, gone = self._walk(stats, cancel, emit)
        if todo and not stats.cancelled:
            self._encode_all(todo, stats, cancel, emit, load=partial(self._claim_identity, emit))
        stats.cancelled = stats.cancelled or cancel.is_set()
        if not stats.cancelled and (todo or gone or self.store.get_meta().get("upkeep")):
            emit(len(todo), len(todo), "", "finishing", force=True)
            self._upkeep()
        elif not stats.cancelled:
            self.store.snapshot()  # nothing new: still, say now if the arrays are damaged
        emit(len(todo) if not stats.cancelled else stats.indexed, len(todo), "", "done", force=True)
        return stats

    def _walk(self, stats: IndexStats, cancel, emit, on_entry=None):
        """Diff the folder with the store and drop what is gone from disk."""

        def seen(entry, n):
            emit(0, n, entry.relpath, "scanning")
            if on_entry is not None:
                on_entry(entry, n)

        known = self.store.file_states()
        todo, gone = self.diff(stats, known, cancel, seen)
        gone = self._guard_removal(stats, known, gone)
        if gone:
            self.store.commit(Batch(delete=gone))
            stats.removed += len(gone)
            self.view.committed()
        return todo, gone

    def _guard_removal(self, stats: IndexStats, known: dict, gone: list[str]) -> list[str]:
        """What may be removed of *gone*. A walk that finds no file at all, or loses more
        than half of the index, is far likelier a missing mount, a typo or another
        machine's path than a real deletion: without ``prune`` nothing is removed, and
        the stats say how much was kept. A shared index, which other machines search,
        is not touched at all by a worker whose folder holds none of its files."""
        if not gone or self.ctx.settings.prune:
            return gone
        if self.store.shared and len(gone) == len(known):
            built = self.store.get_meta().get("folder")
            where = f" (built from {built})" if isinstance(built, str) else ""
            raise IndexFileError(
                f"none of the {count(len(known), 'file')} of {self.store.location}{where} is under"
                f" {self.ctx.root}: give every worker the same collection, or pass --prune"
                " to remove them from the index"
            )
        if stats.found == 0 or len(gone) > PRUNE_SHARE * len(known):
            stats.kept_gone = len(gone)
            return []
        return gone

    # --- batches ----------------------------------------------------------------------

    def _encode_all(
        self, todo: list[FileEntry], stats: IndexStats, cancel, emit, load=None
    ) -> None:
        """Decode, encode and store *todo* in chunks. *load* (the encoder's loading, given
        what to call if the CNN is timed) runs while the first chunks decode: 0.45 s at
        the start of a run that nothing overlapped before."""
        bs = self.ctx.settings.batch_size
        chunks = [todo[i : i + bs] for i in range(0, len(todo), bs)]
        done = 0
        storing = ThreadPoolExecutor(1, thread_name_prefix="lookalike-store")
        stored: list[Future] = []  # the batch being stored, at most one

        def drain() -> None:
            """Wait for the batch being stored (its failure is raised here)."""
            for f in stored:
                stats.indexed -= f.result()  # the files the store refused
            stored.clear()

        def store(*args) -> None:
            """Store a batch (band keys, arrays, SQLite) in the storing thread while the CNN
            encodes the next (measured: 1.5 s of a 23 s run of 10,000 pictures was the
            CNN waiting for the store): one at a time, in order."""
            drain()
            stored.append(storing.submit(*args))

        with storing, Decoding(self.ctx, self.ctx.settings.decode_workers, cancel) as decoding:
            ahead = decoding.while_loading(bs) if load is not None else 1
            pending = [decoding.submit(chunk) for chunk in chunks[:ahead]]
            if load is not None:
                try:
                    load(decoding.hold)
                finally:
                    decoding.release()
                # after the load: a first run on a machine times the CNN, alone, in it
                stored.append(storing.submit(self._ready_hashing))
            enc = self.ctx.encoder()
            for ci, chunk in enumerate(chunks):
                if len(pending) < 2 and ci + len(pending) < len(chunks):  # one ahead of the CNN
                    pending.append(decoding.submit(chunks[ci + len(pending)]))
                results, pixels = decoding.results(pending.pop(0), len(chunk))
                batch = Batch()
                for entry, got in zip(chunk, results):
                    if got is None or cancel.is_set():
                        break
                    if isinstance(got, ImageError):
                        stats.failed.append(SkippedFile(entry.relpath, str(got)))
                        batch.failed.append((entry.relpath, entry.size, entry.mtime_ns, str(got)))
                        continue
                    _, digest, pixel_count, thumb, measured = got
                    batch.paths.append(entry.relpath)
                    batch.sizes.append(entry.size)
                    batch.mtimes.append(entry.mtime_ns)
                    batch.digests.append(digest)
                    batch.pixels.append(pixel_count)
                    batch.thumbs.append(thumb)
                    batch.quality.append(measured)
                    emit(done, len(todo), entry.relpath, "encoding")
                if cancel.is_set():
                    for f in (f for group in pending for f in group):
                        f.cancel()
                    break
                encoding = time.perf_counter()
                if batch.paths:
                    codes, feats = encode_batch(enc, pixels)
                    store(self._commit, batch, codes, feats, stats)
                elif batch.failed:
                    store(self._commit_failed, batch)
                decoding.encoded(ci, time.perf_counter() - encoding)
                stats.indexed += len(batch.paths)
                done += len(chunk)
                emit(done, len(todo), chunk[-1].relpath, "encoding")
            drain()  # stored before this returns: a shared job acknowledges its chunk next

    def _ready_hashing(self) -> int:
        """Read or make MinHash's token table (the first band keys' cost)."""
        dim = self.ctx.identity.hash_dim
        self.ctx.identity.band_keys(np.zeros((1, dim), np.float32), np.zeros(dim, np.float32))
        return 0

    def _commit_failed(self, batch: Batch) -> int:
        """Store a batch of files that all failed to decode (their skips); none indexed."""
        self.store.commit(batch)
        return 0

    def _commit(self, batch: Batch, codes: np.ndarray, feats, stats: IndexStats) -> int:
        """Store an encoded batch; returns how many of its files the store refused (each
        added to the skips)."""
        view = self.view
        if view.centre is None:  # the first batch: on a shared store, the first worker's wins
            proj = getattr(self.ctx.encoder(), "projection", None)
            first = centres.fit(codes, feats, proj, 1)
            held = centres.from_meta(self.store.claim_meta(first.to_meta()))
            if held is None:  # a crafted null centre: replaced
                self.store.set_meta(first.to_meta())
            view.set_centre(held or first)
        batch.codes = codes
        keep = feats is not None and self.store.get_meta().get("feature_dim")
        batch.features = feats.astype(np.float16) if keep else None
        batch.band_keys = view.band_keys(codes)
        batch.centre_gen = view.generation
        try:
            refused = self.store.commit(batch)
        except CentreMoved:  # a shared index was refitted meanwhile: re-sign, once
            view.reload_centre()
            batch.band_keys = view.band_keys(codes)
            batch.centre_gen = view.generation
            refused = self.store.commit(batch)
        for path, why in refused:
            stats.failed.append(SkippedFile(path, why))
        view.committed()
        return len(refused)

    # --- upkeep -------------------------------------------------------------------------

    def _refit(self) -> None:
        """A new centre from every stored image, and every band key recomputed for it."""
        view = self.view
        snap = self.store.snapshot()
        live = np.ones(snap.slots, bool)
        live[snap.dead] = False
        idx = np.flatnonzero(live)
        feats = None
        if snap.features is not None:
            feats = _mean_rows(snap.features, idx)
        codes_mean = _mean_rows(snap.codes, idx)
        proj = getattr(self.ctx.encoder(), "projection", None)
        gen = view.generation + 1
        if feats is not None and proj is not None:
            new = centres.Centre(
                (proj.astype(np.float64) @ feats).astype(np.float32),
                feats.astype(np.float32),
                len(idx),
                gen,
            )
        else:
            new = centres.Centre(codes_mean.astype(np.float32), None, len(idx), gen)
        keys = np.empty((snap.slots, snap.band_keys.shape[1]), np.uint64)
        step = 1 << 15
        for lo in range(0, snap.slots, step):
            block = np.asarray(snap.codes[lo : lo + step], np.float32)
            keys[lo : lo + step] = view.band_keys(block, new)
        self.store.rewrite_band_keys(keys, new.to_meta())
        view.set_centre(new)
        view.committed()

    def _upkeep(self) -> None:
        """Refit, compact or re-sort as due. Marked in the index before it starts and
        cleared after: a run killed inside it (leaving the centre of the early images,
        or tables that do not cover the latest) is finished by the next run, even one
        that finds nothing new."""
        self.store.set_meta({"upkeep": 1})
        self._maintain()
        self.store.sweep()
        self.store.set_meta({"upkeep": 0})

    def _maintain(self) -> None:
        self.view.reload_centre()
        centre = self.view.centre
        if centre is not None and centre.due(self.store.count()):
            self._refit()
        snap = self.store.snapshot()
        dead = len(np.unique(snap.dead))
        if snap.slots >= 1000 and dead >= COMPACT_SHARE * snap.slots:
            self.store.compact()
        elif snap.slots - snap.lsh_base >= max(1, RESORT_SHARE * snap.meta.get("lsh_live", 0)):
            self.store.build_lsh_tables()
        self.view.committed()


def _mean_rows(array, rows: np.ndarray) -> np.ndarray:
    """Mean of *array*'s *rows* in float64, read in blocks (it may be a memory map).
    Summed with a float64 accumulator rather than from a float64 copy, in blocks of
    about 4 MB that the allocator reuses: the same sums, without a 100 MB copy of
    10,000 float16 feature rows (0.24 of a 0.48 s refit) and the page faults of it."""
    total = np.zeros(array.shape[1], np.float64)
    step = max(1, (4 << 20) // max(1, array.shape[1] * np.dtype(array.dtype).itemsize))
    for lo in range(0, len(rows), step):
        total += np.asarray(array[rows[lo : lo + step]]).sum(axis=0, dtype=np.float64)
    return total / max(len(rows), 1)
