"""File names as data: stored losslessly, checked before use, printed safely.

A file name on Linux is any run of bytes but ``/`` and NUL. Python hands names that
are not valid UTF-8 to us as ``str`` with *surrogate escapes* (byte ``0xff`` becomes
``"\\udcff"``), and :func:`os.fsencode` gives the exact bytes back. The engine keeps
names in that form everywhere, and stores their bytes, so nothing is lost.

Names are also hostile input. Three rules, in one place:

* :func:`printable` is the one way a name, path or message that came from the disk
  or an index reaches a terminal: control characters (C0, DEL, C1, which includes
  ESC), undecodable bytes, line and paragraph separators and bidirectional overrides
  are shown as visible escapes (``\\x1b``, ``\\xff``, ``\\u202e``), so no escape
  sequence can reach the terminal and one name stays on one line.
* :func:`json_path` is how a name appears in JSON: valid UTF-8 text always, with the
  exact bytes alongside (base64) when the name is not valid UTF-8.
* :func:`check_relpath` refuses stored paths that are absolute or climb out of the
  indexed folder, which only a damaged or crafted index holds.
"""

from __future__ import annotations

import base64
import os
import re

# C0 controls, DEL, C1 controls; lone surrogates (undecodable bytes); bidirectional
# embeddings, overrides, isolates and marks; line and paragraph separators.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def count(n: int, one: str, many: str | None = None) -> str:
    """*n* and the noun that goes with it: ``1 file``, ``2 files`` (``many``: an
    irregular plural)."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def printable(text: object) -> str:
    """*text* with everything a terminal could act on shown as a visible escape.

    Use it for every path, name and message that came from the disk or an index,
    before it is printed or drawn; it never lets markup or escape sequences through
    because its output is plain text to be shown as plain text.
    """
    return _UNSAFE.sub(_escape, str(text))


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_path(name: str, key: str = "path") -> dict[str, str]:
    """``{key: text}`` for a JSON object, plus ``{key + "_b64": ...}`` when needed.

    The text is the name with undecodable bytes written as ``\\xNN`` (valid UTF-8,
    readable, but not unique); ``<key>_b64`` holds the name's exact bytes in base64,
    present only when the name is not valid UTF-8.
    """
    if is_utf8(name):
        return {key: name}
    raw = os.fsencode(name)
    return {
        key: raw.decode("utf-8", "backslashreplace"),
        key + "_b64": base64.b64encode(raw).decode("ascii"),
    }


def check_relpath(relpath: str) -> str | None:
    """Why *relpath* cannot be a path inside the indexed folder, or None if it can.

    Only a damaged or crafted index stores such paths: the walk writes relative
    paths under the root, with ``/`` separators and no ``.`` or ``..`` parts.
    """
    if not relpath or "\x00" in relpath:
        return "empty path" if not relpath else "path with a NUL byte"
    if relpath.startswith("/"):
        return "absolute path"
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "path leaves the folder" if ".." in parts else "malformed path"
    return None


#: What any path :func:`check_relpath` refuses holds, among paths joined by NUL (which no
#: path holds): a part that is empty or starts with "." (the walk never stores hidden
#: names, so a clean index holds none of these at all).
_SUSPECT = ("//", "/\x00", "\x00\x00", "\x00/", "/.", "\x00.")


def first_bad_relpath(paths: list[str]) -> int | None:
    """The index of the first of *paths* that :func:`check_relpath` refuses, or None:
    one scan of them all (a hundred thousand paths in a few milliseconds, where one call
    each takes half a second); only a suspect list is looked at path by path."""
    joined = "\x00".join(paths)
    suspect = (
        (len(paths) != 0 and (not joined or joined[0] in "/.\x00" or joined[-1] in "/\x00"))
        or joined.count("\x00") != max(len(paths) - 1, 0)
        or any(x in joined for x in _SUSPECT)
    )
    if suspect:
        for i, p in enumerate(paths):
            if check_relpath(p) is not None:
                return i
    return None
