"""What a shared index keeps beside the index (:class:`engine.storage.Annotations`), in
hashes of their own: cached copy verdicts, rejected pairs, choices, named blobs. Read
strictly: a value of another type or size is left out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import IndexDamaged
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
from engine.storage.redis.connection import (
    guarded,
)


class RedisAnnotations(Annotations):
    """The annotations half of :class:`engine.storage.redis.RedisStore` (which gives the
    connection and the key names)."""

    if TYPE_CHECKING:
        r: Any

        def k(self, name: str) -> bytes: ...
        def damaged(self, why: str) -> IndexDamaged: ...

    @guarded
    def verdicts(self, keys: list[bytes]) -> dict[bytes, str]:
        """Cached verdicts; values longer than :data:`~engine.storage.VERDICT_BYTES` are
        left unread (their lengths are asked first)."""
        if not keys:
            return {}
        if self.r.type(self.k("verdicts")) not in (b"hash", b"none"):
            raise self.damaged("the cached verdicts are not a hash")
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hstrlen(self.k("verdicts"), k)
        short = [k for k, n in zip(keys, pipe.execute()) if 0 < int(n) <= VERDICT_BYTES]
        if not short:
            return {}
        got = self.r.hmget(self.k("verdicts"), short)
        return {k: v.decode("utf-8", "replace") for k, v in zip(short, got) if isinstance(v, bytes)}

    @guarded
    def put_verdicts(self, items: dict[bytes, str]) -> None:
        if items:
            self.r.hset(self.k("verdicts"), mapping={k: v.encode() for k, v in items.items()})

    @guarded
    def forget_verdicts(self) -> None:
        self.r.delete(self.k("verdicts"))

    @guarded
    def rejections(self) -> set[tuple[str, str]]:
        """Pairs marked not copies; members lookalike never writes are left out."""
        import os

        key = self.k("rejected")
        if self.r.type(key) not in (b"set", b"none"):
            raise self.damaged("the rejected pairs are not a set")
        found = []
        for n, raw in enumerate(self.r.sscan_iter(key, count=1000)):
            if n >= REJECTIONS_MAX:
                break
            a, sep, b = raw.partition(b"\0")
            if sep and len(a) <= PATH_BYTES and len(b) <= PATH_BYTES:
                found.append((os.fsdecode(a), os.fsdecode(b)))
        return checked_pairs(found)

    @guarded
    def reject(self, a: str, b: str) -> None:
        import os

        a, b = sorted((a, b))
        self.r.sadd(self.k("rejected"), os.fsencode(a) + b"\0" + os.fsencode(b))

    @guarded
    def forget_rejections(self) -> int:
        n = int(self.r.scard(self.k("rejected")))
        self.r.delete(self.k("rejected"))
        return n

    @guarded
    def choices(self, kind: str) -> dict[str, bytes]:
        import os

        if kind not in CHOICE_KINDS:
            return {}
        key = self.k("choices:" + kind)
        if self.r.type(key) not in (b"hash", b"none"):
            raise self.damaged("a set of choices is not a hash")
        rows = []
        for n, (path, value) in enumerate(self.r.hscan_iter(key, count=1000)):
            if n >= REJECTIONS_MAX:
                break
            if len(path) <= PATH_BYTES:
                rows.append((os.fsdecode(path), value))
        return checked_choices(rows)

    @guarded
    def set_choices(self, kind: str, add: dict[str, bytes], remove: Sequence[str] = ()) -> None:
        import os

        if kind not in CHOICE_KINDS:
            raise ValueError(f"not a kind of choice: {kind}")
        key = self.k("choices:" + kind)
        pipe = self.r.pipeline(transaction=True)
        if remove:
            pipe.hdel(key, *[os.fsencode(p) for p in remove])
        if add:
            pipe.hset(key, mapping={os.fsencode(p): bytes(v) for p, v in add.items()})
        pipe.execute()

    @guarded
    def get_blob(self, name: str) -> bytes | None:
        key = self.k("blob:" + name)
        if self.r.type(key) != b"string" or int(self.r.strlen(key)) > BLOB_MAX:
            return None
        got = self.r.get(key)
        return got if isinstance(got, bytes) else None

    @guarded
    def put_blob(self, name: str, data: bytes) -> None:
        self.r.set(self.k("blob:" + name), data)
