"""The file tree: sub-folders and image files only, filterable by path.

It follows the engine's rules (:mod:`engine.images`): what it lists is what gets
indexed, symbolic links out of the folder are not listed unless links may be followed,
and names are shown escaped (a file name can hold markup or escape sequences).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import DirectoryTree

from engine.images import inside, is_candidate, is_hidden, looks_like_image_name
from tui import keys
from tui.text import plain

#: Entries a folder is searched through for a match before it is shown anyway.
FOLDER_LOOK = 20_000


if TYPE_CHECKING:
    from textual.timer import Timer


class ImageTree(DirectoryTree):
    """Textual's DirectoryTree, showing what the engine would index and nothing else.

    With a filter, a folder is listed only when some picture under it matches (a folder
    too big to look through quickly is listed anyway), the top-level folders with matches
    open, and the cursor goes to the first match; clearing the filter closes what it
    opened.
    """

    BINDINGS = keys.bindings("tree")

    def __init__(self, path: str | Path, follow_links: bool = False, **kwargs) -> None:
        self.root_path = Path(path).resolve()
        self.follow_links = follow_links
        super().__init__(path, **kwargs)
        self.name_filter = ""
        self._filter_timer: Timer | None = None
        self._opened: set[Path] = set()  # folders the filter opened
        self._reloading = False

    def process_label(self, label: str | Text) -> Text:
        """Node labels are file names: escaped plain text, never markup, one line."""
        return plain(label) if isinstance(label, str) else label

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        needle = self.name_filter.lower()
        for path in paths:
            if is_hidden(path.name):
                continue
            if not self.follow_links and os.path.islink(path) and not inside(path, self.root_path):
                continue  # a link out of the folder: not indexed, not shown, not read
            try:
                is_dir = path.is_dir()
            except OSError:
                continue
            if is_dir:
                if not needle or self._holds_match(path, needle):
                    yield path
            elif is_candidate(path):  # runs in the tree's loader thread: magic bytes are fine
                if not needle:
                    yield path
                    continue
                try:
                    rel = path.resolve().relative_to(self.root_path).as_posix()
                except ValueError:
                    rel = path.name
                if needle in rel.lower():
                    yield path

    def set_filter(self, text: str) -> None:
        """Filter by a substring of the path, applied once typing pauses (a reload per
        keystroke would list big folders over and over)."""
        if text == self.name_filter:
            return
        self.name_filter = text
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.25, self._apply_filter)

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root_path).as_posix()
        except ValueError:
            return path.name

    def _holds_match(self, folder: Path, needle: str) -> bool:
        """Whether a picture under *folder* has *needle* in its path (by name: opening
        files to test their bytes would make filtering a big tree crawl)."""
        seen = 0
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=self.follow_links):
            dirnames[:] = [d for d in dirnames if not is_hidden(d)]
            base = self._rel(Path(dirpath))
            for name in filenames:
                seen += 1
                if seen > FOLDER_LOOK:
                    return True  # too many to look through: shown
                if is_hidden(name) or not looks_like_image_name(name):
                    continue
                if needle in f"{base}/{name}".lower():
                    return True
        return False

    async def _apply_filter(self) -> None:
        self._filter_timer = None
        self._reloading = True
        try:
            await self.reload()
        finally:
            self._reloading = False
        if self.name_filter:
            # Open the top-level folders so the matches are in view, not behind a fold.
            for node in self.root.children:
                if node.data is not None and Path(node.data.path).is_dir():
                    if not node.is_expanded:
                        self._opened.add(Path(node.data.path))
                    node.expand()
        else:
            for node in self.root.children:
                if node.data is not None and Path(node.data.path) in self._opened:
                    node.collapse()
            self._opened.clear()

    def go_to_first_match(self, tries: int = 20) -> None:
        """Put the cursor on the first picture the filter shows (folders load in the
        background: looked for again shortly until one is there)."""
        pending = self._filter_timer is not None or self._reloading
        for line_no in range(0 if pending else self.last_line + 1):
            node = self.get_node_at_line(line_no)
            if node is not None and node.data is not None and not node.allow_expand:
                self.cursor_line = line_no
                return
        if tries > 0:
            self.set_timer(0.1, lambda: self.go_to_first_match(tries - 1))
