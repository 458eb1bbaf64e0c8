"""The search view's frame: its layout, searches and thumbnails in workers, the words
beside the scores, the tree's and the results' events; :mod:`tui.screens.search` adds
what the keys do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DirectoryTree, Input, Static
from textual.worker import Worker, WorkerState

from engine.names import count
from tui import keys
from tui.screens.base import AppScreen, TierChanged
from tui.text import NEWLINE, fit_path, line, plain
from tui.widgets.footer import KeysFooter
from tui.widgets.image_tree import ImageTree
from tui.widgets.progress import IndexPanel
from tui.widgets.query import QueryPanel
from tui.widgets.results import CardData, ResultsGrid

if TYPE_CHECKING:
    from engine.results import SearchResult

MIN_RESULTS, MAX_RESULTS = 1, 60
#: What ``s`` steps through: the order of the results.
SORTS = ("score", "path", "size")
#: How each way of answering is named on the status line.
MODE_NAMES = {"lsh": "LSH", "exact": "exact", "exact-lsh-unsure": "exact (LSH unsure)"}


class SearchFinished(Message):
    def __init__(self, request: int, query: Path, result: SearchResult) -> None:
        super().__init__()
        self.request, self.query, self.result = request, query, result


class ScaleReady(Message):
    """The collection's score scale (engine.labels) and the copies triage verified
    (engine.triage.known), for the words beside the scores."""

    def __init__(self, scale: Any, known: Any) -> None:
        super().__init__()
        self.scale, self.known = scale, known


class ThumbReady(Message):
    def __init__(self, target: str, path: Path, thumb: Any) -> None:
        super().__init__()
        self.target, self.path, self.thumb = target, path, thumb


class EngineOpened(Message, bubble=False):
    """The app opened the engine: *count* pictures indexed; *query* to search at once."""

    def __init__(self, count: int, query: Path | None) -> None:
        super().__init__()
        self.count, self.query = count, query


class IndexNote(Message, bubble=False):
    """A line for the index panel (scanning, cancelling, a failure); *status* too for the
    status line above the results."""

    def __init__(self, text: Text, status: Text | None = None) -> None:
        super().__init__()
        self.text, self.status = text, status


class IndexShown(Message, bubble=False):
    """Where the app's index run is (*progress*), or how it ended (*stats*)."""

    def __init__(self, progress: Any = None, stats: Any = None) -> None:
        super().__init__()
        self.progress, self.stats = progress, stats


class WordsStale(Message, bubble=False):
    """The words beside the scores may have changed (a triage verified copies)."""


