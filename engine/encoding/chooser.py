"""How the CNN runs on this machine: chosen by measurement, once, and remembered.

The fastest way to run a backbone differs from CPU to CPU, and flags do not tell
which: on one AVX-512-bf16 CPU, EfficientNet-Lite0 ran at 216 images/s with ONNX
Runtime in fp32 and 75 with PyTorch bf16 autocast, while ResNet-50 ran fastest in
bf16. So the engine lists the *paths* that can run here (a runtime and a precision),
times each on a small batch the first time a backbone is used on this machine, and
keeps the fastest. The timings are cached under the user's cache folder, keyed by
CPU model and flags, thread count, backbone and library versions, so the
measurement (a few seconds) happens once per machine.

Precision is part of an index's identity (bf16 codes are close to fp32 codes, not
equal), so an index built in fp32 is only ever extended in fp32: the choice is then
made among the fp32 paths. ONNX Runtime fp32 and PyTorch fp32 give the same codes to
about 1e-6 (tested), so the runtime is free to differ between machines.

CPU flags only rule out paths that would be emulated: bf16 is a candidate on a CPU
only when it has native bf16 units (AVX512-BF16 or AMX), or when asked for.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from engine.encoding import sealed
from engine.encoding.timing import (  # noqa: F401  (time_batches: re-exported)
    Meter,
    _affinity,
    _busy,
    _metering,
    time_batches,
)
from engine.errors import RuntimeChoiceError
from engine.paths import runtime_cache_file

RUNTIMES = ("auto", "onnx", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: Bump when the measurement changes: older cached choices are then measured again (5: int8
#: tried with 7-bit weights where 8-bit ones fail the guard, on CPUs without VNNI).
MEASURE_VERSION = 5
#: Rounds of measurement, alternating the paths; each path keeps its best round.
ROUNDS = 3
#: A path this many times slower than the fastest after the first round is out: no round
#: of noise makes it the choice (and with one path left, timing stops). Measured on 2
#: Zen 2 cores, where PyTorch fp32 runs at 31 images/s against ONNX Runtime's 84: a
#: first run's timing took 5.6 s, now 3.6 s.
BEHIND = 1.5

#: Images per CNN call on the CPU. Small batches keep a layer's activations in the
#: cores' caches: measured on 2 Zen 5 cores, ONNX Runtime ran EfficientNet-Lite0 at
#: 324 images/s in batches of 8 and 265 in batches of 64 (PyTorch bf16: 275 and 94).
#: The indexer's batch (images per committed transaction) stays larger.
CPU_MICRO_BATCH = 8


@dataclass(frozen=True)
class EncoderPath:
    """One way of running the CNN: ``onnx``, ``torch`` or ``openvino``, in ``fp32``,
    ``bf16`` or (OpenVINO only) ``int8``."""

    runtime: str
    precision: str

    @property
    def name(self) -> str:
        return f"{'onnxruntime' if self.runtime == 'onnx' else self.runtime} {self.precision}"


@dataclass(frozen=True)
class PathChoice:
    """The path in use and why it was chosen (shown by ``lookalike models`` and
    ``index``); ``rates`` holds the measured images/s of each candidate, if measured."""

    path: EncoderPath
    why: str
    rates: dict[str, float] = field(default_factory=dict)


@lru_cache(maxsize=1)
def cpu_description() -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags (Linux ``/proc/cpuinfo``; elsewhere the platform's
    processor string and no flags)."""
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", info, re.M)
    return (
        model.group(1).strip() if model else platform.machine(),
        frozenset(flags.group(1).split()) if flags else frozenset(),
    )


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 units (AVX512-BF16 or AMX): only then is bf16
    worth measuring on the CPU. Without them it is emulated, several times slower."""
    flags = cpu_description()[1]
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def from_env(value: str, variable: str, allowed: tuple[str, ...]) -> str:
    """*value*, or the environment's choice when *value* is ``auto``."""
    if value == "auto":
        value = os.environ.get(variable, "auto").strip().lower() or "auto"
        if value not in allowed:
            raise RuntimeChoiceError(f"{variable}={value!r} is not one of {', '.join(allowed)}")
    elif value not in allowed:
        raise RuntimeChoiceError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def candidates(
    device: str,
    runtime: str,
    precision: str,
    onnx_available: bool,
    openvino_available: bool = False,
) -> list[EncoderPath]:
    """The paths worth trying for these settings, fastest-to-set-up first.

    int8 runs on OpenVINO only, with a model made and checked here (see
    :mod:`engine.encoding.openvino_cnn`); bf16 is a candidate where the CPU has bf16 units."""
    if runtime == "onnx" and precision in ("bf16", "int8"):
        raise RuntimeChoiceError(
            f"the onnx runtime runs in fp32 only: use --runtime {'torch' if precision == 'bf16' else 'openvino'}"
            f" for {precision}"
        )
    if runtime == "torch" and precision == "int8":
        raise RuntimeChoiceError("int8 runs with OpenVINO only: use --runtime openvino")
    if device == "cuda":
        if runtime in ("onnx", "openvino") or precision == "int8":
            raise RuntimeChoiceError(
                "on a GPU lookalike runs PyTorch in fp32 or bf16: use --device cpu"
            )
        return [EncoderPath("torch", "fp32" if precision == "fp32" else "bf16")]
    if runtime == "onnx" and not onnx_available:
        raise RuntimeChoiceError("onnxruntime is not installed: pip install onnxruntime")
    if (runtime == "openvino" or precision == "int8") and not openvino_available:
        raise RuntimeChoiceError("openvino is not installed: pip install openvino nncf")
    bf16 = precision == "bf16" or (precision == "auto" and cpu_has_fast_bf16())
    out = []
    if runtime in ("auto", "onnx") and precision in ("auto", "fp32") and onnx_available:
        out.append(EncoderPath("onnx", "fp32"))
    if runtime in ("auto", "openvino") and openvino_available:
        if precision in ("auto", "fp32"):
            out.append(EncoderPath("openvino", "fp32"))
        if bf16:
            out.append(EncoderPath("openvino", "bf16"))
        if precision in ("auto", "int8"):
            out.append(EncoderPath("openvino", "int8"))
    if runtime in ("auto", "torch"):
        if precision in ("auto", "fp32"):
            out.append(EncoderPath("torch", "fp32"))
        if bf16:
            out.append(EncoderPath("torch", "bf16"))
    return out


