"""The ``lookalike`` command: the app, and headless commands fit for scripts.

    lookalike [DIR] [--query IMAGE]        open the app (default DIR: ./fashion-dataset or .)
    lookalike index DIR [options]          bring DIR's index up to date
    lookalike search IMAGE... --in DIR     print each query's lookalikes
    lookalike triage DIR                   near-duplicates, identical copies, outliers, broken files
    lookalike models                       backbones and whether their weights are here
    lookalike fashion-mnist DEST           write Fashion-MNIST (Debian package) as PNGs

Exit status: 0 success, 1 a failure the message explains (unreadable or damaged index,
missing weights, mismatched settings, disk full), 2 a usage error (bad option, missing
folder or file), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 when the reader
of the output went away (``| head``), quietly. Errors are one
line on stderr, never a traceback. Interrupted or terminated, an index keeps every
batch committed before the signal.

This module decides the exit status; :mod:`tui.parsers` holds what each command takes,
:mod:`tui.commands` runs each command and :mod:`tui.report` prints what it gives back.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from engine.errors import BadStoreURL
from tui import commands, notes, report, triage_command
from tui.errors import Failure, Terminated, UsageError
from tui.parsers import COMMANDS, build_app_parser, build_parser


def _on_sigterm(_signum, _frame) -> None:
    raise Terminated


def _no_such_command(word: str) -> None:
    """A first word that is neither a command nor a folder but reads like a command
    misspelt (``serach``): the usage error, with the command meant."""
    import difflib

    if word.startswith("-") or os.path.lexists(word):
        return
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.7)
    if close:
        raise UsageError(f"no command or folder {word!r} (did you mean {close[0]}?)")


def _parse_command(argv: list[str]) -> argparse.Namespace:
    """A command's arguments; one it does not know is refused with the command's own usage
    (argparse would print the top-level one, which does not list the command's options)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    notes.to_stderr()
    try:
        if argv and argv[0] in COMMANDS:
            args = _parse_command(argv)
            handler = {
                "index": commands.cmd_index,
                "search": commands.cmd_search,
                "triage": triage_command.cmd_triage,
                "models": commands.cmd_models,
                "fashion-mnist": commands.cmd_fashion,
            }[args.command]
            return handler(args)
        if argv and argv[0] not in COMMANDS:
            _no_such_command(argv[0])
        if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
            build_parser().print_help()
            print("\n" + build_app_parser().format_usage().strip())
            return 0
        return commands.cmd_app(build_app_parser().parse_args(argv))
    except SystemExit as exc:  # argparse: 2 for usage, 0 for --help
        return int(exc.code or 0)
    except Terminated:
        report.say(Terminated.note)
        return 143
    except KeyboardInterrupt:
        report.say("lookalike: interrupted (work committed before the interruption is kept)")
        return 130
    except UsageError as exc:
        report.say(f"lookalike: {exc}")
        return 2
    except BadStoreURL as exc:  # a store URL written wrong: a usage error too
        report.say(f"lookalike: {exc}")
        return 2
    except BrokenPipeError:
        # the reader went away (`lookalike search ... | head`): stop quietly, as Unix tools
        # do, with the status of a process ended by SIGPIPE; nothing more goes to stdout
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # one line, never a traceback
        from engine.errors import LookalikeError

        known = (Failure, LookalikeError, OSError)
        if not isinstance(exc, known) and os.environ.get("LOOKALIKE_DEBUG"):
            raise
        text = _one_line(exc)
        report.say(
            f"lookalike: {text}"
            if isinstance(exc, known)
            else f"lookalike: unexpected error: {type(exc).__name__}: {text}"
        )
        return 1


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (OSError: its reason and file name)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
