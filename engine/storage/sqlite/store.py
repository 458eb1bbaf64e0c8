"""The embedded store itself (the layout and why: :mod:`engine.storage.sqlite`)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import numpy as np

from engine.names import printable
from engine.sandbox import Folder
from engine.storage import (
    BLOB_MAX,
    CHOICE_KINDS,
    PATH_BYTES,
    REJECTIONS_MAX,
    VERDICT_BYTES,
    Batch,
    DiskFull,
    ImageFacts,
    IndexBusy,
    IndexDamaged,
    IndexFileError,
    RowFile,
    Snapshot,
    SnapshotMoved,
    SortedBands,
    StoredFile,
    checked_choices,
    checked_pairs,
    image_id,
)
from engine.storage.sqlite import rewrites
from engine.storage.sqlite.arrays import (
    CODE_DTYPE,
    FEATURE_DTYPE,
    KEY_DTYPE,
    LSH_STEP,
    SLOT_DTYPE,
    ArrayFiles,
    describe,
    no_space,
    whole,
)
from engine.storage.sqlite.schema import (
    SCHEMA,
    check_tables,
    check_version,
    decode_path,
    encode_path,
    is_int,
    select_in,
)


def writable(folder: Folder, name: str) -> bool:
    """Whether this process may write file *name* of *folder* (and the folder: SQLite
    makes its journal beside the database); ``""``: the folder alone."""
    folder_ok = os.access(folder.at(), os.W_OK)
    return folder_ok and (not name or os.access(folder.at(name), os.W_OK))


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

    def snapshot(self) -> Snapshot:
        """The committed state, for readers (retried if a writer swaps files meanwhile)."""
        missing = ""
        for _ in range(5):
            try:
                return self._snapshot()
            except SnapshotMoved as exc:
                missing = str(exc.args[0]) if exc.args else "an array"
                continue
        raise self.damaged(f"{missing} file is missing")

    def _snapshot(self) -> Snapshot:
        with self.transaction() as db:
            meta = self._meta(db)
            dead = np.fromiter((r[0] for r in db.execute("SELECT slot FROM dead")), np.int64)
        slots = whole(meta, "slots", 0, 1 << 40, self.damaged)
        hash_dim, feature_dim, bands = self._dims(meta)
        vec, band, lgen = self.arrays.gens(meta)
        codes = self.arrays.map(
            self.arrays.file("codes", vec), CODE_DTYPE, (slots, hash_dim), "codes"
        )
        feats = (
            self._rows(
                self.arrays.file("features", vec), FEATURE_DTYPE, (slots, feature_dim), "features"
            )
            if feature_dim
            else None
        )
        keys = self.arrays.map(
            self.arrays.file("bands", band), KEY_DTYPE, (slots, bands), "band keys"
        )
        if len(dead) and (dead.min() < 0 or dead.max() >= max(slots, 1)):
            raise self.damaged("a dead slot out of range")
        base = whole(meta, "lsh_base", 0, slots, self.damaged)
        lsh = None
        if base:
            width = whole(meta, "lsh_live", 0, base, self.damaged)
            nfence = -(-width // LSH_STEP)
            lsh = SortedBands(
                self._rows(self.arrays.file("lsh-keys", lgen), KEY_DTYPE, (bands, width), "LSH"),
                self._rows(self.arrays.file("lsh-slots", lgen), SLOT_DTYPE, (bands, width), "LSH"),
                np.asarray(
                    self.arrays.map(
                        self.arrays.file("lsh-fences", lgen), KEY_DTYPE, (bands, nfence), "LSH"
                    )
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

    def _rows(self, name: str, dtype: np.dtype, shape: tuple[int, int], what: str) -> RowFile:
        fd = self.arrays.open_sized(name, dtype, shape, what)
        return RowFile(self.folder.child(name), dtype, shape, fd)

    def version(self) -> tuple:
        """Changes whenever a commit, rewrite or refit does (cheap: for a reader to ask
        before each query whether another process wrote meanwhile)."""
        with self.transaction() as db:
            return db.execute(
                "SELECT (SELECT group_concat(key || '=' || value) FROM meta WHERE key IN"
                " ('slots', 'vec_gen', 'band_gen', 'lsh_gen', 'centre_gen')),"
                " (SELECT COUNT(*) FROM dead)"
            ).fetchone()

    def paths_of(self, slots: np.ndarray) -> list[str]:
        """The path of each slot, in order (a slot no image uses gives an error)."""
        wanted = [int(s) for s in slots]
        found: dict[int, str] = {}
        with self.transaction() as db:
            for slot, path in select_in(db, "SELECT slot, path FROM images WHERE slot", wanted):
                found[slot] = decode_path(path)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise SnapshotMoved
        return [found[s] for s in wanted]

    def slot_of(self, path: str) -> tuple[StoredFile, int | None] | None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT size, mtime_ns, status, slot FROM images WHERE path = ?",
                (encode_path(path),),
            ).fetchone()
        if row is None:
            return None
        slot = row[3]
        if slot is not None and not is_int(slot, 0, 1 << 40):
            raise self.damaged(f"slot {printable(repr(slot)[:40])} is out of range")
        return StoredFile(row[0], row[1], row[2] == "ok"), slot

    def image_facts(self) -> ImageFacts:
        """Path, mtime, difference hash, pixel count and digest of every usable image,
        each value checked (an index may have been crafted): by one query that counts
        the rows of any other shape (a hundred thousand rows checked in SQLite, not one
        by one in Python), then, only when there are some, row by row to name one."""
        thumb = "thumb" if self._has_thumbs else "NULL"
        quality = "quality" if self._has_quality else "NULL"
        with self.transaction() as db:
            slots = whole(self._meta(db), "slots", 0, 1 << 40, self.damaged)
            bad = db.execute(
                f"SELECT COUNT(*) FROM images WHERE status = 'ok' AND NOT ("
                f" typeof(slot) = 'integer' AND slot BETWEEN 0 AND {slots - 1}"
                " AND typeof(mtime_ns) = 'integer'"
                " AND (dhash IS NULL OR typeof(dhash) = 'integer')"
                f" AND (pixels IS NULL OR (typeof(pixels) = 'integer' AND pixels BETWEEN 0 AND {1 << 48}))"
                " AND (digest IS NULL OR (typeof(digest) = 'blob' AND length(digest) = 32))"
                f" AND ({thumb} IS NULL OR (typeof({thumb}) = 'blob' AND length({thumb}) = 256))"
                f" AND ({quality} IS NULL OR (typeof({quality}) = 'blob' AND length({quality}) = 28)))"
            ).fetchone()[0]
            rows = db.execute(
                f"SELECT slot, path, mtime_ns, dhash, pixels, digest, {thumb}, {quality}"
                " FROM images WHERE status = 'ok' ORDER BY slot"
            ).fetchall()
        if bad:
            self._name_damage(rows, slots)
        cols = list(zip(*rows)) if rows else [()] * 8
        dhash = cols[3]
        return ImageFacts(
            slots=np.array(cols[0], np.int64),
            paths=[decode_path(p) for p in cols[1]],
            mtimes=np.array(cols[2], np.int64),
            dhash=np.array([d or 0 for d in dhash], np.int64).view(np.uint64),
            known=np.array([d is not None for d in dhash], bool),
            pixels=np.array([p or 0 for p in cols[4]], np.int64),
            digests=list(cols[5]),
            thumbs=list(cols[6]),
            quality=list(cols[7]),
        )

    def _name_damage(self, rows: list, slots: int) -> None:
        """The damaged-index error for the first row of *rows* of a shape lookalike never
        writes."""
        for slot, _path, mtime, dhash, pixels, digest, thumb, measured in rows:
            if measured is not None and not (isinstance(measured, bytes) and len(measured) == 28):
                raise self.damaged("a quality record is not 28 bytes")
            if thumb is not None and not (isinstance(thumb, bytes) and len(thumb) == 256):
                raise self.damaged("a thumbnail is not 256 bytes")
            if digest is not None and not (isinstance(digest, bytes) and len(digest) == 32):
                raise self.damaged("a content digest is not 32 bytes")
            if not is_int(slot, 0, slots - 1):
                raise self.damaged(f"slot {printable(repr(slot)[:40])} is out of range")
            if not is_int(mtime, -(1 << 63), (1 << 63) - 1):
                raise self.damaged("a modification time is not a number")
            if dhash is not None and not is_int(dhash, -(1 << 63), (1 << 63) - 1):
                raise self.damaged("a layout hash is not a number")
            if pixels is not None and not is_int(pixels, 0, 1 << 48):
                raise self.damaged("a pixel count is not a number")
        raise self.damaged("an image record is not one lookalike wrote")

    # --- copy verdicts and rejected pairs ---------------------------------------------------

    def _tables(self) -> set[str]:
        with self.transaction() as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master")}

    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        """Cached copy verdicts by pair key (see :mod:`engine.copies`); values longer than
        :data:`~engine.storage.VERDICT_BYTES` are left unread."""
        if not keys or "verdicts" not in self._tables():
            return {}
        out: dict[bytes, str] = {}
        query = (
            "SELECT pair, verdict FROM verdicts"
            f" WHERE length(CAST(verdict AS BLOB)) <= {VERDICT_BYTES} AND pair"
        )
        with self.transaction() as db:
            for k, v in select_in(db, query, keys):
                if isinstance(k, bytes) and isinstance(v, str):
                    out[k] = v
        return out

    def put_verdicts(self, items: dict[bytes, str]) -> None:
        if items and not self.readonly:
            with self.transaction(write=True) as db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", items.items())

    def forget_verdicts(self) -> None:
        """Drop every cached verdict (they are made again as needed)."""
        if "verdicts" in self._tables():
            with self.transaction(write=True) as db:
                db.execute("DELETE FROM verdicts")

    def rejections(self) -> set[tuple[str, str]]:
        """Pairs of paths the user said are not copies (each sorted). Rows lookalike never
        writes (other types, paths too long or not inside the folder) are left out."""
        if "rejected" not in self._tables():
            return set()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT a, b FROM rejected WHERE typeof(a) = 'blob' AND typeof(b) = 'blob'"
                f" AND length(a) <= {PATH_BYTES} AND length(b) <= {PATH_BYTES}"
                f" LIMIT {REJECTIONS_MAX}"
            ).fetchall()
        return checked_pairs((decode_path(a), decode_path(b)) for a, b in rows)

    def reject(self, a: str, b: str) -> None:
        a, b = sorted((a, b))
        with self.transaction(write=True) as db:
            db.execute(
                "INSERT OR IGNORE INTO rejected VALUES (?, ?)", (encode_path(a), encode_path(b))
            )

    def forget_rejections(self) -> int:
        with self.transaction(write=True) as db:
            return db.execute("DELETE FROM rejected").rowcount

    def choices(self, kind: str) -> dict[str, bytes]:
        if kind not in CHOICE_KINDS or "choices" not in self._tables():
            return {}
        with self.transaction() as db:
            rows = db.execute(
                "SELECT path, value FROM choices WHERE kind = ? AND typeof(path) = 'blob'"
                f" AND length(path) <= {PATH_BYTES} LIMIT {REJECTIONS_MAX}",
                (kind,),
            ).fetchall()
        return checked_choices((decode_path(p), v) for p, v in rows)

    def set_choices(self, kind: str, add: dict[str, bytes], remove: Sequence[str] = ()) -> None:
        if kind not in CHOICE_KINDS:
            raise ValueError(f"not a kind of choice: {kind}")
        with self.transaction(write=True) as db:
            db.executemany(
                "DELETE FROM choices WHERE kind = ? AND path = ?",
                [(kind, encode_path(p)) for p in remove],
            )
            db.executemany(
                "INSERT OR REPLACE INTO choices VALUES (?, ?, ?)",
                [(kind, encode_path(p), bytes(v)) for p, v in add.items()],
            )

    def get_blob(self, name: str) -> bytes | None:
        if "blobs" not in self._tables():
            return None
        with self.transaction() as db:
            row = db.execute(
                f"SELECT data FROM blobs WHERE name = ? AND length(data) <= {BLOB_MAX}", (name,)
            ).fetchone()
        return row[0] if row is not None and isinstance(row[0], bytes) else None

    def put_blob(self, name: str, data: bytes) -> None:
        with self.transaction(write=True) as db:
            db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (name, sqlite3.Binary(data)))

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
