"""Candidate pairs and the evidence measured about each, in columns: what
:mod:`engine.copies` decides on, kept apart from the rule so that the candidate graph,
the verdict cache and the leak search share one container."""

from __future__ import annotations

import numpy as np

#: What a pair carries besides its rows and rank.
PAIR_FIELDS = (
    "score", "similarity", "pixels", "transform", "fine", "small", "colour", "points",
    "point_copy", "point_why", "copy", "why",
)  # fmt: skip


class Pairs:
    """Candidate pairs (rows ``left < right``) with their evidence: code cosine
    (``score``), visual similarity, aligned pixels and transform (NaN: not measured),
    the full-size pixel score (``fine``) and the aligned small-size one (``small``, both
    NaN: not measured), how far their colours lie apart (``colour``, -1: not both in
    colour, NaN: not measured) and the local-feature verdict
    (``points`` -1: not measured; ``point_copy``, ``point_why``).
    :func:`engine.copies.decide` turns the evidence into ``copy`` and ``why``; each stage
    measures only what is missing."""

    def __init__(self, left: np.ndarray, right: np.ndarray, rank: np.ndarray) -> None:
        self.left, self.right, self.rank = left, right, rank
        n = len(left)
        self.score = np.zeros(n, np.float32)
        self.similarity = np.zeros(n, np.float32)
        self.pixels = np.full(n, np.nan, np.float32)
        self.transform = np.zeros(n, np.int64)
        self.fine = np.full(n, np.nan, np.float32)
        self.small = np.full(n, np.nan, np.float32)
        self.colour = np.full(n, np.nan, np.float32)
        self.points = np.full(n, -1, np.int32)
        self.point_copy = np.zeros(n, bool)
        self.point_why = np.full(n, "", object)  # taken and joined like the numbers
        self.copy = np.zeros(n, bool)
        self.why = np.full(n, "", object)

    def __len__(self) -> int:
        return len(self.left)

    def take(self, keep: np.ndarray) -> Pairs:
        """The pairs selected by *keep* (a mask or indices), evidence included."""
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        out = Pairs(self.left[idx], self.right[idx], self.rank[idx])
        for name in PAIR_FIELDS:
            setattr(out, name, getattr(self, name)[idx])
        return out

    @staticmethod
    def join(parts: list[Pairs]) -> Pairs:
        """The pairs of *parts*, one after another."""
        parts = [p for p in parts if len(p)] or parts[:1]
        out = Pairs(
            *(np.concatenate([getattr(p, k) for p in parts]) for k in ("left", "right", "rank"))
        )
        for name in PAIR_FIELDS:
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
        return out
