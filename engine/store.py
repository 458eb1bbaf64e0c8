"""The on-disk index: one SQLite file, behind a small interface.

Why SQLite: one file, transactions, and many readers beside one writer (WAL mode),
so the app and the command line can open the same index at once. Every batch of
encoded images is committed in one transaction; ``kill -9`` at any moment leaves
the last committed batch and everything before it, and the next run re-encodes
only what was in flight.

Nothing is ever unpickled. Codes and signatures are raw little-endian arrays in
BLOBs, metadata is JSON text: opening an index someone sent you runs no code.

The interface (:class:`IndexStore`) is what a second backend implements; the search
engine never sees SQL.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import LookalikeError
from engine.names import printable

#: 2: paths stored as their exact bytes (names need not be valid UTF-8).
SCHEMA_VERSION = 2
INDEX_DIRNAME = ".lookalike"
INDEX_FILENAME = "index.sqlite"

CODE_DTYPE = np.dtype("<f4")
SIG_DTYPE = np.dtype("<u4")


class IndexFileError(LookalikeError):
    """An index that cannot be opened or used; the message is one line for the user."""


@dataclass(frozen=True)
class StoredFile:
    size: int
    mtime_ns: int
    ok: bool


@dataclass
class Row:
    """One image's record. ``code``/``signature`` are None for failed files."""

    path: str
    size: int
    mtime_ns: int
    code: np.ndarray | None = None
    signature: np.ndarray | None = None
    error: str | None = None


@dataclass
class Vectors:
    """Every usable image's code and signature, in one block each."""

    ids: np.ndarray  # int64 (n,)
    paths: list[str]
    codes: np.ndarray  # float32 (n, hash_dim)
    signatures: np.ndarray  # uint32 (n, num_perm)


class IndexStore(Protocol):
    """What the engine needs from storage, and nothing more."""

    path: str

    def get_meta(self) -> dict: ...
    def set_meta(self, values: dict) -> None: ...
    def file_states(self) -> dict[str, StoredFile]: ...
    def count_ok(self) -> int: ...
    def write(self, rows: Iterable[Row], delete: Iterable[str] = ()) -> list[int]: ...
    def replace_signatures(self, ids: np.ndarray, signatures: np.ndarray, meta: dict) -> None: ...
    def vectors(self, hash_dim: int, num_perm: int) -> Vectors: ...
    def lookup(self, path: str, hash_dim: int) -> tuple[StoredFile, np.ndarray | None] | None: ...
    def failures(self) -> list[tuple[str, str]]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lookalike`` (``~/.cache/lookalike``): indexes of read-only
    folders and the exported ONNX models live here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookalike"


def default_index_path(root: str | os.PathLike[str]) -> Path:
    """``ROOT/.lookalike/index.sqlite``, or a per-user cache file when ROOT is read-only."""
    root = Path(root).resolve()
    local = root / INDEX_DIRNAME / INDEX_FILENAME
    if local.exists() or os.access(root, os.W_OK):
        return local
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return user_cache_dir() / f"{root.name or 'root'}-{digest}" / INDEX_FILENAME


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    code BLOB,
    signature BLOB
);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
"""


class IndexDamaged(IndexFileError):
    """An index whose content cannot be right (crafted, or damaged on disk)."""

    def __init__(self, index_path: str, why: str, root: str | None = None) -> None:
        self.index_path, self.why = index_path, why
        super().__init__(
            f"the index {index_path} is damaged ({why}); run lookalike index"
            f" {root or 'DIR'} --rebuild"
        )


def _encode_path(path: str) -> bytes:
    """A path's exact bytes, as stored (names need not be valid UTF-8)."""
    return os.fsencode(path)


