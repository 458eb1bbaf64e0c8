"""Setting files aside, and putting them back: moves with a record, never deletes.

:func:`plan` says what a move would do (the files, and how many under each top-level
folder) without touching anything: ``--dry-run`` prints it and the app shows it before
asking. :func:`move_aside` moves files of ROOT into a folder, keeping their paths
relative to ROOT, and writes every move to a record under ``ROOT/.lookalike/moves/``
*before* it happens (flushed to disk) and again once done. :func:`undo` reads the
newest record not yet undone and moves every file back.

Rules: nothing is ever deleted but lookalike's own copies (a move across file systems
copies into a hidden ``.NAME.lookalike-part`` beside the destination, checks size and
SHA-256, renames it into place, and only then removes the original); nothing is moved
from outside ROOT, nor anywhere but into the named folder; nothing is overwritten (a
file already at the destination is skipped, with the reason).

**A record cannot be turned against the user.** Records live in the indexed folder,
where anyone who can write a file can write one. :func:`undo` accepts a record only if
it was written for this ROOT and names a folder the user moved files into: every
destination is recorded in the index (``move_folders``) before the first file moves,
and the app's quarantine is always one. Each path in it is checked like an index path
(relative, no ``..``), the file brought back must be a regular file inside that folder,
and it only ever lands inside ROOT. A refused record is renamed ``*.refused`` (kept, for
the user to read) so that older moves stay undoable.

**A crash at any moment leaves a state undo finishes.** For each planned file: the
original still in place and nothing at the destination, left alone; both in place, the
destination (or a ``.lookalike-part`` beside it) is removed only when its bytes are the
original's or a beginning of them (a copy interrupted), otherwise both are kept and
reported; only the destination, it is moved back. Files that are nowhere do not block
the record: it is closed with them listed, so older moves stay undoable.

**A destination inside ROOT** is recorded in the index as excluded from walks
(``excluded``), so moved files are never indexed, grouped or moved again.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LookalikeError
from engine.images import inside
from engine.names import check_relpath, printable
from engine.paths import INDEX_DIRNAME

#: Where the app sets files aside: hidden, so the walk never indexes them again.
QUARANTINE = Path(INDEX_DIRNAME) / "quarantine"
#: The suffix of a copy under way (the name is hidden too: ``.NAME.lookalike-part``).
PART = ".lookalike-part"
#: Bytes copied per write across file systems.
CHUNK = 1 << 20


class MoveError(LookalikeError):
    """A move that cannot be done or undone; the message says why."""


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
        stay = f"; {len(self.kept)} copies stay (under a kept folder)" if self.kept else ""
        lines = [f"{len(self.paths)} files would move from {root} into {self.folder}{stay}"]
        lines += [f"  {n:6d} from {top}" for top, n in self.by_top()]
        return [printable(x) for x in lines]


def _b64(path: str) -> str:
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def _unb64(text: str) -> str:
    return os.fsdecode(base64.b64decode(text, validate=True))


def moves_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / INDEX_DIRNAME / "moves"


def destination(folder: str | os.PathLike[str]) -> Path:
    """*folder* as an absolute path (relative to the working folder), links unresolved."""
    folder = Path(folder).expanduser()
    return Path(os.path.abspath(folder if folder.is_absolute() else Path.cwd() / folder))


def plan(relpaths: list[str], folder: str | os.PathLike[str], kept: list[str] = ()) -> MovePlan:
    return MovePlan(str(destination(folder)), list(relpaths), list(kept))


# --- what the index records about moves ------------------------------------------------


def _listed(meta: dict, key: str) -> list[str]:
    """A list of strings kept in the index's metadata; anything else counts as none."""
    value = meta.get(key)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def recorded_folders(meta: dict) -> set[str]:
    """The destinations the user moved files into (absolute paths)."""
    out = set()
    for v in _listed(meta, "move_folders"):
        try:
            out.add(_unb64(v))
        except ValueError:
            continue
    return out


