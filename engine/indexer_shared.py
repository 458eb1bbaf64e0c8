"""An index run on a shared store: several workers, on several machines, index one
collection together. One of them walks the folder and queues the new and changed files
in chunks as it finds them (the others start on the first chunks meanwhile); every
worker takes chunks, encodes and commits them through the same batches as a local run,
and acknowledges each; a chunk a dead worker took is taken over once idle. The queue is
the store's own (:meth:`engine.storage.IndexStore.parallel_job`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from engine.errors import IndexFileError
from engine.images import FileEntry
from engine.results import IndexStats

if TYPE_CHECKING:
    from engine.indexer import IndexContext
    from engine.live import LiveView
    from engine.storage import Store


class SharedRun:
    """The shared half of :class:`engine.indexer.Indexer` (which gives the context, the
    store, the walk, the batches and the upkeep)."""

    if TYPE_CHECKING:
        ctx: IndexContext
        view: LiveView
        store: Store

        def _claim_identity(self, emit: Any = None) -> None: ...
        def _walk(self, stats: IndexStats, cancel: Any, emit: Any, on_entry: Any = None) -> Any: ...
        def _encode_all(
            self, todo: list[FileEntry], stats: IndexStats, cancel: Any, emit: Any
        ) -> None: ...
        def _upkeep(self) -> None: ...

    def _run_shared(self, stats: IndexStats, cancel: threading.Event, emit) -> IndexStats:
        job = self.store.parallel_job()
        emit(0, 0, "", "scanning", force=True)
        self._claim_identity(emit)  # fails early (weights, a clashing identity)
        if job.join(cancel):
            self._queue(job, stats, cancel, emit)
        self.view.reload_centre()  # the last job may have refitted it
        bs = self.ctx.settings.batch_size
        done = 0

        def waiting(left: float | None) -> None:
            if left is not None:
                emit(
                    done,
                    done,
                    f"a chunk another worker took (stopped?): taken over in {left:.0f} s"
                    " unless it is committed first",
                    "waiting",
                    force=True,
                )

        for mid, entries in job.chunks(cancel, waiting):
            if not mid:  # the walker died: walk again
                self._queue(job, stats, cancel, emit)
                continue
            states = self.store.states_of([e.relpath for e in entries])
            todo = [
                e
                for e, st in zip(entries, states)
                if st is None or (st.size, st.mtime_ns) != (e.size, e.mtime_ns)
            ]
            if todo and not any((self.ctx.root / e.relpath).exists() for e in todo):
                # None of the chunk's files is here: this machine was given another folder
                # than the one the job walked. Leave the chunk to the workers that see it
                # (it is taken over once idle) rather than record its files as failed.
                raise IndexFileError(
                    f"none of the files queued for {self.store.location} is under"
                    f" {self.ctx.root}: give every worker the same collection"
                    " (mounted at any path)"
                )
            total = max(job.queued() * bs, done + len(todo))

            def shifted(d, _t, current, phase, force=False, base=done, total=total):
                emit(base + d, total, current, phase, force)

            self._encode_all(todo, stats, cancel, shifted)
            if cancel.is_set():
                break
            job.ack(mid)
            done += len(entries)
        stats.cancelled = stats.cancelled or cancel.is_set()
        if not stats.cancelled:
            emit(done, done, "", "finishing", force=True)
            job.finish(self._upkeep)
        emit(done, done, "", "done", force=True)
        return stats

    def _queue(self, job, stats: IndexStats, cancel, emit) -> None:
        """The walker's part: diff, drop what is gone, queue the rest in chunks. Chunks go
        out as the walk finds them, so at millions of files the other workers start on
        the first ones while the walk goes on."""
        bs = self.ctx.settings.batch_size
        chunk: list[FileEntry] = []
        counts = {"todo": 0, "queued": 0}

        def found(entry: FileEntry, n_todo: int) -> None:
            job.renew()
            if n_todo > counts["todo"]:  # the walk found this one new or changed
                counts["todo"] = n_todo
                chunk.append(entry)
                if len(chunk) >= bs:
                    counts["queued"] += 1
                    job.enqueue(list(chunk), counts["queued"])
                    chunk.clear()

        try:
            self._walk(stats, cancel, emit, on_entry=found)
        except BaseException:
            job.release()  # a refused walk (say, the wrong folder) leaves no lease to wait out
            raise
        if cancel.is_set():
            stats.cancelled = True
            return  # what was queued stays queued; the next walker queues the rest
        if chunk:
            job.enqueue(chunk, counts["queued"] + 1)
        job.walked()
