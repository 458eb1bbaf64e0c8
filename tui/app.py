"""The lookalike app: its lifecycle, the engine, indexing, and the command palette.

Threads: the UI thread only lays out widgets. Opening the engine (which imports torch),
indexing, searching and rendering thumbnails all run in Textual thread workers, and
their results come back as messages. The views are screens: searching
(:mod:`tui.screens.search`, the first one), triage, compare, help.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.names import printable
from engine.settings import Settings
from tui import keys, notes
from tui.layout import Tier, tier_for
from tui.render import choose
from tui.screens.base import TierChanged
from tui.screens.search import SearchScreen
from tui.screens.search_base import EngineOpened, IndexNote, IndexShown, WordsStale
from tui.text import line
from tui.thumbs import ThumbCache

if TYPE_CHECKING:
    from engine.results import IndexStats, Progress
    from engine.search import ImageSimilaritySearch


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
        self.tier: Tier = tier_for(80, 24)
        self.thumbs = ThumbCache()
        self._cancel = threading.Event()
        self.indexing = False
        self.index_progress: Progress | None = None  # the running index's last word
        self._failures: list = []
        self._sent: set[int] = set()  # pictures whose pixels the terminal has
        self.keep_in = tuple(keep_in)  # kept folders for triage, relative to the folder
        self.against = against  # another folder whose copies of this one are leaks
        #: the triage screen, made on the first visit and kept (installed): it holds the
        #: session and the cursor between visits
        self.triage_screen: Any = None
        self.search_view = SearchScreen(self.folder, self.settings.follow_links)

    # --- layout -------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return self.search_view

    def on_resize(self, event) -> None:
        """Pick thumbnail sizes for the new terminal size; redraw pictures if they change."""
        tier = tier_for(event.size.width, event.size.height)
        if tier != self.tier:
            self.tier = tier
            self.search_view.post_message(TierChanged())

    def on_mount(self) -> None:
        # How pictures are drawn: from the options and what Rich made of the terminal.
        choice = choose(self.pixels, self.colours, color_system=self.console.color_system)
        self.thumbs = ThumbCache(choice)
        if choice.why:
            hint = "; if it has, start with --colors truecolor" if choice.colours == "256" else ""
            self.notify(f"pictures: {choice.why}{hint}", timeout=8)
        self.tier = tier_for(self.size.width, self.size.height)
        self.search_view.post_message(TierChanged())
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            before = signal.getsignal(signal.SIGTERM)

            def on_term(*_) -> None:
                if loop.is_closed() or not self.is_running:
                    # the app has ended (a process forked from this one, say a pool's
                    # worker, inherits the handler): what was there before decides
                    signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)
                    signal.raise_signal(signal.SIGTERM)
                    return
                loop.call_soon_threadsafe(self._terminate)

            signal.signal(signal.SIGTERM, on_term)
        notes.to_app(self)
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
        self._failures = message.search.failures()
        count = message.search.count()
        self.search_view.post_message(EngineOpened(count, self.initial_query))
        self.warm_engine()
        # A shared index is kept up to date by `lookalike index` workers; opening the app
        # to search must not make this machine one (i joins, when wanted).
        if self.auto_index and not message.search.store.shared:
            self.action_reindex()

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
                note = line(("cannot open the index", "red"), ": ", text)
                self.search_view.post_message(IndexNote(note, line((text, "red"))))
            if event.worker.group == "index":
                self.indexing = False
                note = line(("indexing failed", "red"), ": ", text)
                self.search_view.post_message(IndexNote(note))

    # --- indexing -------------------------------------------------------------------

    def action_reindex(self) -> None:
        if self.search_engine is None:
            self.notify("the engine is still loading")
            return
        if self.indexing:
            self.notify("already indexing; ctrl+x cancels")
            return
        self.indexing = True
        self._cancel = threading.Event()
        self.search_view.post_message(IndexNote(line("scanning…")))
        self.run_index(self._cancel)

    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def run_index(self, cancel: threading.Event) -> None:
        assert self.search_engine is not None
        stats = self.search_engine.index(
            on_progress=lambda p: self.post_message(IndexProgress(p)), cancel=cancel
        )
        self.post_message(IndexFinished(stats))

    def on_index_progress(self, message: IndexProgress) -> None:
        self.index_progress = message.progress
        if self.indexing and message.progress.phase != "done":
            self.search_view.post_message(IndexShown(progress=message.progress))

    def on_index_finished(self, message: IndexFinished) -> None:
        self.indexing = False
        self.index_progress = None
        self._failures = message.stats.failed
        if self.triage_screen is not None and (message.stats.indexed or message.stats.removed):
            # the folder changed: triage takes in the new pictures (now, if it is shown)
            from tui.screens.triage_base import IndexChanged

            self.triage_screen.post_message(IndexChanged())
        self.search_view.post_message(IndexShown(stats=message.stats))
        if message.stats.kept_gone:
            self.say(
                f"{message.stats.kept_gone} indexed files are gone from the folder but were"
                " kept (a disk unmounted?); lookalike index DIR --prune removes them",
                severity="warning",
                timeout=15,
            )

    def index_quietly(self) -> None:
        """Bring the index up to date after files came back into the folder (an undo):
        the run the app would make on ``i``, unless one is under way."""
        if (
            not self.indexing
            and self.search_engine is not None
            and not self.search_engine.store.shared
        ):
            self.action_reindex()

    def action_cancel_index(self) -> None:
        if self.indexing:
            self._cancel.set()
            self.search_view.post_message(IndexNote(line(("cancelling…", "yellow"))))
        else:
            self.notify("nothing is being indexed")

    def action_triage(self) -> None:
        if self.search_engine is None:
            self.notify("the engine is still loading")
            return
        from tui.screens.triage import TriageScreen
        from tui.widgets.triage_card import TriageState

        if isinstance(self.screen, TriageScreen):
            return
        if self.triage_screen is None:
            state = TriageState(keep_in=self.keep_in, against=self.against)
            self.triage_screen = TriageScreen(self.search_engine, state, tier=self.tier)
            self.install_screen(self.triage_screen, "triage")
        else:
            self.triage_screen.post_message(TierChanged())  # the terminal may have changed

        def back(_result: None) -> None:
            # the copies triage verified are called so beside the scores from now on
            self.search_view.post_message(WordsStale())

        self.push_screen("triage", back)

    def action_failures(self) -> None:
        if not self._failures:
            self.notify("no file was skipped")
            return
        from tui.screens.failures import FailuresScreen  # DataTable: not needed at start-up

        self.push_screen(FailuresScreen(list(self._failures)))

    def present(self, thumb: Any) -> None:
        """Send a picture's pixels to the terminal before its cells are shown, for
        renderers that draw real pixels (kitty); once per picture."""
        art = getattr(thumb, "art", None)
        send = getattr(art, "transmission", None)
        if send is None or art is None or art.image_id in self._sent:
            return
        self._sent.add(art.image_id)
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.write(send())
            driver.flush()

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        # the keys of the screen at hand, then those that work everywhere
        places = getattr(self.screen, "HELP_PLACES", ())
        self.push_screen(HelpScreen((*places, "app")))

    async def action_quit(self) -> None:
        self._cancel.set()
        self.exit(0)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key in keys.palette():
            name = key.action.removeprefix("app.")
            owner = self if name != key.action or key.place == "app" else self.search_view
            yield SystemCommand(key.palette, key.help, getattr(owner, f"action_{name}"))

    # --- helpers --------------------------------------------------------------------

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
