"""lookalike's engine: CNN codes, MinHash LSH and an on-disk index. No UI in here.

Importing ``engine`` is cheap: torch and the CNN load only when first used, so a UI can
import it to draw its first frame at once. The names the original script's users know
are kept: :class:`DeepImageEncoder`, :func:`create_minhash`,
:class:`ImageSimilaritySearch` and its ``find_similar_images``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DeepImageEncoder": "engine.encoder",
    "EncoderError": "engine.encoder",
    "backbone_info": "engine.encoder",
    "create_minhash": "engine.minhash",
    "ImageSimilaritySearch": "engine.search",
    "IndexMismatch": "engine.search",
    "SearchError": "engine.search",
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
    from engine.encoder import DeepImageEncoder, EncoderError, backbone_info
    from engine.images import ImageError, SkippedFile, looks_like_image_name
    from engine.minhash import create_minhash
    from engine.results import IndexStats, Match, Progress, SearchResult
    from engine.search import ImageSimilaritySearch, IndexMismatch, SearchError
    from engine.settings import Settings
    from engine.storage import IndexBusy, IndexDamaged, IndexFileError, open_store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
