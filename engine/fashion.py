"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, written out as PNG files.

Used by ``lookalike fashion-mnist DEST`` to fill ``fashion-dataset/`` with the full
data set, and by the benchmark suite. Files land as ``DEST/<class>/<split>-<n>.png``,
so the class of every image is its folder name.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import DatasetError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    try:
        data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"cannot read {path}: {exc.strerror or exc} (apt-get install dataset-fashion-mnist)"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated")
    return body.reshape(dims)


def load_split(split: str = "test", source: Path = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels uint8 (n,)) of ``train`` or ``test``."""
    if split not in _FILES:
        raise DatasetError(f"unknown split {split!r}: choose train or test")
    img_name, lab_name = _FILES[split]
    images, labels = _read_idx(source / img_name), _read_idx(source / lab_name)
    if len(images) != len(labels):
        raise DatasetError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def export(
    dest: str | os.PathLike[str],
    splits: tuple[str, ...] = ("train", "test"),
    per_class: int | None = None,
    source: Path = DEBIAN_DIR,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Write the images of *splits* as PNGs under *dest*; returns how many were written.

    Existing files are left alone, so running it again is cheap. With *per_class*,
    only the first N images of each class (per split) are written.
    """
    dest = Path(dest)
    written = 0
    jobs: list[tuple[Path, np.ndarray]] = []
    for split in splits:
        images, labels = load_split(split, source)
        counts = [0] * len(CLASSES)
        for i, (img, lab) in enumerate(zip(images, labels)):
            if per_class is not None and counts[lab] >= per_class:
                continue
            counts[lab] += 1
            jobs.append((dest / CLASSES[lab] / f"{split}-{i:05d}.png", img))
    for folder in {p.parent for p, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    for n, (path, img) in enumerate(jobs, 1):
        if cancel is not None and cancel.is_set():
            break
        if not path.exists():
            Image.fromarray(img, "L").save(path, optimize=False)
            written += 1
        if on_progress is not None and (n % 500 == 0 or n == len(jobs)):
            on_progress(n, len(jobs))
    return written
