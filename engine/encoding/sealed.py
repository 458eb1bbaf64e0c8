"""Cached models are checked before use: each carries the digest written when it was made.

The ONNX export and the int8 model live in the user's cache folder and are reused for
months. A bit flip, a truncated copy, an empty or garbage file there would otherwise
reach ONNX Runtime or OpenVINO, which fail with a raw traceback, or worse, load and
give other features silently. So when a model is made, a *seal* is written beside it
(``MODEL.seal``, JSON): the SHA-256 of each of its files and facts that hold for those
bytes only (the int8 guard's measured cosine, the ONNX model it was made from). Before
use, the files are hashed again (about 30 ms for EfficientNet-Lite0's 14 MB); a model
whose seal is missing or does not match is made again, with a one-line note on the
``lookalike`` logger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from contextlib import suppress
from pathlib import Path

log = logging.getLogger("lookalike")

#: A seal is a few hundred bytes; a larger file is not one lookalike wrote.
SEAL_MAX = 1 << 16


def seal_path(model: Path) -> Path:
    return model.with_name(model.name + ".seal")


def digest(path: Path) -> str:
    """SHA-256 of a file (read without following a link)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_whole(path: Path, data: bytes, suffix: str = ".part") -> None:
    """*data* as the whole of *path*, or nothing: written to a file beside it that then
    replaces it, so a reader never sees half a file and a crash leaves the old one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def write_seal(model: Path, files: list[Path], **facts: object) -> dict:
    """Seal *model*: the digest of each of *files* (its own and companions) and *facts*,
    written atomically beside it. Returns what was written."""
    seal = {"files": {f.name: digest(f) for f in files}, **facts}
    write_whole(seal_path(model), json.dumps(seal).encode(), ".seal.part")
    return seal


def read_seal(model: Path, files: list[Path]) -> tuple[dict | None, str]:
    """The seal of *model* when every one of *files* still has the digest it records,
    else None and why, in words (``""`` when the model was never made)."""
    if not any(f.exists() or f.is_symlink() for f in files):
        return None, ""
    try:
        fd = os.open(seal_path(model), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(SEAL_MAX + 1)
        seal = json.loads(raw) if len(raw) <= SEAL_MAX else None
    except FileNotFoundError:
        return None, "has no digest"
    except (OSError, ValueError, RecursionError):
        seal = None
    if not isinstance(seal, dict) or not isinstance(seal.get("files"), dict):
        return None, "has a damaged digest file"
    for f in files:
        want = seal["files"].get(f.name)
        try:
            have = digest(f)
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})"
        if have != want:
            return None, "does not match the digest written when it was made"
    return seal, ""


def remove(model: Path, files: list[Path]) -> None:
    """Remove a model's files and its seal (before making it again)."""
    for f in [*files, seal_path(model)]:
        with suppress(FileNotFoundError):
            os.unlink(f)


def checked(model: Path, files: list[Path], what: str) -> dict | None:
    """The seal of a cached model that may be used; a model that fails its check is
    removed (with a note: it is made again) and None returned, as for one never made."""
    seal, why = read_seal(model, files)
    if seal is None and why:
        log.warning(f"the cached {what} {model} {why}: making it again")
        remove(model, files)
    return seal
