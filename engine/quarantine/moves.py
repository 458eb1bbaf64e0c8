"""Moving files aside, putting them back, and both through an index (see
:mod:`engine.quarantine`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import IndexFileError, MoveError, SearchError, os_reason
from engine.names import check_relpath, printable
from engine.paths import INDEX_DIRNAME
from engine.quarantine.common import (
    MOVES,
    PART,
    QUARANTINE,
    Keep,
    MoveReport,
    _b64,
    _exclude,
    _inside,
    _unb64,
    destination,
)
from engine.quarantine.files import _below, _Guard, _is_copy_of, _parent, _Skip, move_file
from engine.quarantine.records import _key, _new_key, _read_record, _Record
from engine.sandbox import Folder, Refused

if TYPE_CHECKING:
    from engine.search import ImageSimilaritySearch

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
    search: ImageSimilaritySearch,
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


def relabel(search: ImageSimilaritySearch, relpath: str, label: str) -> MoveReport:
    """Move stored *relpath* into the class folder *label* (``DIR/label/NAME``), undoable;
    the old path is forgotten, the next run indexes the new one."""
    search.check_stored_path(relpath)
    if "/" in label or check_relpath(label) is not None or label.startswith("."):
        raise SearchError(f"not a class folder: {printable(label)}")
    report = move_within(search.root, [(relpath, f"{label}/{relpath.rsplit('/', 1)[-1]}")])
    _forget(search, report.moved)
    return report


def undo_latest(search: ImageSimilaritySearch) -> MoveReport:
    """Put back the newest move of *search*'s folder (:func:`undo`)."""
    return undo(search.root, None if search.store.readonly else search.store)


def _forget(search: ImageSimilaritySearch, relpaths: list[str]) -> None:
    from engine.storage import Batch, IndexBusy

    if relpaths:
        try:
            with search.store.writer():
                search.store.commit(Batch(delete=relpaths))
            search.view.committed()
        except IndexBusy:
            pass  # the run under way, or the next one, notices they are gone
