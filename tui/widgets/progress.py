"""The progress panel: live indexing state, and whether the index is up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from engine.names import count
from tui.text import line

if TYPE_CHECKING:  # keep the engine out of the first frame's imports
    from engine.results import IndexStats, Progress


def _eta(progress: Progress) -> str:
    if progress.images_per_s <= 0 or progress.total <= progress.done:
        return "--:--"
    seconds = int((progress.total - progress.done) / progress.images_per_s)
    return (
        f"{seconds // 60}:{seconds % 60:02d}"
        if seconds < 3600
        else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"
    )


class IndexPanel(Vertical):
    """Bar, counts, rate, ETA, failures, backbone and index location."""

    def compose(self):
        with Horizontal(id="index-line"):
            yield Static("starting…", id="index-state")
            yield ProgressBar(total=None, show_eta=False, show_percentage=True, id="index-bar")
        yield Static("", id="index-info")

    def set_info(self, backbone: str, index_path: str) -> None:
        self.query_one("#index-info", Static).update(
            line((f"{backbone} · index: {index_path}", "dim"))
        )

    def show_progress(self, p: Progress) -> None:
        bar = self.query_one("#index-bar", ProgressBar)
        state = self.query_one("#index-state", Static)
        if p.phase == "scanning":
            bar.update(total=None)
            state.update(Text(f"scanning… {p.total} to encode"))
            return
        if p.phase == "preparing":  # the CNN loads (and is timed, on a first run)
            bar.update(total=p.total or None, progress=p.done)
            state.update(line(p.current + "…"))
            return
        bar.update(total=max(p.total, 1), progress=p.done)
        state.update(
            line(
                f"indexing {p.done}/{p.total} · {p.images_per_s:.1f} img/s · ETA {_eta(p)}",
                (f" · {p.failed} failed", "red") if p.failed else "",
                " (f)" if p.failed else "",
            )
        )

    def show_done(self, stats: IndexStats) -> None:
        bar = self.query_one("#index-bar", ProgressBar)
        state = self.query_one("#index-state", Static)
        failed = (
            line((f" · {len(stats.failed)} skipped", "red"), " (f to list)")
            if stats.failed
            else Text()
        )
        if stats.cancelled:
            # the bar stays where the run stopped: a full bar would say it finished
            bar.add_class("-cancelled")
            state.update(
                line(
                    ("indexing cancelled", "yellow"),
                    f": {count(stats.total, 'image')} searchable · i resumes",
                    failed,
                )
            )
        elif stats.readonly:
            bar.update(total=1, progress=1)
            pending = f" · {count(stats.pending, 'change')} not in it" if stats.pending else ""
            state.update(
                line(
                    (
                        "disk full" if stats.readonly_why == "disk full" else "read-only index",
                        "yellow",
                    ),
                    f": {count(stats.total, 'image')}{pending}",
                    failed,
                )
            )
        else:
            bar.remove_class("-cancelled")
            bar.update(total=1, progress=1)
            added = f", {stats.indexed} new" if stats.indexed else ""
            state.update(
                line(
                    ("✓ index up to date", "green"),
                    f": {count(stats.total, 'image')}{added}",
                    failed,
                )
            )

    def show_message(self, text: Text) -> None:
        self.query_one("#index-state", Static).update(text)
