"""The two halves of a store, as base classes both backends inherit (and the type checker
holds them to): :class:`IndexStore`, the index itself (records, vectors, band keys, the
metadata), and :class:`Annotations`, what triage and people add beside it (cached copy
verdicts, rejected pairs, choices, named blobs). A store is both (:class:`Store`).

The engine never asks which kind of store it has: what differs is said by the
attributes of :class:`IndexStore`. Every member is abstract: a backend that leaves one
out cannot be made (the contract tests in ``tests/test_storage.py`` then run each
against both)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.errors import IndexDamaged
    from engine.storage import Batch, ImageFacts, Snapshot, StoredFile


class IndexStore(ABC):
    """The index: a record per file, vectors per usable picture, the metadata."""

    location: str  # for messages: a path or a URL without its password
    readonly: bool
    readonly_why: str  # "read-only media", "disk full"
    #: several processes on several machines write it at once (``writer()`` excludes no
    #: one; an index run takes its share through :mod:`engine.storage.redis.streams`)
    shared: bool
    #: keeps the pooled features for re-ranking (False: asked to hold codes only)
    keep_features: bool
    #: the store's kind, in words for summaries ("SQLite", "Redis, shared")
    kind: str

    def parallel_job(self) -> Any:
        """The queue several workers share an index run through (a shared store's; a
        local store has none: one process indexes it)."""
        raise NotImplementedError(f"{self.kind} is not shared: one process indexes it")

    @abstractmethod
    def damaged(self, why: str) -> IndexDamaged:
        """The damaged-index error of this store, saying *why*."""

    @abstractmethod
    def get_meta(self) -> dict: ...

    @abstractmethod
    def set_meta(self, values: dict) -> None: ...

    @abstractmethod
    def claim_meta(self, values: dict) -> dict:
        """Store *values* unless the first of them is stored already (atomically, against
        every other writer); return the metadata that holds now."""

    @abstractmethod
    def states_of(self, paths: list[str]) -> list[StoredFile | None]: ...

    @abstractmethod
    def writer(self) -> AbstractContextManager[None]:
        """Held while indexing: one writer at a time (a shared store excludes no one)."""

    @abstractmethod
    def file_states(self) -> dict[str, StoredFile]: ...

    @abstractmethod
    def failures(self) -> list[tuple[str, str]]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def commit(self, batch: Batch) -> list[tuple[str, str]]:
        """Write *batch* in one transaction; returns the (path, why) of rows refused."""

    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    @abstractmethod
    def version(self) -> tuple:
        """Changes whenever a commit lands (asked by long-lived searchers)."""

    @abstractmethod
    def paths_of(self, slots: np.ndarray) -> list[str]: ...

    @abstractmethod
    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None: ...

    @abstractmethod
    def image_facts(self) -> ImageFacts: ...

    @abstractmethod
    def rewrite_band_keys(self, band_keys: np.ndarray, meta: dict) -> None: ...

    @abstractmethod
    def build_lsh_tables(self) -> None: ...

    @abstractmethod
    def compact(self) -> int: ...

    @abstractmethod
    def sweep(self) -> None: ...

    @abstractmethod
    def clear(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class Annotations(ABC):
    """What triage and people keep beside the index. Every read is strict (a value of
    another shape is left out, as if never written); every write may be refused by a
    read-only or full index, which triage then goes without."""

    @abstractmethod
    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        """Cached copy verdicts of the pairs *keys* (those of lookalike's shape only)."""

    @abstractmethod
    def put_verdicts(self, items: dict[bytes, str]) -> None: ...

    @abstractmethod
    def forget_verdicts(self) -> None: ...

    @abstractmethod
    def rejections(self) -> set[tuple[str, str]]:
        """Pairs of paths the user said are not copies (each sorted)."""

    @abstractmethod
    def reject(self, a: str, b: str) -> None: ...

    @abstractmethod
    def forget_rejections(self) -> int: ...

    @abstractmethod
    def choices(self, kind: str) -> dict[str, bytes]:
        """What was chosen of *kind* (:data:`engine.storage.CHOICE_KINDS`): path -> value,
        rows of any other shape left out."""

    @abstractmethod
    def set_choices(self, kind: str, add: dict[str, bytes], remove: Sequence[str] = ()) -> None: ...

    @abstractmethod
    def get_blob(self, name: str) -> bytes | None: ...

    @abstractmethod
    def put_blob(self, name: str, data: bytes) -> None: ...


class Store(IndexStore, Annotations):
    """A whole store: the index and what is kept beside it."""
