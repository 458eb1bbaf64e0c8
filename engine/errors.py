"""The errors the engine raises on purpose, under one base class.

Each carries a one-line message meant for the user; front ends catch
:class:`LookalikeError` and print it instead of a traceback. They live here, not beside
the code that raises them, so that any module can raise one without importing another
layer (the index's errors are raised by paths, the sandbox and both stores).
"""


def os_reason(exc: BaseException) -> str:
    """An operating-system failure in the user's words: ``disk full`` and ``read-only
    media`` named as such, else the system's own reason."""
    import errno

    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return "disk full"
    if code == errno.EROFS:
        return "read-only media"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class LookalikeError(Exception):
    """An expected failure (bad input, missing weights, unusable index)."""


class SearchError(LookalikeError):
    """A query or setting that cannot be served; the message is one line for the user."""


class IndexMismatch(SearchError):
    """The index on disk was built with other settings than the ones asked for."""


class IndexFileError(LookalikeError):
    """An index that cannot be opened or used; the message is one line for the user."""


class IndexDamaged(IndexFileError):
    """An index whose content cannot be right (crafted, or damaged on disk)."""

    def __init__(self, location: str, why: str, root: str | None = None) -> None:
        self.location, self.why = location, why
        super().__init__(
            f"the index {location} is damaged ({why}); run lookalike index"
            f" {root or 'DIR'} --rebuild"
        )


class OlderIndex(IndexFileError):
    """An index written by an older lookalike, in a layout this one does not read."""


class DiskFull(IndexFileError):
    """The disk holding the index is full: what was committed before is intact."""

    def __init__(self, location: str) -> None:
        super().__init__(f"disk full: cannot write the index at {location}")


class NewerIndex(IndexFileError):
    """An index written by a newer lookalike: left alone unless asked to rebuild it."""


class IndexBusy(IndexFileError):
    """Another process is writing the index (searching still works)."""


class BadStoreURL(IndexFileError):
    """A store URL that cannot be used as written (a bad name, port or scheme): the
    command line treats it as a usage error."""


class MoveError(LookalikeError):
    """A move that cannot be done or undone; the message says why."""


class ImageError(LookalikeError):
    """An image that cannot be used; ``str(err)`` is a one-line reason fit for a report."""


class SettingsError(LookalikeError):
    """A setting out of range; the message names it."""


class DatasetError(LookalikeError):
    """The IDX files are missing or malformed."""


class EncoderError(LookalikeError):
    """A backbone that cannot be built; the message says how to fix it."""


class RuntimeChoiceError(LookalikeError):
    """A runtime or precision that cannot be used here; the message says why."""


class Refused(IndexFileError):
    """A folder or file that is a symbolic link, or not what lookalike put there."""
