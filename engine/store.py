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

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import LookalikeError

SCHEMA_VERSION = 1
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
    def vectors(self) -> Vectors: ...
    def lookup(self, path: str) -> tuple[StoredFile, np.ndarray | None] | None: ...
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
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    code BLOB,
    signature BLOB
);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
"""


class SQLiteStore:
    """:class:`IndexStore` on one SQLite file in WAL mode.

    One connection, shared by the threads of one process under a lock; other
    processes get their own and SQLite's locking keeps them apart.
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = os.fspath(path)
        if not create and not os.path.exists(self.path):
            raise IndexFileError(f"no index at {self.path}")
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexFileError(
                f"cannot create index folder for {self.path}: {exc.strerror}"
            ) from None
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
            version = self.get_meta().get("schema")
            if version is None:
                self.set_meta({"schema": SCHEMA_VERSION})
            elif version > SCHEMA_VERSION:
                raise IndexFileError(
                    f"{self.path} was written by a newer lookalike (schema {version});"
                    " upgrade, or rebuild with --rebuild"
                )
        except sqlite3.DatabaseError as exc:
            raise IndexFileError(f"unreadable index {self.path}: {exc}") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.DatabaseError as exc:
                raise IndexFileError(f"index {self.path}: {exc}") from None

    def get_meta(self) -> dict:
        with self._tx() as db:
            return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}

    def set_meta(self, values: dict) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def file_states(self) -> dict[str, StoredFile]:
        with self._tx() as db:
            rows = db.execute("SELECT path, size, mtime_ns, status FROM images")
            return {p: StoredFile(s, m, st == "ok") for p, s, m, st in rows}

    def count_ok(self) -> int:
        """Usable images (answered from the small status index, not the table)."""
        with self._tx() as db:
            return db.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]

    def write(self, rows: Iterable[Row], delete: Iterable[str] = ()) -> list[int]:
        """Insert or replace *rows* and delete paths, all in one transaction.

        Returns the ids of the rows, in order (None-free: failed rows get ids too).
        """
        ids = []
        with self._tx() as db:
            db.executemany("DELETE FROM images WHERE path = ?", [(p,) for p in delete])
            for r in rows:
                ok = r.code is not None
                cur = db.execute(
                    "INSERT OR REPLACE INTO images (path, size, mtime_ns, status, error, code,"
                    " signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.path,
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
        with self._tx() as db:
            db.executemany(
                "UPDATE images SET signature = ? WHERE id = ?",
                (
                    (np.ascontiguousarray(s, SIG_DTYPE).tobytes(), int(i))
                    for i, s in zip(ids, signatures)
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )

    def vectors(self) -> Vectors:
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, path, code, signature FROM images WHERE status = 'ok' ORDER BY id"
            ).fetchall()
        if not rows:
            return Vectors(
                np.zeros(0, np.int64), [], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.uint32)
            )
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        codes = np.frombuffer(b"".join(r[2] for r in rows), CODE_DTYPE).reshape(len(rows), -1)
        sigs = np.frombuffer(b"".join(r[3] for r in rows), SIG_DTYPE).reshape(len(rows), -1)
        return Vectors(ids, [r[1] for r in rows], codes.astype(np.float32), sigs.astype(np.uint32))

    def lookup(self, path: str) -> tuple[StoredFile, np.ndarray | None] | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT size, mtime_ns, status, code FROM images WHERE path = ?", (path,)
            ).fetchone()
        if row is None:
            return None
        code = np.frombuffer(row[3], CODE_DTYPE).astype(np.float32) if row[3] else None
        return StoredFile(row[0], row[1], row[2] == "ok"), code

    def failures(self) -> list[tuple[str, str]]:
        with self._tx() as db:
            return list(
                db.execute("SELECT path, error FROM images WHERE status = 'failed' ORDER BY path")
            )

    def clear(self) -> None:
        with self._tx() as db:
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
