"""Benchmark data sets, built on first use under bench-data/ (never committed).

* ``fashion``: Fashion-MNIST's test split (10,000 images in 10 classes) from Debian's
  ``dataset-fashion-mnist``, written as PNG files so decoding is real.
* ``clipart``: a varied collection, up to 40 images from each of 16 categories of the Open
  Clip Art Library (Debian's ``openclipart-png``, public domain): drawings, symbols,
  photos-like renderings, flags, vehicles. Its class is its folder name, as for
  Fashion-MNIST. Where Fashion-MNIST is small, grey and tightly packed, this set is
  colourful, varied in size and shape, and loosely packed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
#: ``python -m benchmarks.run --smoke`` (which sets this variable): every benchmark at a
#: small size, on data of its own, so that a benchmark that no longer runs is seen in CI.
SMOKE = os.environ.get("LOOKALIKE_BENCH_SMOKE") == "1"
DATA = REPO / "bench-data" / "smoke" if SMOKE else REPO / "bench-data"


T = TypeVar("T")


def sized(full: T, smoke: T) -> T:
    """*full*, or *smoke* in a smoke run."""
    return smoke if SMOKE else full


FASHION = DATA / "fashion-test"
CLIPART = DATA / "clipart"
OPENCLIPART = Path("/usr/share/openclipart/png")
CLIPART_CLASSES = (
    "animals/birds",
    "animals/bugs",
    "animals/mammals",
    "buildings/homes",
    "food/beverages",
    "food/desserts",
    "food/fruit",
    "people/smilies",
    "people/stickmen",
    "plants/flowers",
    "recreation/music",
    "recreation/sports",
    "signs_and_symbols/weather",
    "tools/weapons",
    "transportation/roadsigns",
    "transportation/vehicles",
)
PER_CLASS = sized(40, 5)


def ensure_fashion() -> Path:
    from engine.fashion import export

    count = len(list(FASHION.glob("*/*.png"))) if FASHION.exists() else 0
    if count < sized(10_000, 500):
        print("writing Fashion-MNIST test images as PNG…", flush=True)
        export(FASHION, ("test",), sized(None, 50))
    return FASHION


def ensure_clipart() -> Path:
    """The varied set; needs ``apt-get install openclipart-png``."""
    if CLIPART.exists() and len(list(CLIPART.glob("*/*.png"))) >= sized(500, 60):
        return CLIPART
    if not OPENCLIPART.is_dir():
        raise SystemExit("the varied set needs Debian's openclipart-png package")
    for cls in CLIPART_CLASSES:
        files = [f for f in sorted((OPENCLIPART / cls).glob("*.png")) if _usable(f)][:PER_CLASS]
        dest = CLIPART / cls.replace("/", "-")
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / f.name)
    return CLIPART


def _usable(path: Path) -> bool:
    """Leave out drawings the engine refuses anyway (over its 64-megapixel limit)."""
    from PIL import Image

    from engine.images import MAX_PIXELS

    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1] <= MAX_PIXELS
    except (OSError, Image.DecompressionBombError):
        return False


def class_folders(root: Path) -> list[str]:
    """The class folders of a set, sorted (not the index's hidden ``.lookalike``)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def label_of(relpath: str) -> str:
    """The class of an image in either set: its top folder."""
    return relpath.split("/")[0]
