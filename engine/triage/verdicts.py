"""How a pair's local-feature verdict is cached in the index: a short JSON text, read
back with a strict shape. The index is a file in the user's folder, writable by whoever
can write there, so what comes back from it is checked before it decides anything."""

from __future__ import annotations

import json

#: A cached verdict is JSON of at most this many characters, its reason at most WHY_MAX;
#: anything longer (a crafted cache) is not even parsed, and is verified again.
VERDICT_MAX = 512
WHY_MAX = 160


def verdict_text(copy: bool, points: int, why: str) -> str:
    """A local-feature verdict as it is cached in the index (:func:`read_verdict`)."""
    if not why:  # a score: the same text, without json's machinery (80,000 at a time)
        return f'{{"copy": {"true" if copy else "false"}, "points": {int(points)}, "why": ""}}'
    return json.dumps({"copy": bool(copy), "points": int(points), "why": why[:WHY_MAX]})


def read_verdict(text: object) -> tuple[bool, int, str] | None:
    """A cached verdict, or None when it is not exactly what :func:`verdict_text` writes
    (an index is writable by whoever has the folder: ``{"copy": "false"}`` must not make
    a copy, a 200,000-deep array must not recurse, a reason of megabytes must not be read)."""
    if not isinstance(text, str) or len(text) > VERDICT_MAX:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or set(value) != {"copy", "points", "why"}:
        return None
    copy, points, why = value["copy"], value["points"], value["why"]
    if not isinstance(copy, bool) or not isinstance(why, str) or len(why) > WHY_MAX:
        return None
    if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= 1 << 20:
        return None
    return copy, points, why
