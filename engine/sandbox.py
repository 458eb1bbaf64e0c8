"""The index folder as a sandbox: the one way into ``DIR/.lookalike`` and below it.

Why: ``DIR/.lookalike`` comes with the folder. A data set downloaded with a crafted one,
or a folder someone else can write, may hold symbolic links where lookalike expects
folders and files of its own (``quarantine/ -> /home/you``, ``exports/results-….csv ->
~/.bashrc``). Code that joins names under it and opens them would follow those links
out. So here:

* A :class:`Folder` is held by descriptor. Below it, every folder is opened one
  component at a time with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's
  descriptor (made there first when asked), and every file relative to its folder's
  descriptor with ``O_NOFOLLOW``. A link or a non-folder in the way is
  :class:`Refused`, in one line; nothing is followed.
* New files are made with ``O_EXCL``: a name that exists (a planted link, a file) is
  never written through. Renames never replace (``renameat2(RENAME_NOREPLACE)``).
* Libraries that only take a path (SQLite) get one that goes through the descriptor
  (``/proc/self/fd/N/NAME``), so the folder they reach is the one that was checked,
  even if a link is put in its place afterwards.

*Anchors* are the folders the user named (the indexed folder, ``--move-to``,
``--index``): opened as given, links in their own path followed, because they are the
user's choice. Only what lies below an anchor is guarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path

from engine.errors import IndexFileError, Refused
from engine.paths import INDEX_DIRNAME

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: The descriptor paths the kernel offers (Linux); elsewhere paths are joined by name.
_PROC_FD = Path("/proc/self/fd")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise Refused(f"not a name inside a folder: {name!r}")


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()
_RENAME_NOREPLACE = 1


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename *src* (in folder *src_fd*) to *dst* (in *dst_fd*), never replacing what is
    there (FileExistsError). Where the file system cannot promise that, the name is
    checked first (a window of a few microseconds)."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    try:
        os.lstat(dst, dir_fd=dst_fd)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


class Folder:
    """A folder held open by descriptor (see the module's notes). Close it, or use it
    as a context manager."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def anchor(cls, path: str | os.PathLike[str], create: bool = False) -> Folder:
        """A folder the user named, links in its path followed (made when *create*)."""
        path = os.path.abspath(os.fspath(path))
        try:
            if create:
                os.makedirs(path, exist_ok=True)
            return cls(os.open(path, _DIR_FLAGS), path)
        except NotADirectoryError:
            raise Refused(f"not a folder: {path}") from None
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise IndexFileError(f"cannot open {path}: {exc.strerror or exc}") from None

    def child(self, name: str) -> str:
        """*name* in this folder, as a path for messages."""
        return os.path.join(self.path, name)

    def sub(self, rel: str, create: bool = False) -> Folder:
        """The folder *rel* (``a/b``) below this one, each part opened without following
        a link (and made first when *create*). A link or a file in the way: Refused."""
        parts = [p for p in rel.split("/") if p]
        for part in parts:
            _check_name(part)
        fd, path = os.dup(self.fd), self.path
        for part in parts:
            path = os.path.join(path, part)
            fd = self._step(fd, part, path, create)  # closes the one it is given
        return Folder(fd, path)

    @staticmethod
    def _step(fd: int, part: str, path: str, create: bool) -> int:
        """Open folder *part* below descriptor *fd* (closed here), return its descriptor."""
        try:
            for attempt in range(2):
                try:
                    return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create or attempt:
                        raise
                    # made meanwhile, or a dangling link: the next open decides
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(
                    f"{path} is a symbolic link or not a folder: lookalike does not go"
                    " through it (remove it)"
                ) from None
            if isinstance(exc, FileNotFoundError):
                raise
            raise IndexFileError(f"cannot open {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def at(self, name: str = "") -> str:
        """A path that reaches *name* through this descriptor, for libraries that take
        paths (SQLite): the folder checked, never one put in its place later."""
        if name:
            _check_name(name)
        if _PROC_FD.is_dir():
            base = f"{_PROC_FD}/{self.fd}"
            return f"{base}/{name}" if name else base
        return self.child(name) if name else self.path

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        """A file of this folder, never through a link (ELOOP: Refused)."""
        _check_name(name)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(
                    f"{self.child(name)} is a symbolic link: lookalike does not open it"
                ) from None
            raise

    def create(self, name: str, mode: int = 0o644) -> int:
        """A new file, opened for writing: FileExistsError if the name is taken (by a
        file or a link, which is never written through)."""
        return self.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, name: str, limit: int) -> bytes:
        """A plain file's bytes, at most *limit* of them (more: Refused)."""
        fd = self.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Refused(f"{self.child(name)} is not a plain file")
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise Refused(f"{self.child(name)} is larger than lookalike ever writes it")
        return data

    def lstat(self, name: str) -> os.stat_result | None:
        _check_name(name)
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def unlink(self, name: str) -> None:
        _check_name(name)
        os.unlink(name, dir_fd=self.fd)

    def rename(self, name: str, dest: Folder, dest_name: str) -> None:
        """Move *name* to *dest_name* in *dest*, never replacing (FileExistsError)."""
        _check_name(name)
        _check_name(dest_name)
        rename_noreplace(self.fd, name, dest.fd, dest_name)

    def sync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def same(self, other: Folder) -> bool:
        a, b = os.fstat(self.fd), os.fstat(other.fd)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)


def index_folder(root: str | os.PathLike[str], create: bool = True) -> Folder:
    """``ROOT/.lookalike``, opened without following a link (made when *create*)."""
    with Folder.anchor(root) as top:
        try:
            return top.sub(INDEX_DIRNAME, create=create)
        except Refused as exc:
            raise Refused(f"{exc}, or pass --index PATH") from None


def new_file(folder: Folder, stem: str, suffix: str) -> tuple[str, int]:
    """A file name in *folder* that is not taken, ``STEM.SUFFIX`` or ``STEM-2.SUFFIX``…,
    made and opened for writing (a name that exists, a planted link say, is skipped,
    never written through)."""
    for n in range(1, 1000):
        name = f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            return name, folder.create(name)
        except FileExistsError:
            continue
    raise Refused(f"no free name for {folder.child(stem + suffix)}")
