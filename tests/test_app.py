"""The app, driven by key presses through Textual's Pilot."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import make_image
from tui.app import LookalikeApp, create_app
from tui.screens.failures import FailuresScreen
from tui.screens.help import HelpScreen
from tui.widgets.image_tree import ImageTree
from tui.widgets.results import ResultsGrid

SIZE = (120, 40)


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


async def ready(pilot) -> LookalikeApp:
    """Wait until the engine is open and the first index run has finished."""
    app = pilot.app
    await wait_for(pilot, lambda: app.search_engine is not None and not app.indexing)
    return app


async def search_first_bag(pilot) -> None:
    """From the tree's root: open the 'bag' folder (second) and search its first image."""
    await pilot.press("j", "j", "enter")  # ankle-boot, bag; enter opens the folder
    await wait_for(pilot, lambda: len(pilot.app.query_one(ImageTree).cursor_node.children) > 0)
    await pilot.press("j", "enter")
    await wait_for(pilot, lambda: pilot.app.search_view.last_result is not None)


async def test_enter_searches_and_shows_scores(sample_copy: Path):
    app = create_app(sample_copy)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await search_first_bag(pilot)
        grid = app.query_one(ResultsGrid)
        assert app.search_view.query_path.parent.name == "bag"
        assert len(grid.cards) == 12
        scores = [c.data.score for c in grid.cards]
        assert scores == sorted(scores, reverse=True)
        first_card_text = str(grid.cards[0].query_one(".card-score").render())
        assert "#1" in first_card_text and f"{scores[0]:.3f}" in first_card_text
        assert sum(c.data.path.parent.name == "bag" for c in grid.cards) >= 6
        status = str(app.query_one("#results-status").render())
        assert "exact" in status and "lookalikes of bag/" in status  # 200 images: exact
        # thumbnails follow the scores
        await wait_for(
            pilot,
            lambda: all("…" not in str(c.query_one(".card-thumb").render()) for c in grid.cards),
        )


async def test_walk_back_fewer_more_exact(sample_copy: Path):
    app = create_app(sample_copy)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await search_first_bag(pilot)
        first_query = app.search_view.query_path
        await pilot.press("tab")
        assert isinstance(app.focused, ResultsGrid)
        await pilot.press("right")
        grid = app.query_one(ResultsGrid)
        assert grid.cursor == 1
        second = grid.current.path
        before = app.search_view.last_result
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.search_view.last_result is not before)
        assert app.search_view.query_path == second and app.search_view.history == [first_query]
        assert second not in [c.data.path for c in grid.cards]  # never matches itself

        before = app.search_view.last_result
        await pilot.press("backspace")
        await wait_for(pilot, lambda: app.search_view.last_result is not before)
        assert app.search_view.query_path == first_query and app.search_view.history == []

        before = app.search_view.last_result
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: app.search_view.last_result is not before)
        assert len(grid.cards) == 11
        before = app.search_view.last_result
        await pilot.press("right_square_bracket", "right_square_bracket")
        await wait_for(pilot, lambda: app.search_view.num_results == 13 and len(grid.cards) == 13)

        assert (
            app.search_view.last_result.mode == "exact" and not app.search_view.exact
        )  # auto chose exact here
        before = app.search_view.last_result
        await pilot.press("x")
        await wait_for(pilot, lambda: app.search_view.last_result is not before)
        assert app.search_view.exact and app.search_view.last_result.mode == "exact"
        assert "exact" in str(app.query_one("#results-status").render())
        assert app.search_view.last_result.candidates == 199


async def test_filter_help_failures_and_copy(sample_copy: Path, tmp_path: Path):
    app = create_app(sample_copy)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tree = app.query_one(ImageTree)
        await pilot.press("slash")
        await pilot.press(*"sandal")
        assert tree.name_filter == "sandal"
        kept = list(
            tree.filter_paths(
                [
                    sample_copy / "bag" / "x.png",
                    sample_copy / "sandal" / "y.png",
                    sample_copy / "bag",  # no sandal in it: left out
                    sample_copy / "sandal",
                ]
            )
        )
        assert kept == [sample_copy / "sandal" / "y.png", sample_copy / "sandal"]
        await pilot.press("escape")
        assert tree.name_filter == "" and app.focused is tree

        # enter keeps the filter and puts the cursor on the first match; escape in the
        # tree clears it and closes the folders it opened
        await pilot.press("slash", *"sneak", "enter")
        assert app.focused is tree

        def on_match() -> bool:
            node = tree.cursor_node
            return node is not None and node.data is not None and "sneaker/" in str(node.data.path)

        await wait_for(pilot, on_match)
        top = [n for n in tree.root.children if n.data is not None]
        assert [Path(n.data.path).name for n in top] == ["sneaker"] and top[0].is_expanded
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(tree.root.children) == 10)
        assert tree.name_filter == "" and not any(n.is_expanded for n in tree.root.children)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        await pilot.press("f")  # no failures in the sample: a notification, no screen
        assert not isinstance(app.screen, FailuresScreen)

        copied, said = [], []
        app.copy_to_clipboard = copied.append
        await search_first_bag(pilot)
        app.say = lambda text, **_kw: said.append(str(text))
        await pilot.press("c")
        assert copied == [str(app.search_view.highlighted)]
        assert "through the terminal (OSC 52)" in said[-1] and "copied" not in said[-1]


