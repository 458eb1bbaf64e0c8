"""Setting files aside, and putting them back: moves with a record, never deletes.

:func:`plan` says what a move would do (the files, and how many under each top-level
folder) without touching anything: ``--dry-run`` prints it and the app shows it before
asking. :func:`move_aside` moves files of ROOT into a folder (by default the app's
quarantine, ``ROOT/.lookalike/quarantine``), keeping their paths relative to ROOT, and
writes every move to a record under ``ROOT/.lookalike/moves/`` *before* it happens
(flushed to disk) and again once done. :func:`undo` reads the newest record not yet
undone and moves every file back.

Rules: nothing is ever deleted but lookalike's own copies (a move across file systems
copies into a hidden ``.NAME.lookalike-part`` beside the destination, checks size and
SHA-256, renames it into place, and only then removes the original); nothing is moved
from outside ROOT, nor anywhere but into the named folder; nothing is overwritten (a
file already at the destination is skipped, with the reason; renames never replace).
Moving a symbolic link moves the link, never what it points at. A move that would move
nothing writes no record.

**The index folder is a sandbox** (:mod:`engine.sandbox`): the quarantine, its
sub-folders and ``moves/`` are opened by descriptor without following links, so a
crafted ``.lookalike/`` cannot send a file, or a record, out of ROOT. Inside ROOT, a
file's folder is reached by its real path, which must stay inside ROOT and out of
``.lookalike/``.

**Kept means kept, whatever the path** (:class:`Keep`). The pictures that stay (each
group's keeper, the kept copies) and the kept folders are compared with what would move
by real location: a folder link inside ROOT (``alias -> orig``) makes ``alias/x.png``
the very file ``orig/x.png``, and a kept link ``keep/a.png -> ../b.png`` needs ``b.png``;
neither is moved.

**A record cannot be turned against the user.** Records live in the indexed folder,
where anyone who can write a file can write one. Each line of a record carries an
HMAC made with a key of this user's own (``~/.cache/lookalike/moves.key``, created on
first use, readable by the user only), over the record's random nonce, the line's
number and its content. :func:`undo` accepts a record only if every line verifies and
it was written for this ROOT: a crafted record, one from another user or machine, or
one altered in any way is refused and renamed ``*.refused`` (kept, for the user to
read), so that older moves stay undoable. Even a genuine record only ever brings files
back to paths inside ROOT, never into ``.lookalike/``, and takes them from the folder
it names, reached the way it was reached when the files moved.

**A crash at any moment leaves a state undo finishes.** For each planned file: the
original still in place and nothing at the destination, left alone; both in place, the
destination (or a ``.lookalike-part`` beside it) is removed only when its bytes are the
original's or a beginning of them (a copy interrupted), otherwise both are kept and
reported; only the destination, it is moved back. Files that are nowhere do not block
the record: it is closed with them listed, so older moves stay undoable. A last line cut
short by a kill is ignored (a planned move is written, and flushed, before it starts).

**A destination inside ROOT** is recorded in the index as excluded from walks
(``excluded``), so moved files are never indexed, grouped or moved again; undoing the
last move into it takes it off that list, so the folder is indexed as before.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import IndexFileError, MoveError, SearchError, os_reason
from engine.names import check_relpath, count, first_bad_relpath, printable
from engine.paths import INDEX_DIRNAME, user_cache_dir
from engine.sandbox import Folder, Refused

#: Where the app sets files aside: hidden, so the walk never indexes them again.
QUARANTINE = Path(INDEX_DIRNAME) / "quarantine"
#: The records of moves, inside the index folder.
MOVES = f"{INDEX_DIRNAME}/moves"
#: The suffix of a copy under way (the name is hidden too: ``.NAME.lookalike-part``).
PART = ".lookalike-part"
#: Bytes copied per write across file systems.
CHUNK = 1 << 20
#: The longest line a record holds (two base64 paths of 4 KB, and the signature).
MAX_LINE = 1 << 16
#: The signing key's file in the user's cache folder, and its length.
KEY_FILE = "moves.key"
KEY_BYTES = 32


@dataclass
class MoveReport:
    moved: list[str] = field(default_factory=list)  # relative paths
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, why
    manifest: str = ""
    folder: str = ""
    #: undo: copies left by an interrupted move that were removed (their bytes were
    #: the original's), and files found nowhere (the record is closed regardless)
    cleaned: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MovePlan:
    """What a move would do, changing nothing."""

    folder: str  # the absolute destination
    paths: list[str]  # relative to ROOT, in order
    kept: list[str] = field(default_factory=list)  # left in place: under a kept folder

    def by_top(self) -> list[tuple[str, int]]:
        """How many files leave each top-level folder (``./`` for ROOT's own files),
        most first."""
        tops = Counter(p.split("/", 1)[0] + "/" if "/" in p else "./" for p in self.paths)
        return sorted(tops.items(), key=lambda kv: (-kv[1], kv[0]))

    def summary(self, root: str | os.PathLike[str]) -> list[str]:
        """The plan in words, escaped for a terminal: how many files, from where to
        where, how many leave each top-level folder, and how many copies stay."""
        stay = f"; {count(len(self.kept), 'copy', 'copies')} stay (under a kept folder)"
        moving = count(len(self.paths), "file")
        lines = [f"{moving} would move from {root} into {self.folder}{stay if self.kept else ''}"]
        lines += [f"  {n:6d} from {top}" for top, n in self.by_top()]
        return [printable(x) for x in lines]


@dataclass(frozen=True)
class Keep:
    """What a move must leave where it is: pictures that stay (each group's keeper, the
    copies under a kept folder) and kept folders, relative to ROOT. *links*: those of
    *paths* that are symbolic links, when the caller knows (None: found out here)."""

    paths: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    links: tuple[str, ...] | None = None


def _b64(path: str) -> str:
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def _unb64(text: object) -> str:
    if not isinstance(text, str):
        raise ValueError("not a text")
    return os.fsdecode(base64.b64decode(text, validate=True))


def destination(folder: str | os.PathLike[str]) -> Path:
    """*folder* as an absolute path (relative to the working folder), links unresolved."""
    folder = Path(folder).expanduser()
    return Path(os.path.abspath(folder if folder.is_absolute() else Path.cwd() / folder))


def plan(relpaths: list[str], folder: str | os.PathLike[str], kept: Sequence[str] = ()) -> MovePlan:
    return MovePlan(str(destination(folder)), list(relpaths), list(kept))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- what the index records about moves ------------------------------------------------


def excluded(meta: dict) -> list[str]:
    """Folders inside ROOT that walks leave out (relative, checked like index paths)."""
    value = meta.get("excluded")
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and check_relpath(v) is None]


def _exclude(store, rel: str, on: bool) -> None:
    """Add *rel* to the folders walks leave out, or take it off."""
    skip = excluded(store.get_meta())
    if on and rel not in skip:
        store.set_meta({"excluded": skip + [rel]})
    elif not on and rel in skip:
        store.set_meta({"excluded": [x for x in skip if x != rel]})


# --- the signing key ----------------------------------------------------------------------


def _key(create: bool) -> bytes | None:
    """This user's key for move records (made on first use when *create*), or None."""
    try:
        folder = Folder.anchor(user_cache_dir(), create=create)
    except (IndexFileError, OSError) as exc:
        if not create:
            return None
        raise MoveError(f"cannot keep the key that signs move records: {exc}") from None
    with folder:
        try:
            return _read_key(folder)
        except FileNotFoundError:
            if not create:
                return None
        try:
            fd = folder.create(KEY_FILE, 0o600)
        except FileExistsError:
            return _read_key(folder)  # made meanwhile by another process
        except OSError as exc:
            raise MoveError(
                f"cannot keep the key that signs move records in {folder.path}:"
                f" {exc.strerror or exc}"
            ) from None
        key = secrets.token_bytes(KEY_BYTES)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key


def _new_key() -> bytes:
    """This user's key for move records, made now if there is none."""
    key = _key(create=True)
    if key is None:  # never: made, or a MoveError saying why not
        raise MoveError("cannot keep the key that signs move records")
    return key


def _read_key(folder: Folder) -> bytes:
    try:
        key = folder.read(KEY_FILE, KEY_BYTES)
    except Refused as exc:
        raise MoveError(f"{exc}: remove it, lookalike makes a new key") from None
    if len(key) != KEY_BYTES:
        raise MoveError(
            f"{folder.child(KEY_FILE)} is not a key lookalike made: remove it, lookalike"
            " makes a new one"
        )
    return key


def _mac(key: bytes, nonce: str, n: int, entry: dict) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, f"{nonce}\n{n}\n{body}".encode(), hashlib.sha256).hexdigest()