def excluded(meta: dict) -> list[str]:
    """Folders inside ROOT that walks leave out (relative, checked like index paths)."""
    return [v for v in _listed(meta, "excluded") if check_relpath(v) is None]


def record(store, root: Path, dest: Path) -> None:
    """Note *dest* in the index before anything moves into it (and, inside *root*, leave
    it out of later walks)."""
    meta = store.get_meta()
    folders = _listed(meta, "move_folders")
    values = {}
    if _b64(str(dest)) not in folders:
        values["move_folders"] = folders + [_b64(str(dest))]
    real = Path(os.path.realpath(dest))
    if inside(real, root) and real != root:
        rel = real.relative_to(root).as_posix()
        skip = excluded(meta)
        if rel not in skip and not rel.startswith(INDEX_DIRNAME):
            values["excluded"] = skip + [rel]
    if values:
        store.set_meta(values)


# --- moving -----------------------------------------------------------------------------


def _write(fh, entry: dict) -> None:
    fh.write(json.dumps(entry) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _part(dst: Path) -> Path:
    return dst.with_name("." + dst.name + PART)


def _sha(path: Path, limit: int | None = None) -> str:
    """SHA-256 of *path*'s first *limit* bytes (all of it by default)."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def _is_copy_of(copy: Path, original: Path) -> bool:
    """Whether *copy* holds the bytes of *original*, or a beginning of them (a copy cut
    short), and is a plain file (never a link)."""
    try:
        st = os.lstat(copy)
        size = os.path.getsize(original)
        if not stat.S_ISREG(st.st_mode) or st.st_size > size:
            return False
        return _sha(copy) == _sha(original, st.st_size)
    except OSError:
        return False


def _copy(src: Path, part: Path) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fd_out = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while chunk := os.read(fd_in, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view) :]
            os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def move_file(src: Path, dst: Path) -> None:
    """Rename *src* to *dst*; across file systems, copy into a hidden part file, check
    it, rename it into place, then remove *src*. A kill at any point leaves *src* whole
    or *dst* whole (and perhaps a part file or a full copy, which :func:`undo` removes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    part = _part(dst)
    if part.exists() or part.is_symlink():
        if not _is_copy_of(part, src):
            raise OSError(errno.EEXIST, f"{part} is in the way")
        os.unlink(part)
    _copy(src, part)
    if os.path.getsize(part) != os.path.getsize(src) or _sha(part) != _sha(src):
        os.unlink(part)
        raise OSError(errno.EIO, f"the copy of {src} differs from it")
    shutil.copystat(src, part, follow_symlinks=False)
    if dst.exists() or dst.is_symlink():
        os.unlink(part)
        raise OSError(errno.EEXIST, f"{dst} already exists")
    os.rename(part, dst)
    _fsync_dir(dst.parent)
    os.unlink(src)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_aside(
    root: str | os.PathLike[str],
    relpaths: list[str],
    folder: str | os.PathLike[str],
    store=None,
) -> MoveReport:
    """Move *relpaths* (relative to *root*) into *folder*, keeping their relative paths.

    With *store* (the index), the destination is recorded there first, which is what
    lets :func:`undo` trust the record later and walks leave a destination inside
    *root* out."""
    root = Path(os.path.realpath(root))
    dest = destination(folder)
    real_dest = Path(os.path.realpath(dest))
    if real_dest == root or inside(root, str(real_dest)):
        raise MoveError("the folder to move files into cannot be the indexed folder or above it")
    if store is not None:
        record(store, root, dest)

    def leaves(src: Path, target: Path) -> str | None:
        if not inside(src, root):
            return "leads out of the folder"
        if inside(src, str(real_dest)):
            return "already in the folder it would move into"
        return None

    return _moves(root, dest, [(rel, rel) for rel in relpaths], leaves)


def move_within(root: str | os.PathLike[str], moves: list[tuple[str, str]]) -> MoveReport:
    """Move files to other paths inside *root* (a picture to the folder of the label its
    neighbours give it), with a record :func:`undo` reads like any other."""
    root = Path(os.path.realpath(root))

    def leaves(src: Path, target: Path) -> str | None:
        if not (inside(src, root) and _lands_inside(target, root)):
            return "leads out of the folder"
        return None

    return _moves(root, root, moves, leaves)


def _moves(root: Path, dest: Path, moves: list[tuple[str, str]], leaves) -> MoveReport:
    """Move each ``(rel, to)``: ``root/rel`` to ``dest/to``, every one written to a new
    record before (flushed) and after it happens. ``leaves(src, target)`` gives the
    reason a move would lead somewhere it must not, or None."""
    report = MoveReport(folder=str(dest))
    mdir = moves_dir(root)
    mdir.mkdir(parents=True, exist_ok=True)
    manifest = mdir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.time_ns()}.jsonl"
    report.manifest = str(manifest)
    with open(manifest, "a") as fh:
        _write(fh, {"root": _b64(str(root)), "folder": _b64(str(dest)), "started": time.time()})
        for rel, to in moves:
            src, target = root / rel, dest / to
            why = check_relpath(rel) or check_relpath(to) or leaves(src, target)
            if why is None and not src.is_file():
                why = "not there any more"
            if why is None and (target.exists() or target.is_symlink()):
                why = f"{target} already exists"
            if why is not None:
                report.skipped.append((rel, why))
                continue
            planned = {"planned": _b64(rel)} | ({"to": _b64(to)} if to != rel else {})
            _write(fh, planned)
            try:
                move_file(src, target)
            except OSError as exc:
                report.skipped.append((rel, exc.strerror or str(exc)))
                continue
            _write(fh, {"moved": _b64(rel)})
            report.moved.append(rel)
    return report


# --- undoing ----------------------------------------------------------------------------


def pending_manifest(root: str | os.PathLike[str]) -> Path | None:
    """The newest record not yet undone, if any."""
    found = sorted(moves_dir(root).glob("*.jsonl")) if moves_dir(root).is_dir() else []
    return found[-1] if found else None


def _read_record(
    manifest: Path, root: Path, folders: set[str]
) -> tuple[Path, list[tuple[str, str]]]:
    """The destination of *manifest* and its planned moves (path in ROOT, path in the
    destination), or MoveError when it was not written for *root*, or names a folder no
    move went to."""
    try:
        st = os.lstat(manifest)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a plain file")
        lines = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
        head = lines[0]
        written_for = _unb64(head["root"])
        folder = _unb64(head["folder"])
        planned = [
            (_unb64(r["planned"]), _unb64(r.get("to", r["planned"])))
            for r in lines[1:]
            if "planned" in r
        ]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MoveError(f"the move record {manifest} cannot be read: {exc}") from None
    if written_for != str(root):
        raise MoveError(f"the move record {manifest} was written for another folder")
    if folder not in folders:
        raise MoveError(
            f"the move record {manifest} names a folder no files were moved into ({folder})"
        )
    return Path(folder), planned


def undo(
    root: str | os.PathLike[str], folders: set[str] | None = None, meta: dict | None = None
) -> MoveReport:
    """Put back every file of the newest move not yet undone.

    *meta* (the index's metadata) says which folders files were moved into; the app's
    quarantine is always one, and *folders* adds others."""
    root = Path(os.path.realpath(root))
    manifest = pending_manifest(root)
    if manifest is None:
        raise MoveError(f"nothing to undo: no moves recorded under {moves_dir(root)}")
    allowed = {str(root / QUARANTINE), str(root)} | set(folders or ())
    allowed |= recorded_folders(meta or {})
    try:
        folder, planned = _read_record(manifest, root, allowed)
    except MoveError as exc:
        refused = manifest.with_suffix(".refused")
        if not refused.exists():
            os.rename(manifest, refused)
        raise MoveError(f"{exc}: refused, kept as {refused.name}") from None
    report = MoveReport(manifest=str(manifest), folder=str(folder))
    real_folder = os.path.realpath(folder)
    for rel, to in reversed(planned):
        why = _put_back(root, folder, real_folder, rel, to, report)
        if why is not None:
            report.skipped.append((rel, why))
    if not report.skipped:
        manifest.rename(manifest.with_suffix(".undone"))
    return report


def _lands_inside(path: Path, root: Path) -> bool:
    """Whether *path*'s nearest existing folder, links resolved, is inside *root* (a
    folder link in a record's path must not lead a file out)."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            return False
        parent = parent.parent
    return inside(parent, root)


def _put_back(root: Path, folder: Path, real_folder: str, rel: str, to: str, report: MoveReport):
    """Bring *rel* back from *folder*/*to*; the reason when it cannot be, None when done
    (or nothing was to be done)."""
    if check_relpath(rel) is not None or check_relpath(to) is not None:
        return "not a path inside the folder"
    src, target = root / rel, folder / to
    if os.path.abspath(src) == os.path.abspath(target):
        return None  # a record moving a file onto itself: nothing to put back
    if not _lands_inside(src, root):
        return "leads out of the folder"
    part = _part(target)
    if src.exists():
        # never moved, or moved back already, or a copy across file systems cut short;
        # inside ROOT a move is a rename, so only a part file can be lookalike's there
        within = os.path.realpath(folder) == str(root)
        for leftover in (part,) if within else (part, target):
            if not (leftover.exists() or leftover.is_symlink()):
                continue
            if _is_copy_of(leftover, src):
                os.unlink(leftover)
                report.cleaned.append(rel)
            elif leftover == target:
                return "both copies exist and differ: left as they are"
        return None
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        report.lost.append(rel)  # nowhere: nothing undo can do, and nothing to block
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    kind_ok = stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)  # a link set aside
    if not kind_ok or not inside(target.parent, real_folder):
        return f"not a file inside {folder}"
    try:
        move_file(target, src)
    except OSError as exc:
        return exc.strerror or str(exc)
    report.moved.append(rel)
    return None


# --- moves through an index ----------------------------------------------------------------


def set_aside(search, relpaths: list[str], folder: str | os.PathLike[str]) -> MoveReport:
    """Move stored *relpaths* of *search*'s folder into *folder* (:func:`move_aside`), with
    the folder recorded in the index first and the moved files forgotten after (a move of
    many would otherwise look like a missing disk to the next run)."""
    from engine.storage import IndexFileError

    if search.store.readonly:
        raise IndexFileError(
            f"the index at {search.index_path} cannot be written"
            f" ({search.store.readonly_why}): a move could not be recorded, so none is made"
        )
    for p in relpaths:
        search.check_stored_path(p)
    report = move_aside(search.root, relpaths, folder, store=search.store)
    _forget(search, report.moved)
    return report


def relabel(search, relpath: str, label: str) -> MoveReport:
    """Move stored *relpath* into the class folder *label* (``DIR/label/NAME``), undoable;
    the old path is forgotten, the next run indexes the new one."""
    from engine.errors import SearchError

    search.check_stored_path(relpath)
    if "/" in label or check_relpath(label) is not None:
        raise SearchError(f"not a class folder: {printable(label)}")
    report = move_within(search.root, [(relpath, f"{label}/{relpath.rsplit('/', 1)[-1]}")])
    _forget(search, report.moved)
    return report


def undo_latest(search) -> MoveReport:
    """Put back the newest move of *search*'s folder (:func:`undo`), trusting only the
    folders recorded in its index."""
    return undo(search.root, meta=search.store.get_meta())


def _forget(search, relpaths: list[str]) -> None:
    from engine.storage import Batch, IndexBusy

    if relpaths:
        try:
            with search.store.writer():
                search.store.commit(Batch(delete=relpaths))
            search.view.committed()
        except IndexBusy:
            pass  # the run under way, or the next one, notices they are gone
