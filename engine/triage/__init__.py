"""Triage a collection: copies, identical files, outliers, broken files, and on a data
set its leaks, suspected wrong labels and pictures hard to learn from.

**Copies.** Two pictures are grouped when one is a copy of the other: the same picture
after everyday edits (resized, cropped, framed, mirrored, turned, tilted, brightened,
greyed, captioned, re-encoded), never merely the same kind of thing. The decision is made
per candidate pair by :mod:`engine.copies` on evidence that survives those edits
(identical bytes, local features verified geometrically, aligned pixels that stand out
from the picture's other look-alikes), and each member says why it was grouped.

Where each job lives:

* ``candidates`` — each picture's nearest pictures and the evidence about each pair,
  kept in the index and followed as it changes;
* ``verify`` — the one verification pipeline (pixels, full-size pixels, local
  features, with the verdict cache), for copies and leaks alike;
* ``groups`` — groups from the pairs, and which copy each keeps;
* ``report`` — what a triage finds, as plain data;
* ``leaks`` — pictures of another folder that copy one of this one;
* ``labels`` — suspected wrong labels and the classes confused as a rule;
* ``session`` — the use-case layer: a triage kept current action by action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine import lazy_exports

#: What the package gives, and the module each comes from. Imported on first use: the
#: session pulls in the classifier's libraries (about 0.6 s), which the app must not wait
#: for before its first frame (``--keep-in`` needs only ``kept_folder``).
_EXPORTS = {
    "DEFAULT_THRESHOLD": "engine.triage.groups",
    "Graph": "engine.triage.groups",
    "group_pairs": "engine.triage.groups",
    "kept_folder": "engine.triage.groups",
    "under": "engine.triage.groups",
    "Group": "engine.triage.report",
    "Member": "engine.triage.report",
    "Outlier": "engine.triage.report",
    "TriageReport": "engine.triage.report",
    "OUTLIER_SHARE": "engine.triage.session",
    "TriageSession": "engine.triage.session",
    "triage": "engine.triage.session",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from engine.triage.groups import DEFAULT_THRESHOLD, Graph, group_pairs, kept_folder, under
    from engine.triage.report import Group, Member, Outlier, TriageReport
    from engine.triage.session import OUTLIER_SHARE, TriageSession, triage


__getattr__ = lazy_exports("engine.triage", _EXPORTS, globals())
