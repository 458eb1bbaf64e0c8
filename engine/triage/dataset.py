"""Data-set triage from the index: unusable pictures (:mod:`engine.quality`'s flags,
from measurements stored at indexing) and the class of a picture (its top folder).
Wrong labels are :mod:`engine.triage.labels`'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import quality
from engine.names import count


@dataclass(frozen=True)
class Unusable:
    path: str
    flags: tuple[str, ...]
    values: dict[str, float]


def label_of(path: str) -> str | None:
    """The class of *path*: its first folder under the root (the ImageFolder layout)."""
    return path.split("/", 1)[0] if "/" in path else None


def unusable(paths: list[str], blobs: list[bytes | None], damaged) -> tuple[list[Unusable], str]:
    """Pictures with quality flags, in path order, and a note on pictures measured by no
    lookalike yet (indexed by an older one). *damaged* makes the error for a crafted
    record."""
    try:
        have, table = quality.table(blobs)
    except ValueError as exc:
        raise damaged(str(exc)) from None
    rows = np.flatnonzero(have)
    note = ""
    if len(rows) < len(paths):
        note = (
            f"{count(len(paths) - len(rows), 'picture')} indexed before quality was measured:"
            " lookalike index DIR --rebuild measures them"
        )
    if not len(rows):
        return [], note
    floor = quality.floors(table)
    out = []
    for i, v, words in zip(rows, table, quality.flags_of(table, floor)):
        if words:
            values = {k: round(float(x), 4) for k, x in zip(quality.FIELDS, v)}
            out.append(Unusable(paths[i], words, values))
    out.sort(key=lambda u: u.path)
    return out, note