def _cache_file():
    return runtime_cache_file()


#: The timings file is a few KB; a larger one is not one lookalike wrote, and is not read.
CACHE_MAX = 1 << 20


def _read_cache() -> dict:
    try:
        fd = os.open(_cache_file(), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(CACHE_MAX + 1)
        data = json.loads(raw) if len(raw) <= CACHE_MAX else None
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sealed.write_whole(path, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # a read-only home: measure again next time, no harm done


def threads() -> int:
    """Threads for the CNN: the cores this process may run on, or fewer where
    ``LOOKALIKE_THREADS`` says so (leaving cores to other work on a shared machine)."""
    cores = len(_affinity()) or max(1, os.cpu_count() or 1)
    asked = os.environ.get("LOOKALIKE_THREADS", "").strip()
    return max(1, min(cores, int(asked))) if asked.isdigit() else cores


def may_have_gpu() -> bool:
    """Whether an NVIDIA GPU might be present (then torch decides; it takes a second to ask)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")


def package_version(package: str) -> str:
    """An installed package's version (``none`` where it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(backbone: str, input_size: int) -> str:
    """Where this machine's timings for *backbone* are remembered: the CPU, its flags, the
    thread count and the library versions all change which path is fastest."""
    model, flags = cpu_description()
    wanted = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "neon", "sve")))
    return (
        f"v{MEASURE_VERSION}|{backbone}@{input_size}|{model}|{' '.join(wanted)}"
        f"|threads={threads()}|torch={package_version('torch')}|ort={package_version('onnxruntime')}"
        f"|ov={package_version('openvino')}"
    )


def remembered_best(backbone: str, input_size: int, paths: list[EncoderPath]) -> PathChoice | None:
    """The fastest of *paths* as measured here before, if every one of them was (and the
    measurement is not one to make again, see :func:`due_again`)."""
    entry = _read_cache().get(cache_key(backbone, input_size))
    rates = _rates_in(entry)
    failed = entry.get("failed") if isinstance(entry, dict) else None
    failed = failed if isinstance(failed, dict) else {}
    if len(paths) < 2 or not all(p.name in rates or p.name in failed for p in paths):
        return None
    if due_again(entry):
        return None
    mine = {p.name: rates[p.name] for p in paths if p.name in rates}
    if not mine:
        return None
    best = max(mine, key=lambda name: mine[name])
    return PathChoice(next(p for p in paths if p.name == best), _why(best, mine), mine)


#: A measurement disturbed by other work is made again once this many seconds have passed
#: (so a busy start costs a few seconds on a later start, not every one) ...
RETRY_AFTER = 600.0
#: ... at most this many times; then the best rate each path ever reached is kept (noise
#: only slows a run, so the best of several disturbed rounds is the nearest to quiet).
RETRIES = 4


def due_again(entry: object) -> bool:
    """Whether a cached measurement was disturbed and is due to be made again."""
    if not isinstance(entry, dict) or not entry.get("disturbed"):
        return False
    tries, at = entry.get("tries"), entry.get("at")
    if not isinstance(tries, int) or not isinstance(at, (int, float)) or tries >= RETRIES:
        return not isinstance(tries, int)  # a malformed entry: measure again
    return time.time() - at >= RETRY_AFTER


