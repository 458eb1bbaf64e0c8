"""The flat array files beside an SQLite index: named by kind and generation, opened
only as regular files of their own (never through a link, always relative to the index
folder's descriptor), appended to and flushed before the transaction that commits them,
rewritten whole under a temporary name. See :mod:`engine.storage.sqlite` for the layout
and why."""

from __future__ import annotations

import errno
import mmap
import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import suppress

import numpy as np

from engine.names import printable
from engine.sandbox import Folder
from engine.storage import DiskFull, IndexDamaged, IndexFileError, SnapshotMoved

CODE_DTYPE = np.dtype("<f4")
FEATURE_DTYPE = np.dtype("<f2")
KEY_DTYPE = np.dtype("<u8")
SLOT_DTYPE = np.dtype("<i4")
ARRAY_KINDS = ("codes", "features", "bands", "lsh-keys", "lsh-slots", "lsh-fences")
#: Generations of the array files are whole numbers up to this.
GEN_MAX = (1 << 31) - 1
#: Every LSH_STEP-th sorted key of each band is kept in memory (the "fences").
LSH_STEP = 1024


def describe(exc: BaseException) -> str:
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


def no_space(path: str) -> bool:
    """Whether the file system holding *path* has no block left."""
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(path)) or ".").f_bavail == 0
    except OSError:
        return False


def write_all(fd: int, data: np.ndarray, offset: int) -> None:
    raw = memoryview(np.ascontiguousarray(data).data).cast("B")
    done = 0
    while done < len(raw):
        done += os.pwrite(fd, raw[done:], offset + done)
    os.fdatasync(fd)


def write_error(path: str, exc: OSError) -> IndexFileError:
    if describe(exc) == "disk full":
        return DiskFull(path)
    return IndexFileError(f"cannot write {path}: {describe(exc)}")


def whole(meta: dict, key: str, lo: int, hi: int, damaged) -> int:
    v = meta.get(key, 0)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise damaged(f"{key} {printable(repr(v)[:40])} is out of range")
    return v


class ArrayFiles:
    """The arrays of the index whose database is ``BASE.sqlite`` in *folder*. Files are
    named here by their name in the folder (``index.codes.3``) and reached through its
    descriptor; messages name them by the index's path."""

    def __init__(
        self, folder: Folder, base: str, index_path: str, damaged: Callable[[str], IndexDamaged]
    ) -> None:
        self.folder, self.base, self.path, self.damaged = folder, base, index_path, damaged

    def file(self, kind: str, gen: int) -> str:
        """The name of the file of *kind* (``codes``, ``bands``, ...) of generation *gen*."""
        return f"{self.base}.{kind}.{int(gen)}"

    def gens(self, meta: dict) -> tuple[int, int, int]:
        """The generations of the vectors, the band keys and the sorted LSH tables: small
        whole numbers, as lookalike writes them (anything else names a file it never
        made, ``x/../../victim`` say, and is damage)."""
        return (
            whole(meta, "vec_gen", 0, GEN_MAX, self.damaged),
            whole(meta, "band_gen", 0, GEN_MAX, self.damaged),
            whole(meta, "lsh_gen", 0, GEN_MAX, self.damaged),
        )

    def open(self, name: str, flags: int, what: str) -> int:
        """Open an array file of this index: a regular file with one name, never through a
        symbolic link (a crafted index must not make lookalike read or write elsewhere)."""
        try:
            fd = os.open(
                name,
                flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                0o644,
                dir_fd=self.folder.fd,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.damaged(f"the {what} file is a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise SnapshotMoved(f"the {what}") from None
            if describe(exc) == "disk full":
                raise DiskFull(self.path) from None
            raise IndexFileError(
                f"cannot open {self.folder.child(name)}: {describe(exc)}"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise self.damaged(f"the {what} file is not a file lookalike wrote")
        return fd

    def append(self, name: str, offset: int, data: np.ndarray, what: str = "array") -> None:
        """Write *data* at byte *offset* of *name* and flush it to disk. The file must
        hold every byte before *offset* (the committed rows): a shorter one is damage,
        never filled with zeros."""
        fd = self.open(name, os.O_RDWR | os.O_CREAT, what)
        try:
            if os.fstat(fd).st_size < offset:
                raise self.damaged(f"the {what} file is shorter than the index says")
            write_all(fd, data, offset)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        finally:
            os.close(fd)

    def write_whole(self, name: str, data: np.ndarray) -> None:
        """Write a whole array file under a temporary name, then rename it into place."""
        tmp = name + ".part"
        self.remove(tmp)  # a killed writer's, or a link someone put there
        try:
            fd = self.folder.create(tmp)
            try:
                write_all(fd, data, 0)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.folder.fd, dst_dir_fd=self.folder.fd)
        except OSError as exc:
            self.remove(tmp)
            raise write_error(self.path, exc) from None

    def open_sized(self, name: str, dtype: np.dtype, shape: tuple[int, ...], what: str):
        """The file opened for reading, if *shape* needs any bytes (else None); it must
        hold them all (a missing file means a writer swapped generations under this
        reader)."""
        need = int(np.prod(shape)) * dtype.itemsize
        if need == 0:
            return None
        fd = self.open(name, os.O_RDONLY, what)
        if os.fstat(fd).st_size < need:
            os.close(fd)
            raise self.damaged(f"the {what} file is shorter than the index says")
        return fd

    def map(self, name: str, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
        fd = self.open_sized(name, dtype, shape, what)
        if fd is None:
            return np.zeros(shape, dtype)
        try:
            need = int(np.prod(shape)) * dtype.itemsize
            view = mmap.mmap(fd, need, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        return np.frombuffer(view, dtype, int(np.prod(shape))).reshape(shape)

    def remove(self, *names: str) -> None:
        for name in names:
            with suppress(FileNotFoundError):
                self.folder.unlink(name)

    def current(self, meta: dict) -> list[str]:
        """The array files of the generations *meta* names."""
        vec, band, lsh = self.gens(meta)
        kinds = [("codes", vec), ("features", vec), ("bands", band)]
        kinds += [(k, lsh) for k in ("lsh-keys", "lsh-slots", "lsh-fences")]
        return [self.file(kind, gen) for kind, gen in kinds]

    def every(self) -> list[str]:
        """Every array file of this index, of any generation (and temporary ones)."""
        return every_array_file(self.folder, self.base)


def every_array_file(folder: Folder, base: str) -> list[str]:
    """The names in *folder* of the arrays of the index ``BASE.sqlite``."""
    prefixes = tuple(f"{base}.{kind}." for kind in ARRAY_KINDS)
    return [name for name in folder.names() if name.startswith(prefixes)]
