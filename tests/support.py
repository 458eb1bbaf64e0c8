"""What the tests share besides fixtures: pictures they make, a Redis server of their
own, a stand-in encoder with recorded codes, and a helper that starts an index run in
another process. Imported by the tests (``from support import ...``) and by the
benchmarks that need a Redis server."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import numpy as np
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


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 (a free port, persistence off), started
    here and stopped by :meth:`stop`."""

    def __init__(self, password: str | None = None, maxmemory: str | None = None) -> None:
        import redis

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        if password:
            args += ["--requirepass", password]
        if maxmemory:
            args += ["--maxmemory", maxmemory]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, password=password)
        deadline = time.time() + 20
        while True:
            try:
                self.client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def can_unshare() -> bool:
    """Whether this machine lets a test mount file systems of its own (``unshare -m``)."""
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )  # fmt: skip
    return probe.returncode == 0


def in_private_mounts(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run shell *script* in a mount namespace of its own, from the project's folder."""
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
