"""Move records and the key that signs them (see :mod:`engine.quarantine`: a record
cannot be turned against the user)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time

from engine.errors import IndexFileError, MoveError, os_reason
from engine.paths import user_cache_dir
from engine.quarantine.common import KEY_BYTES, KEY_FILE, MAX_LINE, _unb64
from engine.sandbox import Folder, Refused

# --- the signing key ----------------------------------------------------------------------


def _key(create: bool) -> bytes | None:
    """This user's key for move records (made on first use when *create*), or None."""
    try:
        folder = Folder.anchor(user_cache_dir(), create=create)
    except (IndexFileError, OSError) as exc:
        if not create:
            return None
        raise MoveError(f"cannot keep the key that signs move records: {exc}") from None
    with folder:
        try:
            return _read_key(folder)
        except FileNotFoundError:
            if not create:
                return None
        try:
            fd = folder.create(KEY_FILE, 0o600)
        except FileExistsError:
            return _read_key(folder)  # made meanwhile by another process
        except OSError as exc:
            raise MoveError(
                f"cannot keep the key that signs move records in {folder.path}:"
                f" {exc.strerror or exc}"
            ) from None
        key = secrets.token_bytes(KEY_BYTES)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key


def _new_key() -> bytes:
    """This user's key for move records, made now if there is none."""
    key = _key(create=True)
    if key is None:  # never: made, or a MoveError saying why not
        raise MoveError("cannot keep the key that signs move records")
    return key


def _read_key(folder: Folder) -> bytes:
    try:
        key = folder.read(KEY_FILE, KEY_BYTES)
    except Refused as exc:
        raise MoveError(f"{exc}: remove it, lookalike makes a new key") from None
    if len(key) != KEY_BYTES:
        raise MoveError(
            f"{folder.child(KEY_FILE)} is not a key lookalike made: remove it, lookalike"
            " makes a new one"
        )
    return key


def _mac(key: bytes, nonce: str, n: int, entry: dict) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, f"{nonce}\n{n}\n{body}".encode(), hashlib.sha256).hexdigest()


class _Record:
    """A move record, made on its first line (a move that moves nothing writes none):
    each line signed, written and flushed to disk before the step it announces."""

    def __init__(self, moves: Folder, head: dict, key: bytes) -> None:
        self.moves, self.key = moves, key
        self.head = {**head, "nonce": secrets.token_hex(16), "started": time.time()}
        self.fd = -1
        self.n = 0
        self.name = ""

    def write(self, entry: dict) -> None:
        if self.fd < 0:
            # the nanoseconds before the process id, at a fixed width: records sort by
            # name, and a process id of fewer digits put a later move of the same second
            # before an earlier one (undo then took the older move)
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns():019d}-{os.getpid()}"
            self.name = stem + ".jsonl"
            self.fd = self.moves.create(self.name, 0o600)
            self._line(self.head)
        self._line(entry)

    def _line(self, entry: dict) -> None:
        signed = {**entry, "mac": _mac(self.key, self.head["nonce"], self.n, entry)}
        data = (json.dumps(signed) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data) :]
            os.fsync(self.fd)
        except OSError as exc:
            raise MoveError(
                f"cannot write the move record {self.moves.child(self.name)}: {os_reason(exc)};"
                " nothing more is moved (lookalike triage DIR --undo puts back what did)"
            ) from None
        self.n += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_record(moves: Folder, name: str, root: str, key: bytes | None) -> tuple[dict, list]:
    """The head of record *name* and its planned moves (path in ROOT, path in the
    destination), every line's signature checked; MoveError when it was not written for
    *root* by this user's lookalike."""
    fail = f"the move record {moves.child(name)}"
    try:
        fd = moves.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, Refused) as exc:
        raise MoveError(f"{fail} cannot be read: {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MoveError(f"{fail} is not a plain file")
        lines = []
        while line := fh.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE:
                raise MoveError(f"{fail} holds a line longer than lookalike writes")
            lines.append(line)
    entries: list[dict] = []
    for i, raw in enumerate(lines):
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                break  # the last line, cut short by a kill: its step never started
            raise MoveError(f"{fail} cannot be read: line {i + 1} is not JSON") from None
        if not isinstance(entry, dict):
            raise MoveError(f"{fail} cannot be read: line {i + 1} is not a record")
        entries.append(entry)
    if not entries:
        raise MoveError(f"{fail} is empty")
    nonce = entries[0].get("nonce")
    if key is None or not isinstance(nonce, str):
        raise MoveError(f"{fail} is not signed by your lookalike")
    for n, entry in enumerate(entries):
        mac = entry.pop("mac", None)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, nonce, n, entry)):
            raise MoveError(
                f"{fail} is not signed by your lookalike (crafted, altered, or written by"
                " another user or an older lookalike)"
            )
    head = entries[0]
    try:
        written_for = _unb64(head["root"])
        _unb64(head["folder"])
        if head.get("inside") is not None:
            _unb64(head["inside"])
        planned = [
            (_unb64(r["planned"]), _unb64(r.get("to", r["planned"])))
            for r in entries[1:]
            if "planned" in r
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise MoveError(f"{fail} cannot be read: {exc}") from None
    if written_for != root:
        raise MoveError(f"{fail} was written for another folder")
    return head, planned
