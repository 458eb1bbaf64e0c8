"""Where files are, and moving one file (see :mod:`engine.quarantine`: nothing is
deleted but lookalike's own copies; a crash leaves a state undo finishes)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from engine.errors import IndexFileError
from engine.names import check_relpath, first_bad_relpath
from engine.paths import INDEX_DIRNAME
from engine.quarantine.common import PART, Keep, _inside
from engine.sandbox import Folder, Refused

#: Bytes copied per write across file systems.
CHUNK = 1 << 20


# --- where files are ----------------------------------------------------------------------


class _Skip(Exception):
    """One file that cannot be moved; the message says why."""


def _parent(top: Folder, root: str, rel: str, create: bool = False) -> tuple[Folder, str]:
    """The folder of ROOT-relative *rel*, reached by its real path (which must stay
    inside ROOT and out of the index folder), opened from ROOT without following a link
    (made when *create*), and the file's name in it."""
    why = check_relpath(rel)
    if why is not None:
        raise _Skip(why)
    head, _, name = rel.rpartition("/")
    real = os.path.realpath(os.path.join(root, head)) if head else root
    if not _inside(real, root):
        raise _Skip("leads out of the folder")
    inner = os.path.relpath(real, root) if real != root else ""
    if inner.split("/", 1)[0] == INDEX_DIRNAME:
        raise _Skip("inside the index folder")
    return _open_sub(top, inner, create), name


def _below(dest: Folder, to: str, create: bool) -> tuple[Folder, str]:
    """The folder of *to* below the destination, no link followed (made when *create*)."""
    why = check_relpath(to)
    if why is not None:
        raise _Skip(why)
    head, _, name = to.rpartition("/")
    return _open_sub(dest, head, create), name


def _open_sub(top: Folder, rel: str, create: bool) -> Folder:
    """``top.sub(rel)``, any failure this file's skip."""
    try:
        return top.sub(rel, create=create)
    except FileNotFoundError:
        raise _Skip("not there any more") from None
    except (Refused, IndexFileError) as exc:
        raise _Skip(str(exc)) from None


def _entry(folder: Folder, name: str) -> tuple[str, str]:
    """A directory entry by its folder's real path: what a rename of it moves."""
    return os.path.realpath(folder.at()), name


def _entries(root: str, rel: str) -> set[tuple[str, str]]:
    """The directory entries *rel* stands for: its own (its folder's links resolved)
    and, when it is a link, every link and file it leads through."""
    out: set[tuple[str, str]] = set()
    path = os.path.join(root, rel)
    for _ in range(40):  # the kernel's own limit on links in a row
        head, name = os.path.split(path)
        real_head = os.path.realpath(head)
        out.add((real_head, name))
        full = os.path.join(real_head, name)
        if not os.path.islink(full):
            break
        path = os.path.join(real_head, os.readlink(full))
    return out


class _Guard:
    """What must not move (:class:`Keep`), found by real location. A file that moves
    can only be a kept one under the same name (a folder link: ``alias/x.png`` is
    ``orig/x.png``) or the target of a kept link: only those kept paths are resolved,
    when a file of their name moves (a twenty-thousand-group move resolves a handful)."""

    def __init__(self, root: str, keep: Keep | None) -> None:
        keep = keep or Keep()
        self.root = root
        self.by_name: dict[str, list[str]] = {}
        self.entries: dict[tuple[str, str], str] = {}
        paths = list(keep.paths)
        if first_bad_relpath(paths) is not None:
            paths = [p for p in paths if check_relpath(p) is None]
        for rel in paths:
            self.by_name.setdefault(rel.rpartition("/")[2], []).append(rel)
        links = keep.links
        if links is None:
            links = tuple(p for p in paths if os.path.islink(os.path.join(root, p)))
        for rel in links:  # a kept link's target must stay too
            if check_relpath(rel) is None:
                for e in _entries(root, rel):
                    self.entries.setdefault(e, rel)
        self.resolved: set[str] = set()
        self.folders = [
            os.path.realpath(os.path.join(root, f)) for f in keep.folders if f != "."
        ] + ([root] if "." in keep.folders else [])

    def why(self, folder: Folder, name: str) -> str | None:
        real_head, _ = entry = _entry(folder, name)
        if name not in self.resolved:
            self.resolved.add(name)
            for rel in self.by_name.get(name, ()):
                for e in _entries(self.root, rel):
                    self.entries.setdefault(e, rel)
        if entry in self.entries:
            return f"the same file as {self.entries[entry]}, which stays (reached by a link)"
        if any(_inside(real_head, f) for f in self.folders):
            return "under a kept folder (by its real path)"
        return None


