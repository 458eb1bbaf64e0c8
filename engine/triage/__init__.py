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

from engine.triage.groups import DEFAULT_THRESHOLD, Graph, group_pairs, kept_folder, under
from engine.triage.report import Group, Member, Outlier, TriageReport
from engine.triage.session import OUTLIER_SHARE, TriageSession, triage

__all__ = [
    "DEFAULT_THRESHOLD",
    "OUTLIER_SHARE",
    "Graph",
    "Group",
    "Member",
    "Outlier",
    "TriageReport",
    "TriageSession",
    "group_pairs",
    "kept_folder",
    "triage",
    "under",
]
