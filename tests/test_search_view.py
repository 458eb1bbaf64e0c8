"""The search view at the sizes people use: every file name and the query's caption in
view, the words beside the scores, sort, export, open, click, and what x changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_app import ready, search_first_bag, wait_for

from engine import ImageSimilaritySearch
from engine.labels import WORDS, ScoreScale, measure
from tui.app import create_app
from tui.text import fit_path
from tui.widgets.results import ResultsGrid

LONG = "animals_mammals_and_other_creatures/"


@pytest.fixture(scope="module")
def long_names(tmp_path_factory, sample_copy: Path) -> Path:
    """Twelve of the sample's pictures under a long folder and long file names."""
    root = tmp_path_factory.mktemp("long") / "pics"
    for i, src in enumerate(sorted((sample_copy / "bag").glob("*.png"))[:12]):
        dest = root / LONG / f"bag_photo_{i:02d}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    with ImageSimilaritySearch(root) as search:
        search.index()
    return root


def test_fit_path_keeps_the_file_name():
    assert fit_path("a/b.png", 20).plain == "a/b.png"
    assert fit_path(LONG + "copy_01.png", 20).plain == "animals…/copy_01.png"
    assert fit_path("x/a_very_long_file_name_here.png", 14).plain == "a_very_lo….png"
    assert fit_path("dir/x.png", 5).plain == "x.png"
    for width in range(2, 40):  # never wider than asked
        assert len(fit_path(LONG + "bag_photo_01_from_the_catalogue.png", width).plain) <= width


def test_words_follow_the_collections_scale(sample_copy: Path, tmp_path: Path):
    scale = ScoreScale(0.9, 0.7, 0.5)
    assert [scale.label(s) for s in (0.95, 0.9, 0.8, 0.6, 0.4)] == [
        WORDS[0],
        WORDS[0],
        WORDS[1],
        WORDS[2],
        WORDS[3],
    ]
    with ImageSimilaritySearch(sample_copy) as search:
        measured = measure(search)
        again = measure(search)
    assert measured == again  # a fixed sample: the same words every time
    assert measured.copy >= measured.close >= measured.typical > 0
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((sample_copy / "bag").glob("*.png"))[:5]:
        shutil.copy(p, few / p.name)
    with ImageSimilaritySearch(few) as search:
        search.index()
        assert measure(search) is None  # too few pictures to say what is close


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 50)])
async def test_names_and_the_caption_are_in_view(long_names: Path, size):
    app = create_app(long_names)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.press("j", "enter")  # the long folder opens
        await wait_for(pilot, lambda: len(app.query_one("#tree").cursor_node.children) > 0)
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: app.search_view.last_result is not None)
        await wait_for(pilot, lambda: app.search_view.scale is not None)
        cards = app.query_one(ResultsGrid).cards
        assert cards
        for card in cards:
            name = card.data.name.rsplit("/", 1)[-1]
            shown = str(card.query_one(".card-name").render())
            assert name in shown, (name, shown)  # the file name whole, the folders cut
            score = str(card.query_one(".card-score").render())
            assert score.endswith(card.data.label) and card.data.label in WORDS, score
        query = app.query_one("#query")
        info = app.query_one("#query-info")
        await wait_for(pilot, lambda: "px" in str(info.render()))
        caption = str(info.render())
        assert "bag_photo_00.png" in caption and "px" in caption
        # the caption and the picture above it are inside the panel, not cut off
        assert info.region.bottom <= query.region.bottom - 1
        assert app.query_one("#query-art").region.width <= query.region.width - 2
        status = str(app.query_one("#results-status").render())
        assert "lookalikes of" in status and "scored" in status


