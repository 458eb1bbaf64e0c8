"""What the engine hands back: plain dataclasses, safe to pass to any thread."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.images import SkippedFile


@dataclass(frozen=True)
class Match:
    """One result: a path relative to the indexed root, and its cosine similarity."""

    path: str
    score: float
    rank: int = 0

    def absolute(self, root: str | os.PathLike[str]) -> Path:
        return Path(root) / self.path


#: How an answer was found, as :attr:`SearchResult.mode` says it.
MODES = {
    "exact": "every image scored",
    "lsh": "LSH candidates, checked reliable",
    "exact-lsh-unsure": "every image scored: the LSH candidates could have missed some",
}


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]
    mode: str  # a key of MODES
    candidates: int  # images scored in the first stage (codes)
    indexed: int  # usable images in the index at query time
    seconds: float
    query_from_index: bool
    reranked: int = 0  # images re-scored on the backbone's full features
    query_path: str | None = None  # the query's stored path, when it is an indexed file


@dataclass(frozen=True)
class Progress:
    """What ``on_progress`` receives during :meth:`ImageSimilaritySearch.index`."""

    done: int
    total: int
    failed: int
    images_per_s: float
    current: str
    #: "scanning", "preparing" (the CNN loads; on a machine's first run, its ways of
    #: running are timed: *current* says which, *done* of *total*), "encoding",
    #: "waiting" (a shared index: on another worker), "finishing", "done"
    phase: str


@dataclass
class IndexStats:
    """The outcome of one :meth:`ImageSimilaritySearch.index` run."""

    indexed: int = 0  # encoded in this run
    unchanged: int = 0  # already up to date, skipped
    removed: int = 0  # gone from disk, dropped from the index
    failed: list[SkippedFile] = field(default_factory=list)
    total: int = 0  # usable images in the index after the run
    seconds: float = 0.0
    cancelled: bool = False
    backbone: str = ""
    index_path: str = ""
    store: str = "SQLite"  # which store holds the index, for summaries
    #: The index could not be written (read-only media): nothing was encoded, and
    #: ``pending`` files that are new, changed or gone are not reflected in it.
    readonly: bool = False
    readonly_why: str = ""  # "read-only media", "disk full"
    pending: int = 0
    #: Files gone from disk but kept in the index: removing them would have emptied more
    #: than half of it (or the walk found no file at all), which needs ``prune``.
    kept_gone: int = 0
    found: int = 0  # image files the walk found

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0
