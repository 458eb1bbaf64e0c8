"""Timing a way of running the CNN (:func:`time_batches`), and noticing when the machine
was busy meanwhile (:class:`Meter`): what the runtime chooser (:mod:`engine.encoding.chooser`)
measures with, and how it knows a measurement to make again."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable


class Meter:
    """Whether a measurement was disturbed by other work on the machine.

    Two signals, either enough: the CPU time that *other* processes took on the cores
    this process may use, against the wall time of the runs (Linux ``/proc/stat``, per
    core; steal time of a virtual machine counts as taken); and rounds of one path that
    disagree (its slowest round well under its fastest). A run of the CNN keeps every
    core busy (the runtimes' threads spin between layers), so on a quiet machine other
    processes take next to nothing of those cores while it runs.

    Measured on 2 Zen 2 cores (EfficientNet-Lite0, three paths, three rounds): quiet,
    others took 1-2 % and a path's slowest round was 0.84-0.98 of its fastest; with a
    busy loop on one core throughout, others took 35 % (every rate a third lower, rounds
    steady); with one starting mid-measurement, 47 % and rounds at 0.43-0.65.
    """

    #: Share of our cores other processes may take on average before it counts.
    OTHERS = 0.15
    #: Slowest round against fastest, per path, before rounds count as disagreeing.
    SPREAD = 0.7

    def __init__(self) -> None:
        self.cores = _affinity()
        self.wall = self.others = 0.0
        self._start: tuple[float, float, float] | None = None

    def __enter__(self) -> Meter:
        self._start = (time.perf_counter(), time.process_time(), _busy(self.cores))
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        w0, c0, b0 = self._start
        wall, mine, busy = (
            time.perf_counter() - w0,
            time.process_time() - c0,
            _busy(self.cores) - b0,
        )
        self.wall += wall
        if b0 >= 0 and busy >= 0:
            self.others += max(0.0, busy - mine)
        self._start = None

    def disturbed(self, rounds: dict[str, list[float]]) -> str | None:
        """Why the measurement is not to be trusted, or None."""
        if self.wall > 0 and self.cores:
            share = self.others / (self.wall * len(self.cores))
            if share > self.OTHERS:
                return f"the machine was busy ({share:.0%} of its cores taken by other work)"
        for name, seen in rounds.items():
            if len(seen) > 1 and min(seen) < self.SPREAD * max(seen):
                return f"rounds disagreed ({name}: {min(seen):.0f} to {max(seen):.0f} images/s)"
        return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _busy(cores: list[int]) -> float:
    """CPU seconds spent busy (steal included) on *cores* since boot; -1 where unknown."""
    try:
        with open("/proc/stat") as fh:
            lines = fh.read().splitlines()
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return -1.0
    wanted = {f"cpu{c}" for c in cores}
    total = 0
    for ln in lines:
        parts = ln.split()
        if parts and parts[0] in wanted and len(parts) > 8:
            v = [int(x) for x in parts[1:9]]
            total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
    return total / hz if total else -1.0


#: The :class:`Meter` of the measurement under way in this thread, if any.
_metering = threading.local()


def time_batches(run: Callable[[], object], images: int, repeats: int = 3) -> float:
    """Images/s of *run* (which encodes *images* images): one warm-up, best of *repeats*
    (the best, not the median: on a shared machine noise only ever slows a run). Inside
    :func:`choose`, the timed runs are metered for other work on the machine."""
    run()
    meter = getattr(_metering, "meter", None) or contextlib.nullcontext()
    best = float("inf")
    for _ in range(repeats):
        with meter:
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
    return images / best