async def test_broken_image_gets_a_placeholder_and_is_listed(tmp_path: Path):
    root = tmp_path / "imgs"
    for i in range(3):
        make_image(root / f"ok{i}.png", i)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    app = create_app(root)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("j")  # broken.png sorts first
        await wait_for(pilot, lambda: "cannot show" in str(app.query_one("#query-art").render()))
        assert "truncated file" in str(app.query_one("#query-info").render())
        assert "1 skipped" in str(app.query_one("#index-state").render())
        await pilot.press("f")
        assert isinstance(app.screen, FailuresScreen)
        await pilot.press("escape")


async def test_cancel_indexing_then_resume(tmp_path: Path):
    root = tmp_path / "many"
    for i in range(120):
        make_image(root / f"{i:03d}.png", i)
    app = create_app(root, batch_size=8)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "indexing" in str(app.query_one("#index-state").render()))
        await pilot.press("ctrl+x")
        await wait_for(pilot, lambda: not app.indexing)
        state = str(app.query_one("#index-state").render())
        assert "cancelled" in state
        done = app.search_engine.count()
        assert done < 120
        await pilot.press("i")
        await wait_for(pilot, lambda: "up to date" in str(app.query_one("#index-state").render()))
        assert app.search_engine.count() == 120


async def test_unusable_index_is_a_notification_not_a_crash(tmp_path: Path):
    root = tmp_path / "imgs"
    make_image(root / "a.png", 1)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database" * 100)
    app = create_app(root, index_path=str(junk))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot, lambda: "cannot open the index" in str(app.query_one("#index-state").render())
        )
        assert app.is_running
        await pilot.press("q")
    assert app.return_code == 0


async def test_query_option_and_quit(sample_copy: Path):
    query = sorted((sample_copy / "sneaker").glob("*.png"))[0]
    app = create_app(sample_copy, query=query)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.search_view.last_result is not None)
        assert app.search_view.query_path == query.resolve()
        await pilot.press("q")
    assert app.return_code == 0


