"""Where an index lives, behind one interface: :class:`Store`, opened by :func:`open_store`.

The search engine never sees SQL or files. A store keeps, per image, a *stable id* (a
64-bit hash of the path's bytes: the same path has the same id in every store and on
every machine, which a shared store relies on), the path, size and mtime, whether it
could be used (and why not), its content digest, and for usable images a *slot*: the
row of its vectors in the store's arrays. Vectors per slot: the code (``hash_dim``
float32, scanned by exact search), the backbone's pooled features (float16, read
only to re-rank a short list) and the LSH band keys (uint64).

Every write is a :class:`Batch` committed at once: a reader sees all of it or none of
it, and a process killed mid-batch loses that batch only.

Backends: ``sqlite:`` (the default; :mod:`engine.storage.sqlite`). Each passes the
contract tests in ``tests/test_storage.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.errors import LookalikeError


class IndexFileError(LookalikeError):
    """An index that cannot be opened or used; the message is one line for the user."""


class IndexDamaged(IndexFileError):
    """An index whose content cannot be right (crafted, or damaged on disk)."""

    def __init__(self, location: str, why: str, root: str | None = None) -> None:
        self.location, self.why = location, why
        super().__init__(
            f"the index {location} is damaged ({why}); run lookalike index"
            f" {root or 'DIR'} --rebuild"
        )


class OlderIndex(IndexFileError):
    """An index written by an older lookalike, in a layout this one does not read."""


class IndexBusy(IndexFileError):
    """Another process is writing the index (searching still works)."""


class SnapshotMoved(IndexFileError):
    """A writer rewrote the arrays (compaction) after this reader's snapshot: take a new
    snapshot and ask again."""

    def __init__(self) -> None:
        super().__init__("the index was rewritten while it was read; try again")


def image_id(path: str) -> int:
    """The stable id of a path relative to the root: 64 bits of BLAKE2b of its bytes, as
    a signed integer (SQLite's integer type). Two paths sharing an id are reported as a
    skip, never merged; at a billion images the chance of one is about 3 in 100."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True)
class StoredFile:
    size: int
    mtime_ns: int
    ok: bool


@dataclass
class Batch:
    """One commit: usable images with their vectors, failed files, deleted paths.

    ``codes`` (n, hash_dim) float32, ``features`` (n, feature_dim) float16 or None when
    the encoder gives none, ``band_keys`` (n, bands) uint64, all in the order of
    ``paths``. ``digests`` are SHA-256 of the files' bytes (32 bytes each) or None.
    """

    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    digests: list[bytes | None] = field(default_factory=list)
    codes: np.ndarray | None = None
    features: np.ndarray | None = None
    band_keys: np.ndarray | None = None
    failed: list[tuple[str, int, int, str]] = field(default_factory=list)  # path, size, mtime, why
    delete: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    """What a reader sees: the first ``slots`` rows of each array, as committed.

    Arrays may be memory maps: touch only what you need. ``dead`` lists the slots
    below ``slots`` that no image uses any more (replaced or deleted). ``generation``
    changes when the store rewrites its arrays or band keys (compaction, a new centre).
    """

    slots: int
    codes: np.ndarray
    features: np.ndarray | None
    band_keys: np.ndarray
    dead: np.ndarray
    meta: dict
    generation: int
    lsh_base: int = 0
    lsh_keys: np.ndarray | None = None  # (bands, lsh_base) sorted band keys
    lsh_slots: np.ndarray | None = None  # (bands, lsh_base) the slot of each sorted key


class Store(Protocol):
    """What the engine needs from storage, and nothing more."""

    location: str  # for messages: a path or a URL without its password
    readonly: bool

    def get_meta(self) -> dict: ...
    def set_meta(self, values: dict) -> None: ...
    def writer(self) -> AbstractContextManager[None]: ...
    def file_states(self) -> dict[str, StoredFile]: ...
    def failures(self) -> list[tuple[str, str]]: ...
    def count(self) -> int: ...
    def commit(self, batch: Batch) -> None: ...
    def snapshot(self) -> Snapshot: ...
    def paths_of(self, slots: np.ndarray) -> list[str]: ...
    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None: ...
    def digests(self) -> Iterator[tuple[int, bytes]]: ...
    def rewrite_band_keys(self, band_keys: np.ndarray, meta: dict) -> None: ...
    def build_lsh_tables(self) -> None: ...
    def compact(self) -> int: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        return path[2:] if path.startswith("//") else path
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise IndexFileError(f"unknown store {scheme}://: use sqlite:PATH")
    return url


def open_store(url: str, root: str | None = None, create: bool = True) -> Store:
    """Open the store at *url*: ``sqlite:PATH`` (or a plain path) for the embedded
    default. *root* is the indexed folder, named in messages."""
    from engine.storage.sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(url), create=create, root=root)


def remove_index(url: str) -> None:
    """Delete the index at *url* whole (``--rebuild`` of an index too old or too damaged
    to open). Only called once the store has recognised the index as lookalike's."""
    from engine.storage.sqlite import remove_files

    remove_files(_sqlite_path(url))
