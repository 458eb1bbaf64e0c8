"""Shared fixtures: image folders the tests build, and one indexed copy of the sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "fashion-dataset"


def make_image(
    path: Path, seed: int, size: tuple[int, int] = (40, 32), fmt: str | None = None
) -> Path:
    """A small picture with structure (blocks of colour), distinct per seed."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(small, "RGB").resize(size, Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Six distinct small images in two sub-folders."""
    root = tmp_path / "images"
    for i in range(6):
        make_image(root / ("a" if i < 3 else "b") / f"img{i}.png", seed=i)
    return root


@pytest.fixture(scope="session")
def sample_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shipped sample, indexed once for the whole session."""
    from engine import ImageSimilaritySearch

    root = tmp_path_factory.mktemp("sample") / "fashion-dataset"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    with ImageSimilaritySearch(root, batch_size=50) as search:
        stats = search.index()
    assert stats.indexed == 200 and not stats.failed
    return root
