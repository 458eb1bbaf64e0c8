"""What a SQLite index keeps beside the index (:class:`engine.storage.Annotations`):
cached copy verdicts, rejected pairs, choices and named blobs, each in a table of its
own in the index file, read strictly (rows of another shape are left out)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from engine.storage import (
    BLOB_MAX,
    CHOICE_KINDS,
    PATH_BYTES,
    REJECTIONS_MAX,
    VERDICT_BYTES,
    checked_choices,
    checked_pairs,
)
from engine.storage.base import Annotations
from engine.storage.sqlite.schema import decode_path, encode_path, select_in


class SQLiteAnnotations(Annotations):
    """The annotations half of :class:`engine.storage.sqlite.SQLiteStore` (which gives
    the transactions and the read-only flag)."""

    if TYPE_CHECKING:
        readonly: bool

        def transaction(
            self, write: bool = False
        ) -> AbstractContextManager[sqlite3.Connection]: ...

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
