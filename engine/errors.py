"""The one base class of every error the engine raises on purpose.

Each carries a one-line message meant for the user; front ends catch
:class:`LookalikeError` and print it instead of a traceback.
"""


class LookalikeError(Exception):
    """An expected failure (bad input, missing weights, unusable index)."""


class SearchError(LookalikeError):
    """A query or setting that cannot be served; the message is one line for the user."""


class IndexMismatch(SearchError):
    """The index on disk was built with other settings than the ones asked for."""
