"""Where the engine's notes go: one line on stderr from the command line, a notification
in the app.

The engine says what it decided on its own (a damaged cached model made again, say)
through the standard ``lookalike`` logger; it never prints. The front end that runs
decides how a person sees it, always escaped (:func:`engine.names.printable`).
"""

from __future__ import annotations

import logging
import threading

from engine.names import printable

LOG = logging.getLogger("lookalike")


class _Handler(logging.Handler):
    def __init__(self, show) -> None:
        super().__init__(logging.INFO)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.show(printable(record.getMessage()))
        except Exception:  # a note must never break what it is about
            self.handleError(record)


def _install(show) -> None:
    for old in [h for h in LOG.handlers if isinstance(h, _Handler)]:
        LOG.removeHandler(old)
    LOG.addHandler(_Handler(show))
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def to_stderr() -> None:
    """Notes as ``lookalike: …`` lines on stderr (the command line)."""
    import sys

    _install(lambda text: print(f"lookalike: {text}", file=sys.stderr))


def to_app(app) -> None:
    """Notes as the app's notifications, from any thread."""

    def show(text: str) -> None:
        if threading.current_thread() is threading.main_thread():
            app.notify(text, markup=False)
        else:
            app.call_from_thread(app.notify, text, markup=False)

    _install(show)