def _decode_path(raw: bytes | str) -> str:
    return os.fsdecode(raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace"))


def _describe(exc: sqlite3.Error) -> str:
    """A one-line reason for an SQLite failure, in the user's words where we know them."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return "disk full"
    if code == sqlite3.SQLITE_READONLY or "readonly" in str(exc):
        return "read-only"
    return str(exc)


def _writable(path: Path) -> bool:
    """Whether this process may write *path* (or create it, when it does not exist)."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return os.access(parent, os.W_OK)


class SQLiteStore:
    """:class:`IndexStore` on one SQLite file in WAL mode.

    One connection, shared by the threads of one process under a lock; other
    processes get their own and SQLite's locking keeps them apart.

    An index this process cannot write (read-only media, another user's folder) is
    opened read-only (``readonly`` is then True) and every write raises a clear
    :class:`IndexFileError`. When even SQLite's shared-memory file cannot be created
    beside it, the file is opened as immutable: fine for read-only media, where
    nothing can change it.
    """

    def __init__(
        self, path: str | os.PathLike[str], create: bool = True, root: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.root = root
        self.readonly = False
        if not create and not os.path.exists(self.path):
            raise IndexFileError(f"no index at {self.path}")
        self._lock = threading.RLock()
        if os.path.exists(self.path) and not _writable(Path(self.path)):
            self._open_readonly()
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            raise IndexFileError(f"cannot create index folder for {self.path}: {reason}") from None
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
            self._check_schema(create_missing=True)
        except sqlite3.DatabaseError as exc:
            reason = _describe(exc)
            if reason == "disk full":
                raise IndexFileError(f"disk full: cannot write the index at {self.path}") from None
            raise IndexFileError(f"unreadable index {self.path}: {reason}") from None

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
        raw = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        try:
            version = json.loads(raw[0]) if raw else None
        except ValueError:
            version = "?"
        if version is None:
            if self._db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None:
                raise self.damaged("no schema version")
            if create_missing:
                self.set_meta({"schema": SCHEMA_VERSION})
            return
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.damaged("schema version is not a number")
        if version > SCHEMA_VERSION:
            raise IndexFileError(
                f"{self.path} was written by a newer lookalike (schema {version});"
                " upgrade, or rebuild with --rebuild"
            )
        if version < SCHEMA_VERSION:
            raise IndexFileError(
                f"{self.path} was written by an older lookalike (schema {version});"
                f" run lookalike index {self.root or 'DIR'} --rebuild"
            )

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
                    raise IndexFileError(
                        f"disk full: cannot write the index at {self.path}"
                    ) from None
                raise IndexFileError(f"index {self.path}: {reason}") from None

    def get_meta(self) -> dict:
        with self._tx() as db:
            rows = db.execute("SELECT key, value FROM meta").fetchall()
        out = {}
        for k, v in rows:
            try:
                out[k] = json.loads(v)
            except (TypeError, ValueError, RecursionError):
                raise self.damaged(f"metadata {k!r} is not valid JSON") from None
        return out

    def set_meta(self, values: dict) -> None:
        with self._tx(write=True) as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, allow_nan=False)) for k, v in values.items()],
            )

    def file_states(self) -> dict[str, StoredFile]:
        with self._tx() as db:
            rows = db.execute("SELECT path, size, mtime_ns, status FROM images")
            return {_decode_path(p): StoredFile(s, m, st == "ok") for p, s, m, st in rows}

    def count_ok(self) -> int:
        """Usable images (answered from the small status index, not the table)."""
        with self._tx() as db:
            return db.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]

    def write(self, rows: Iterable[Row], delete: Iterable[str] = ()) -> list[int]:
        """Insert or replace *rows* and delete paths, all in one transaction.

        Returns the ids of the rows, in order (None-free: failed rows get ids too).
        """
        ids = []
        with self._tx(write=True) as db:
            db.executemany(
                "DELETE FROM images WHERE path = ?", [(_encode_path(p),) for p in delete]
            )
            for r in rows:
                ok = r.code is not None
                cur = db.execute(
                    "INSERT OR REPLACE INTO images (path, size, mtime_ns, status, error, code,"
                    " signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        _encode_path(r.path),
                        r.size,
                        r.mtime_ns,
                        "ok" if ok else "failed",
                        r.error,
                        np.ascontiguousarray(r.code, CODE_DTYPE).tobytes() if ok else None,
                        np.ascontiguousarray(r.signature, SIG_DTYPE).tobytes() if ok else None,
                    ),
                )
                ids.append(cur.lastrowid)
        return ids

    def replace_signatures(self, ids: np.ndarray, signatures: np.ndarray, meta: dict) -> None:
        """Swap every signature (after the centre moved) and the meta that goes with them."""
        with self._tx(write=True) as db:
            db.executemany(
                "UPDATE images SET signature = ? WHERE id = ?",
                (
                    (np.ascontiguousarray(s, SIG_DTYPE).tobytes(), int(i))
                    for i, s in zip(ids, signatures)
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, allow_nan=False)) for k, v in meta.items()],
            )

    def vectors(self, hash_dim: int, num_perm: int) -> Vectors:
        """Every usable image's code and signature; raises :class:`IndexDamaged` when a
        value has the wrong size or a code is not finite."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, path, code, signature FROM images WHERE status = 'ok' ORDER BY id"
            ).fetchall()
        if not rows:
            return Vectors(
                np.zeros(0, np.int64),
                [],
                np.zeros((0, hash_dim), np.float32),
                np.zeros((0, num_perm), np.uint32),
            )
        code_len, sig_len = hash_dim * CODE_DTYPE.itemsize, num_perm * SIG_DTYPE.itemsize
        for r in rows:
            if not isinstance(r[2], bytes) or len(r[2]) != code_len:
                raise self.damaged(f"a code of the wrong size for {printable(_decode_path(r[1]))}")
            if not isinstance(r[3], bytes) or len(r[3]) != sig_len:
                raise self.damaged(
                    f"a signature of the wrong size for {printable(_decode_path(r[1]))}"
                )
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        codes = np.frombuffer(b"".join(r[2] for r in rows), CODE_DTYPE).reshape(len(rows), -1)
        if not np.isfinite(codes).all():
            bad = int(np.flatnonzero(~np.isfinite(codes).all(axis=1))[0])
            raise self.damaged(
                f"a code that is not finite for {printable(_decode_path(rows[bad][1]))}"
            )
        sigs = np.frombuffer(b"".join(r[3] for r in rows), SIG_DTYPE).reshape(len(rows), -1)
        paths = [_decode_path(r[1]) for r in rows]
        return Vectors(ids, paths, codes.astype(np.float32), sigs.astype(np.uint32))

    def lookup(self, path: str, hash_dim: int) -> tuple[StoredFile, np.ndarray | None] | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT size, mtime_ns, status, code FROM images WHERE path = ?",
                (_encode_path(path),),
            ).fetchone()
        if row is None:
            return None
        code = None
        if row[2] == "ok":
            if not isinstance(row[3], bytes) or len(row[3]) != hash_dim * CODE_DTYPE.itemsize:
                raise self.damaged(f"a code of the wrong size for {printable(path)}")
            code = np.frombuffer(row[3], CODE_DTYPE).astype(np.float32)
            if not np.isfinite(code).all():
                raise self.damaged(f"a code that is not finite for {printable(path)}")
        return StoredFile(row[0], row[1], row[2] == "ok"), code

    def failures(self) -> list[tuple[str, str]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT path, error FROM images WHERE status = 'failed' ORDER BY path"
            ).fetchall()
        return [(_decode_path(p), str(e) if e is not None else "") for p, e in rows]

    def clear(self) -> None:
        with self._tx(write=True) as db:
            db.execute("DELETE FROM images")
            db.execute("DELETE FROM meta WHERE key != 'schema'")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class WriterLock:
    """An exclusive lock file beside the index, held while one process indexes.

    Readers never take it. A second writer fails at once with a clear message
    instead of encoding the same files twice. The OS drops the lock when the
    holder dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, index_path: str) -> None:
        self.path = index_path + ".lock"
        self._fh = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise IndexFileError(
                f"another lookalike process is indexing into {self.path[:-5]}; try again when it ends"
            ) from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