def forget(key: str) -> None:
    """Drop this machine's timings under *key* (``lookalike models --measure``)."""
    data = _read_cache()
    if data.pop(key, None) is not None:
        _write_cache(data)


def _rates_in(entry: object) -> dict[str, float]:
    """The well-formed rates of a cached entry (images/s by path name)."""
    rates = entry.get("rates") if isinstance(entry, dict) else None
    if not isinstance(rates, dict):
        return {}
    out = {}
    for name, rate in rates.items():
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
            out[str(name)] = float(rate)
    return out


def _why(best: str, rates: dict[str, float]) -> str:
    ranked = sorted(rates.items(), key=lambda kv: -kv[1])
    others = ", ".join(f"{n} {r:.0f}" for n, r in ranked if n != best)
    text = f"fastest measured on this CPU: {rates[best]:.0f} images/s"
    return text + (f" (against {others})" if others else "")


#: What ``on_step`` of :func:`choose` receives: the path about to be timed, its number
#: (from 1) and how many there are, so a first run can say what it is doing.
StepCallback = Callable[[EncoderPath, int, int], None]


def step_text(path: EncoderPath, i: int, n: int) -> str:
    """What a first run says while it times *path*, the *i*-th of *n* (one wording for
    the app, the index command and ``lookalike models``)."""
    return (
        "timing the ways the CNN can run here (once per machine, usually under a minute):"
        f" {i} of {n}, {path.name}"
    )


def choose(
    paths: list[EncoderPath],
    rate_of: Callable[[EncoderPath], float],
    key: str,
    asked: bool = False,
    on_step: StepCallback | None = None,
) -> PathChoice:
    """The fastest of *paths*, each measured with *rate_of* (images/s) unless this
    machine has measured it before (and quietly: see :class:`Meter`).

    A path whose measurement fails (ONNX export refused, say) is dropped. With one
    path there is nothing to measure; *asked* says whether the user chose it.
    """
    if not paths:
        raise RuntimeChoiceError("no way to run the CNN with these settings")
    if len(paths) == 1:
        return PathChoice(paths[0], "asked for" if asked else "the only path for these settings")
    entry = _read_cache().get(key)
    known = _rates_in(entry)
    again = due_again(entry)
    rates = {} if again else {p.name: known[p.name] for p in paths if p.name in known}
    errors: list[str] = []
    todo = [p for p in paths if p.name not in rates]
    measured = bool(todo)
    meter = Meter()
    rounds: dict[str, list[float]] = {}
    steps = list(todo)
    _metering.meter = meter  # time_batches meters the timed runs only, not the set-up
    try:
        for r in range(ROUNDS):  # alternated: a slow moment of the machine hits every path
            for path in list(todo):
                if on_step is not None and r == 0:
                    on_step(path, steps.index(path) + 1, len(steps))
                try:
                    rate = float(rate_of(path))
                except Exception as exc:  # a path that cannot run here is not a candidate
                    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    errors.append(f"{path.name}: {text}")
                    todo.remove(path)
                    continue
                rounds.setdefault(path.name, []).append(rate)
                rates[path.name] = max(rates.get(path.name, 0.0), rate)
            if r == 0:  # a path far behind after one round is not timed again
                fastest = max(rates.values(), default=0.0)
                todo = [p for p in todo if rates[p.name] * BEHIND >= fastest]
                if len(todo) < 2:
                    break  # nothing left to choose between
    finally:
        _metering.meter = None
    if not rates:
        raise RuntimeChoiceError("no way to run the CNN here: " + "; ".join(errors))
    skipped = "; skipped " + "; ".join(errors) if errors else ""
    disturbed = meter.disturbed(rounds) if measured else None
    if measured:
        _remember(key, entry, known, rates, errors, disturbed, again)
    best = max(rates, key=lambda name: rates[name])
    by_name = {p.name: p for p in paths}
    note = f"; {disturbed}: measured again on a later start" if disturbed else ""
    return PathChoice(by_name[best], _why(best, rates) + skipped + note, rates)


def _remember(key, entry, known, rates, errors, disturbed, again) -> None:
    """Keep the rates; a disturbed measurement is marked to be made again later, and
    keeps the best rate of every try so far."""
    was_disturbed = isinstance(entry, dict) and bool(entry.get("disturbed"))
    tries = entry.get("tries") if was_disturbed else 0
    tries = tries if isinstance(tries, int) and tries >= 0 else 0
    if disturbed and was_disturbed:  # noise only slows: the best of every try is the nearest
        rates = {n: max(r, known.get(n, 0.0)) for n, r in rates.items()}
    data = _read_cache()
    data[key] = {
        "rates": rates if again else {**known, **rates},
        "failed": {e.split(": ", 1)[0]: e.split(": ", 1)[-1] for e in errors},
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "at": time.time(),
        **({"disturbed": disturbed, "tries": tries + 1} if disturbed else {}),
    }
    _write_cache(data)
