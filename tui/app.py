"""The lookalike app: file tree, query, results as pixel art, live indexing progress.

Threads: the UI thread only lays out widgets. Opening the engine (which imports torch),
indexing, searching and rendering thumbnails all run in Textual thread workers, and
their results come back as messages. Only the newest search is ever shown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DirectoryTree, Footer, Input, Static
from textual.worker import Worker, WorkerState

from engine.names import printable
from engine.settings import Settings
from tui import keys
from tui.layout import Tier, tier_for
from tui.render import choose
from tui.text import line, plain
from tui.thumbs import ThumbCache
from tui.widgets.image_tree import ImageTree
from tui.widgets.progress import IndexPanel
from tui.widgets.query import QueryPanel
from tui.widgets.results import CardData, ResultsGrid

if TYPE_CHECKING:
    from engine.results import IndexStats, Progress, SearchResult
    from engine.search import ImageSimilaritySearch

MIN_RESULTS, MAX_RESULTS = 1, 60
#: How each way of answering is named on the status line.
MODE_NAMES = {"lsh": "LSH", "exact": "exact", "exact-lsh-unsure": "exact (LSH unsure)"}


class EngineReady(Message):
    def __init__(self, search: ImageSimilaritySearch) -> None:
        super().__init__()
        self.search = search


class IndexProgress(Message):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class IndexFinished(Message):
    def __init__(self, stats: IndexStats) -> None:
        super().__init__()
        self.stats = stats


class SearchFinished(Message):
    def __init__(self, request: int, query: Path, result: SearchResult) -> None:
        super().__init__()
        self.request, self.query, self.result = request, query, result


class ThumbReady(Message):
    def __init__(self, target: str, path: Path, thumb: Any) -> None:
        super().__init__()
        self.target, self.path, self.thumb = target, path, thumb


class LookalikeApp(App[int]):
    """Open a folder, keep its index fresh, and walk from lookalike to lookalike."""

    CSS_PATH = "app.tcss"
    TITLE = "lookalike"
    BINDINGS = keys.bindings("app")

    def __init__(
        self,
        folder: str | Path,
        *,
        query: str | Path | None = None,
        auto_index: bool = True,
        settings: Settings | None = None,
        encoder: Any = None,
        show_timings: bool = True,
        pixels: str | None = None,
        colours: str | None = None,
        keep_in: tuple[str, ...] = (),
        against: str | None = None,
    ) -> None:
        super().__init__()
        self.pixels, self.colours = pixels, colours
        self.show_timings = show_timings
        self.folder = Path(folder).resolve()
        self.initial_query = Path(query).resolve() if query else None
        self.auto_index = auto_index
        self.settings = settings or Settings()
        self.encoder = encoder
        self.search_engine: ImageSimilaritySearch | None = None
        self.num_results = 12
        self.exact = False
        self.query_path: Path | None = None
        self.history: list[Path] = []
        self.last_result: SearchResult | None = None
        self.highlighted: Path | None = None
        self.tier: Tier = tier_for(80, 24)
        self.thumbs = ThumbCache()
        self._cancel = threading.Event()
        self._search_request = 0
        self._indexing = False
        self._failures: list = []
        self._sent: set[int] = set()  # pictures whose pixels the terminal has
        self.keep_in = tuple(keep_in)  # kept folders for triage, relative to the folder
        self.against = against  # another folder whose copies of this one are leaks
        self.triage_state: Any = None  # marks, keepers, the last report: kept between visits

    # --- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter by path…", id="filter")
                yield ImageTree(
                    self.folder,
                    follow_links=self.settings.follow_links,
                    id="tree",
                )
                yield QueryPanel(id="query")
            with Vertical(id="right"):
                yield Static("", id="results-status")
                yield ResultsGrid(id="results")
        yield IndexPanel(id="index")
        yield Footer()

    def on_resize(self, event) -> None:
        """Pick thumbnail sizes for the new terminal size; redraw pictures if they change."""
        tier = tier_for(event.size.width, event.size.height)
        if tier == self.tier:
            return
        self.tier = tier
        grid = self.query_one(ResultsGrid)
        grid.tier = tier
        if self.last_result is not None and self.query_path is not None:
            self.on_search_finished(
                SearchFinished(self._search_request, self.query_path, self.last_result)
            )
        elif self.highlighted is not None:
            self.show_query(self.highlighted)

    def on_mount(self) -> None:
        # How pictures are drawn: from the options and what Rich made of the terminal.
        choice = choose(self.pixels, self.colours, color_system=self.console.color_system)
        self.thumbs = ThumbCache(choice)
        if choice.why:
            hint = "; if it has, start with --colors truecolor" if choice.colours == "256" else ""
            self.notify(f"pictures: {choice.why}{hint}", timeout=8)
        self.tier = tier_for(self.size.width, self.size.height)
        self.query_one(ResultsGrid).tier = self.tier
        self.query_one("#tree").border_title = plain(self.folder)
        self.query_one("#query").border_title = "query"
        self.query_one("#results").border_title = "results"
        self.query_one("#index").border_title = "index"
        self.query_one("#filter").display = False
        self._set_results_status(line(("opening the index…", "dim")))
        self.query_one(IndexPanel).set_info("loading the engine…", "")
        self.query_one("#tree").focus()
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(self._terminate))
        # The engine's imports (numpy, datasketch, torch) hold the interpreter for a
        # second or more: start them once the first frame is on screen.
        self.call_after_refresh(self.open_engine)

    # --- engine ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def open_engine(self) -> None:
        from engine.search import ImageSimilaritySearch

        # Opening reads only metadata; the stored vectors load with the first search,
        # so a large index does not hold up the panels or the indexing run.
        search = ImageSimilaritySearch(self.folder, settings=self.settings, encoder=self.encoder)
        self.post_message(EngineReady(search))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.search_engine = message.search
        self.query_one(IndexPanel).set_info(
            message.search.describe(), str(message.search.index_path)
        )
        self._failures = message.search.failures()
        count = message.search.count()
        self._set_results_status(
            line(f"{count} images indexed · enter on an image searches")
            if count
            else line(("nothing indexed yet", "dim"))
        )
        self.warm_engine()
        shared = getattr(message.search.store, "shared", False)
        if self.auto_index and not shared:
            self.action_reindex()
        elif shared:
            # A shared index is kept up to date by `lookalike index` workers; opening the
            # app to search must not make this machine one (i joins, when wanted).
            self._show_shared(count)
        if self.initial_query is not None:
            self.run_search(self.initial_query)

    def _show_shared(self, count: int) -> None:
        assert self.search_engine is not None
        self.query_one(IndexPanel).show_message(
            line(
                (f"shared index ({self.search_engine.store_kind}): {count} images", "bold"),
                (" · kept up to date by lookalike index workers; i joins them", "dim"),
            )
        )

    @work(thread=True, exclusive=True, group="warm", exit_on_error=False)
    def warm_engine(self) -> None:
        """Load the stored vectors and the LSH now, so the first search need not."""
        assert self.search_engine is not None
        self.search_engine.load()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            text = str(error) or type(error).__name__
            self.say(text, title=f"{event.worker.group} failed", severity="error", timeout=10)
            if event.worker.group == "engine":
                self.query_one(IndexPanel).show_message(
                    line(("cannot open the index", "red"), ": ", text)
                )
                self._set_results_status(line((text, "red")))
            if event.worker.group == "search":
                self._set_results_status(line(("search failed", "red"), ": ", text))
            if event.worker.group == "index":
                self._indexing = False
                self.query_one(IndexPanel).show_message(
                    line(("indexing failed", "red"), ": ", text)
                )

    # --- indexing -------------------------------------------------------------------

    def action_reindex(self) -> None:
        if self.search_engine is None:
            self.notify("the engine is still loading")
            return
        if self._indexing:
            self.notify("already indexing; ctrl+x cancels")
            return
        self._indexing = True
        self._cancel = threading.Event()
        self.query_one(IndexPanel).show_message("scanning…")
        self.run_index(self._cancel)

    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def run_index(self, cancel: threading.Event) -> None:
        assert self.search_engine is not None
        stats = self.search_engine.index(
            on_progress=lambda p: self.post_message(IndexProgress(p)), cancel=cancel
        )
        self.post_message(IndexFinished(stats))

    def on_index_progress(self, message: IndexProgress) -> None:
        if self._indexing and message.progress.phase != "done":
            panel = self.query_one(IndexPanel)
            panel.show_progress(message.progress)
            if message.progress.phase == "encoding" and self.search_engine is not None:
                # the CNN is loaded by now: say which runtime it runs on
                panel.set_info(self.search_engine.describe(), str(self.search_engine.index_path))

    def on_index_finished(self, message: IndexFinished) -> None:
        self._indexing = False
        self._failures = message.stats.failed
        if self.triage_state is not None and (message.stats.indexed or message.stats.removed):
            self.triage_state.report = None  # the folder changed: triage again next time
        panel = self.query_one(IndexPanel)
        panel.show_done(message.stats)
        if self.search_engine is not None:
            panel.set_info(self.search_engine.describe(), str(self.search_engine.index_path))
        if message.stats.kept_gone:
            self.say(
                f"{message.stats.kept_gone} indexed files are gone from the folder but were"
                " kept (a disk unmounted?); lookalike index DIR --prune removes them",
                severity="warning",
                timeout=15,
            )
        if self.query_path is not None and message.stats.indexed:
            self.run_search(self.query_path, remember=False)  # results over the complete index
        elif self.query_path is None:
            self._set_results_status(
                line(f"{message.stats.total} images indexed · enter on an image searches")
            )

    def action_cancel_index(self) -> None:
        if self._indexing:
            self._cancel.set()
            self.query_one(IndexPanel).show_message(line(("cancelling…", "yellow")))
        else:
            self.notify("nothing is being indexed")

    def action_triage(self) -> None:
        if self.search_engine is None:
            self.notify("the engine is still loading")
            return
        from tui.screens.triage import TriageScreen, TriageState

        if isinstance(self.screen, TriageScreen):
            return
        if self.triage_state is None:
            self.triage_state = TriageState(keep_in=self.keep_in, against=self.against)
        self.push_screen(TriageScreen(self.search_engine, self.triage_state, tier=self.tier))

    def action_compare(self) -> None:
        grid = self.query_one(ResultsGrid)
        if not grid.cards or self.query_path is None:
            self.notify("search first: z compares the query with a result")
            return
        from tui.screens.compare import CompareScreen

        index = grid.cursor if grid.current is not None else 0
        self.push_screen(
            CompareScreen(
                self.query_path, self._rel(self.query_path), [c.data for c in grid.cards], index
            )
        )

    def action_failures(self) -> None:
        if not self._failures:
            self.notify("no file was skipped")
            return
        from tui.screens.failures import FailuresScreen  # DataTable: not needed at start-up

        self.push_screen(FailuresScreen(list(self._failures)))

    # --- searching ------------------------------------------------------------------

    def run_search(self, path: Path, remember: bool = True) -> None:
        if self.search_engine is None:
            self.notify("the engine is still loading")
            return
        if remember and self.query_path is not None and self.query_path != path:
            self.history.append(self.query_path)
        self.query_path = path
        self._search_request += 1
        mode = "exact" if self.exact else "auto"
        self._set_results_status(line(f"searching ({mode})… ", (self._rel(path), "dim")))
        self.search_worker(self._search_request, path, self.num_results, self.exact)

    @work(thread=True, group="search", exit_on_error=False)
    def search_worker(self, request: int, path: Path, k: int, exact: bool) -> None:
        assert self.search_engine is not None
        result = self.search_engine.search(path, k, exact=exact)
        self.post_message(SearchFinished(request, path, result))

    def on_search_finished(self, message: SearchFinished) -> None:
        if message.request != self._search_request:
            return  # an older search finished late: only the newest is shown
        result = message.result
        self.last_result = result
        engine = self.search_engine
        if engine is not None and not self._indexing and getattr(engine.store, "shared", False):
            self._show_shared(result.indexed)  # other machines may have added some
        grid = self.query_one(ResultsGrid)
        cards = [CardData(m.rank, m.score, self.folder / m.path, m.path) for m in result.matches]
        grid.show(cards)
        mode = MODE_NAMES.get(result.mode, result.mode)
        self._set_results_status(
            line(
                (str(len(cards)), "bold"),
                " lookalikes of ",
                (self._rel(message.query), "bold"),
                f" · {mode}, {result.candidates} of {result.indexed} scored",
                f" · {result.seconds * 1000:.1f} ms" if self.show_timings else "",
                (" · backspace: previous", "dim") if self.history else "",
            )
        )
        # Pictures after the scores: let the frame with the new scores paint first, so
        # rendering thumbnails does not compete with it for the interpreter.
        paths = [c.path for c in cards]
        self.call_after_refresh(self.load_thumbs, message.request, paths)
        self.call_after_refresh(self.show_query, message.query)

    @work(thread=True, group="thumbs", exit_on_error=False)
    def load_thumbs(self, request: int, paths: list[Path]) -> None:
        for path in paths:
            if request != self._search_request:
                return
            self.post_message(ThumbReady("results", path, self.thumbs.get(path, *self.tier.thumb)))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_preview(self, path: Path) -> None:
        self.post_message(ThumbReady("query", path, self.thumbs.get(path, *self.tier.query)))

    def present(self, thumb: Any) -> None:
        """Send a picture's pixels to the terminal before its cells are shown, for
        renderers that draw real pixels (kitty); once per picture."""
        art = getattr(thumb, "art", None)
        send = getattr(art, "transmission", None)
        if send is None or art.image_id in self._sent:
            return
        self._sent.add(art.image_id)
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.write(send())
            driver.flush()

    def on_thumb_ready(self, message: ThumbReady) -> None:
        self.present(message.thumb)
        if message.target == "query":
            if message.path == self.highlighted:
                self.query_one(QueryPanel).show(
                    message.path, self._rel(message.path), message.thumb
                )
            return
        for card in self.query_one(ResultsGrid).card_for(message.path):
            card.show_thumb(message.thumb)

    def show_query(self, path: Path) -> None:
        self.highlighted = path
        cached = self.thumbs.peek(path, *self.tier.query)
        if cached is not None:
            self.present(cached)
            self.query_one(QueryPanel).show(path, self._rel(path), cached)
        else:
            self.load_preview(path)

    # --- tree and results events ----------------------------------------------------

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.run_search(Path(event.path).resolve())

    @on(ImageTree.NodeHighlighted)
    def _tree_highlight(self, event: ImageTree.NodeHighlighted) -> None:
        data = event.node.data
        if data is not None and Path(data.path).is_file():
            self.show_query(Path(data.path).resolve())

    @on(ResultsGrid.Chosen)
    def _result_chosen(self, event: ResultsGrid.Chosen) -> None:
        self.run_search(event.data.path)

    # --- actions --------------------------------------------------------------------

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            return
        if not self.history:
            self.notify("no previous query")
            return
        self.run_search(self.history.pop(), remember=False)

    def action_fewer(self) -> None:
        self._set_k(self.num_results - 1)

    def action_more(self) -> None:
        self._set_k(self.num_results + 1)

    def _set_k(self, k: int) -> None:
        k = min(max(k, MIN_RESULTS), MAX_RESULTS)
        if k == self.num_results:
            self.notify(f"{k} results is the {'least' if k == MIN_RESULTS else 'most'}")
            return
        self.num_results = k
        if self.query_path is not None:
            self.run_search(self.query_path, remember=False)
        else:
            self.notify(f"{k} results per search")

    def action_toggle_exact(self) -> None:
        self.exact = not self.exact
        self.notify(
            "exact search: every image is scored"
            if self.exact
            else "auto: LSH where it is sure to find the best, else every image is scored"
        )
        if self.query_path is not None:
            self.run_search(self.query_path, remember=False)

    def action_copy_path(self) -> None:
        path = self._highlighted_path()
        if path is None:
            self.notify("nothing highlighted")
            return
        text = os.fsdecode(path)
        shown = printable(text)
        # OSC 52 asks the terminal to fill the clipboard; nothing says whether it did, so
        # say where the path went, and what commonly refuses it
        refused = (
            "under tmux it arrives only with set-clipboard on"
            if os.environ.get("TMUX")
            else "a terminal may refuse it"
        )
        if shown == text:
            self.copy_to_clipboard(text)
            self.say(f"sent {text} to the clipboard through the terminal (OSC 52); {refused}")
        else:
            # Control characters or escape sequences pasted into a shell run there, and
            # bytes that are not UTF-8 cannot travel in OSC 52: the visible escapes go.
            self.copy_to_clipboard(shown)
            self.say(
                f"sent {shown} to the clipboard through the terminal (OSC 52), its control"
                " characters or undecodable bytes escaped: the exact name would act on the"
                f" terminal or shell it is pasted into; {refused}",
                severity="warning",
            )

    def _highlighted_path(self) -> Path | None:
        grid = self.query_one(ResultsGrid)
        if self.focused is grid and grid.current is not None:
            return grid.current.path
        return self.highlighted

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(ImageTree).set_filter(event.value.strip())

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one(ImageTree).focus()

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and self.focused is box:
            box.value = ""
            box.display = False
            self.query_one(ImageTree).focus()
            event.stop()

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self._cancel.set()
        self.exit(0)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key in keys.palette():
            yield SystemCommand(key.palette, key.help, getattr(self, f"action_{key.action}"))

    # --- helpers --------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)

    def _set_results_status(self, text: Text) -> None:
        self.query_one("#results-status", Static).update(text)

    def say(self, text: object, **kwargs: Any) -> None:
        """A notification whose text may hold paths: escaped, never read as markup."""
        self.notify(printable(text), markup=False, **kwargs)

    def _terminate(self) -> None:
        """SIGTERM: stop indexing (committed batches are kept) and leave the terminal
        as it was; the command line then exits with status 143."""
        self._cancel.set()
        self.exit(return_code=143)


def create_app(
    folder: str | Path,
    *,
    query: str | Path | None = None,
    auto_index: bool = True,
    settings: Settings | None = None,
    encoder: Any = None,
    show_timings: bool = True,
    pixels: str | None = None,
    colours: str | None = None,
    keep_in: tuple[str, ...] = (),
    against: str | None = None,
    **overrides: Any,
) -> LookalikeApp:
    """The app, for the command line and the tests alike. *settings* (with keyword
    *overrides*, e.g. ``batch_size=8``) go to :class:`engine.search.ImageSimilaritySearch`;
    *encoder* replaces the CNN (tests); *pixels* and *colours* choose how pictures are
    drawn (see :mod:`tui.render`)."""
    settings = (settings or Settings()).with_(**overrides)
    return LookalikeApp(
        folder,
        query=query,
        auto_index=auto_index,
        settings=settings,
        encoder=encoder,
        show_timings=show_timings,
        pixels=pixels,
        colours=colours,
        keep_in=keep_in,
        against=against,
    )
