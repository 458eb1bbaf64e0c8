"""Shared fixtures: image folders the tests build, and one indexed copy of the sample."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from support import SAMPLE, RedisServer, make_image


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# Tests run in parallel processes (pytest-xdist): each runs the CNN on its share of the
# cores, so that two processes' runtime threads do not take turns on the same cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    _share = max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("LOOKALIKE_THREADS", str(_share))

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


def pytest_xdist_auto_num_workers(config) -> int:
    """Test processes for ``-n auto``: one more than the cores, at most 4. Most tests are
    CPU-bound (the CNN, decoding, the app's rendering), but many also wait (on a
    subprocess, a terminal, a server): measured on 2 cores, the suite took 195-200 s in 2
    processes and 186 s in 3. Each process loads torch (a few hundred MB): at most 4."""
    return max(1, min(_cores() + 1, 4))


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Six distinct small images in two sub-folders."""
    root = tmp_path / "images"
    for i in range(6):
        make_image(root / ("a" if i < 3 else "b") / f"img{i}.png", seed=i)
    return root


def _indexed_sample(root: Path) -> None:
    from engine import ImageSimilaritySearch

    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    with ImageSimilaritySearch(root, batch_size=50) as search:
        stats = search.index()
    assert stats.indexed == 200 and not stats.failed


@pytest.fixture(scope="session")
def sample_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shipped sample, indexed once for the whole test run: the
    first test process to need it indexes it (under a lock, in a folder of this run's
    own), each process then copies it, index included."""
    import fcntl

    root = tmp_path_factory.mktemp("sample") / "fashion-dataset"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    if not run.isalnum():  # one process: nothing to share
        _indexed_sample(root)
        return root
    shared = tmp_path_factory.getbasetemp().parent / f"sample-{run}"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            _indexed_sample(shared / "fashion-dataset")
            (shared / "done").touch()
    shutil.copytree(shared / "fashion-dataset", root)
    return root


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


#: Test modules whose subject is how an encoder is built (timed, checked, refused): they
#: always build their own.
_BUILDS_ITS_OWN = {"test_encoder", "test_hostile"}
_built: dict = {}
_built_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _one_encoder_per_setting(request, monkeypatch):
    """Within one test process, one encoder per setting (arguments, and the environment
    the build reads: cache folder, runtime, precision, threads), built on first use and
    handed to every later test that asks for the same. Building one (an ONNX Runtime or
    OpenVINO session, a checked model file) took 77 s of the suite's CPU over 222 builds.
    What a build does is tested where it is the subject: those modules and a build from
    a weights file build afresh; a build in a new cache folder (the first run's timing
    steps reported to *on_step*) is a new setting."""
    import engine.encoding as encoding

    if request.module.__name__.rsplit(".", 1)[-1] in _BUILDS_ITS_OWN:
        return
    real = encoding.build_encoder

    def shared(hash_dim, backbone, on_step=None, **options):
        if options.get("weights") is not None:
            return real(hash_dim, backbone, on_step, **options)
        env = tuple(
            sorted((k, v) for k, v in os.environ.items() if k.startswith(("LOOKALIKE_", "XDG_")))
        )
        key = (hash_dim, backbone, tuple(sorted(options.items())), env)
        with _built_lock:
            if key not in _built:
                _built[key] = real(hash_dim, backbone, on_step, **options)
            return _built[key]

    monkeypatch.setattr(encoding, "build_encoder", shared)
