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

Backends: ``sqlite:`` (the default, embedded; :mod:`engine.storage.sqlite`) and
``redis://`` (one index shared by several machines; :mod:`engine.storage.redis`). Each
passes the contract tests in ``tests/test_storage.py``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.sandbox import Folder

from engine.errors import (  # noqa: F401  (re-exported: where the store's errors were)
    BadStoreURL,
    DiskFull,
    IndexBusy,
    IndexDamaged,
    IndexFileError,
    NewerIndex,
    OlderIndex,
)

#: Cached verdicts longer than this many bytes are not read (lookalike writes under 512;
#: a crafted one may be megabytes). Rejected pairs: paths of at most PATH_BYTES each, and
#: at most REJECTIONS_MAX pairs.
VERDICT_BYTES = 1024
PATH_BYTES = 4096
REJECTIONS_MAX = 1_000_000
#: What a person chose in triage, kept in the index by kind: ``keep`` (the picture kept
#: in its group; the value is its content digest: a changed file is chosen no more),
#: ``mark`` (marked to set aside; value as for keep), ``not-leak`` (the value is the other
#: folder's path that is no leak of this one).
CHOICE_KINDS = ("keep", "mark", "not-leak")
#: Named blobs a store keeps for triage (its candidate graph), at most this many bytes.
BLOB_MAX = 1 << 30


class Retry(Exception):
    """Not an error: a signal from a store that the caller's view went out of date while it
    worked, caught where the work is started again. Never reaches the user, so it is
    outside the :class:`~engine.errors.LookalikeError` tree."""


class SnapshotMoved(Retry):
    """A writer rewrote the arrays (compaction) after this reader's snapshot: take a new
    snapshot and ask again."""


class CentreMoved(Retry):
    """A batch's band keys were made with another centre than the index holds now (a
    shared index refitted meanwhile): make them again with the stored centre."""


def checked_pairs(pairs) -> set[tuple[str, str]]:
    """Rejected pairs as stored, keeping only pairs of two different paths inside the
    folder, each sorted (what :meth:`Store.reject` writes)."""
    from engine.names import check_relpath

    out = set()
    for a, b in pairs:
        if a != b and check_relpath(a) is None and check_relpath(b) is None:
            out.add((a, b) if a < b else (b, a))
    return out


