"""Results leaving the app: written to files next to the index (``e``), or a picture
handed to the system's viewer (``o``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.names import json_path
from engine.paths import default_index_path
from tui.report import csv_cell


def export_folder(search) -> Path:
    """``exports/`` beside the index file (the folder's own index, or ``--index PATH``);
    beside the folder's default index place for a shared index, which has no file."""
    index = Path(str(search.index_path))
    base = index.parent if index.is_file() else default_index_path(search.root).parent
    return base / "exports"


def export_results(search, query: Path, cards: list) -> list[Path]:
    """The shown results as ``results-TIME.json`` and ``.csv`` (paths as they are shown:
    relative to the folder; names that are not UTF-8 as in ``--json`` output)."""
    folder = export_folder(search)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / time.strftime("results-%Y%m%d-%H%M%S")
    rows = [
        {"rank": c.rank, **json_path(c.name), "score": round(c.score, 6), "label": c.label}
        for c in cards
    ]
    doc = {**json_path(os.fsdecode(query), "query"), "results": rows}
    out_json, out_csv = stem.with_suffix(".json"), stem.with_suffix(".csv")
    out_json.write_text(json.dumps(doc, allow_nan=False, indent=1) + "\n", encoding="utf-8")
    with open(out_csv, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["rank", "path", "score", "label"])
        for c in cards:
            out.writerow([c.rank, csv_cell(c.name), f"{c.score:.6f}", c.label])
    return [out_json, out_csv]


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
