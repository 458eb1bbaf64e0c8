"""The command line's own errors, each an exit status (the engine's are in
:mod:`engine.errors`; both end as one line on stderr, never a traceback)."""

from __future__ import annotations


class UsageError(Exception):
    """Exit status 2."""


class Failure(Exception):
    """Exit status 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (committed work is kept), exit status 143."""

    #: what is said when it ends the process
    note = "lookalike: terminated (work committed before the signal is kept)"