def checked_choices(rows) -> dict[str, bytes]:
    """Chosen (path, value) rows as stored, keeping only paths inside the folder and
    values of at most PATH_BYTES bytes."""
    from engine.names import check_relpath

    out = {}
    for path, value in rows:
        if isinstance(value, bytes) and len(value) <= PATH_BYTES and check_relpath(path) is None:
            out[path] = value
    return out


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
    ``paths``. ``digests`` are SHA-256 of the files' bytes (32 bytes each), ``dhashes``
    the pictures' difference hashes, ``pixels`` their pixel counts; any may be None.
    """

    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    digests: list[bytes | None] = field(default_factory=list)
    dhashes: list[int | None] = field(default_factory=list)
    pixels: list[int | None] = field(default_factory=list)
    #: 16 x 16 greyscale thumbnails (256 bytes, :func:`engine.copies.thumbnail`)
    thumbs: list[bytes | None] = field(default_factory=list)
    #: the picture's measurements for data-set triage (28 bytes, :mod:`engine.quality`)
    quality: list[bytes | None] = field(default_factory=list)
    codes: np.ndarray | None = None
    features: np.ndarray | None = None
    band_keys: np.ndarray | None = None
    failed: list[tuple[str, int, int, str]] = field(default_factory=list)  # path, size, mtime, why
    delete: list[str] = field(default_factory=list)
    #: the centre generation the band keys were made with (None: not checked)
    centre_gen: int | None = None


@dataclass
class ImageFacts:
    """Per usable image, by slot order of ``slots``: what triage needs besides vectors.
    ``dhash`` and ``pixels`` are 0 where unknown (``known`` says which are)."""

    slots: np.ndarray  # int64
    paths: list[str]
    mtimes: np.ndarray  # int64 ns
    dhash: np.ndarray  # uint64
    known: np.ndarray  # bool: dhash computed
    pixels: np.ndarray  # int64
    digests: list[bytes | None]
    #: each image's thumbnail for copy detection (None: not stored; made from the file)
    thumbs: list[bytes | None] = field(default_factory=list)
    #: each image's quality measurements (None: indexed before they were taken)
    quality: list[bytes | None] = field(default_factory=list)


def row_runs(rows: np.ndarray, chunk: int | None = None):
    """Sort *rows* into runs of consecutive rows (split at multiples of *chunk* too):
    ``(order, sorted_rows, starts, ends)``, each run ``sorted_rows[start:end]``, so a
    reader fetches a run at once and puts it back with ``out[order] = ...``."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    step = np.diff(srt) != 1
    if chunk is not None:
        step |= np.diff(srt // chunk) != 0
    breaks = np.flatnonzero(step) + 1
    return order, srt, np.concatenate([[0], breaks]), np.concatenate([breaks, [len(srt)]])


class Rows:
    """Rows of a (rows, width) array kept elsewhere, read by index, slice or array of
    indices; subclasses say how a sorted run is fetched (:meth:`_read`)."""

    dtype: np.dtype
    shape: tuple[int, int]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(self.shape[0]))
        scalar = np.ndim(index) == 0
        rows = np.atleast_1d(np.asarray(index, np.int64))
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError("row out of range")
        out = self._read(rows) if len(rows) else np.empty((0, self.shape[1]), self.dtype)
        return out[0] if scalar else out

    def _read(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RowFile(Rows):
    """A flat array file read by rows with ``pread``, never mapped.

    For arrays a query reads only a few scattered rows of (the features of a short
    list): a memory map would leave the pages around every row it touched resident
    (the kernel maps 64 KB around each fault), which at a million images added 5 MB
    of resident memory per query. Runs of consecutive rows are read at once.
    """

    def __init__(
        self, path: str, dtype: np.dtype, shape: tuple[int, int], fd: int | None = None
    ) -> None:
        """*fd*: the file, already opened (and checked) by the store; this object owns it."""
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self._row = shape[1] * self.dtype.itemsize
        if fd is None and shape[0] and shape[1]:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._fd = -1 if fd is None else fd

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Each run straight into the rows' place (``preadv``, no copy of the bytes), and
        put back in the order asked only where that was not rising already: reading the
        25 MB of features of 10,000 images took 0.11 s with a copy per run and one to
        reorder, about a third of a refit."""
        order, srt, starts, ends = row_runs(rows)
        buf = np.empty((len(rows), self.shape[1]), self.dtype)
        into = memoryview(buf.data).cast("B")
        for a, b in zip(starts, ends):
            self._fill(into[a * self._row : b * self._row], int(srt[a]) * self._row)
        if len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1])):
            return buf
        out = np.empty_like(buf)
        out[order] = buf
        return out

    def _fill(self, into: memoryview, offset: int) -> None:
        """Fill *into* from *offset* of the file (a read may return less than asked:
        one over 2 GB does on Linux)."""
        done = 0
        while done < len(into):
            got = os.preadv(self._fd, [into[done:]], offset + done)
            if got <= 0:
                raise IndexFileError(f"{self.path} is shorter than its index says")
            done += got

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)


class SortedBands:
    """LSH band keys sorted per band, with the slot of each, read on demand.

    ``keys`` and ``slots`` are (bands, width) row files; ``fences`` (in memory) holds
    every ``step``-th key of each band, so a lookup reads one block of ``step`` keys per
    band (two small ``pread`` calls), not a binary search over a mapped file.
    """

    def __init__(self, keys: RowFile, slots: RowFile, fences: np.ndarray, step: int) -> None:
        self.keys, self.slots, self.fences, self.step = keys, slots, fences, step
        self.bands, self.width = keys.shape

    def lookup(self, band: int, key) -> np.ndarray:
        """The slots whose band *band* has *key*."""
        fence = self.fences[band]
        lo_block = max(int(np.searchsorted(fence, key, "left")) - 1, 0)
        hi_block = int(np.searchsorted(fence, key, "right"))
        lo, hi = lo_block * self.step, min(hi_block * self.step, self.width)
        if hi <= lo:
            return np.zeros(0, np.int64)
        base = band * self.width
        keys = _read_flat(self.keys, base + lo, hi - lo)
        a, b = np.searchsorted(keys, key, "left"), np.searchsorted(keys, key, "right")
        if b <= a:
            return np.zeros(0, np.int64)
        return _read_flat(self.slots, base + lo + a, b - a).astype(np.int64)


def _read_flat(rows: RowFile, start: int, count: int) -> np.ndarray:
    """*count* values from flat position *start* of a row file (rows laid end to end)."""
    out = np.empty(count, rows.dtype)
    rows._fill(memoryview(out.data).cast("B"), start * rows.dtype.itemsize)
    return out


@dataclass
class Snapshot:
    """What a reader sees: the first ``slots`` rows of each array, as committed.

    ``codes`` and ``band_keys`` may be memory maps (exact search reads every code);
    ``features`` is read by rows (:class:`RowFile`). ``dead`` lists the slots below
    ``slots`` that no image uses any more (replaced or deleted). ``generation`` changes
    when the store rewrites its arrays or band keys (compaction, a new centre). The
    sorted LSH tables (``lsh``) cover the slots below ``lsh_base``.
    """

    slots: int
    codes: np.ndarray
    features: Rows | None
    band_keys: np.ndarray
    dead: np.ndarray
    meta: dict
    generation: int
    lsh_base: int = 0
    #: SortedBands, or a store's own buckets answering every band at once (``lookup_all``:
    #: a shared index's, in one round trip); :class:`engine.lsh.BandTable` takes either
    lsh: Any = None


# the store's two halves, re-exported; below the types they use (no import circle)
from engine.storage.base import Annotations as Annotations  # noqa: E402
from engine.storage.base import IndexStore as IndexStore  # noqa: E402
from engine.storage.base import Store  # noqa: E402


def is_redis(url: str) -> bool:
    """Whether *url* names a Redis store: the one place a store URL is classified."""
    return url.startswith(("redis://", "rediss://"))


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        return path[2:] if path.startswith("//") else path
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise BadStoreURL(
            f"unknown store {scheme}://: use sqlite:PATH or redis://HOST:PORT/DB?name=INDEX"
        )
    return url


def open_store(
    url: str, root: str | None = None, create: bool = True, folder: Folder | None = None
) -> Store:
    """Open the store at *url*: ``sqlite:PATH`` (or a plain path) for the embedded
    default, ``redis://[:PASSWORD@]HOST:PORT/DB?name=INDEX`` for a shared index. *root*
    is the indexed folder, named in messages; *folder* the SQLite index's folder, already
    opened (:class:`engine.sandbox.Folder`)."""
    if is_redis(url):
        from engine.storage.redis import RedisStore

        return RedisStore(url, root=root)
    from engine.storage.sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(url), create=create, root=root, folder=folder)


def open_index(
    url: str | None,
    root: str,
    index_path: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> Store:
    """The store for an indexed folder *root*: *url* when given (``redis://...``,
    ``sqlite:PATH`` or a path), else *index_path*, else ``ROOT/.lookalike/index.sqlite``
    (or a per-user cache file when ROOT cannot be written). With *rebuild*, an index too
    old or too damaged to open is removed and made anew (at the default place, so is a
    file that is no index at all), and any other is emptied. The store's ``location`` is
    what messages show (a path, or a URL without its password)."""
    from engine.paths import INDEX_FILENAME, default_index_path
    from engine.sandbox import Folder, index_folder

    if url and is_redis(url):
        return _open_or_rebuild(lambda: open_store(url, root=root), url, None, rebuild)
    given = index_path or (_sqlite_path(url) if url else None)
    path = given or default_index_path(Path(root))
    own = not given and path == Path(root).resolve() / ".lookalike" / INDEX_FILENAME
    folder = (
        index_folder(root)
        if own
        else Folder.anchor(os.path.dirname(os.path.abspath(path)), create=True)
    )

    def reopen() -> Store:
        return open_store(str(path), root=root, folder=folder.sub(""))

    try:
        return _open_or_rebuild(reopen, str(path), (folder, own), rebuild)
    finally:
        folder.close()


def _open_or_rebuild(opener, url: str, place, rebuild: bool) -> Store:
    """``opener()``; with *rebuild*, an index lookalike recognises but cannot use is
    removed first, and any index is emptied. *place*: the SQLite index's folder and
    whether it is the folder's own index place (None for Redis)."""
    try:
        store = opener()
    except (OlderIndex, NewerIndex, IndexDamaged, IndexFileError) as exc:
        ours = isinstance(exc, (OlderIndex, NewerIndex, IndexDamaged))
        if not rebuild or not (ours or _garbage(exc)):
            raise
        if not ours and (place is None or not place[1]):
            # a file that is no index at all is removed only from the folder's own place
            raise IndexFileError(
                f"{exc.args[0].split('; ')[0]}: not removed, it is not in the folder's own"
                " index place; remove it yourself, or name another --index"
            ) from None
        remove_index(url, place[0] if place else None)
        store = opener()
    if rebuild:
        store.clear()
    return store


def _garbage(exc: Exception) -> bool:
    """Whether *exc* says the index file is not a database (overwritten, or crafted)."""
    text = str(exc)
    return "not a database" in text or "not a lookalike index" in text or "malformed" in text


def remove_index(url: str, folder: Folder | None = None) -> None:
    """Delete the index at *url* whole (``--rebuild`` of an index too old or too damaged
    to open). Only called once the store has recognised the index as lookalike's, or on
    the folder's own index place."""
    if is_redis(url):
        from engine.storage.redis import remove_all

        remove_all(url)
        return
    from engine.sandbox import Folder
    from engine.storage.sqlite import remove_files

    path = _sqlite_path(url)
    if folder is None:
        with Folder.anchor(os.path.dirname(os.path.abspath(path))) as own:
            remove_files(own, os.path.basename(path))
    else:
        remove_files(folder, os.path.basename(path))
