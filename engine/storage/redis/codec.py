"""How an image's record and its vectors are laid out in Redis: raw bytes, never
pickles, each checked before it sizes anything."""

from __future__ import annotations

import os
import struct

import numpy as np

from engine.storage import image_id

#: 1: the first shared layout.
SCHEMA_VERSION = 1
#: Rows per vector string (a features string of Lite0 is then 40 MiB, under Redis' 512).
#: One less than a power of two: a full string plus its header then fits a jemalloc size
#: class exactly (2**14 rows would round up by a quarter).
CHUNK = (1 << 14) - 1
#: Slots handed out to batches that never set their bits (killed workers) may reach this
#: many past the live bitmap before the counter counts as damaged.
MAX_RESERVED = 1 << 20

CODE_DTYPE = np.dtype("<f4")
FEATURE_DTYPE = np.dtype("<f2")
KEY_DTYPE = np.dtype("<u8")
ID_DTYPE = np.dtype("<i8")
#: size, mtime, slot, pixels, dhash, flags, digest length, path length
HEAD = struct.Struct("<qqqqQBBH")
OK, DHASH, PIXELS, QUALITY = 1, 2, 4, 8
#: the quality measurements an ok record carries after its path (engine.quality.SIZE)
QUALITY_SIZE = 28


def pack_record(
    path: str,
    size: int,
    mtime: int,
    slot: int,
    ok: bool,
    digest,
    dhash,
    pixels,
    error: str = "",
    quality: bytes | None = None,
) -> bytes:
    """An image's record: a fixed head, the digest, the path, then the error of a failed
    file or the quality measurements of a usable one."""
    raw = os.fsencode(path)
    digest = digest if isinstance(digest, bytes) and len(digest) == 32 else b""
    measured = quality if ok and isinstance(quality, bytes) and len(quality) == 28 else None
    flags = (OK if ok else 0) | (DHASH if dhash is not None else 0)
    flags |= PIXELS if pixels is not None else 0
    flags |= QUALITY if measured is not None else 0
    head = HEAD.pack(
        int(size),
        int(mtime),
        int(slot),
        int(pixels or 0),
        int(dhash or 0) & ((1 << 64) - 1),
        flags,
        len(digest),
        len(raw),
    )
    return head + digest + raw + (measured or error.encode("utf-8", "replace"))


class Record:
    """An image record read back (a malformed one raises *damaged*)."""

    __slots__ = (
        "path",
        "size",
        "mtime",
        "slot",
        "ok",
        "digest",
        "dhash",
        "pixels",
        "error",
        "quality",
    )

    def __init__(self, raw: object, damaged) -> None:
        """*raw*: whatever the server returned (anything but bytes of the record's shape is
        the damaged-index error)."""
        if not isinstance(raw, bytes) or len(raw) < HEAD.size:
            raise damaged("an image record is too short")
        size, mtime, slot, pixels, dhash, flags, dlen, plen = HEAD.unpack_from(raw)
        if dlen not in (0, 32) or HEAD.size + dlen + plen > len(raw) or slot < -1:
            raise damaged("an image record is malformed")
        at = HEAD.size
        self.digest = raw[at : at + dlen] or None
        self.path = os.fsdecode(raw[at + dlen : at + dlen + plen])
        tail = raw[at + dlen + plen :]
        self.quality = None
        if flags & QUALITY:
            if len(tail) != QUALITY_SIZE:
                raise damaged("a quality record is not 28 bytes")
            self.quality, tail = tail, b""
        self.error = tail.decode("utf-8", "replace")
        self.size, self.mtime, self.slot = size, mtime, slot
        self.ok = bool(flags & OK)
        self.dhash = dhash if flags & DHASH else None
        self.pixels = pixels if flags & PIXELS else None


def id_bytes(path: str) -> bytes:
    return image_id(path).to_bytes(8, "little", signed=True)
