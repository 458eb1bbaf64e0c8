"""Indexing one shared index from several machines at once, through Redis Streams.

Every ``lookalike index DIR --store redis://...`` is a *worker*. A run of the index is a
*job*: one worker (the *walker*, holding a short lease it keeps renewing) walks the
folder, drops the paths gone from disk, and appends the new and changed files to a
stream in chunks of one batch. Every worker, the walker too once it has walked, reads
chunks through one consumer group (``XREADGROUP``), so each chunk goes to one worker;
it encodes and commits the chunk, then acknowledges it (``XACK``). A chunk whose worker
died stays pending; once it has been idle for the claim time (``LOOKALIKE_CLAIM_IDLE``
seconds, default 60) another worker takes it over (``XAUTOCLAIM``). Files already
stored with the same size and mtime are skipped when a chunk is read, so a chunk taken
over after its first worker committed but before it acknowledged costs no CNN twice.

When the walk is over and no chunk is left unread or pending, the first worker to take
the upkeep lock refits the centre if the collection has doubled since it was fitted,
then marks the job done; the others return. A walker that dies mid-walk loses its
lease; a waiting worker takes the lease and walks again (the walk is sorted, and files
already queued are counted, so it appends only what was not queued).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from engine.images import FileEntry
from engine.storage.redis.connection import guarded

#: Seconds a chunk may stay unacknowledged before another worker takes it over.
CLAIM_IDLE = 60.0
#: Seconds the walker's lease lasts without renewal.
LEASE = 30.0
_ENTRY = struct.Struct("<qqH")


def claim_idle() -> float:
    """The claim time, from ``LOOKALIKE_CLAIM_IDLE`` (seconds) or :data:`CLAIM_IDLE`."""
    raw = os.environ.get("LOOKALIKE_CLAIM_IDLE", "")
    try:
        value = float(raw) if raw else CLAIM_IDLE
    except ValueError:
        value = CLAIM_IDLE
    return max(value, 0.5)


def pack_entries(entries: list[FileEntry]) -> bytes:
    out = bytearray()
    for e in entries:
        raw = os.fsencode(e.relpath)
        out += _ENTRY.pack(e.size, e.mtime_ns, len(raw)) + raw
    return bytes(out)


def unpack_entries(data: bytes) -> list[FileEntry]:
    """The entries of one chunk; a malformed chunk gives none (and is acknowledged)."""
    out = []
    at = 0
    while at + _ENTRY.size <= len(data):
        size, mtime, n = _ENTRY.unpack_from(data, at)
        at += _ENTRY.size
        if at + n > len(data):
            return []
        out.append(FileEntry(os.fsdecode(data[at : at + n]), size, mtime))
        at += n
    return out


class Job:
    """One worker's handle on the shared run of a :class:`engine.storage.redis.RedisStore`."""

    def __init__(self, store) -> None:
        self.store = store
        self.r = store.r
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stream = store.k("work")
        self.group = b"workers"
        self.job = store.k("job")
        self.lease = store.k("walker")
        self.upkeep = store.k("upkeep")
        self.idle_ms = int(claim_idle() * 1000)
        self._renewed = 0.0

    def errors(self):
        """Redis client errors inside become one-line errors, as in the store."""
        return self.store.errors()

    # --- joining ----------------------------------------------------------------------

    @guarded
    def join(self, cancel: threading.Event) -> bool:
        """Join the current job, or start one; True when this worker must walk."""
        while not cancel.is_set():
            job = self.r.hgetall(self.job)
            if job and job.get(b"done") != b"1":
                # walk again only where its walker died (the lease ran out)
                return job.get(b"walked") != b"1" and self._take_lease()
            if self._take_lease():
                pipe = self.r.pipeline(transaction=True)
                pipe.delete(self.stream)
                pipe.xgroup_create(self.stream, self.group, id="0", mkstream=True)
                pipe.delete(self.job)
                pipe.hset(self.job, mapping={"id": uuid.uuid4().hex, "walked": 0, "done": 0})
                pipe.hset(self.job, "queued", 0)
                pipe.execute()
                return True
            time.sleep(0.2)  # another worker is starting a job
        return False

    def _take_lease(self) -> bool:
        got = bool(self.r.set(self.lease, self.me, nx=True, px=int(LEASE * 1000)))
        self._renewed = time.monotonic()
        return got

    @guarded
    def renew(self) -> None:
        """Keep the walker's lease (called as the walk goes; cheap when recent)."""
        now = time.monotonic()
        if now - self._renewed > LEASE / 6:
            self._renewed = now
            self.r.pexpire(self.lease, int(LEASE * 1000))

    @guarded
    def release(self) -> None:
        self.store.release_script(keys=[self.lease], args=[self.me])

    # --- the walker's side ---------------------------------------------------------------

    @guarded
    def queued(self) -> int:
        return int(self.r.hget(self.job, "queued") or 0)

    @guarded
    def enqueue(self, chunk: list[FileEntry], queued_after: int) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.stream, {b"e": pack_entries(chunk)})
        pipe.hset(self.job, "queued", queued_after)
        pipe.execute()
        self.renew()

    @guarded
    def walked(self) -> None:
        self.r.hset(self.job, "walked", 1)
        self.release()

    # --- every worker's side ---------------------------------------------------------------

    def chunks(
        self, cancel: threading.Event, on_wait: Callable[[float | None], None] | None = None
    ) -> Iterator[tuple[bytes, list[FileEntry]]]:
        """Chunks for this worker until the job has none left (the caller acknowledges
        each with :meth:`ack` once committed). While it waits on chunks other workers
        hold, *on_wait* gets the seconds until the oldest may be taken over."""
        with self.errors():
            yield from self._chunks(cancel, on_wait)

    def _chunks(self, cancel, on_wait):
        import redis

        while not cancel.is_set():
            try:
                _next, claimed, *_ = self.r.xautoclaim(
                    self.stream, self.group, self.me, self.idle_ms, start_id="0-0", count=1
                )
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # another worker closed the job meanwhile
                raise
            msgs = [(mid, f) for mid, f in claimed if f]
            walked = self.r.hget(self.job, "walked") == b"1"
            if not msgs:
                got = self.r.xreadgroup(self.group, self.me, {self.stream: ">"}, count=1, block=500)
                msgs = [(mid, f) for _s, items in got for mid, f in items if f]
            if msgs:
                for mid, fields in msgs:
                    yield mid, unpack_entries(fields.get(b"e", b""))
                continue
            if walked:
                if int(self.r.xpending(self.stream, self.group)["pending"]) == 0:
                    return
            elif not self.r.exists(self.lease) and self._take_lease():
                yield b"", []  # the walker died: the caller walks again
                continue
            if on_wait is not None:
                on_wait(self._takeover_in() if walked else None)

    def _takeover_in(self) -> float | None:
        """Seconds until the longest-idle pending chunk may be taken over (None: none is
        pending), so a worker waiting on a chunk another one left says so."""
        pending = self.r.xpending_range(self.stream, self.group, "-", "+", 100)
        if not pending:
            return None
        idle = max(int(p.get("time_since_delivered", 0)) for p in pending)
        return max(0.0, (self.idle_ms - idle) / 1000)

    @guarded
    def ack(self, mid: bytes) -> None:
        if mid:
            self.r.xack(self.stream, self.group, mid)

    @guarded
    def finish(self, upkeep: Callable[[], None]) -> bool:
        """Run *upkeep* and close the job if no other worker does; True if this one did."""
        if not self.r.set(self.upkeep, self.me, nx=True, px=int(600 * 1000)):
            return False
        try:
            if self.r.hget(self.job, "done") == b"1":
                return False
            upkeep()
            self.r.hset(self.job, "done", 1)
            self.r.delete(self.stream)
            return True
        finally:
            self.store.release_script(keys=[self.upkeep], args=[self.me])
