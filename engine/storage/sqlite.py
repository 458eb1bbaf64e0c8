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

import errno
import fcntl
import json
import mmap
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from engine.names import printable
from engine.storage import (
    Batch,
    DiskFull,
    ImageFacts,
    IndexBusy,
    IndexDamaged,
    IndexFileError,
    NewerIndex,
    OlderIndex,
    RowFile,
    Snapshot,
    SnapshotMoved,
    SortedBands,
    StoredFile,
    image_id,
)

_Moved = SnapshotMoved

#: 3: codes, features and band keys in arrays beside the database; stable image ids.
#: 4: each image's difference hash and pixel count (for triage).
SCHEMA_VERSION = 4

CODE_DTYPE = np.dtype("<f4")
FEATURE_DTYPE = np.dtype("<f2")
KEY_DTYPE = np.dtype("<u8")
SLOT_DTYPE = np.dtype("<i4")
ARRAY_KINDS = ("codes", "features", "bands", "lsh-keys", "lsh-slots", "lsh-fences")
#: Generations of the array files are whole numbers up to this.
GEN_MAX = (1 << 31) - 1
#: Every LSH_STEP-th sorted key of each band is kept in memory (the "fences").
LSH_STEP = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    slot INTEGER UNIQUE,
    digest BLOB,
    dhash INTEGER,
    pixels INTEGER,
    thumb BLOB,
    quality BLOB
);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
CREATE TABLE IF NOT EXISTS dead (slot INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS verdicts (pair BLOB PRIMARY KEY, verdict TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (a BLOB NOT NULL, b BLOB NOT NULL, PRIMARY KEY (a, b));
"""


def _encode_path(path: str) -> bytes:
    """A path's exact bytes, as stored (names need not be valid UTF-8)."""
    return os.fsencode(path)


def _decode_path(raw: bytes | str) -> str:
    return os.fsdecode(raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace"))


def _describe(exc: BaseException) -> str:
    """A one-line reason for an SQLite or file failure, in the user's words."""
    code = getattr(exc, "sqlite_errorcode", None)
    if (
        code == sqlite3.SQLITE_FULL
        or "disk is full" in str(exc)
        or getattr(exc, "errno", None) == errno.ENOSPC
    ):
        return "disk full"
    if code == sqlite3.SQLITE_READONLY or "readonly" in str(exc):
        return "read-only"
    return getattr(exc, "strerror", None) or str(exc)


def _no_space(path: str) -> bool:
    """Whether the file system holding *path* has no block left."""
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(path)) or ".").f_bavail == 0
    except OSError:
        return False


def _writable(path: Path) -> bool:
    """Whether this process may write *path* (or create it, when it does not exist)."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return os.access(parent, os.W_OK)


def _write_all(fd: int, data: np.ndarray, offset: int) -> None:
    raw = memoryview(np.ascontiguousarray(data)).cast("B")
    done = 0
    while done < len(raw):
        done += os.pwrite(fd, raw[done:], offset + done)
    os.fdatasync(fd)


def _write_error(path: str, exc: OSError) -> IndexFileError:
    if _describe(exc) == "disk full":
        return DiskFull(path)
    return IndexFileError(f"cannot write {path}: {_describe(exc)}")


def _select_in(db: sqlite3.Connection, query: str, values: list) -> Iterator[tuple]:
    """Rows of ``query IN (values)``, asked 500 values at a time (SQLite's limit on
    parameters)."""
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        yield from db.execute(f"{query} IN ({','.join('?' * len(chunk))})", chunk)


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _whole(meta: dict, key: str, lo: int, hi: int, damaged) -> int:
    v = meta.get(key, 0)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise damaged(f"{key} {printable(repr(v)[:40])} is out of range")
    return v


class SQLiteStore:
    """:class:`engine.storage.Store` on one SQLite file (WAL mode) and flat arrays.

    One connection, shared by the threads of one process under a lock; other processes
    get their own, and SQLite's locking keeps them apart. One writer at a time: the
    :meth:`writer` lock is an OS file lock, dropped by the OS if its holder dies.

    An index this process cannot write (read-only media, another user's folder) is
    opened read-only (``readonly`` is then True): every write raises a clear
    :class:`IndexFileError`. When even SQLite's shared-memory file cannot be created
    beside it, the file is opened as immutable, fine for read-only media where nothing
    can change it.
    """

    shared = False
    _has_thumbs = True
    _has_quality = True
    #: why the index is read-only, when it is
    readonly_why = "read-only media"

    def __init__(
        self, path: str | os.PathLike[str], create: bool = True, root: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.location = self.path
        self.root = root
        self.readonly = False
        self._base = self.path[: -len(".sqlite")] if self.path.endswith(".sqlite") else self.path
        if not create and not os.path.exists(self.path):
            raise IndexFileError(f"no index at {self.path}")
        self._lock = threading.RLock()
        self._lock_file = None
        self._check_companions()
        if os.path.exists(self.path) and not _writable(Path(self.path)):
            self._open_readonly()
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexFileError(
                f"cannot create index folder for {self.path}: {_describe(exc)}"
            ) from None
        existed = os.path.isfile(self.path) and os.path.getsize(self.path) > 0
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if "meta" in tables:
                self._check_version()  # before touching tables an older layout lacks
            with self._db:
                self._db.executescript(_SCHEMA)
            self._check_schema(create_missing=True)
        except sqlite3.DatabaseError as exc:
            reason = _describe(exc)
            if reason == "disk full" or _no_space(self.path):
                if not existed:
                    raise DiskFull(self.path) from None
                # SQLite cannot even make its shared-memory file: what is committed can
                # still be searched, read-only
                with suppress(sqlite3.Error):
                    self._db.close()
                self._open_readonly()
                self.readonly_why = "disk full"
                return
            raise IndexFileError(f"unreadable index {self.path}: {reason}") from None

    # --- opening ----------------------------------------------------------------------

    def _check_companions(self) -> None:
        """The database and the files SQLite and lookalike keep beside it must be plain
        files with one name: SQLite follows links, and would write its journal into
        whatever a crafted index's ``index.sqlite-wal`` points at."""
        for name in (self.path, *(self.path + s for s in ("-wal", "-shm", "-journal", ".lock"))):
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise IndexFileError(f"cannot read {name}: {_describe(exc)}") from None
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise self.damaged(f"{os.path.basename(name)} is not a file lookalike wrote")

    def _open_readonly(self) -> None:
        self.readonly = True
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        last: sqlite3.Error | None = None
        for flags in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                self._db = sqlite3.connect(
                    uri + flags, uri=True, timeout=30.0, check_same_thread=False
                )
                self._check_schema(create_missing=False)
                return
            except sqlite3.DatabaseError as exc:
                last = exc
        raise IndexFileError(f"unreadable index {self.path}: {_describe(last)}") from None

    def _check_schema(self, create_missing: bool) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "images"} <= tables:
            raise IndexFileError(f"unreadable index {self.path}: not a lookalike index")
        version = self._check_version()
        if version is None:
            if self._db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None:
                raise self.damaged("no schema version")
            if create_missing:
                self.set_meta({"schema": SCHEMA_VERSION})
            return
        if "dead" not in tables:
            raise self.damaged("a table is missing")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(images)")}
        self._has_thumbs = "thumb" in columns
        self._has_quality = "quality" in columns
        if create_missing and not self._has_thumbs:  # an index from before thumbnails
            with self._db:
                self._db.execute("ALTER TABLE images ADD COLUMN thumb BLOB")
            self._has_thumbs = True
        if create_missing and not self._has_quality:  # from before quality measurements
            with self._db:
                self._db.execute("ALTER TABLE images ADD COLUMN quality BLOB")
            self._has_quality = True

    def _check_version(self) -> int | None:
        """The stored schema version (None when there is none yet); an older or newer one
        is refused with the way out."""
        raw = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        try:
            version = json.loads(raw[0]) if raw else None
        except ValueError:
            version = "?"
        if version is None:
            return None
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.damaged("schema version is not a number")
        if version > SCHEMA_VERSION:
            raise NewerIndex(
                f"{self.path} was written by a newer lookalike (schema {version});"
                " upgrade, or rebuild with --rebuild"
            )
        if version < SCHEMA_VERSION:
            raise OlderIndex(
                f"{self.path} was written by an older lookalike (schema {version});"
                f" run lookalike index {self.root or 'DIR'} --rebuild"
            )
        return version

    def damaged(self, why: str) -> IndexDamaged:
        return IndexDamaged(self.path, why, self.root)

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write and self.readonly:
            raise IndexFileError(
                f"the index {self.path} is read-only: it can be searched, not updated"
            )
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.DatabaseError as exc:
                reason = _describe(exc)
                if reason == "disk full":
                    raise DiskFull(self.path) from None
                raise IndexFileError(f"index {self.path}: {reason}") from None

    # --- metadata and file states -------------------------------------------------------

    def _meta(self, db: sqlite3.Connection) -> dict:
        out = {}
        for k, v in db.execute("SELECT key, value FROM meta").fetchall():
            try:
                out[k] = json.loads(v)
            except (TypeError, ValueError, RecursionError):
                raise self.damaged(f"metadata {printable(repr(k))} is not valid JSON") from None
        return out

    def get_meta(self) -> dict:
        with self._tx() as db:
            return self._meta(db)

    def set_meta(self, values: dict) -> None:
        with self._tx(write=True) as db:
            self._put_meta(db, values)

    @staticmethod
    def _put_meta(db: sqlite3.Connection, values: dict) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v, allow_nan=False)) for k, v in values.items()],
        )

    def file_states(self) -> dict[str, StoredFile]:
        with self._tx() as db:
            rows = db.execute("SELECT path, size, mtime_ns, status FROM images")
            return {_decode_path(p): StoredFile(s, m, st == "ok") for p, s, m, st in rows}

    def failures(self) -> list[tuple[str, str]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT path, error FROM images WHERE status = 'failed' ORDER BY path"
            ).fetchall()
        return [(_decode_path(p), str(e) if e is not None else "") for p, e in rows]

    def count(self) -> int:
        """Usable images (answered from the small status index, not the table)."""
        with self._tx() as db:
            return db.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the one writer's lock: a second writer fails at once with a clear message
        instead of encoding the same files twice. Readers never take it."""
        if self.readonly:
            raise IndexFileError(
                f"the index {self.path} is read-only: it can be searched, not updated"
            )
        fd = self._open_array(self.path + ".lock", os.O_RDWR | os.O_CREAT, "lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexBusy(
                f"another lookalike process is indexing into {self.path}; try again when it ends"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # --- arrays ---------------------------------------------------------------------------

    def _file(self, kind: str, gen: int) -> str:
        return f"{self._base}.{kind}.{int(gen)}"

    def _gens(self, meta: dict) -> tuple[int, int, int]:
        """The generations of the vectors, the band keys and the sorted LSH tables: small
        whole numbers, as lookalike writes them (anything else names a file it never
        made, ``x/../../victim`` say, and is damage)."""
        return (
            _whole(meta, "vec_gen", 0, GEN_MAX, self.damaged),
            _whole(meta, "band_gen", 0, GEN_MAX, self.damaged),
            _whole(meta, "lsh_gen", 0, GEN_MAX, self.damaged),
        )

    def _open_array(self, path: str, flags: int, what: str) -> int:
        """Open an array file of this index: a regular file with one name, never through a
        symbolic link (a crafted index must not make lookalike read or write elsewhere)."""
        try:
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.damaged(f"the {what} file is a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise _Moved(f"the {what}") from None
            if _describe(exc) == "disk full":
                raise DiskFull(self.path) from None
            raise IndexFileError(f"cannot open {path}: {_describe(exc)}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise self.damaged(f"the {what} file is not a file lookalike wrote")
        return fd

    def _append(self, path: str, offset: int, data: np.ndarray, what: str = "array") -> None:
        """Write *data* at byte *offset* of *path* and flush it to disk. The file must
        hold every byte before *offset* (the committed rows): a shorter one is damage,
        never filled with zeros."""
        fd = self._open_array(path, os.O_RDWR | os.O_CREAT, what)
        try:
            if os.fstat(fd).st_size < offset:
                raise self.damaged(f"the {what} file is shorter than the index says")
            _write_all(fd, data, offset)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        finally:
            os.close(fd)

    def _write_whole(self, path: str, data: np.ndarray) -> None:
        """Write a whole array file under a temporary name, then rename it into place."""
        tmp = path + ".part"
        with suppress(FileNotFoundError):
            os.unlink(tmp)  # a killed writer's, or a link someone put there
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                _write_all(fd, data, 0)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(tmp)
            raise _write_error(self.path, exc) from None

    def _open_sized(self, path: str, dtype: np.dtype, shape: tuple[int, ...], what: str):
        """The file opened for reading, if *shape* needs any bytes (else None); it must
        hold them all (a missing file means a writer swapped generations under this
        reader)."""
        need = int(np.prod(shape)) * dtype.itemsize
        if need == 0:
            return None
        fd = self._open_array(path, os.O_RDONLY, what)
        if os.fstat(fd).st_size < need:
            os.close(fd)
            raise self.damaged(f"the {what} file is shorter than the index says")
        return fd

    def _map(self, path: str, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
        fd = self._open_sized(path, dtype, shape, what)
        if fd is None:
            return np.zeros(shape, dtype)
        try:
            need = int(np.prod(shape)) * dtype.itemsize
            view = mmap.mmap(fd, need, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        return np.frombuffer(view, dtype, int(np.prod(shape))).reshape(shape)

    def _dims(self, meta: dict) -> tuple[int, int, int]:
        return (
            _whole(meta, "hash_dim", 0, 1 << 16, self.damaged),
            _whole(meta, "feature_dim", 0, 1 << 16, self.damaged),
            _whole(meta, "bands", 0, 1 << 12, self.damaged),
        )

    def commit(self, batch: Batch) -> list[tuple[str, str]]:
        """Store *batch* at once (see the module's notes on crash safety). Returns the
        paths refused, with why (an id shared with another path), which are not stored.
        Call inside :meth:`writer`."""
        n_new = len(batch.paths)
        with self._lock:
            meta = self.get_meta()
            slots = _whole(meta, "slots", 0, 1 << 40, self.damaged)
            hash_dim, feature_dim, bands = self._dims(meta)
            if n_new:
                vec, band, _ = self._gens(meta)
                codes = np.asarray(batch.codes, CODE_DTYPE).reshape(n_new, hash_dim)
                keys = np.asarray(batch.band_keys, KEY_DTYPE).reshape(n_new, bands)
                self._append(self._file("codes", vec), slots * hash_dim * 4, codes, "codes")
                if feature_dim:
                    feats = np.asarray(batch.features, FEATURE_DTYPE)
                    feats = feats.reshape(n_new, feature_dim)
                    self._append(
                        self._file("features", vec), slots * feature_dim * 2, feats, "features"
                    )
                self._append(self._file("bands", band), slots * bands * 8, keys, "band keys")
            refused: list[tuple[str, str]] = []
            with self._tx(write=True) as db:
                gone = [*batch.delete, *batch.paths, *(f[0] for f in batch.failed)]
                for p in gone:
                    raw = _encode_path(p)
                    row = db.execute("SELECT slot FROM images WHERE path = ?", (raw,)).fetchone()
                    if row is None:
                        continue
                    db.execute("DELETE FROM images WHERE path = ?", (raw,))
                    if row[0] is not None:
                        db.execute("INSERT OR IGNORE INTO dead (slot) VALUES (?)", (row[0],))
                n_ok = len(batch.paths)
                dhashes = batch.dhashes or [None] * n_ok
                pixels = batch.pixels or [None] * n_ok
                thumbs = batch.thumbs or [None] * n_ok
                measured = batch.quality or [None] * n_ok
                rows = [
                    (p, size, mtime, "ok", None, slots + i, digest, dh, px, th, q)
                    for i, (p, size, mtime, digest, dh, px, th, q) in enumerate(
                        zip(
                            batch.paths,
                            batch.sizes,
                            batch.mtimes,
                            batch.digests,
                            dhashes,
                            pixels,
                            thumbs,
                            measured,
                        )
                    )
                ]
                rows += [
                    (p, size, mtime, "failed", why, None, None, None, None, None, None)
                    for p, size, mtime, why in batch.failed
                ]
                for p, size, mtime, status, why, slot, digest, dh, px, th, q in rows:
                    try:
                        db.execute(
                            "INSERT INTO images (id, path, size, mtime_ns, status, error, slot,"
                            " digest, dhash, pixels, thumb, quality)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                image_id(p),
                                _encode_path(p),
                                size,
                                mtime,
                                status,
                                why,
                                slot,
                                digest,
                                dh,
                                px,
                                th,
                                q,
                            ),
                        )
                    except sqlite3.IntegrityError:
                        other = db.execute(
                            "SELECT path FROM images WHERE id = ?", (image_id(p),)
                        ).fetchone()
                        refused.append(
                            (p, f"its id collides with {_decode_path(other[0]) if other else '?'}")
                        )
                        if slot is not None:
                            db.execute("INSERT OR IGNORE INTO dead (slot) VALUES (?)", (slot,))
                if n_new:
                    self._put_meta(db, {"slots": slots + n_new})
        return refused

    def snapshot(self) -> Snapshot:
        """The committed state, for readers (retried if a writer swaps files meanwhile)."""
        missing = ""
        for _ in range(5):
            try:
                return self._snapshot()
            except _Moved as exc:
                missing = str(exc.args[0]) if exc.args else "an array"
                continue
        raise self.damaged(f"{missing} file is missing")

    def _snapshot(self) -> Snapshot:
        with self._tx() as db:
            meta = self._meta(db)
            dead = np.fromiter((r[0] for r in db.execute("SELECT slot FROM dead")), np.int64)
        slots = _whole(meta, "slots", 0, 1 << 40, self.damaged)
        hash_dim, feature_dim, bands = self._dims(meta)
        vec, band, lgen = self._gens(meta)
        codes = self._map(self._file("codes", vec), CODE_DTYPE, (slots, hash_dim), "codes")
        feats = (
            self._rows(self._file("features", vec), FEATURE_DTYPE, (slots, feature_dim), "features")
            if feature_dim
            else None
        )
        keys = self._map(self._file("bands", band), KEY_DTYPE, (slots, bands), "band keys")
        if len(dead) and (dead.min() < 0 or dead.max() >= max(slots, 1)):
            raise self.damaged("a dead slot out of range")
        base = _whole(meta, "lsh_base", 0, slots, self.damaged)
        lsh = None
        if base:
            width = _whole(meta, "lsh_live", 0, base, self.damaged)
            nfence = -(-width // LSH_STEP)
            lsh = SortedBands(
                self._rows(self._file("lsh-keys", lgen), KEY_DTYPE, (bands, width), "LSH"),
                self._rows(self._file("lsh-slots", lgen), SLOT_DTYPE, (bands, width), "LSH"),
                np.asarray(
                    self._map(self._file("lsh-fences", lgen), KEY_DTYPE, (bands, nfence), "LSH")
                ),
                LSH_STEP,
            )
        return Snapshot(
            slots,
            codes,
            feats,
            keys,
            dead,
            meta,
            generation=hash((vec, band, lgen)),
            lsh_base=base,
            lsh=lsh,
        )

    def _rows(self, path: str, dtype: np.dtype, shape: tuple[int, int], what: str) -> RowFile:
        return RowFile(path, dtype, shape, self._open_sized(path, dtype, shape, what))

    def version(self) -> tuple:
        """Changes whenever a commit, rewrite or refit does (cheap: for a reader to ask
        before each query whether another process wrote meanwhile)."""
        with self._tx() as db:
            return db.execute(
                "SELECT (SELECT group_concat(key || '=' || value) FROM meta WHERE key IN"
                " ('slots', 'vec_gen', 'band_gen', 'lsh_gen', 'centre_gen')),"
                " (SELECT COUNT(*) FROM dead)"
            ).fetchone()

    def paths_of(self, slots: np.ndarray) -> list[str]:
        """The path of each slot, in order (a slot no image uses gives an error)."""
        wanted = [int(s) for s in slots]
        found: dict[int, str] = {}
        with self._tx() as db:
            for slot, path in _select_in(db, "SELECT slot, path FROM images WHERE slot", wanted):
                found[slot] = _decode_path(path)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise _Moved
        return [found[s] for s in wanted]

    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT size, mtime_ns, status, slot FROM images WHERE path = ?",
                (_encode_path(path),),
            ).fetchone()
        if row is None:
            return None
        slot = row[3]
        if slot is not None and not _is_int(slot, 0, 1 << 40):
            raise self.damaged(f"slot {printable(repr(slot)[:40])} is out of range")
        return StoredFile(row[0], row[1], row[2] == "ok"), slot

    def image_facts(self) -> ImageFacts:
        """Path, mtime, difference hash, pixel count and digest of every usable image,
        each value checked (an index may have been crafted)."""
        with self._tx() as db:
            slots = _whole(self._meta(db), "slots", 0, 1 << 40, self.damaged)
            rows = db.execute(
                "SELECT slot, path, mtime_ns, dhash, pixels, digest,"
                f" {'thumb' if self._has_thumbs else 'NULL'},"
                f" {'quality' if self._has_quality else 'NULL'} FROM images"
                " WHERE status = 'ok' ORDER BY slot"
            ).fetchall()
        for slot, _path, mtime, dhash, pixels, digest, thumb, measured in rows:
            if measured is not None and not (isinstance(measured, bytes) and len(measured) == 28):
                raise self.damaged("a quality record is not 28 bytes")
            if thumb is not None and not (isinstance(thumb, bytes) and len(thumb) == 256):
                raise self.damaged("a thumbnail is not 256 bytes")
            if digest is not None and not (isinstance(digest, bytes) and len(digest) == 32):
                raise self.damaged("a content digest is not 32 bytes")
            if not _is_int(slot, 0, slots - 1):
                raise self.damaged(f"slot {printable(repr(slot)[:40])} is out of range")
            if not _is_int(mtime, -(1 << 63), (1 << 63) - 1):
                raise self.damaged("a modification time is not a number")
            if dhash is not None and not _is_int(dhash, -(1 << 63), (1 << 63) - 1):
                raise self.damaged("a layout hash is not a number")
            if pixels is not None and not _is_int(pixels, 0, 1 << 48):
                raise self.damaged("a pixel count is not a number")
        return ImageFacts(
            slots=np.array([r[0] for r in rows], np.int64),
            paths=[_decode_path(r[1]) for r in rows],
            mtimes=np.array([r[2] for r in rows], np.int64),
            dhash=np.array([r[3] or 0 for r in rows], np.int64).view(np.uint64),
            known=np.array([r[3] is not None for r in rows], bool),
            pixels=np.array([r[4] or 0 for r in rows], np.int64),
            digests=[r[5] for r in rows],
            thumbs=[r[6] for r in rows],
            quality=[r[7] for r in rows],
        )

    # --- copy verdicts and rejected pairs ---------------------------------------------------

    def _tables(self) -> set[str]:
        with self._tx() as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master")}

    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        """Cached copy verdicts by pair key (see :mod:`engine.copies`)."""
        if not keys or "verdicts" not in self._tables():
            return {}
        out: dict[bytes, str] = {}
        with self._tx() as db:
            for k, v in _select_in(db, "SELECT pair, verdict FROM verdicts WHERE pair", keys):
                if isinstance(k, bytes) and isinstance(v, str):
                    out[k] = v
        return out

    def put_verdicts(self, items: dict[bytes, str]) -> None:
        if items and not self.readonly:
            with self._tx(write=True) as db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", items.items())

    def forget_verdicts(self) -> None:
        """Drop every cached verdict (they are made again as needed)."""
        if "verdicts" in self._tables():
            with self._tx(write=True) as db:
                db.execute("DELETE FROM verdicts")

    def rejections(self) -> set[tuple[str, str]]:
        """Pairs of paths the user said are not copies (each sorted)."""
        if "rejected" not in self._tables():
            return set()
        with self._tx() as db:
            rows = db.execute("SELECT a, b FROM rejected").fetchall()
        return {(_decode_path(a), _decode_path(b)) for a, b in rows}

    def reject(self, a: str, b: str) -> None:
        a, b = sorted((a, b))
        with self._tx(write=True) as db:
            db.execute(
                "INSERT OR IGNORE INTO rejected VALUES (?, ?)", (_encode_path(a), _encode_path(b))
            )

    def forget_rejections(self) -> int:
        with self._tx(write=True) as db:
            return db.execute("DELETE FROM rejected").rowcount

    # --- whole-array rewrites (writer only) ------------------------------------------------

    def rewrite_band_keys(self, band_keys: np.ndarray, meta: dict) -> None:
        """Replace every slot's band keys (after the centre moved) and the metadata that
        goes with them, at once."""
        old = self.get_meta()
        old_band = self._gens(old)[1]
        gen = old_band + 1
        path = self._file("bands", gen)
        self._write_whole(path, np.asarray(band_keys, KEY_DTYPE))
        with self._tx(write=True) as db:
            self._put_meta(db, {**meta, "band_gen": gen, "lsh_base": 0})
        self._remove(self._file("bands", old_band))
        self.build_lsh_tables()

    def build_lsh_tables(self) -> None:
        """Sort every live slot's band keys, one row per band, so a query finds its
        buckets by binary search; slots added later are scanned until the next build."""
        snap = self.snapshot()
        meta = snap.meta
        live = np.ones(snap.slots, bool)
        live[snap.dead] = False
        slots = np.flatnonzero(live).astype(SLOT_DTYPE)
        bands = snap.band_keys.shape[1]
        keys = np.empty((bands, len(slots)), KEY_DTYPE)
        order_slots = np.empty((bands, len(slots)), SLOT_DTYPE)
        for b in range(bands):
            col = np.asarray(snap.band_keys[slots, b])
            order = np.argsort(col, kind="stable")
            keys[b] = col[order]
            order_slots[b] = slots[order]
        old_gen = self._gens(meta)[2]
        gen = old_gen + 1
        self._write_whole(self._file("lsh-keys", gen), keys)
        self._write_whole(self._file("lsh-slots", gen), order_slots)
        self._write_whole(self._file("lsh-fences", gen), np.ascontiguousarray(keys[:, ::LSH_STEP]))
        with self._tx(write=True) as db:
            self._put_meta(db, {"lsh_gen": gen, "lsh_base": snap.slots, "lsh_live": len(slots)})
        self._remove(*(self._file(k, old_gen) for k in ("lsh-keys", "lsh-slots", "lsh-fences")))

    def compact(self) -> int:
        """Rewrite the arrays without dead slots; returns how many slots were dropped."""
        snap = self.snapshot()
        if not len(snap.dead):
            return 0
        meta = snap.meta
        live = np.ones(snap.slots, bool)
        live[snap.dead] = False
        keep = np.flatnonzero(live)
        vec, band, _ = (g + 1 for g in self._gens(meta))
        self._write_whole(self._file("codes", vec), np.asarray(snap.codes[keep]))
        if snap.features is not None:
            self._write_whole(self._file("features", vec), np.asarray(snap.features[keep]))
        self._write_whole(self._file("bands", band), np.asarray(snap.band_keys[keep]))
        with self._tx(write=True) as db:
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS remap (old INTEGER PRIMARY KEY, new INTEGER)"
            )
            db.execute("DELETE FROM remap")
            db.executemany(
                "INSERT INTO remap (old, new) VALUES (?, ?)",
                zip(keep.tolist(), range(len(keep))),
            )
            db.execute("UPDATE images SET slot = -1 - slot WHERE slot IS NOT NULL")
            db.execute(
                "UPDATE images SET slot = (SELECT new FROM remap WHERE old = -1 - images.slot)"
                " WHERE slot IS NOT NULL"
            )
            db.execute("DELETE FROM dead")
            self._put_meta(
                db, {"slots": len(keep), "vec_gen": vec, "band_gen": band, "lsh_base": 0}
            )
        self._remove(
            self._file("codes", vec - 1),
            self._file("features", vec - 1),
            self._file("bands", band - 1),
        )
        self.build_lsh_tables()
        return int(snap.slots - len(keep))

    def sweep(self) -> None:
        """Remove array files of generations the index no longer uses, and temporary
        files, that a killed writer left behind (writer only)."""
        import glob

        current = {
            self._file(kind, gen)
            for kinds, gen in zip(
                (("codes", "features"), ("bands",), ("lsh-keys", "lsh-slots", "lsh-fences")),
                self._gens(self.get_meta()),
            )
            for kind in kinds
        }
        prefix = glob.escape(self._base)
        found = [p for kind in ARRAY_KINDS for p in glob.glob(f"{prefix}.{kind}.*")]
        self._remove(*(p for p in found if p not in current))

    @staticmethod
    def _remove(*paths: str) -> None:
        for p in paths:
            with suppress(FileNotFoundError):
                os.unlink(p)

    def array_files(self) -> list[str]:
        """The array files of the current generation (for size reports)."""
        meta = self.get_meta()
        vec, band, lsh = self._gens(meta)
        names = [
            self._file("codes", vec),
            self._file("features", vec),
            self._file("bands", band),
            self._file("lsh-keys", lsh),
            self._file("lsh-slots", lsh),
            self._file("lsh-fences", lsh),
        ]
        return [p for p in names if os.path.exists(p)]

    def clear(self) -> None:
        """Forget everything (``--rebuild``); works on a damaged index too."""
        import glob

        old = [p for kind in ARRAY_KINDS for p in glob.glob(glob.escape(self._base) + f".{kind}.*")]
        with self._tx(write=True) as db:
            db.execute("DELETE FROM images")
            db.execute("DELETE FROM dead")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
        self._remove(*old)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def remove_files(path: str) -> None:
    """Delete an index file, its SQLite companions and its arrays."""
    import glob

    base = path[: -len(".sqlite")] if path.endswith(".sqlite") else path
    doomed = [path, path + "-wal", path + "-shm", path + ".lock"]
    for kind in ARRAY_KINDS:
        doomed += glob.glob(glob.escape(base) + f".{kind}.*")
    for p in doomed:
        with suppress(FileNotFoundError):
            os.unlink(p)