class SearchBase(AppScreen):
    """The search screen without its actions (:class:`tui.screens.search.SearchScreen`
    adds them): the widgets, the newest search shown, thumbnails drawn as they come."""

    BINDINGS = keys.bindings("search")
    HELP_PLACES = ("search", "tree", "results")

    def __init__(self, folder: Path, follow_links: bool) -> None:
        super().__init__()
        self.folder, self.follow_links = folder, follow_links
        self.num_results = 12
        self.exact = False
        self.query_path: Path | None = None
        self.history: list[Path] = []
        self.last_result: SearchResult | None = None
        self.highlighted: Path | None = None
        self.sort = SORTS[0]
        self.scale: Any = None  # engine.labels.ScoreScale, once measured
        self.known: Any = None  # engine.triage.known.KnownCopies, once read
        self._before: list[str] | None = None  # the results before x, to say what changed
        self._request = 0
        self.last_request = 0  # the newest search whose answer is shown

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter by path…", id="filter")
                yield ImageTree(self.folder, follow_links=self.follow_links, id="tree")
                yield QueryPanel(id="query")
            with Vertical(id="right"):
                yield Static("", id="results-status")
                yield ResultsGrid(id="results")
        yield IndexPanel(id="index")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(ResultsGrid).tier = self.app.tier
        self.query_one("#left").styles.width = self.app.tier.left
        self.query_one("#tree").border_title = plain(self.folder)
        self.query_one("#query").border_title = "query"
        self.query_one("#results").border_title = "results"
        self.query_one("#index").border_title = "index"
        self.query_one("#filter").display = False
        self.set_status(line(("opening the index…", "dim")))
        self.query_one(IndexPanel).set_info("loading the engine…", "")
        self.query_one("#tree").focus()

    @property
    def panel(self) -> IndexPanel:
        return self.query_one(IndexPanel)

    def set_status(self, text: Text) -> None:
        self.query_one("#results-status", Static).update(text)

    def retier(self) -> None:
        """The terminal changed size enough for other picture sizes: draw them again."""
        if not self.is_mounted:
            return  # on_mount takes the tier
        self.query_one(ResultsGrid).tier = self.app.tier
        self.query_one("#left").styles.width = self.app.tier.left  # the query picture whole
        if self.last_result is not None and self.query_path is not None:
            self.on_search_finished(
                SearchFinished(self._request, self.query_path, self.last_result)
            )
        elif self.highlighted is not None:
            self.show_query(self.highlighted)

    # --- searching ------------------------------------------------------------------

    def run_search(self, path: Path, remember: bool = True) -> None:
        if self.app.search_engine is None:
            self.notify("the engine is still loading")
            return
        if remember and self.query_path is not None and self.query_path != path:
            self.history.append(self.query_path)
        self.query_path = path
        self._request += 1
        request, mode = self._request, "exact" if self.exact else "auto"

        def still_searching() -> None:
            if self._request == request and self.last_request != request:
                self.set_status(line(f"searching ({mode})… ", (self.rel(path), "dim")))

        # Said only when the answer is slow to come: a search takes tens of milliseconds,
        # and a frame painted for "searching…" meanwhile (24 ms at 160x50) held back the
        # frame with the scores.
        self.set_timer(0.15, still_searching)
        self.search_worker(request, path, self.num_results, self.exact)

    @work(thread=True, group="search", exit_on_error=False)
    def search_worker(self, request: int, path: Path, k: int, exact: bool) -> None:
        search = self.app.search_engine
        if search is not None:  # searches start once the engine is there
            self.post_message(SearchFinished(request, path, search.search(path, k, exact=exact)))

    def on_search_finished(self, message: SearchFinished) -> None:
        if message.request != self._request:
            return  # an older search finished late: only the newest is shown
        self.last_request = message.request
        result = message.result
        self.last_result = result
        search = self.app.search_engine
        if search is not None and search.store.shared and not self.app.indexing:
            self.show_shared(result.indexed)  # other machines may have added pictures
        grid = self.query_one(ResultsGrid)
        cards = self._cards(result)
        grid.show(cards)
        self._say_what_changed(result)
        mode = MODE_NAMES.get(result.mode, result.mode)
        head = f"{count(len(cards), 'lookalike')} of "
        order = f" · by {self.sort}" if self.sort != SORTS[0] else ""
        room = self.query_one("#results-status").size.width - 2 - len(head) - len(order)
        name = (
            fit_path(self.rel(message.query), room) if room > 8 else plain(self.rel(message.query))
        )
        name.stylize("bold")
        self.set_status(
            line(
                head,
                name,
                order,
                NEWLINE,
                # the scores are taken around the collection's centre, which moves while
                # new pictures come in: the same pair scores otherwise at the end
                ("indexing: scores settle when it ends · ", "yellow") if self.app.indexing else "",
                (f"{mode}, {result.candidates} of {result.indexed} scored", "dim"),
                (f" · {result.seconds * 1000:.1f} ms", "dim") if self.app.show_timings else "",
                (" · ⌫ previous", "dim") if self.history else "",
            )
        )
        # Pictures after the scores: let the frame with the new scores paint first, so
        # rendering thumbnails does not compete with it for the interpreter.
        paths = [c.path for c in cards]
        self.call_after_refresh(self.load_thumbs, message.request, paths)
        self.call_after_refresh(self.show_query, message.query)

    def _cards(self, result: SearchResult) -> list[CardData]:
        """The result cards in the chosen order, each score with its word."""
        from engine.labels import word_for  # light: numpy only

        scale, known, query = self.scale, self.known, result.query_path
        cards = [
            CardData(
                m.rank, m.score, self.folder / m.path, m.path,
                word_for(scale, known, query, m.path, m.score)[0],
            )
            for m in result.matches
        ]  # fmt: skip
        if self.sort == "path":
            cards.sort(key=lambda c: c.name)
        elif self.sort == "size":
            cards.sort(key=lambda c: -_file_size(c.path))  # largest first
        return cards

    def _say_what_changed(self, result: SearchResult) -> None:
        """After x: whether exact and auto answered alike."""
        before, self._before = self._before, None
        if before is None:
            return
        now = [m.path for m in result.matches]
        changed = len(set(now) - set(before))
        how = "exact" if self.exact else "auto"
        if changed:
            self.notify(f"{how}: {changed} of {count(len(now), 'result')} changed")
        elif now == before:
            self.notify(f"{how}: the same {len(now)} results, in the same order")
        else:
            self.notify(f"{how}: the same {len(now)} results, in another order")

    @work(thread=True, exclusive=True, group="scale", exit_on_error=False)
    def measure_scale(self) -> None:
        """Learn the collection's score scale (a few dozen stored codes searched) and the
        copies the last triage verified."""
        from engine.labels import measure
        from engine.triage.known import known_copies

        search = self.app.search_engine
        if search is not None:
            self.post_message(ScaleReady(measure(search), known_copies(search)))

    def on_scale_ready(self, message: ScaleReady) -> None:
        self.scale, self.known = message.scale, message.known
        if self.last_result is not None:
            cards = self._cards(self.last_result)
            self.query_one(ResultsGrid).show(cards)
            self.call_after_refresh(self.load_thumbs, self._request, [c.path for c in cards])

    @work(thread=True, group="thumbs", exit_on_error=False)
    def load_thumbs(self, request: int, paths: list[Path]) -> None:
        for path in paths:
            if request != self._request:
                return
            thumb = self.app.thumbs.get(path, *self.app.tier.thumb)
            self.post_message(ThumbReady("results", path, thumb))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_preview(self, path: Path) -> None:
        self.post_message(
            ThumbReady("query", path, self.app.thumbs.get(path, *self.app.tier.query))
        )

    def on_thumb_ready(self, message: ThumbReady) -> None:
        self.app.present(message.thumb)
        if message.target == "query":
            if message.path == self.highlighted:
                self.query_one(QueryPanel).show(message.path, self.rel(message.path), message.thumb)
            return
        for card in self.query_one(ResultsGrid).card_for(message.path):
            card.show_thumb(message.thumb)

    def show_query(self, path: Path) -> None:
        self.highlighted = path
        cached = self.app.thumbs.peek(path, *self.app.tier.query)
        if cached is not None:
            self.app.present(cached)
            self.query_one(QueryPanel).show(path, self.rel(path), cached)
        else:
            self.load_preview(path)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            text = str(error) or type(error).__name__
            self.app.say(text, title=f"{event.worker.group} failed", severity="error", timeout=10)
            if event.worker.group == "search":
                self.last_request = self._request  # answered, with the failure
                self.set_status(line(("search failed", "red"), ": ", text))

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

    # --- what the app tells --------------------------------------------------------

    def on_engine_opened(self, message: EngineOpened) -> None:
        search = self.app.search_engine
        if search is None:
            return
        self.panel.set_info(search.describe(), str(search.index_path))
        self.set_status(
            line(f"{count(message.count, 'image')} indexed · enter on an image searches")
            if message.count
            else line(("nothing indexed yet", "dim"))
        )
        if message.count:
            self.measure_scale()  # the words beside the scores
        if search.store.shared:
            # kept up to date by `lookalike index` workers: this machine joins on i only
            self.show_shared(message.count)
        if message.query is not None:
            self.run_search(message.query)

    def show_shared(self, images: int) -> None:
        """A shared index: how many pictures it holds, who keeps it up to date."""
        search = self.app.search_engine
        if search is None:
            return
        self.panel.show_message(
            line(
                (f"shared index ({search.store.kind}): {count(images, 'image')}", "bold"),
                (" · kept up to date by lookalike index workers; i joins them", "dim"),
            )
        )

    def on_index_note(self, message: IndexNote) -> None:
        self.panel.show_message(message.text)
        if message.status is not None:
            self.set_status(message.status)

    def on_index_shown(self, message: IndexShown) -> None:
        search = self.app.search_engine
        if message.progress is not None:
            self.panel.show_progress(message.progress)
            if message.progress.phase == "encoding" and search is not None:
                # the CNN is loaded by now: say which runtime it runs on
                self.panel.set_info(search.describe(), str(search.index_path))
            return
        stats = message.stats
        self.panel.show_done(stats)
        if search is not None:
            self.panel.set_info(search.describe(), str(search.index_path))
        if stats.indexed or stats.removed:
            self.measure_scale()  # the collection changed: its scale may have
        if self.query_path is not None and stats.indexed:
            self.run_search(self.query_path, remember=False)  # over the complete index
        elif self.query_path is None:
            self.set_status(
                line(f"{count(stats.total, 'image')} indexed · enter on an image searches")
            )

    def on_words_stale(self, _message: WordsStale) -> None:
        self.measure_scale()

    def on_tier_changed(self, _message: TierChanged) -> None:
        self.retier()

    def rel(self, path: Path) -> str:
        """*path* relative to the folder, for captions and status lines."""
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
