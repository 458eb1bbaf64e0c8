"""Every place lookalike writes outside the folders it indexes, in one module.

* ``ROOT/.lookalike/`` holds a folder's index (see :mod:`engine.storage.sqlite`).
* The user's cache folder (``$XDG_CACHE_HOME/lookalike``, else ``~/.cache/lookalike``)
  holds indexes of folders lookalike cannot write to, the exported ONNX models and the
  measured speed of each way of running the CNN on this machine.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

INDEX_DIRNAME = ".lookalike"
INDEX_FILENAME = "index.sqlite"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lookalike`` (``~/.cache/lookalike``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookalike"


def onnx_cache_dir() -> Path:
    return user_cache_dir() / "onnx"


def runtime_cache_file() -> Path:
    return user_cache_dir() / "runtime.json"


def default_index_path(root: str | os.PathLike[str]) -> Path:
    """``ROOT/.lookalike/index.sqlite``, or a per-user cache file when ROOT is read-only
    and holds no index yet."""
    root = Path(root).resolve()
    local = root / INDEX_DIRNAME / INDEX_FILENAME
    if local.exists() or os.access(root, os.W_OK):
        return local
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return user_cache_dir() / f"{root.name or 'root'}-{digest}" / INDEX_FILENAME
