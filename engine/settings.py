"""Every knob of the engine in one typed object, with its default and its bounds.

The command line, the app and the benchmarks build a :class:`Settings` and hand it to
:class:`engine.search.ImageSimilaritySearch`; defaults live here and nowhere else.
``None`` for ``hash_dim``, ``num_perm``, ``seed`` and ``auto`` for ``backbone`` and
``precision`` mean "a new index gets the default, an existing one keeps its own".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from engine.errors import SettingsError

DEFAULT_HASH_DIM = 128
DEFAULT_NUM_PERM = 128
DEFAULT_SEED = 1
#: Bounds on the settings an index may hold, checked before anything is sized by them.
HASH_DIM_RANGE = (8, 2048)
NUM_PERM_RANGE = (2, 1024)
BATCH_RANGE = (1, 4096)
#: LSH banding (bands, rows per band) per num_perm, chosen by the benchmark suite.
DEFAULT_BANDS = {128: (16, 8)}
SEARCH_MODES = ("auto", "exact", "lsh")
#: The side of the square the CNN sees: both backbones were trained at 224 px. Smaller
#: inputs are cheaper (192 px: about 1.4x faster end to end) and, measured on
#: EfficientNet-Lite0, keep precision@10 by class (0.813 against 0.814 on Fashion-MNIST,
#: 0.557 against 0.553 on clip-art), but change which images come first: only about half
#: of each image's ten nearest stay the same. So 224 is the default; 192 and 160 are
#: offered (``--input-size``), and an index records its size.
INPUT_SIZE = 224
INPUT_SIZES = (160, 192, 224)


@dataclass(frozen=True)
class Settings:
    """How to build and search an index (see the README's option table)."""

    backbone: str = "auto"
    weights: str | None = None
    hash_dim: int | None = None
    num_perm: int | None = None
    seed: int | None = None
    device: str = "auto"
    precision: str = "auto"
    runtime: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    follow_links: bool = False
    index_path: str | None = None
    #: where the index lives: ``sqlite:PATH`` or ``redis://[:PASSWORD@]HOST:PORT/DB?name=INDEX``
    #: (None: the embedded default, ``index_path`` or ``ROOT/.lookalike/index.sqlite``)
    store: str | None = None
    search_mode: str = "auto"
    input_size: int | None = None
    #: let a run remove more than half of the index (or all of it, when the folder holds
    #: no image): without it such a run keeps them, since a missing mount or a mistyped
    #: folder looks exactly like that (see engine.indexer)
    prune: bool = False

    def __post_init__(self) -> None:
        for name, value, (lo, hi) in (
            ("hash_dim", self.hash_dim, HASH_DIM_RANGE),
            ("num_perm", self.num_perm, NUM_PERM_RANGE),
            ("batch_size", self.batch_size, BATCH_RANGE),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi
            ):
                raise SettingsError(f"{name} must be a whole number from {lo} to {hi}, not {value}")
        if self.input_size is not None and self.input_size not in INPUT_SIZES:
            raise SettingsError(f"input size must be 160, 192 or 224, not {self.input_size}")
        if self.search_mode not in SEARCH_MODES:
            raise SettingsError(f"search mode must be one of {', '.join(SEARCH_MODES)}")

    @property
    def decode_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def with_(self, **changes) -> Settings:
        """A copy with some settings changed (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)


def bands_for(num_perm: int) -> tuple[int, int]:
    """The banding for *num_perm*: the measured default, else rows of 4, as many bands as
    fit (datasketch's MinHashLSH needs at least two bands)."""
    if num_perm in DEFAULT_BANDS:
        return DEFAULT_BANDS[num_perm]
    rows = 4 if num_perm >= 8 else 1
    return max(2, num_perm // rows), rows
