"""What the decode threads of an index run do with each picture, and how many there are.

Each new or changed file is read once (hashed on the way: identical copies), decoded,
fitted to the CNN's input, and reduced to the 16 x 16 thumbnail of :mod:`engine.copies`
and the quality measurements of :mod:`engine.quality`, while the CNN encodes the batch
before.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from engine import quality
from engine.copies import grey_copy, thumbnail
from engine.images import FileEntry, ImageError, guarded, read_image, square_pixels


def prepare(root: Path, entry: FileEntry, size: int, out: np.ndarray | None = None):
    """One picture for the index: its pixels for the CNN (``size`` square, written into
    *out* where given), SHA-256, pixel count, thumbnail and quality measurements. Any
    failure is this file's skip (:class:`ImageError`)."""
    return guarded(_prepare, root / entry.relpath, size, out)


def _prepare(path: Path, size: int, out: np.ndarray | None = None):
    im, digest = read_image(path, draft_size=size)
    grey = np.asarray(grey_copy(im, quality.SIDE))  # for the thumbnail and quality
    return (
        square_pixels(im, size, out),
        digest,
        im.info.get("pixels"),
        thumbnail(im, grey).tobytes(),
        quality.measure(im, grey),
    )


def prepare_all(
    root: Path, entries: list[FileEntry], size: int, go: Callable[[], bool], pixels: np.ndarray
) -> list:
    """:func:`prepare` of each entry in turn, in one thread, the pixels of entry i into
    ``pixels[i]``: a tuple or the file's :class:`ImageError` for each (fewer once *go*,
    asked before each file, says no)."""
    out: list = []
    for entry, into in zip(entries, pixels):
        if not go():
            break
        try:
            out.append(prepare(root, entry, size, into))
        except ImageError as exc:
            out.append(exc)
    return out


class Widths:
    """How many decode threads share a chunk of an index run: as few as keep the CNN fed.

    Preparing a small picture is mostly Python (the fit to the CNN's size, the thumbnail,
    the quality measurements), so decode threads take turns on the interpreter and
    take cores from the CNN. Measured on 2 cores (Intel Xeon, AMX), 10,000 Fashion-MNIST
    PNGs: one decode thread instead of two took 94,000 context switches instead of
    225,000 and 41-43 CPU-seconds instead of 43-46, and the run 3-9 % less time. A large
    photograph is the other way round: its decoding leaves the interpreter free and
    takes longer than the CNN, and 37 wallpapers took 5.2 s in one thread against 3.7 s
    in two.

    So the first chunks get every thread allowed (*most*,
    :attr:`engine.settings.Settings.decode_workers`); after each chunk the next get as
    many as its preparing took CPU time (summed over its threads, so that turns waited
    for the interpreter do not count) over half the CNN's time on it: a thread that
    shares its core with the CNN gets about half of it. A chunk the CNN had to wait for
    (longer than a tenth of its time on the chunk before) doubles them at least."""

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.now = self.most
        self.encoding = 0.0

    def heard(self, chunk: int, waited: float, encoding: float, cpu: float) -> None:
        """After chunk number *chunk*: how long the CNN waited for it and took to encode
        it, and the CPU time its preparing took (seconds)."""
        want = math.ceil(2 * cpu / max(encoding, 1e-6))
        if chunk > 0 and waited > 0.1 * self.encoding:  # the first chunk always waits
            want = max(want, 2 * self.now)
        self.now = min(self.most, max(1, want))
        self.encoding = encoding


#: What the chunks prepared while the CNN loads may hold (their pixels for the CNN).
LOADING_BYTES = 64 << 20


class Decoding:
    """The decode threads of one run (a context manager): chunks of files submitted
    ahead of the CNN, split between :class:`Widths` threads, and their results.

    The threads can be held (:meth:`hold`): while the ways of running the CNN are timed,
    on a machine's first run, nothing else may take the cores. They stop at their next
    file when the run is cancelled or this context is left."""

    def __init__(self, ctx: Any, most: int, cancel: threading.Event) -> None:
        self.root, self.size, self.cancel = ctx.root, ctx.identity.input_size, cancel
        self.widths = Widths(most)
        self.pool = ThreadPoolExecutor(self.widths.most, thread_name_prefix="lookalike-decode")
        self.waited = self.cpu = 0.0
        self.free, self.stop = threading.Event(), threading.Event()
        self.free.set()

    def __enter__(self) -> Decoding:
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.free.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def hold(self) -> None:
        """Let the threads finish the file in hand and wait."""
        self.free.clear()

    def release(self) -> None:
        self.free.set()

    def _go(self) -> bool:
        """Whether a thread may prepare its next file (waiting while held)."""
        while not self.free.wait(0.1):
            if self.cancel.is_set():
                return False
        return not (self.cancel.is_set() or self.stop.is_set())

    def while_loading(self, batch: int) -> int:
        """How many chunks of *batch* files to prepare while the CNN loads: the time it
        takes (0.45 s, the OpenVINO model read and compiled, on 2 Intel Xeon cores) is
        time a decode thread has a core to itself, up to :data:`LOADING_BYTES`."""
        return max(1, min(8, LOADING_BYTES // max(1, batch * self.size * self.size * 3)))

    def submit(self, chunk: list[FileEntry]) -> list[Future]:
        """Start preparing *chunk*: one future per thread, each for every w-th file. The
        pixels go straight into one array for the chunk: the CNN's batch, where gathering
        them after cost the CNN 1-8 ms a chunk and each picture a new array."""
        w = min(self.widths.now, len(chunk))
        pixels = np.empty((len(chunk), self.size, self.size, 3), np.uint8)
        return [self.pool.submit(self._timed, chunk[i::w], pixels, i, w) for i in range(w)]

    def _timed(self, entries: list[FileEntry], pixels: np.ndarray, first: int, step: int):
        started = time.thread_time()
        out = prepare_all(self.root, entries, self.size, self._go, pixels[first::step])
        return time.thread_time() - started, out, pixels

    def results(self, parts: list[Future], n: int) -> tuple[list, np.ndarray]:
        """The chunk's results in file order (None past a cancel), and the pixels of
        those prepared, in that order; the wait is noted."""
        started = time.perf_counter()
        out: list = [None] * n
        self.cpu = 0.0
        pixels = np.empty((0,), np.uint8)
        for i, part in enumerate(parts):
            cpu, got, pixels = part.result()
            self.cpu += cpu
            for k, item in enumerate(got):
                out[i + k * len(parts)] = item
        self.waited = time.perf_counter() - started
        ok = [i for i, item in enumerate(out) if isinstance(item, tuple)]
        return out, pixels if len(ok) == len(pixels) else pixels[ok]

    def encoded(self, chunk: int, seconds: float) -> None:
        """The CNN took *seconds* on chunk number *chunk*: the widths hear of it."""
        self.widths.heard(chunk, self.waited, seconds, self.cpu)
