"""The one base class of every error the engine raises on purpose.

Each carries a one-line message meant for the user; front ends catch
:class:`LookalikeError` and print it instead of a traceback.
"""


class LookalikeError(Exception):
    """An expected failure (bad input, missing weights, unusable index)."""