@pytest.mark.parametrize("width", [80, 200])
async def test_grid_reflows_with_width(sample_copy: Path, width: int):
    app = create_app(sample_copy)
    async with app.run_test(size=(width, 30)) as pilot:
        await ready(pilot)
        await search_first_bag(pilot)
        grid = app.query_one(ResultsGrid)
        assert grid.columns == max(1, (grid.size.width - 2) // grid.tier.card_width)
        assert (grid.columns >= 6) if width == 200 else (grid.columns <= 2)


async def test_tree_shows_what_the_engine_indexes(tmp_path: Path):
    root = tmp_path / "mixed"
    make_image(root / "a.png", 1)
    make_image(root / "noext", 2, fmt="PNG")  # an image by content, not by name
    (root / "notes.txt").write_text("not an image")
    make_image(root / ".hidden" / "h.png", 3)
    app = create_app(root, auto_index=False)
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one(ImageTree)
        await wait_for(pilot, lambda: len(tree.root.children) > 0)
        shown = sorted(str(node.label) for node in tree.root.children)
        assert shown == ["a.png", "noext"]


def test_one_key_table_feeds_bindings_palette_and_help():
    from tui import keys
    from tui.app import LookalikeApp
    from tui.screens.search import SearchScreen
    from tui.screens.triage import TriageScreen
    from tui.widgets.results import ResultsGrid

    places = (
        ("app", LookalikeApp),
        ("search", SearchScreen),
        ("results", ResultsGrid),
        ("triage", TriageScreen),
    )
    for place, owner in places:
        bound = {(b.key, b.action) for b in owner.BINDINGS}
        wanted = {(k.keys, k.action) for k in keys.KEYS if k.place == place and k.action}
        assert bound == wanted
        for _key, action in wanted:
            name = action.split("(")[0]
            on = LookalikeApp if name.startswith("app.") else owner  # the app's, bound here
            assert hasattr(on, f"action_{name.removeprefix('app.')}"), action
    for key in keys.palette():
        owner = (
            LookalikeApp if key.place == "app" or key.action.startswith("app.") else SearchScreen
        )
        assert hasattr(owner, f"action_{key.action.removeprefix('app.')}")
    helped = {what for _place, _shown, what in keys.help_rows()}
    assert {k.help for k in keys.KEYS} == helped
    # each screen's footer: its own keys and the app's, none of another screen's
    shown = {
        place: {k.label for k in keys.KEYS if k.place == place and k.label} for place in keys.PLACES
    }
    assert "Filter" in shown["search"] and "Triage" in shown["search"]
    assert not shown["app"] & {"Filter", "Fewer", "Re-index", "Back", "Triage"}


async def test_compare_view_steps_through_results(sample_copy: Path):
    from tui.screens.compare import CompareScreen

    app = create_app(sample_copy)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("z")  # nothing searched yet: a notice, no screen
        assert not isinstance(app.screen, CompareScreen)
        await search_first_bag(pilot)
        await pilot.press("tab", "right", "z")
        assert isinstance(app.screen, CompareScreen) and app.screen.index == 1
        title = lambda: str(app.screen.query_one("#compare-result .compare-title").render())  # noqa: E731
        assert "#2" in title() and "2 of 12" in title()
        await pilot.press("right", "right")
        assert "#4" in title() and "4 of 12" in title()
        await pilot.press("left")
        assert "#3" in title()
        await wait_for(
            pilot,
            lambda: all("…" not in str(w.render()) for w in app.screen.query(".compare-art")),
        )
        info = str(app.screen.query_one("#compare-query .compare-info").render())
        assert "28×28 px" in info and "bag/" in info
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("z", "enter")  # enter searches with the result shown
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
        await wait_for(pilot, lambda: len(app.search_view.history) == 1)


async def test_256_colour_terminals_get_dithered_pictures(sample_copy: Path, monkeypatch):
    """Without 24-bit colour (headless Rich says 'standard'), pictures are quantised to
    the palette and a notice says why."""
    monkeypatch.delenv("LOOKALIKE_COLORS")
    app = create_app(sample_copy)
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.thumbs.choice.key == ("halfblock", "256")
        assert any("256 colours" in n for n in notes)
        await search_first_bag(pilot)
        grid = app.query_one(ResultsGrid)
        await wait_for(
            pilot,
            lambda: all("…" not in str(c.query_one(".card-thumb").render()) for c in grid.cards),
        )
        art = app.thumbs.get(grid.cards[0].data.path, *app.tier.thumb).art
        assert art.indexed and art.fg.min() >= 16 and art.bg.max() <= 255


async def test_copy_escapes_a_name_that_would_act_on_a_terminal(tmp_path: Path):
    import os

    root = tmp_path / "odd"
    raw = b"osc\x1b]52;c;aGk=\x07\nline.png"
    make_image(Path(os.fsdecode(os.path.join(os.fsencode(root), raw))), 1)
    make_image(root / "plain.png", 2)
    app = create_app(root)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        copied: list[str] = []
        app.copy_to_clipboard = copied.append
        await pilot.press("j")  # the odd name sorts first
        await wait_for(pilot, lambda: app.search_view.highlighted is not None)
        await pilot.press("c")
        assert copied == [str(root).replace("\n", "\\n") + "/osc\\x1b]52;c;aGk=\\x07\\nline.png"]
        assert not any(ch in copied[0] for ch in "\x1b\x07\n")
        await pilot.press("j", "c")  # a plain name is copied exactly
        assert copied[-1] == str(root / "plain.png")


async def test_the_index_line_says_the_cnn_is_being_timed():
    """A machine's first run: the index line says what it does (no "scanning… 0 to
    encode" for a minute), with a bar of the ways timed."""
    from textual.app import App
    from textual.widgets import ProgressBar, Static

    from engine.results import Progress
    from tui.widgets.progress import IndexPanel

    class One(App):
        def compose(self):
            yield IndexPanel()

    app = One()
    async with app.run_test(size=(120, 10)) as pilot:
        panel = app.query_one(IndexPanel)
        what = "timing the ways the CNN can run here (once per machine): 2 of 4, openvino fp32"
        panel.show_progress(Progress(1, 4, 0, 0.0, what, "preparing"))
        await pilot.pause()
        state = str(app.query_one("#index-state", Static).render())
        assert "2 of 4, openvino fp32…" in state
        bar = app.query_one("#index-bar", ProgressBar)
        assert (bar.total, bar.progress) == (4, 1)


async def test_sigterm_after_the_app_ended_goes_to_the_handler_before(tmp_path: Path):
    """The app's SIGTERM handler outlives it in the process (and in processes forked
    from it, such as a pool's workers): once the app has ended, a SIGTERM goes to what
    handled it before, never into the closed app."""
    import signal

    heard: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: heard.append(signum))
    try:
        make_image(tmp_path / "a.png", 1)
        app = create_app(tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)
