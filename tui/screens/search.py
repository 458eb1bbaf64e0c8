"""The search view: the file tree, the query, the results as pixel art, the index panel.

Searching and thumbnails run in this screen's thread workers and come back as messages;
only the newest search is ever shown. The engine and the indexing run belong to the app
(:class:`tui.app.LookalikeApp`), which tells this screen when the engine is ready and
when a run has finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on
from textual.widgets import Input

from engine.errors import LookalikeError, os_reason
from engine.names import count, printable
from tui.widgets.image_tree import ImageTree
from tui.widgets.results import ResultsGrid

if TYPE_CHECKING:
    pass

from tui.screens.search_base import MAX_RESULTS, MIN_RESULTS, SORTS, SearchBase, SearchFinished


class SearchScreen(SearchBase):
    """Walk from lookalike to lookalike in one folder: the frame (:class:`SearchBase`)
    and what each key does."""

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
            self.notify(f"{count(k, 'result')} is the {'least' if k == MIN_RESULTS else 'most'}")
            return
        self.num_results = k
        if self.query_path is not None:
            self.run_search(self.query_path, remember=False)
        else:
            self.notify(f"{count(k, 'result')} per search")

    def action_toggle_exact(self) -> None:
        self.exact = not self.exact
        if self.query_path is None or self.last_result is None:
            self.notify(
                "exact search: every image is scored"
                if self.exact
                else "auto: LSH where it is sure to find the best, else every image is scored"
            )
            return
        self._before = [m.path for m in self.last_result.matches]
        self.run_search(self.query_path, remember=False)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        if self.last_result is None or self.query_path is None:
            self.notify(f"results will be sorted by {self.sort}")
            return
        self.on_search_finished(SearchFinished(self._request, self.query_path, self.last_result))

    def action_export(self) -> None:
        """Write the shown results as JSON and CSV next to the index."""
        if self.last_result is None or self.query_path is None:
            self.notify("search first: e writes the results to a file")
            return
        from tui.export import export_results

        try:
            written = export_results(
                self.app.search_engine, self.query_path, self._cards(self.last_result)
            )
        except (OSError, LookalikeError) as exc:
            why = os_reason(exc) if isinstance(exc, OSError) else str(exc)
            self.app.say(f"cannot export: {why}", severity="error")
            return
        self.app.say("exported the results to " + " and ".join(str(p) for p in written))

    def action_open(self) -> None:
        """The highlighted picture in the system's viewer, where there is one to see."""
        from tui.export import open_in_viewer

        path = self._highlighted_path()
        if path is None:
            self.notify("nothing highlighted")
            return
        self.app.say(open_in_viewer(path))

    def action_compare(self) -> None:
        grid = self.query_one(ResultsGrid)
        if not grid.cards or self.query_path is None:
            self.notify("search first: z compares the query with a result")
            return
        from tui.screens.compare import CompareScreen

        index = grid.cursor if grid.current is not None else 0
        cards = [c.data for c in grid.cards]
        self.app.push_screen(
            CompareScreen(self.query_path, self.rel(self.query_path), cards, index)
        )

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
        self.app.copy_to_clipboard(shown)
        if shown == text:
            self.app.say(f"sent {text} to the clipboard through the terminal (OSC 52); {refused}")
        else:
            # Control characters or escape sequences pasted into a shell run there, and
            # bytes that are not UTF-8 cannot travel in OSC 52: the visible escapes go.
            self.app.say(
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
        tree = self.query_one(ImageTree)
        if not event.value.strip():
            event.input.display = False
        else:
            # the filter may still be waiting for typing to pause: apply it now
            tree.set_filter(event.value.strip())
            tree.go_to_first_match()
        tree.focus()

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        tree = self.query_one(ImageTree)
        # Escape in the box, or in the tree while a filter is on, clears the filter.
        if event.key == "escape" and (self.focused is box or (self.focused is tree and box.value)):
            box.value = ""
            box.display = False
            tree.set_filter("")
            tree.focus()
            event.stop()