# --- moving one file ----------------------------------------------------------------------


def _rename(src: Folder, name: str, dst: Folder, dst_name: str) -> None:
    """Rename without replacing (a hook the tests use to play a second disk)."""
    src.rename(name, dst, dst_name)


def _sha(folder: Folder, name: str, limit: int | None = None) -> str:
    """SHA-256 of a file's first *limit* bytes (all of it by default)."""
    h = hashlib.sha256()
    left = limit
    fd = folder.open(name, os.O_RDONLY)
    try:
        while left is None or left > 0:
            chunk = os.read(fd, CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _is_copy_of(copy: Folder, copy_name: str, orig: Folder, name: str) -> bool:
    """Whether *copy_name* holds the bytes of *name*, or a beginning of them (a copy cut
    short): a plain file (or, for a link, a link to the same place)."""
    try:
        st, ost = copy.lstat(copy_name), orig.lstat(name)
        if st is None or ost is None:
            return False
        if stat.S_ISLNK(st.st_mode) and stat.S_ISLNK(ost.st_mode):
            return os.readlink(copy_name, dir_fd=copy.fd) == os.readlink(name, dir_fd=orig.fd)
        if not (stat.S_ISREG(st.st_mode) and stat.S_ISREG(ost.st_mode)):
            return False
        if st.st_size > ost.st_size:
            return False
        return _sha(copy, copy_name) == _sha(orig, name, st.st_size)
    except (OSError, Refused):
        return False


def _copy(src: Folder, name: str, dst: Folder, part: str) -> None:
    fd_in = src.open(name, os.O_RDONLY)
    try:
        fd_out = dst.create(part, 0o600)
        try:
            while chunk := os.read(fd_in, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view) :]
            st = os.fstat(fd_in)
            os.fchmod(fd_out, stat.S_IMODE(st.st_mode))
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
        os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst.fd)
    finally:
        os.close(fd_in)


def move_file(src: Folder, name: str, dst: Folder, dst_name: str) -> None:
    """Move *name* of *src* to *dst_name* of *dst*, never replacing anything; across file
    systems, copy into a hidden part file, check it, rename it into place, then remove
    the original. A kill at any point leaves the original whole or the destination
    whole (and perhaps a part file or a full copy, which :func:`undo` removes)."""
    try:
        _rename(src, name, dst, dst_name)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    part = "." + dst_name + PART
    if dst.lstat(part) is not None:
        if not _is_copy_of(dst, part, src, name):
            raise OSError(errno.EEXIST, f"{dst.child(part)} is in the way")
        dst.unlink(part)
    st = src.lstat(name)
    if st is None:
        raise FileNotFoundError(errno.ENOENT, "not there any more")
    if stat.S_ISLNK(st.st_mode):  # a link moves as a link
        os.symlink(os.readlink(name, dir_fd=src.fd), part, dir_fd=dst.fd)
    else:
        _copy(src, name, dst, part)
        copied = dst.lstat(part)
        if copied is None or copied.st_size != st.st_size or _sha(dst, part) != _sha(src, name):
            dst.unlink(part)
            raise OSError(errno.EIO, f"the copy of {src.child(name)} differs from it")
    try:
        dst.rename(part, dst, dst_name)
    except FileExistsError:
        dst.unlink(part)
        raise OSError(errno.EEXIST, f"{dst.child(dst_name)} already exists") from None
    dst.sync()
    src.unlink(name)
