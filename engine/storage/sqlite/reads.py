"""Reading a SQLite index (the readers' half of :class:`engine.storage.IndexStore`): the
committed snapshot of the arrays, paths by slot, a path's slot, every image's facts.
Every value read is checked as untrusted (the damaged-index error names what is
wrong)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np

from engine.names import printable
from engine.sandbox import Folder
from engine.storage import (
    ImageFacts,
    IndexDamaged,
    RowFile,
    Snapshot,
    SnapshotMoved,
    SortedBands,
    StoredFile,
)
from engine.storage.sqlite.arrays import (
    CODE_DTYPE,
    FEATURE_DTYPE,
    KEY_DTYPE,
    LSH_STEP,
    SLOT_DTYPE,
    ArrayFiles,
    whole,
)
from engine.storage.sqlite.schema import (
    decode_path,
    encode_path,
    is_int,
    select_in,
)


class SQLiteReads:
    """The reading methods of :class:`engine.storage.sqlite.SQLiteStore` (which gives the
    connection, the arrays, the metadata and the damaged-index error)."""

    if TYPE_CHECKING:
        arrays: ArrayFiles
        folder: Folder
        _has_thumbs: bool
        _has_quality: bool

        def transaction(
            self, write: bool = False
        ) -> AbstractContextManager[sqlite3.Connection]: ...
        def damaged(self, why: str) -> IndexDamaged: ...
        def _meta(self, db: sqlite3.Connection) -> dict: ...
        def _dims(self, meta: dict) -> tuple[int, int, int]: ...

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
