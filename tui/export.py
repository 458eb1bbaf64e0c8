"""Results leaving the app: written to files next to the index (``e``), or a picture
handed to the system's viewer (``o``)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.names import json_path
from engine.paths import INDEX_DIRNAME
from engine.sandbox import Folder, index_folder, new_file
from tui.report import csv_cell


def export_folder(search) -> Path:
    """``exports/`` beside the index file (the folder's own index, or ``--index PATH``);
    beside the folder's default index place for a shared index, which has no file."""
    index = Path(str(search.index_path))
    return _index_place(search, index) / "exports"


def _index_place(search, index: Path) -> Path:
    own = search.root / INDEX_DIRNAME
    if search.store.shared or index.parent == own:
        return own
    return index.parent


def _open_exports(search) -> Folder:
    """``exports/``, opened without following a link: inside ``DIR/.lookalike`` through
    the guarded way in (:mod:`engine.sandbox`), beside ``--index PATH`` below the folder
    the user named."""
    place = _index_place(search, Path(str(search.index_path)))
    top = index_folder(search.root) if place == search.root / INDEX_DIRNAME else None
    top = top or Folder.anchor(place, create=True)
    with top:
        return top.sub("exports", create=True)


def export_results(search, query: Path, cards: list) -> list[Path]:
    """The shown results as ``results-TIME.json`` and ``.csv`` (paths as they are shown:
    relative to the folder; names that are not UTF-8 as in ``--json`` output). A name
    that is taken (a file, or a link planted there) is never written through: the next
    free one is used."""
    rows = [
        {"rank": c.rank, **json_path(c.name), "score": round(c.score, 6), "label": c.label}
        for c in cards
    ]
    doc = {**json_path(os.fsdecode(query), "query"), "results": rows}
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(["rank", "path", "score", "label"])
    for c in cards:
        out.writerow([c.rank, csv_cell(c.name), f"{c.score:.6f}", c.label])
    stem = time.strftime("results-%Y%m%d-%H%M%S")
    written = []
    with _open_exports(search) as folder:
        for suffix, body in (
            (".json", json.dumps(doc, allow_nan=False, indent=1) + "\n"),
            (".csv", text.getvalue()),
        ):
            name, fd = new_file(folder, stem, suffix)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(body)
            written.append(Path(folder.child(name)))
    return written


def viewer() -> str | None:
    """The command that shows a file on this machine's screen, or None: over SSH, or with
    no display, a viewer would open where nobody sees it."""
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return None
    if sys.platform == "darwin":
        return shutil.which("open")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None
    return shutil.which("xdg-open")


def open_in_viewer(path: Path) -> str:
    """Hand *path* to the system's viewer; what happened, in words for the status."""
    command = viewer()
    if command is None:
        return (
            f"no picture viewer reachable from here (an SSH session, or no display): {path}"
            " · c sends the path to the clipboard"
        )
    try:
        subprocess.Popen(
            [command, os.fspath(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the viewer outlives the app, never writes to it
        )
    except OSError as exc:
        return f"could not start {command}: {exc.strerror or exc}"
    return f"opened {path} with {os.path.basename(command)}"
