"""The file tree: sub-folders and image files only, filterable by path.

It follows the engine's rules (:mod:`engine.images`): what it lists is what gets
indexed, symbolic links out of the folder are not listed unless links may be followed,
and names are shown escaped (a file name can hold markup or escape sequences).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual.widgets import DirectoryTree

from engine.images import inside, is_candidate, is_hidden
from tui import keys
from tui.text import plain


class ImageTree(DirectoryTree):
    """Textual's DirectoryTree, showing what the engine would index and nothing else."""

    BINDINGS = keys.bindings("tree")

    def __init__(self, path: str | Path, follow_links: bool = False, **kwargs) -> None:
        self.root_path = Path(path).resolve()
        self.follow_links = follow_links
        super().__init__(path, **kwargs)
        self.name_filter = ""
        self._filter_timer = None

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

    async def _apply_filter(self) -> None:
        self._filter_timer = None
        await self.reload()
        if self.name_filter:
            # Open the top-level folders so the matches are in view, not behind a fold.
            for node in self.root.children:
                if node.data is not None and Path(node.data.path).is_dir():
                    node.expand()
