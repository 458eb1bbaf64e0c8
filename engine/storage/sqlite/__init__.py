"""The embedded store: one SQLite file for what is looked up, flat arrays for what is scanned.

Layout, for an index at ``DIR/.lookalike/index.sqlite``::

    index.sqlite            paths, sizes, mtimes, status, digests, slots; metadata
    index.codes.G           float32 (slots, hash_dim): scanned by every exact search
    index.features.G        float16 (slots, feature_dim): read for a short list only
    index.bands.B           uint64 (slots, bands): LSH band keys of each slot
    index.lsh-keys.L        uint64 (bands, n): band keys sorted, one row per band
    index.lsh-slots.L       int32 (bands, n): the slot of each sorted key

Why: opening an index must not read every row through Python. The arrays are memory
mapped, so opening costs a few system calls and the pages an answer touches; SQLite
keeps what is looked up by path or slot, the metadata, and ``slots``, the number of
array rows committed.

Crash safety: a batch's rows are appended to the arrays past ``slots`` and flushed to
disk first; then one SQLite transaction records its images and the new ``slots``. A
process killed before that commit leaves rows past ``slots`` that no reader looks at
and the next writer overwrites; after it, the batch is complete. Readers take
``slots`` and the list of dead slots in one read transaction, so they never see half
a batch. Files that are rewritten whole (compaction, band keys for a new centre,
sorted LSH tables) get a new generation number ``G``/``B``/``L``, written in full
before the transaction that switches to them; the old files are removed after it
(readers that still map them keep reading them).

Nothing is ever unpickled: arrays are raw little-endian numbers, metadata is JSON.
Every value read is checked (sizes, types, ranges) before it sizes anything.
"""

from __future__ import annotations

from contextlib import suppress

from engine.sandbox import Folder
from engine.storage.sqlite.arrays import every_array_file
from engine.storage.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore", "remove_files"]


def remove_files(folder: Folder, name: str) -> None:
    """Delete the index file *name* of *folder*, its SQLite companions and its arrays."""
    base = name[: -len(".sqlite")] if name.endswith(".sqlite") else name
    for each in [name, name + "-wal", name + "-shm", name + ".lock"]:
        with suppress(FileNotFoundError):
            folder.unlink(each)
    for each in every_array_file(folder, base):
        with suppress(FileNotFoundError):
            folder.unlink(each)
