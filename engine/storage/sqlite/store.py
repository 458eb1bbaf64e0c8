"""The embedded store itself (the layout and why: :mod:`engine.storage.sqlite`)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np

from engine.names import printable
from engine.sandbox import Folder
from engine.storage import (
    Batch,
    DiskFull,
    IndexBusy,
    IndexDamaged,
    IndexFileError,
    Store,
    StoredFile,
    image_id,
)
from engine.storage.sqlite import rewrites
from engine.storage.sqlite.annotations import SQLiteAnnotations
from engine.storage.sqlite.arrays import (
    CODE_DTYPE,
    FEATURE_DTYPE,
    KEY_DTYPE,
    ArrayFiles,
    describe,
    no_space,
    whole,
)
from engine.storage.sqlite.reads import SQLiteReads
from engine.storage.sqlite.schema import (
    SCHEMA,
    check_tables,
    check_version,
    decode_path,
    encode_path,
    select_in,
)


def writable(folder: Folder, name: str) -> bool:
    """Whether this process may write file *name* of *folder* (and the folder: SQLite
    makes its journal beside the database); ``""``: the folder alone."""
    folder_ok = os.access(folder.at(), os.W_OK)
    return folder_ok and (not name or os.access(folder.at(name), os.W_OK))


class SQLiteStore(SQLiteReads, SQLiteAnnotations, Store):
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
    keep_features = True
    kind = "SQLite"
    _has_thumbs = True
    _has_quality = True
    #: why the index is read-only, when it is
    readonly_why = "read-only media"

    def __init__(
        self,
        path: str | os.PathLike[str],
        create: bool = True,
        root: str | None = None,
        folder: Folder | None = None,
    ) -> None:
        """*folder*: the index's folder, already opened (``DIR/.lookalike``, checked by
        :func:`engine.sandbox.index_folder`); by default the folder of *path*, as the
        user named it. Every file of the index is reached through that descriptor."""
        self.path = os.fspath(path)
        self.location = self.path
        self.root = root
        self.readonly = False
        self._lock = threading.RLock()
        self._name = name = os.path.basename(self.path)
        if folder is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not create and not os.path.isdir(parent):
                raise IndexFileError(f"no index at {self.path}")
            try:
                folder = Folder.anchor(parent, create=create)
            except IndexFileError as exc:
                raise IndexFileError(f"cannot create index folder for {self.path}: {exc}") from None
        self.folder = folder
        self._file = folder.at(name)  # the database, through the folder's descriptor
        base = name[: -len(".sqlite")] if name.endswith(".sqlite") else name
        self.arrays = ArrayFiles(folder, base, self.path, self.damaged)
        if not create and folder.lstat(name) is None:
            raise IndexFileError(f"no index at {self.path}")
        self._check_companions(name)
        if folder.lstat(name) is not None and not writable(folder, name):
            self._open_readonly()
            return
        if not writable(folder, ""):
            raise IndexFileError(f"cannot create the index {self.path}: read-only")
        st = folder.lstat(name)
        existed = st is not None and st.st_size > 0
        try:
            self._db = sqlite3.connect(self._file, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if "meta" in tables:
                check_version(
                    self._db, self.path, self.root, self.damaged
                )  # before touching tables an older layout lacks
            with self._db:
                self._db.executescript(SCHEMA)
            self._check_schema(create_missing=True)
        except sqlite3.DatabaseError as exc:
            reason = describe(exc)
            if reason == "disk full" or no_space(self._file):
                if not existed:
                    raise DiskFull(self.path) from None
                # SQLite cannot even make its shared-memory file: what is committed can
                # still be searched, read-only
                with suppress(sqlite3.Error):
                    self._db.close()
                self._open_readonly()
                self.readonly_why = "disk full"
                return
            raise IndexFileError(
                f"unreadable index {self.path}: {reason}; lookalike index"
                f" {self.root or 'DIR'} --rebuild makes a new one"
            ) from None

    # --- opening ----------------------------------------------------------------------

    def _check_companions(self, name: str) -> None:
        """The database and the files SQLite and lookalike keep beside it must be plain
        files with one name: SQLite follows links, and would write its journal into
        whatever a crafted index's ``index.sqlite-wal`` points at."""
        for each in (name, *(name + s for s in ("-wal", "-shm", "-journal", ".lock"))):
            try:
                st = self.folder.lstat(each)
            except OSError as exc:
                raise IndexFileError(f"cannot read {each}: {describe(exc)}") from None
            if st is not None and (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
                raise self.damaged(f"{each} is not a file lookalike wrote")

    def _open_readonly(self) -> None:
        self.readonly = True
        uri = "file:" + urllib.parse.quote(self._file)
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
        why = describe(last) if last is not None else "cannot be opened"
        raise IndexFileError(f"unreadable index {self.path}: {why}") from None

    def _check_schema(self, create_missing: bool) -> None:
        self._has_thumbs, self._has_quality = check_tables(
            self._db, self.path, self.root, self.damaged, create_missing
        )

    def damaged(self, why: str) -> IndexDamaged:
        return IndexDamaged(self.path, why, self.root)

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write and self.readonly:
            raise IndexFileError(
                f"the index {self.path} is read-only: it can be searched, not updated"
            )
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.DatabaseError as exc:
                reason = describe(exc)
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
        with self.transaction() as db:
            return self._meta(db)

    def set_meta(self, values: dict) -> None:
        with self.transaction(write=True) as db:
            self.put_meta(db, values)

    def claim_meta(self, values: dict) -> dict:
        """*values* unless the first of them is stored already (one transaction)."""
        with self.transaction(write=True) as db:
            first = next(iter(values), None)
            held = db.execute("SELECT 1 FROM meta WHERE key = ?", (first,)).fetchone()
            if first is not None and held is None:
                self.put_meta(db, values)
            return self._meta(db)

    @staticmethod
    def put_meta(db: sqlite3.Connection, values: dict) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v, allow_nan=False)) for k, v in values.items()],
        )

    def file_states(self) -> dict[str, StoredFile]:
        with self.transaction() as db:
            rows = db.execute("SELECT path, size, mtime_ns, status FROM images")
            return {decode_path(p): StoredFile(s, m, st == "ok") for p, s, m, st in rows}

    def states_of(self, paths: list[str]) -> list[StoredFile | None]:
        found = {}
        with self.transaction() as db:
            query = "SELECT path, size, mtime_ns, status FROM images WHERE path"
            for p, size, mtime, status in select_in(db, query, [encode_path(p) for p in paths]):
                found[decode_path(p)] = StoredFile(size, mtime, status == "ok")
        return [found.get(p) for p in paths]

    def failures(self) -> list[tuple[str, str]]:
        with self.transaction() as db:
            rows = db.execute(
                "SELECT path, error FROM images WHERE status = 'failed' ORDER BY path"
            ).fetchall()
        return [(decode_path(p), str(e) if e is not None else "") for p, e in rows]

    def count(self) -> int:
        """Usable images (answered from the small status index, not the table)."""
        with self.transaction() as db:
            return db.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the one writer's lock: a second writer fails at once with a clear message
        instead of encoding the same files twice. Readers never take it."""
        if self.readonly:
            raise IndexFileError(
                f"the index {self.path} is read-only: it can be searched, not updated"
            )
        fd = self.arrays.open(self._name + ".lock", os.O_RDWR | os.O_CREAT, "lock")
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

    def _dims(self, meta: dict) -> tuple[int, int, int]:
        return (
            whole(meta, "hash_dim", 0, 1 << 16, self.damaged),
            whole(meta, "feature_dim", 0, 1 << 16, self.damaged),
            whole(meta, "bands", 0, 1 << 12, self.damaged),
        )

    def commit(self, batch: Batch) -> list[tuple[str, str]]:
        """Store *batch* at once (see the module's notes on crash safety). Returns the
        paths refused, with why (an id shared with another path), which are not stored.
        Call inside :meth:`writer`."""
        n_new = len(batch.paths)
        with self._lock:
            meta = self.get_meta()
            slots = whole(meta, "slots", 0, 1 << 40, self.damaged)
            if n_new:  # the arrays first: rows past the committed count are never read
                self._append_arrays(batch, meta, slots)
            with self.transaction(write=True) as db:
                self._forget(db, [*batch.delete, *batch.paths, *(f[0] for f in batch.failed)])
                refused = self._insert(db, _image_rows(batch, slots))
                if n_new:
                    self.put_meta(db, {"slots": slots + n_new})
        return refused

    def _append_arrays(self, batch: Batch, meta: dict, slots: int) -> None:
        """The batch's codes, features and band keys after the first *slots* rows."""
        n = len(batch.paths)
        hash_dim, feature_dim, bands = self._dims(meta)
        vec, band, _ = self.arrays.gens(meta)
        codes = np.asarray(batch.codes, CODE_DTYPE).reshape(n, hash_dim)
        self.arrays.append(self.arrays.file("codes", vec), slots * hash_dim * 4, codes, "codes")
        if feature_dim:
            feats = np.asarray(batch.features, FEATURE_DTYPE).reshape(n, feature_dim)
            where = self.arrays.file("features", vec)
            self.arrays.append(where, slots * feature_dim * 2, feats, "features")
        keys = np.asarray(batch.band_keys, KEY_DTYPE).reshape(n, bands)
        self.arrays.append(self.arrays.file("bands", band), slots * bands * 8, keys, "band keys")

    @staticmethod
    def _forget(db: sqlite3.Connection, paths: list[str]) -> None:
        """The records of *paths* removed, their slots marked dead."""
        for p in paths:
            raw = encode_path(p)
            row = db.execute("SELECT slot FROM images WHERE path = ?", (raw,)).fetchone()
            if row is None:
                continue
            db.execute("DELETE FROM images WHERE path = ?", (raw,))
            if row[0] is not None:
                db.execute("INSERT OR IGNORE INTO dead (slot) VALUES (?)", (row[0],))

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple]) -> list[tuple[str, str]]:
        """*rows* written; the (path, why) of those refused (an id another path holds),
        whose slots are marked dead."""
        refused: list[tuple[str, str]] = []
        for p, size, mtime, status, why, slot, digest, dh, px, th, q in rows:
            try:
                db.execute(
                    "INSERT INTO images (id, path, size, mtime_ns, status, error, slot,"
                    " digest, dhash, pixels, thumb, quality)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id(p), encode_path(p), size, mtime, status, why, slot)
                    + (digest, dh, px, th, q),
                )
            except sqlite3.IntegrityError:
                other = db.execute(
                    "SELECT path FROM images WHERE id = ?", (image_id(p),)
                ).fetchone()
                refused.append(
                    (p, f"its id collides with {decode_path(other[0]) if other else '?'}")
                )
                if slot is not None:
                    db.execute("INSERT OR IGNORE INTO dead (slot) VALUES (?)", (slot,))
        return refused

    # --- whole-array rewrites (writer only: :mod:`engine.storage.sqlite.rewrites`) -------

    def rewrite_band_keys(self, band_keys: np.ndarray, meta: dict) -> None:
        rewrites.band_keys(self, band_keys, meta)

    def build_lsh_tables(self) -> None:
        rewrites.lsh_tables(self)

    def compact(self) -> int:
        return rewrites.compact(self)

    def sweep(self) -> None:
        """Remove array files of generations the index no longer uses, and temporary
        files, that a killed writer left behind (writer only)."""
        current = set(self.arrays.current(self.get_meta()))
        self.arrays.remove(*(p for p in self.arrays.every() if p not in current))

    def array_files(self) -> list[str]:
        """The array files of the current generation (for size reports)."""
        return [
            self.folder.child(p)
            for p in self.arrays.current(self.get_meta())
            if self.folder.lstat(p) is not None
        ]

    def clear(self) -> None:
        """Forget everything (``--rebuild``), cached verdicts and rejected pairs too (a
        crafted cache must not outlive a rebuild); works on a damaged index too."""
        old = self.arrays.every()
        tables = self._tables()
        with self.transaction(write=True) as db:
            db.execute("DELETE FROM images")
            db.execute("DELETE FROM dead")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
            for table in ("verdicts", "rejected", "choices", "blobs"):
                if table in tables:
                    db.execute(f"DELETE FROM {table}")
        self.arrays.remove(*old)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self.folder.close()


def _image_rows(batch: Batch, slots: int) -> list[tuple]:
    """The image records of *batch*: its pictures at the slots after *slots*, then the
    files that failed (no slot)."""
    n = len(batch.paths)
    dhashes = batch.dhashes or [None] * n
    pixels = batch.pixels or [None] * n
    thumbs = batch.thumbs or [None] * n
    measured = batch.quality or [None] * n
    facts = zip(
        batch.paths, batch.sizes, batch.mtimes, batch.digests, dhashes, pixels, thumbs, measured
    )
    rows: list[tuple] = [
        (p, size, mtime, "ok", None, slots + i, digest, dh, px, th, q)
        for i, (p, size, mtime, digest, dh, px, th, q) in enumerate(facts)
    ]
    rows += [
        (p, size, mtime, "failed", why, None, None, None, None, None, None)
        for p, size, mtime, why in batch.failed
    ]
    return rows
