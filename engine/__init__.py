"""lookalike's engine: CNN codes, MinHash LSH and an on-disk index. No UI in here.

Importing ``engine`` is cheap: torch and the CNN load only when first used, so a UI can
import it to draw its first frame at once. The names the original script's users know
are kept: :class:`DeepImageEncoder`, :func:`create_minhash`,
:class:`ImageSimilaritySearch` and its ``find_similar_images``.

Where each job lives:

* ``search`` — the façade: open a folder's index, index it, answer queries;
* ``settings``, ``identity`` — every knob; the settings an index's codes were made with;
* ``encoding/`` — the CNN (``torch_cnn``), its ONNX and OpenVINO runs, the ``chooser``
  of the fastest and its ``timing``;
* ``images``, ``names``, ``paths`` — walking, decoding, checking paths and names;
* ``indexer`` (``indexer_shared``: several workers; ``prepare``: each picture in the
  decode threads, and how many) — walk, decode, encode, commit;
  ``centre`` — the mean subtracted first;
* ``minhash``, ``lsh`` — signatures and band keys; ``vectors``, ``live`` — scoring, the
  planner, and the view searches read while indexing goes on;
* ``storage/`` — ``base`` (the ``IndexStore`` and ``Annotations`` halves every store
  inherits), ``open_index``; ``sqlite/``; ``redis/`` (records, scripts, datasketch's
  LSH, the Streams queue);
* ``triage/`` — the session and its parts (candidate graph, verification with
  ``keypoints``, groups, sections, leaks, wrong labels, ``dataset``; pairs from
  ``selfjoin`` and ``exact_join``); ``copies`` — the copy rule and the thumbnails the
  indexer stores for it (``aligned``, ``alike``: the pixels of small pictures);
  ``quarantine/`` — moves; ``sandbox`` — the one guarded way into the index folder; ``quality`` — measured at indexing; ``labels`` — words for scores;
  ``errors`` — every error a user may see; ``results`` — what comes back.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DeepImageEncoder": "engine.encoding.torch_cnn",
    "EncoderError": "engine.encoding.backbones",
    "backbone_info": "engine.encoding.backbones",
    "create_minhash": "engine.minhash",
    "ImageSimilaritySearch": "engine.search",
    "IndexMismatch": "engine.errors",
    "SearchError": "engine.errors",
    "IndexStats": "engine.results",
    "Match": "engine.results",
    "Progress": "engine.results",
    "SearchResult": "engine.results",
    "Settings": "engine.settings",
    "ImageError": "engine.images",
    "SkippedFile": "engine.images",
    "looks_like_image_name": "engine.images",
    "IndexFileError": "engine.storage",
    "IndexDamaged": "engine.storage",
    "IndexBusy": "engine.storage",
    "open_store": "engine.storage",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from engine.encoding.backbones import EncoderError, backbone_info
    from engine.encoding.torch_cnn import DeepImageEncoder
    from engine.errors import IndexMismatch, SearchError
    from engine.images import ImageError, SkippedFile, looks_like_image_name
    from engine.minhash import create_minhash
    from engine.results import IndexStats, Match, Progress, SearchResult
    from engine.search import ImageSimilaritySearch
    from engine.settings import Settings
    from engine.storage import IndexBusy, IndexDamaged, IndexFileError, open_store


def lazy_exports(package: str, exports: dict[str, str], space: dict[str, Any]):
    """A package's ``__getattr__`` giving each name of *exports* (name -> module) from its
    module on first use, then kept in the package's *space*: so that importing the
    package does not import what its names need (torch, the classifier's libraries)."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        space[name] = value
        return value

    return getattr_


__getattr__ = lazy_exports("engine", _EXPORTS, globals())
