"""What moves are made of: where they go, the plan, the report, what stays (see
:mod:`engine.quarantine`)."""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.names import check_relpath, count, printable
from engine.paths import INDEX_DIRNAME

#: Where the app sets files aside: hidden, so the walk never indexes them again.
QUARANTINE = Path(INDEX_DIRNAME) / "quarantine"
#: The records of moves, inside the index folder.
MOVES = f"{INDEX_DIRNAME}/moves"
#: The suffix of a copy under way (the name is hidden too: ``.NAME.lookalike-part``).
PART = ".lookalike-part"
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
