"""The searchable view of a store, kept current while it changes.

Searching and indexing run at once (the app searches while it indexes, other processes
and machines commit to a shared index): searches see every batch committed so far. This
module holds what both sides share: the collection's centre and the current
:class:`engine.vectors.VectorIndex`. A commit by this process marks the view stale at
once (:meth:`LiveView.committed`); commits by others are noticed through the store's
``version()``, asked at most every :data:`RECHECK` seconds.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.centre import Centre
from engine.centre import from_meta as centre_from_meta
from engine.identity import Identity, checked_meta
from engine.storage import Store
from engine.vectors import VectorIndex

#: Seconds between two looks at whether other processes committed to the index.
RECHECK = 0.5


class LiveView:
    """A store's centre and searchable vectors, for the searcher and the indexer."""

    def __init__(self, store: Store, identity: Identity, meta: dict) -> None:
        self.store, self.identity = store, identity
        self._lock = threading.RLock()
        self._centre: Centre | None = centre_from_meta(meta)
        self._vectors: VectorIndex | None = None
        self._stale = True
        self._version: tuple = ()
        self._recheck_at = 0.0

    @property
    def centre(self) -> Centre | None:
        return self._centre

    @property
    def generation(self) -> int:
        """The current centre's generation (asked once the first batch has set one)."""
        if self._centre is None:
            raise ValueError("no centre yet: the first batch sets it")
        return self._centre.generation

    def set_centre(self, centre: Centre) -> None:
        with self._lock:
            self._centre = centre
            self._stale = True

    def reload_centre(self) -> None:
        """Take the stored centre if it differs from this process's (another process, or
        another machine of a shared index, fitted or refitted it)."""
        meta = self.store.get_meta()
        with self._lock:
            self._take_centre(meta)

    def _take_centre(self, meta: dict) -> None:
        gen = meta.get("centre_gen")
        if gen is not None and (self._centre is None or self._centre.generation != gen):
            self._centre = centre_from_meta(checked_meta(self.store, meta))
            self._stale = True

    def band_keys(self, codes: np.ndarray, centre: Centre | None = None) -> np.ndarray:
        """LSH band keys of *codes* around *centre* (default: the current one)."""
        use = centre or self._centre
        if use is None:
            raise ValueError("no centre yet: the first batch sets it")
        return self.identity.band_keys(codes, use.codes)

    def committed(self) -> None:
        """The store changed (a batch, a refit, a compaction): searches take a new view."""
        with self._lock:
            self._stale = True

    def vectors(self) -> VectorIndex:
        """The current searchable view (a new one after every commit, reusing what it can)."""
        with self._lock:
            now = time.monotonic()
            if self._vectors is not None and not self._stale and now >= self._recheck_at:
                self._recheck_at = now + RECHECK
                if self.store.version() != self._version:
                    self._stale = True
            if self._vectors is None or self._stale:
                self._version = self.store.version()
                self._recheck_at = now + RECHECK
                snap = self.store.snapshot()
                self._take_centre(snap.meta)
                self._stale = False
                ident = self.identity
                fresh = VectorIndex(snap, self._centre, ident.bands, ident.rows, self.store.damaged)
                if self._vectors is not None:
                    fresh.follows(self._vectors)
                self._vectors = fresh
            return self._vectors
