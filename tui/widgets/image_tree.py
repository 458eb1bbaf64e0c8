"""The file tree: sub-folders and image files only, filterable by path."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.binding import Binding
from textual.widgets import DirectoryTree

from engine.images import is_hidden, looks_like_image_name


class ImageTree(DirectoryTree):
    """Textual's DirectoryTree, showing what the engine would index and nothing else."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, path: str | Path, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.root_path = Path(path).resolve()
        self.name_filter = ""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        needle = self.name_filter.lower()
        for path in paths:
            if is_hidden(path.name):
                continue
            try:
                is_dir = path.is_dir()
            except OSError:
                continue
            if is_dir:
                yield path
            elif looks_like_image_name(path.name):
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
        if text != self.name_filter:
            self.name_filter = text
            self.reload()
