"""The footer of every screen: the keys of the screen, compact on a narrow terminal."""

from __future__ import annotations

from textual.widgets import Footer

#: Below this many columns the keys are packed closer: at 80 columns the triage screen's
#: keys and "? Help" are cut off otherwise.
NARROW = 100


class KeysFooter(Footer):
    """Textual's footer, made compact when the terminal is narrow (and again when it is
    resized), without the command palette's key there (``?`` lists it)."""

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        narrow = self.app.size.width < NARROW
        self.compact, self.show_command_palette = narrow, not narrow
