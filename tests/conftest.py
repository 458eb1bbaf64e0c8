"""Shared fixtures: image folders the tests build, and one indexed copy of the sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "fashion-dataset"

# Tests run on CPUs of several kinds. Left to "auto", the CNN's precision would be
# whatever is fastest on each (bf16 on some), and scores would differ between them;
# fp32 codes agree across CPUs and runtimes to about 1e-6. The runtime stays "auto",
# so the measured choice between ONNX Runtime and PyTorch is exercised everywhere.
# (Subprocesses inherit it.) Tests of the choice itself clear it.
os.environ["LOOKALIKE_PRECISION"] = "fp32"
# The app under test runs headless, where Rich sees no colour terminal: pictures would be
# dithered to 256 colours and a notice would say so. The snapshots show 24-bit pictures;
# the 256-colour path and the notice have tests of their own.
os.environ["LOOKALIKE_COLORS"] = "truecolor"


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


class FixedCodes:
    """An encoder that returns codes recorded once from the real CNN (fp32) for the
    shipped sample, looked up by the image's pixels.

    For screenshots only: scores and rankings drawn from these codes are the same on
    every CPU, where codes computed on the spot differ in their last bits. It refuses
    any image it has no code for, so it cannot stand in for the CNN by accident.
    """

    hash_dim = 128
    identity = {
        "backbone": "efficientnet-lite0",
        "weights_id": "recorded-codes",
        "hash_dim": 128,
        "input_size": 224,
        "hash_layer": 1,
        "precision": "fp32",
    }

    def __init__(self) -> None:
        data = np.load(REPO / "tests" / "data" / "sample-codes.npz")
        self._codes = dict(zip(data["digests"].tolist(), data["codes"].astype(np.float32)))

    def describe(self) -> str:
        return "efficientnet-lite0 (recorded codes)"

    def encode_pixels(self, batch: np.ndarray) -> np.ndarray:
        import hashlib

        return np.stack([self._codes[hashlib.sha1(x.tobytes()).hexdigest()] for x in batch])


def start_indexing(root: Path, db: Path, at_least: int, *extra: str):
    """Start ``lookalike index ROOT`` in a subprocess and return it once *at_least* rows
    are committed to *db* (read with a read-only connection, as another process would)."""
    import sqlite3
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "index", str(root), "--batch-size", "8", *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            committed = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if committed >= at_least:
            return proc, committed
    raise AssertionError("the run ended before enough was committed")


def make_picture(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> Path:
    """A picture with a layout: a gradient and a dozen random shapes, distinct per seed."""
    from PIL import ImageDraw

    rng = np.random.RandomState(seed)
    w, h = size
    top, bottom = rng.randint(0, 256, 3), rng.randint(0, 256, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    im = Image.fromarray((top * (1 - ramp) + bottom * ramp).repeat(w, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.randint(0, w - 10), rng.randint(0, h - 10)
        x1, y1 = x0 + rng.randint(10, w // 2), y0 + rng.randint(10, h // 2)
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        shape = rng.randint(3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.randint(2, 8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def edited_copy(src: Path, dest: Path, kind: str) -> Path:
    """A copy of *src* with one everyday edit: downscale, crop, jpeg, brighten, identical."""
    import shutil

    from PIL import ImageEnhance

    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind == "identical":
        shutil.copy(src, dest)
        return dest
    im = Image.open(src).convert("RGB")
    if kind == "downscale":
        im = im.resize((im.width * 6 // 10, im.height * 6 // 10), Image.LANCZOS)
    elif kind == "crop":
        dx, dy = im.width * 3 // 100, im.height * 3 // 100
        im = im.crop((dx, dy, im.width - dx, im.height - dy))
    elif kind == "brighten":
        im = ImageEnhance.Brightness(im).enhance(1.08)
    if kind == "jpeg":
        im.save(dest, "JPEG", quality=50)
    else:
        im.save(dest)
    return dest


@pytest.fixture(scope="session")
def redis_base() -> str:
    """The URL of a Redis for tests, without an index name: ``LOOKALIKE_TEST_REDIS``
    when CI started one, else a server of the tests' own. Skipped without redis-server."""
    import shutil as sh

    url = os.environ.get("LOOKALIKE_TEST_REDIS")
    if url:
        yield url.split("?", 1)[0]
        return
    if sh.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_base: str) -> str:
    """A store URL naming an index of this test's own."""
    import uuid

    return f"{redis_base}?name=t{uuid.uuid4().hex[:12]}"
