"""SVG snapshots of the app's main states at a fixed terminal size.

The folders live at fixed paths, because the screen shows them. Update the SVGs
after an intended change with ``pytest tests/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_app import ready, search_first_bag, wait_for

from engine.search import ImageSimilaritySearch, Progress
from support import SAMPLE, FixedCodes
from tui.app import IndexProgress, create_app
from tui.widgets.results import ResultsGrid

SNAP_ROOT = Path("/tmp/lookalike-snapshots")
SIZE = (110, 34)


@pytest.fixture(scope="module", autouse=True)
def _one_process_at_a_time() -> Iterator[None]:
    """The folders' paths are fixed, so test processes take turns at this module: one
    process's copy is never removed under another's index (a run saw the codes file
    vanish mid-commit)."""
    with open(SNAP_ROOT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def codes() -> FixedCodes:
    return FixedCodes()


@pytest.fixture(scope="module")
def snap_sample(codes: FixedCodes) -> Path:
    """The sample at a fixed path, indexed with recorded codes: the scores on screen
    must not depend on the CPU's last bits."""
    dest = SNAP_ROOT / "fashion-dataset"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    with ImageSimilaritySearch(dest, encoder=codes) as search:
        assert search.index().indexed == 200
    return dest


@pytest.fixture(scope="module")
def snap_empty() -> Path:
    dest = SNAP_ROOT / "empty"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    return dest


def test_empty_index(snap_compare, snap_empty: Path):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.pause(0.2)

    assert snap_compare(create_app(snap_empty), terminal_size=SIZE, run_before=run_before)


def test_indexing_in_progress(snap_compare, snap_sample: Path, codes: FixedCodes):
    app = create_app(snap_sample, auto_index=False, encoder=codes)

    async def run_before(pilot):
        await wait_for(pilot, lambda: app.search_engine is not None)
        app.indexing = True
        app.post_message(
            IndexProgress(Progress(73, 200, 2, 85.4, "bag/test-00030.png", "encoding"))
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_results_shown(snap_compare, snap_sample: Path, codes: FixedCodes):
    app = create_app(snap_sample, show_timings=False, encoder=codes)

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("x")  # exact: the screen then holds no LSH bucket counts
        await wait_for(pilot, lambda: app.search_view.scale is not None)  # the words
        await search_first_bag(pilot)
        # The recorded codes fix the scores up to the order of a dot product's sums
        # (about 1e-7): far from where 3 decimals round and from each other, and from
        # the bars that set the words beside them.
        scores = [m.score for m in app.search_view.last_result.matches]
        assert all(abs(s * 1000 - round(s * 1000) - 0.5 * np.sign(s)) > 0.01 for s in scores)
        assert all(a - b > 1e-5 for a, b in zip(scores, scores[1:]))
        scale = app.search_view.scale
        bars = (scale.copy, scale.close, scale.typical)
        assert all(abs(s - bar) > 1e-4 for s in scores for bar in bars)
        grid = app.query_one(ResultsGrid)
        await wait_for(
            pilot,
            lambda: all("…" not in str(c.query_one(".card-thumb").render()) for c in grid.cards),
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, snap_sample: Path, codes: FixedCodes):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    app = create_app(snap_sample, encoder=codes)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_compare_view(snap_compare, snap_sample: Path, codes: FixedCodes):
    """z on the second result: the query and it side by side, drawn in quadrants."""
    app = create_app(snap_sample, show_timings=False, encoder=codes, pixels="quadrant")

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("x")
        await wait_for(pilot, lambda: pilot.app.search_view.scale is not None)  # the words
        await search_first_bag(pilot)
        await pilot.press("tab", "right", "z")
        await wait_for(
            pilot,
            lambda: all("…" not in str(w.render()) for w in pilot.app.screen.query(".compare-art")),
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