async def test_sort_export_open_click_and_what_x_changed(
    sample_copy: Path, tmp_path: Path, monkeypatch
):
    viewer = tmp_path / "bin" / "xdg-open"
    viewer.parent.mkdir()
    viewer.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {tmp_path / 'opened'}\n")
    viewer.chmod(0o755)
    monkeypatch.setenv("PATH", f"{viewer.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    for var in ("SSH_CONNECTION", "SSH_TTY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    app = create_app(sample_copy)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await search_first_bag(pilot)
        view = app.search_view
        grid = app.query_one(ResultsGrid)
        by_score = [c.data.name for c in grid.cards]
        await pilot.press("s")
        assert view.sort == "path"
        assert [c.data.name for c in grid.cards] == sorted(by_score)
        assert "by path" in str(app.query_one("#results-status").render())
        await pilot.press("s")
        sizes = [c.data.path.stat().st_size for c in grid.cards]
        assert view.sort == "size" and sizes == sorted(sizes, reverse=True)
        await pilot.press("s")
        assert view.sort == "score" and [c.data.name for c in grid.cards] == by_score

        said: list[str] = []
        app.say = lambda text, **_kw: said.append(str(text))
        await pilot.press("e")
        (written,) = list((sample_copy / ".lookalike" / "exports").glob("results-*.json"))
        doc = json.loads(written.read_text())
        assert [r["path"] for r in doc["results"]] == by_score
        assert all(r["label"] in WORDS for r in doc["results"])
        assert written.with_suffix(".csv").read_text().splitlines()[0] == "rank,path,score,label"
        assert str(written) in said[-1]

        third = grid.cards[2]
        await pilot.click(third)
        assert grid.cursor == 2 and app.focused is grid
        await pilot.press("o")
        await wait_for(pilot, lambda: (tmp_path / "opened").exists())
        assert (tmp_path / "opened").read_text() == str(third.data.path)
        monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 22 10.0.0.2 22")
        await pilot.press("o")
        assert "no picture viewer" in said[-1]

        notes: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]
        before = view.last_result
        await pilot.press("x")
        await wait_for(pilot, lambda: view.last_result is not before)
        assert any("the same 12 results" in n or "results changed" in n for n in notes)


def test_export_folder_follows_the_index(sample_copy: Path, tmp_path: Path):
    from tui.export import export_folder

    with ImageSimilaritySearch(sample_copy) as search:
        assert export_folder(search) == sample_copy / ".lookalike" / "exports"
    elsewhere = tmp_path / "idx" / "my.sqlite"
    few = tmp_path / "few"
    few.mkdir()
    with ImageSimilaritySearch(few, index_path=elsewhere) as search:
        search.index()
        assert export_folder(search) == elsewhere.parent / "exports"


async def test_a_copy_triage_verified_is_called_a_copy(tmp_path: Path):
    from support import edited_copy, make_picture

    for seed in range(12):
        make_picture(tmp_path / f"p{seed:02d}.png", seed, (320, 240))
    edited_copy(tmp_path / "p00.png", tmp_path / "p00-copy.jpg", "jpeg")
    app = create_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        view = app.search_view
        await wait_for(pilot, lambda: view.scale is not None)
        await pilot.press("j", "enter")  # p00-copy.jpg, the first in the tree
        await wait_for(pilot, lambda: view.last_result is not None)
        first = app.query_one(ResultsGrid).cards[0]
        assert first.data.name == "p00.png" and first.data.label != "copy"
        await pilot.press("d")
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "report", None) is not None)
        await pilot.press("escape")  # back from triage: its copies are known now
        await wait_for(pilot, lambda: app.query_one(ResultsGrid).cards[0].data.label == "copy")
        assert "copy" in str(app.query_one(ResultsGrid).cards[0].query_one(".card-score").render())


async def test_while_indexing_the_status_says_scores_settle(sample_copy: Path):
    app = create_app(sample_copy)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        view = app.search_view
        app.indexing = True  # as while a run goes on: the centre still moves
        await search_first_bag(pilot)
        status = lambda: str(app.query_one("#results-status").render())  # noqa: E731
        assert "scores settle when it ends" in status()
        app.indexing = False
        before = view.last_request
        view.run_search(view.query_path, remember=False)
        await wait_for(pilot, lambda: view.last_request > before)
        assert "settle" not in status() and "scored" in status()
