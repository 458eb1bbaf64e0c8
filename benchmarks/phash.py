"""imagededup's PHash as a peer on the copy sets, at its default (Hamming distance of
the 64-bit hashes at most 10).

imagededup is installed on first use into bench-data/phash-lib with ``--no-deps`` and
run by this Python with that folder on its path: its own requirements ask for torch and
torchvision (for its CNN method, not used here), which this environment has already,
and letting pip resolve them would fetch another torch. Where it cannot be installed the
tables say "not installed".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.data import REPO

PHASH_LIB = REPO / "bench-data" / "phash-lib"  # one for full and smoke runs
PACKAGES = (
    "imagededup", "pywavelets", "matplotlib", "contourpy", "cycler", "fonttools",
    "kiwisolver", "pyparsing", "python-dateutil", "six",
)  # fmt: skip
#: imagededup's default for find_duplicates.
DISTANCE = 10

_PAIRS = """
import json, sys
from imagededup.methods import PHash
root = sys.argv[1]
ph = PHash(verbose=False)
hashes = ph.encode_images(image_dir=root, recursive=True, num_enc_workers=1)
found = ph.find_duplicates(encoding_map=hashes, max_distance_threshold=int(sys.argv[2]),
                           num_dist_workers=1)
print(json.dumps(sorted({tuple(sorted((a, b))) for a, bs in found.items() for b in bs})))
"""


def _env() -> dict[str, str] | None:
    ready = PHASH_LIB / "installed"
    if not ready.exists():
        print("installing imagededup (PHash)…", flush=True)
        shutil.rmtree(PHASH_LIB, ignore_errors=True)
        got = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
             str(PHASH_LIB), *PACKAGES],
            capture_output=True,
        )  # fmt: skip
        if got.returncode:
            return None
        ready.touch()
    return {**os.environ, "PYTHONPATH": str(PHASH_LIB)}


def phash_pairs(root: Path) -> set[tuple[str, str]] | None:
    """The pairs PHash calls duplicates in *root* (paths relative to it), or None where
    imagededup cannot run here."""
    env = _env()
    if env is None:
        return None
    run = subprocess.run(
        [sys.executable, "-c", _PAIRS, str(root), str(DISTANCE)],
        capture_output=True, text=True, env=env, timeout=3600,
    )  # fmt: skip
    if run.returncode:
        print(f"PHash failed: {run.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    pairs = json.loads(run.stdout.strip().splitlines()[-1])
    return {(a, b) for a, b in pairs if not a.startswith(".") and not b.startswith(".")}
