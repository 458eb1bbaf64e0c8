"""Setting files aside, and putting them back: moves with a manifest, never deletes.

:func:`move_aside` moves files of ROOT into a folder, keeping their paths relative to
ROOT, and writes every move to a manifest under ``ROOT/.lookalike/moves/`` *before* it
happens (flushed to disk) and again once done. :func:`undo` reads the newest manifest not
yet undone and moves every file back. A run killed mid-move leaves a manifest whose
entries undo checks one by one: a file still where it was is left alone, one found at its
destination is moved back.

Rules: nothing is ever deleted (a move across file systems copies, checks the size, then
removes the original); nothing is moved from outside ROOT, nor anywhere but into the
named folder; nothing is overwritten (a file already at the destination is skipped, with
the reason).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LookalikeError
from engine.images import inside
from engine.names import check_relpath
from engine.paths import INDEX_DIRNAME

#: Where the app sets files aside: hidden, so the walk never indexes them again.
QUARANTINE = Path(INDEX_DIRNAME) / "quarantine"


class MoveError(LookalikeError):
    """A move that cannot be done or undone; the message says why."""


@dataclass
class MoveReport:
    moved: list[str] = field(default_factory=list)  # relative paths
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, why
    manifest: str = ""
    folder: str = ""


def _b64(path: str) -> str:
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def _unb64(text: str) -> str:
    return os.fsdecode(base64.b64decode(text))


def moves_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / INDEX_DIRNAME / "moves"


def _write(fh, record: dict) -> None:
    fh.write(json.dumps(record) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system
            raise
        shutil.copy2(src, dst)
        if os.path.getsize(dst) != os.path.getsize(src):
            raise OSError(f"copy of {src} is incomplete") from None
        os.unlink(src)


def move_aside(
    root: str | os.PathLike[str], relpaths: list[str], folder: str | os.PathLike[str]
) -> MoveReport:
    """Move *relpaths* (relative to *root*) into *folder*, keeping their relative paths."""
    root = Path(os.path.realpath(root))
    folder = Path(folder)
    dest = folder if folder.is_absolute() else Path.cwd() / folder
    dest = Path(os.path.abspath(dest))
    if inside(dest, root) and os.path.realpath(dest) == str(root):
        raise MoveError("the folder to move files into cannot be the indexed folder itself")
    report = MoveReport(folder=str(dest))
    mdir = moves_dir(root)
    mdir.mkdir(parents=True, exist_ok=True)
    manifest = mdir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
    report.manifest = str(manifest)
    with open(manifest, "a") as fh:
        _write(fh, {"root": _b64(str(root)), "folder": _b64(str(dest)), "started": time.time()})
        for rel in relpaths:
            why = check_relpath(rel)
            src = root / rel
            target = dest / rel
            if why is None and not inside(src, root):
                why = "leads out of the folder"
            if why is None and not src.is_file():
                why = "not there any more"
            if why is None and (target.exists() or target.is_symlink()):
                why = f"{target} already exists"
            if why is not None:
                report.skipped.append((rel, why))
                continue
            _write(fh, {"planned": _b64(rel)})
            try:
                _move(src, target)
            except OSError as exc:
                report.skipped.append((rel, exc.strerror or str(exc)))
                continue
            _write(fh, {"moved": _b64(rel)})
            report.moved.append(rel)
    return report


def pending_manifest(root: str | os.PathLike[str]) -> Path | None:
    """The newest manifest not yet undone, if any."""
    found = sorted(moves_dir(root).glob("*.jsonl")) if moves_dir(root).is_dir() else []
    return found[-1] if found else None


def undo(root: str | os.PathLike[str]) -> MoveReport:
    """Put back every file of the newest move not yet undone."""
    root = Path(os.path.realpath(root))
    manifest = pending_manifest(root)
    if manifest is None:
        raise MoveError(f"nothing to undo: no moves recorded under {moves_dir(root)}")
    try:
        lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        head = lines[0]
        folder = Path(_unb64(head["folder"]))
        planned = [_unb64(r["planned"]) for r in lines[1:] if "planned" in r]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise MoveError(f"the move record {manifest} cannot be read: {exc}") from None
    report = MoveReport(manifest=str(manifest), folder=str(folder))
    for rel in reversed(planned):
        if check_relpath(rel) is not None:
            report.skipped.append((rel, "not a path inside the folder"))
            continue
        src, target = root / rel, folder / rel
        if src.exists():
            if target.exists():
                report.skipped.append((rel, "both copies exist: left as they are"))
            continue  # never moved (the run stopped before), or already back
        if not target.is_file():
            report.skipped.append((rel, f"not found in {folder}"))
            continue
        try:
            _move(target, src)
        except OSError as exc:
            report.skipped.append((rel, exc.strerror or str(exc)))
            continue
        report.moved.append(rel)
    if not report.skipped:
        manifest.rename(manifest.with_suffix(".undone"))
    return report