class _Record:
    """A move record, made on its first line (a move that moves nothing writes none):
    each line signed, written and flushed to disk before the step it announces."""

    def __init__(self, moves: Folder, head: dict, key: bytes) -> None:
        self.moves, self.key = moves, key
        self.head = {**head, "nonce": secrets.token_hex(16), "started": time.time()}
        self.fd = -1
        self.n = 0
        self.name = ""

    def write(self, entry: dict) -> None:
        if self.fd < 0:
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.time_ns()}"
            self.name = stem + ".jsonl"
            self.fd = self.moves.create(self.name, 0o600)
            self._line(self.head)
        self._line(entry)

    def _line(self, entry: dict) -> None:
        signed = {**entry, "mac": _mac(self.key, self.head["nonce"], self.n, entry)}
        data = (json.dumps(signed) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
            os.fsync(self.fd)
        except OSError as exc:
            raise MoveError(
                f"cannot write the move record {self.moves.child(self.name)}: {os_reason(exc)};"
                " nothing more is moved (lookalike triage DIR --undo puts back what did)"
            ) from None
        self.n += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_record(moves: Folder, name: str, root: str, key: bytes | None) -> tuple[dict, list]:
    """The head of record *name* and its planned moves (path in ROOT, path in the
    destination), every line's signature checked; MoveError when it was not written for
    *root* by this user's lookalike."""
    fail = f"the move record {moves.child(name)}"
    try:
        fd = moves.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, Refused) as exc:
        raise MoveError(f"{fail} cannot be read: {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MoveError(f"{fail} is not a plain file")
        lines = []
        while line := fh.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE:
                raise MoveError(f"{fail} holds a line longer than lookalike writes")
            lines.append(line)
    entries: list[dict] = []
    for i, raw in enumerate(lines):
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                break  # the last line, cut short by a kill: its step never started
            raise MoveError(f"{fail} cannot be read: line {i + 1} is not JSON") from None
        if not isinstance(entry, dict):
            raise MoveError(f"{fail} cannot be read: line {i + 1} is not a record")
        entries.append(entry)
    if not entries:
        raise MoveError(f"{fail} is empty")
    nonce = entries[0].get("nonce")
    if key is None or not isinstance(nonce, str):
        raise MoveError(f"{fail} is not signed by your lookalike")
    for n, entry in enumerate(entries):
        mac = entry.pop("mac", None)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, nonce, n, entry)):
            raise MoveError(
                f"{fail} is not signed by your lookalike (crafted, altered, or written by"
                " another user or an older lookalike)"
            )
    head = entries[0]
    try:
        written_for = _unb64(head["root"])
        _unb64(head["folder"])
        if head.get("inside") is not None:
            _unb64(head["inside"])
        planned = [
            (_unb64(r["planned"]), _unb64(r.get("to", r["planned"])))
            for r in entries[1:]
            if "planned" in r
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise MoveError(f"{fail} cannot be read: {exc}") from None
    if written_for != root:
        raise MoveError(f"{fail} was written for another folder")
    return head, planned


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


# --- moving -----------------------------------------------------------------------------


def _place(root: str, folder: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """Where files go: the destination's path for messages and records, and its path
    inside ROOT when it is inside ROOT (reached from ROOT without following links), or
    None for a folder elsewhere (reached as the user named it). *folder* None is the
    app's quarantine."""
    quarantine = os.path.join(root, QUARANTINE)
    if folder is None:
        return quarantine, QUARANTINE.as_posix()
    lexical = str(destination(folder))
    real = os.path.realpath(lexical)
    index_dir = os.path.join(root, INDEX_DIRNAME)
    if _inside(lexical, index_dir) or _inside(real, index_dir):
        if _inside(lexical, quarantine):
            return lexical, os.path.relpath(lexical, root)
        raise MoveError("files cannot be moved into the index folder (but its quarantine)")
    if _inside(root, real):
        raise MoveError("the folder to move files into cannot be the indexed folder or above it")
    if _inside(real, root):
        return real, os.path.relpath(real, root)
    return real, None


def _open_place(top: Folder, place: str, inside: str | None, create: bool) -> Folder:
    if inside is not None:
        return top.sub(inside, create=create)
    return Folder.anchor(place, create=create)


def _moves_folder(top: Folder) -> Folder:
    try:
        return top.sub(MOVES, create=True)
    except (Refused, IndexFileError) as exc:
        raise MoveError(f"no move can be recorded: {exc}") from None


def move_aside(
    root: str | os.PathLike[str],
    relpaths: list[str],
    folder: str | os.PathLike[str] | None = None,
    store=None,
    keep: Keep | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveReport:
    """Move *relpaths* (relative to *root*) into *folder* (None: the quarantine),
    keeping their relative paths, never what *keep* says stays.

    With *store* (the index), a destination inside *root* is left out of walks from
    the first file that moves. *on_progress* (files done, files) is told as it goes."""
    root = os.path.realpath(root)
    place, inside = _place(root, folder)
    with Folder.anchor(root) as top:
        try:
            dest = _open_place(top, place, inside, create=True)
        except (Refused, IndexFileError) as exc:
            raise MoveError(f"nothing moved: {exc}") from None
        guard = _Guard(root, keep)

        def first() -> None:
            if store is not None and inside is not None and not inside.startswith(INDEX_DIRNAME):
                _exclude(store, inside, True)

        def leaves(src: Folder, name: str, rel: str) -> str | None:
            if _inside(os.path.join(os.path.realpath(src.at()), name), place):
                return "already in the folder it would move into"
            return guard.why(src, name)

        head = {"folder": _b64(place), "inside": None if inside is None else _b64(inside)}
        with dest:
            pairs = [(rel, rel) for rel in relpaths]
            return _moves(top, root, dest, head, pairs, leaves, first, on_progress)


def move_within(
    root: str | os.PathLike[str],
    moves: list[tuple[str, str]],
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveReport:
    """Move files to other paths inside *root* (a picture to the folder of the label its
    neighbours give it), with a record :func:`undo` reads like any other."""
    root = os.path.realpath(root)
    with Folder.anchor(root) as top, top.sub("") as dest:
        head = {"folder": _b64(root), "inside": _b64("")}
        return _moves(top, root, dest, head, moves, lambda *_: None, lambda: None, on_progress)


def _moves(top, root, dest, head, pairs, leaves, first, on_progress) -> MoveReport:
    """Move each ``(rel, to)``: ``ROOT/rel`` to ``to`` below *dest*, each announced in
    the record (flushed) before it happens and confirmed after. ``leaves(folder, name,
    rel)`` gives the reason a file must not move, or None; ``first()`` runs before the
    first file moves."""
    report = MoveReport(folder=_unb64(head["folder"]))
    within = dest.same(top)
    with _moves_folder(top) as moves:
        record = _Record(moves, {"root": _b64(root), **head}, _new_key())
        try:
            for done, (rel, to) in enumerate(pairs):
                if on_progress is not None:
                    on_progress(done, len(pairs))
                try:
                    _move_recorded(top, root, dest, within, rel, to, leaves, first, record)
                except _Skip as exc:
                    report.skipped.append((rel, str(exc)))
                    continue
                report.moved.append(rel)
        finally:
            record.close()
        report.manifest = moves.child(record.name) if record.name else ""
    if on_progress is not None:
        on_progress(len(pairs), len(pairs))
    return report


def _move_recorded(top, root, dest, within, rel, to, leaves, first, record) -> None:
    """One file of :func:`_moves`, or _Skip with the reason it stays."""
    src, name = _parent(top, root, rel)
    with src:
        why = _check_source(src, name, root) or leaves(src, name, rel)
        if why is None and within and to.split("/", 1)[0] == INDEX_DIRNAME:
            why = "inside the index folder"
        if why is not None:
            raise _Skip(why)
        target, target_name = _parent(top, root, to, True) if within else _below(dest, to, True)
        with target:
            if target.lstat(target_name) is not None:
                raise _Skip(f"{target.child(target_name)} already exists")
            if record.fd < 0:
                first()
            record.write({"planned": _b64(rel)} | ({"to": _b64(to)} if to != rel else {}))
            try:
                move_file(src, name, target, target_name)
            except (OSError, Refused) as exc:
                raise _Skip(_reason(exc)) from None
            record.write({"moved": _b64(rel)})


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, Refused) else os_reason(exc)


def _check_source(folder: Folder, name: str, root: str) -> str | None:
    """Why a file cannot move: gone, not a file, or a link that leads out of ROOT (the
    link would move, not its target, but such a link is not one of ROOT's pictures)."""
    st = folder.lstat(name)
    if st is None:
        return "not there any more"
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(os.path.join(os.path.realpath(folder.at()), name))
        return None if _inside(target, root) else "a link that leads out of the folder"
    return None if stat.S_ISREG(st.st_mode) else "not a file"


# --- undoing ----------------------------------------------------------------------------


def _pending(moves: Folder) -> list[str]:
    return sorted(n for n in moves.names() if n.endswith(".jsonl"))


def pending_manifest(root: str | os.PathLike[str]) -> Path | None:
    """The newest record not yet undone, if any."""
    try:
        with Folder.anchor(os.path.realpath(root)) as top, top.sub(MOVES) as moves:
            found = _pending(moves)
            return Path(moves.child(found[-1])) if found else None
    except (FileNotFoundError, Refused, IndexFileError):
        return None


def _set_aside_record(moves: Folder, name: str, suffix: str) -> str:
    """Rename record *name* to ``NAME.SUFFIX`` (or ``NAME-2.SUFFIX``…); the new name."""
    stem = name[: -len(".jsonl")]
    for n in range(1, 1000):
        new = f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            moves.rename(name, moves, new)
            return new
        except FileExistsError:
            continue
    return name


def undo(root: str | os.PathLike[str], store=None) -> MoveReport:
    """Put back every file of the newest move not yet undone (see the module's notes on
    what is trusted). With *store*, a destination inside ROOT that no pending move uses
    any more is indexed again."""
    root = os.path.realpath(root)
    with Folder.anchor(root) as top:
        try:
            moves = top.sub(MOVES)
        except FileNotFoundError:
            raise MoveError(f"nothing to undo: no moves recorded under {root}/{MOVES}") from None
        except (Refused, IndexFileError) as exc:
            raise MoveError(f"cannot undo: {exc}") from None
        with moves:
            found = _pending(moves)
            if not found:
                raise MoveError(f"nothing to undo: no moves recorded under {moves.path}")
            name = found[-1]
            try:
                head, planned = _read_record(moves, name, root, _key(create=False))
            except MoveError as exc:
                kept = _set_aside_record(moves, name, ".refused")
                raise MoveError(f"{exc}: refused, kept as {kept}") from None
            report = _undo(top, root, head, planned, moves.child(name))
            if not report.skipped:
                _set_aside_record(moves, name, ".undone")
                inside = _unb64(head["inside"]) if head.get("inside") is not None else None
                if store is not None and inside and not _still_used(moves, root, inside):
                    _exclude(store, inside, False)
    return report


def _still_used(moves: Folder, root: str, inside: str) -> bool:
    """Whether a move not yet undone went into ROOT-relative folder *inside*."""
    key = _key(create=False)
    for name in _pending(moves):
        try:
            head, _ = _read_record(moves, name, root, key)
        except MoveError:
            continue
        if head.get("inside") is not None and _unb64(head["inside"]) == inside:
            return True
    return False


def _undo(top: Folder, root: str, head: dict, planned: list, manifest: str) -> MoveReport:
    place = _unb64(head["folder"])
    inside = _unb64(head["inside"]) if head.get("inside") is not None else None
    report = MoveReport(manifest=manifest, folder=place)
    try:
        dest = _open_place(top, place, inside, create=False)
    except FileNotFoundError:
        report.lost = [rel for rel, _ in planned]  # the folder is gone, and all in it
        return report
    except IndexFileError as exc:  # a link where the folder was, say: nothing is taken
        raise MoveError(f"cannot undo: {exc}") from None
    with dest:
        within = dest.same(top)
        for rel, to in reversed(planned):
            try:
                why = _put_back(top, root, dest, within, rel, to, report)
            except _Skip as exc:
                why = str(exc)
            if why is not None:
                report.skipped.append((rel, why))
    return report


def _put_back(
    top: Folder, root: str, dest: Folder, within: bool, rel: str, to: str, report: MoveReport
) -> str | None:
    """Bring *rel* back from *to* below *dest*; the reason when it cannot be, None when
    done (or nothing was to be done)."""
    if rel.split("/", 1)[0] == INDEX_DIRNAME or (within and to.split("/", 1)[0] == INDEX_DIRNAME):
        return "inside the index folder"
    if within and rel == to:
        return None  # a record moving a file onto itself: nothing to put back
    back, back_name = _parent(top, root, rel, create=True)
    with back:
        try:
            here, here_name = _parent(top, root, to) if within else _below(dest, to, False)
        except _Skip as exc:
            if str(exc) != "not there any more":
                raise
            here, here_name = None, ""
        if here is None:
            if back.lstat(back_name) is None:
                report.lost.append(rel)
            return None
        with here:
            part = "." + here_name + PART
            if back.lstat(back_name) is not None:
                # never moved, or moved back already, or a copy across file systems cut
                # short; inside ROOT a move is a rename, so only a part file can be ours
                for leftover in (part,) if within else (part, here_name):
                    if here.lstat(leftover) is None:
                        continue
                    if _is_copy_of(here, leftover, back, back_name):
                        here.unlink(leftover)
                        report.cleaned.append(rel)
                    elif leftover == here_name:
                        return "both copies exist and differ: left as they are"
                return None
            st = here.lstat(here_name)
            if st is None:
                report.lost.append(rel)  # nowhere: nothing undo can do, and nothing to block
                return None
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                return f"not a file inside {dest.path}"
            try:
                move_file(here, here_name, back, back_name)
            except (OSError, Refused) as exc:
                return _reason(exc)
    report.moved.append(rel)
    return None


# --- moves through an index ----------------------------------------------------------------


def set_aside(
    search,
    relpaths: list[str],
    folder: str | os.PathLike[str] | None = None,
    keep: Keep | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveReport:
    """Move stored *relpaths* of *search*'s folder into *folder* (None: the quarantine;
    :func:`move_aside`), never what *keep* says stays, with a destination inside the
    folder left out of walks and the moved files forgotten after (a move of many would
    otherwise look like a missing disk to the next run)."""
    if search.store.readonly:
        raise IndexFileError(
            f"the index at {search.index_path} cannot be written"
            f" ({search.store.readonly_why}): a move could not be recorded, so none is made"
        )
    for p in relpaths:
        search.check_stored_path(p)
    report = move_aside(search.root, relpaths, folder, search.store, keep, on_progress)
    _forget(search, report.moved)
    return report


def relabel(search, relpath: str, label: str) -> MoveReport:
    """Move stored *relpath* into the class folder *label* (``DIR/label/NAME``), undoable;
    the old path is forgotten, the next run indexes the new one."""
    search.check_stored_path(relpath)
    if "/" in label or check_relpath(label) is not None or label.startswith("."):
        raise SearchError(f"not a class folder: {printable(label)}")
    report = move_within(search.root, [(relpath, f"{label}/{relpath.rsplit('/', 1)[-1]}")])
    _forget(search, report.moved)
    return report


def undo_latest(search) -> MoveReport:
    """Put back the newest move of *search*'s folder (:func:`undo`)."""
    return undo(search.root, None if search.store.readonly else search.store)


def _forget(search, relpaths: list[str]) -> None:
    from engine.storage import Batch, IndexBusy

    if relpaths:
        try:
            with search.store.writer():
                search.store.commit(Batch(delete=relpaths))
            search.view.committed()
        except IndexBusy:
            pass  # the run under way, or the next one, notices they are gone
