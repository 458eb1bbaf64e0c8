"""The embedded index's tables, and how values go in and out of them."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator

from engine.storage import IndexFileError, NewerIndex, OlderIndex

#: 3: codes, features and band keys in arrays beside the database; stable image ids.
#: 4: each image's difference hash and pixel count (for triage).
SCHEMA_VERSION = 4

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS choices (
    kind TEXT NOT NULL, path BLOB NOT NULL, value BLOB, PRIMARY KEY (kind, path)
);
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);
"""


#: The caches and choices triage keeps, and their exact columns: a table of another shape was not
#: made by lookalike and is damage, never read.
CACHE_TABLES = {
    "verdicts": ["pair", "verdict"],
    "rejected": ["a", "b"],
    "choices": ["kind", "path", "value"],
    "blobs": ["name", "data"],
}


def encode_path(path: str) -> bytes:
    """A path's exact bytes, as stored (names need not be valid UTF-8)."""
    return os.fsencode(path)


def decode_path(raw: bytes | str) -> str:
    return os.fsdecode(raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace"))


def select_in(db: sqlite3.Connection, query: str, values: list) -> Iterator[tuple]:
    """Rows of ``query IN (values)``, asked 500 values at a time (SQLite's limit on
    parameters)."""
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        yield from db.execute(f"{query} IN ({','.join('?' * len(chunk))})", chunk)


def is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_tables(
    db: sqlite3.Connection, path: str, root: str | None, damaged, create_missing: bool
) -> tuple[bool, bool]:
    """Refuse what is not a lookalike index of this schema; add the columns an index of
    this schema from before thumbnails or quality measurements lacks (*create_missing*).
    Returns whether the thumb and quality columns are there."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    if not {"meta", "images"} <= tables:
        raise IndexFileError(f"unreadable index {path}: not a lookalike index")
    version = check_version(db, path, root, damaged)
    if version is None:
        if db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None:
            raise damaged("no schema version")
        if create_missing:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
        return True, True
    if "dead" not in tables:
        raise damaged("a table is missing")
    for table, want in CACHE_TABLES.items():
        if table in tables:
            have = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            if have != want:
                raise damaged(f"the {table} table is not one lookalike made")
    columns = {r[1] for r in db.execute("PRAGMA table_info(images)")}
    has_thumbs = "thumb" in columns
    has_quality = "quality" in columns
    if create_missing and not has_thumbs:  # an index from before thumbnails
        with db:
            db.execute("ALTER TABLE images ADD COLUMN thumb BLOB")
        has_thumbs = True
    if create_missing and not has_quality:  # from before quality measurements
        with db:
            db.execute("ALTER TABLE images ADD COLUMN quality BLOB")
        has_quality = True
    return has_thumbs, has_quality


def check_version(db: sqlite3.Connection, path: str, root: str | None, damaged) -> int | None:
    """The stored schema version (None when there is none yet); an older or newer one
    is refused with the way out."""
    raw = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    try:
        version = json.loads(raw[0]) if raw else None
    except ValueError:
        version = "?"
    if version is None:
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        raise damaged("schema version is not a number")
    if version > SCHEMA_VERSION:
        raise NewerIndex(
            f"{path} was written by a newer lookalike (schema {version});"
            " upgrade, or rebuild with --rebuild"
        )
    if version < SCHEMA_VERSION:
        raise OlderIndex(
            f"{path} was written by an older lookalike (schema {version});"
            f" run lookalike index {root or 'DIR'} --rebuild"
        )
    return version
