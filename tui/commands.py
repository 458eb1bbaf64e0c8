"""The headless commands and the app's launch: each turns parsed options into engine
calls, and hands what comes back to :mod:`tui.report` to print.

Errors: :class:`UsageError` (exit 2: a bad option, a missing folder or file) and
:class:`Failure` (exit 1: what the message explains); the engine's own errors are one
line too. Heavy modules (torch, the engine's search, Textual) are imported inside the
commands that need them, so ``lookalike --help`` and the app's first frame are quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.names import printable
from tui import report
from tui.errors import Failure, Terminated, UsageError


def settings_from(args: argparse.Namespace):
    """The options every command shares, as the engine's one settings object."""
    from engine.settings import Settings

    return Settings(
        backbone=args.backbone,
        weights=args.weights,
        hash_dim=args.hash_dim,
        num_perm=args.num_perm,
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        batch_size=args.batch_size,
        follow_links=args.follow_links,
        input_size=getattr(args, "input_size", None),
        index_path=args.index,
        store=getattr(args, "store", None),
        search_mode="exact" if getattr(args, "exact", False) else getattr(args, "mode", "auto"),
        prune=getattr(args, "prune", False),
    )


def kept_folders(root, given: list[str]) -> tuple[str, ...]:
    """``--keep-in`` folders relative to *root*, or a usage error."""
    if not given:
        return ()
    from engine.triage import kept_folder

    try:
        return tuple(kept_folder(Path(root).resolve(), f) for f in given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _warn_password_in_argv(args: argparse.Namespace) -> None:
    """A password written into ``--store`` shows in ``ps`` to every user of the machine."""
    import urllib.parse

    store = getattr(args, "store", None)
    if store and store != os.environ.get("LOOKALIKE_STORE"):
        try:
            has_password = urllib.parse.urlsplit(store).password is not None
        except ValueError:
            return
        if has_password:
            report.say(
                "lookalike: the password in --store is visible to other users (ps); set"
                " LOOKALIKE_STORE, LOOKALIKE_REDIS_PASSWORD or password_file= instead"
            )


def open_search(args: argparse.Namespace, rebuild: bool = False):
    from engine.search import ImageSimilaritySearch

    if not Path(args.dir).is_dir():
        raise UsageError(not_found("not a folder", args.dir))
    _warn_password_in_argv(args)
    return ImageSimilaritySearch(args.dir, settings=settings_from(args), rebuild=rebuild)


def not_found(what: str, given: str, folder: bool = True) -> str:
    """*what*: *given*, with what was probably meant beside it: where a *folder* is
    wanted, the folder holding a file given instead, else the closest name of the kind
    wanted (a typo)."""
    import difflib

    path = Path(given)
    parent = path.parent
    if folder and path.exists() and not path.is_dir():
        return f"{what}: {given} (a file; the folder it is in: {parent})"
    try:
        names = [e.name for e in os.scandir(parent) if e.is_dir() == folder]
    except (OSError, ValueError):  # no such parent, or one that cannot be listed
        names = []
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    hint = f" (did you mean {parent / close[0]}?)" if close else ""
    return f"{what}: {given}{hint}"


def cmd_index(args: argparse.Namespace) -> int:
    search = open_search(args, rebuild=args.rebuild)
    with search:
        stats = report.index_with_progress(search, quiet=args.json)
        note = search.encoder_note()
    if stats.readonly and stats.readonly_why == "disk full":
        from engine.storage import DiskFull

        raise Failure(str(DiskFull(stats.index_path)))
    if args.json:
        print(report.dumps(report.index_json(stats, note)))
    else:
        report.index_text(stats, note)
    return 0


def check_query(image: str) -> None:
    path = Path(image)
    if path.is_dir():
        raise UsageError(f"the query is a folder, not an image: {image}")
    if not path.is_file():
        raise UsageError(not_found("query image not found", image, folder=False))


def update_before_search(search) -> None:
    """Bring the index up to date, unless another process is doing it or it cannot be
    written: then search what is committed, and say so on stderr. A shared index is
    searched as it is: it is kept up to date by ``lookalike index`` workers, and a query
    should not turn into one."""
    from engine.storage import DiskFull, IndexBusy

    if search.store.shared:
        return
    try:
        stats = report.index_with_progress(search, quiet=True)
    except IndexBusy:
        report.say(
            "another lookalike process is updating this index:"
            " searching what it has committed so far"
        )
        return
    except DiskFull as exc:
        report.say(f"{exc}: searching what it held before")
        return
    if stats.readonly:
        if stats.pending:
            report.say(report.readonly_note(stats))
    elif stats.indexed:
        report.say(f"indexed {stats.indexed} new or changed images first")
    if stats.kept_gone:
        report.say(report.kept_note(stats))


def cmd_search(args: argparse.Namespace) -> int:
    for image in args.images:
        check_query(image)
    search = open_search(args)
    with search:
        if not args.no_update:
            update_before_search(search)
        fmt = "json" if args.json else "csv" if args.csv else ""
        words = report.SearchWords(search, Path(args.dir), fmt)
        for image in args.images:
            words.print(image, search.search(image, args.k))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from engine.encoding import chooser
    from engine.encoding.torch_cnn import (
        DeepImageEncoder,
        EncoderError,
        backbone_info,
        resolve_backbone,
    )

    auto = resolve_backbone("auto")
    for info in backbone_info():
        mark = "available" if info.available else "missing"
        default = "  (auto picks this)" if info.name == auto else ""
        print(f"{info.name:20s} {mark}{default}")
        print(f"  {info.feature_dim}-d features, {info.input_size} px input")
        print(f"  weights: {printable(info.weights or 'not on this machine')}")
        if not info.available or info.name == "resnet50":
            print(f"  get them: {info.how_to_get}")
        if info.available:
            if args.measure:  # forget this machine's timings: they are made again now
                chooser.forget(chooser.cache_key(info.name, info.input_size))
            try:
                enc = DeepImageEncoder(
                    backbone=info.name,
                    device=args.device,
                    precision=args.precision,
                    runtime=args.runtime,
                    on_step=lambda path, i, n: report.say(
                        f"lookalike: {chooser.step_text(path, i, n)}…"
                    ),
                )
            except EncoderError as exc:
                print(f"  runs here: cannot run ({printable(exc)})")
                continue
            print(f"  runs here as: {enc.choice.path.name} on {enc.device.type} ({enc.choice.why})")
    return 0


def cmd_fashion(args: argparse.Namespace) -> int:
    from engine.fashion import DatasetError, export

    splits = ("train", "test") if args.split == "all" else (args.split,)
    try:
        n = export(
            args.dest,
            splits,
            args.per_class,
            on_progress=lambda d, t: print(f"\r{d}/{t}", end="", file=sys.stderr),
        )
    except DatasetError as exc:
        raise Failure(str(exc)) from None
    print(f"\nwrote {n} new PNG files under {args.dest}", file=sys.stderr)
    return 0


def _has_pictures(folder: str, follow_links: bool, seconds: float = 2.0) -> bool:
    """Whether the walk finds a picture under *folder* (True as well when it has not
    finished within *seconds*: a big tree is worth opening)."""
    import time

    from engine.images import FileEntry, walk_images

    deadline = time.monotonic() + seconds
    for entry in walk_images(folder, follow_links):
        if isinstance(entry, FileEntry) or time.monotonic() > deadline:
            return True
    return False


def cmd_app(args: argparse.Namespace) -> int:
    folder = args.dir
    if folder is None:
        folder = "fashion-dataset" if Path("fashion-dataset").is_dir() else "."
    if not Path(folder).is_dir():
        raise UsageError(not_found("not a folder", folder))
    if args.query:
        check_query(args.query)
    fresh = not (args.store or args.index or (Path(folder) / ".lookalike").exists())
    if fresh and not _has_pictures(folder, args.follow_links):
        # nothing to search: say so, rather than open an empty app and make .lookalike/
        raise UsageError(
            f"no pictures under {Path(folder).resolve()}: give a folder of images (lookalike DIR)"
        )
    keep_in = kept_folders(folder, args.keep_in)
    if args.against and not Path(args.against).is_dir():
        raise UsageError(not_found("not a folder", args.against))
    from tui.app import create_app

    if (args.colors or os.environ.get("LOOKALIKE_COLORS")) == "truecolor":
        # the terminal has 24-bit colour though it does not say so (SSH drops COLORTERM):
        # Rich, which draws every frame, must not reduce colours to 256 either
        os.environ["COLORTERM"] = "truecolor"
    app = create_app(
        folder,
        query=args.query,
        settings=settings_from(args),
        pixels=args.pixels,
        colours=args.colors,
        keep_in=keep_in,
        against=args.against,
    )
    app.run()
    code = app.return_code or 0
    _leave_workers(143 if code == 143 else code)
    if code == 143:
        raise Terminated
    return code


def _leave_workers(code: int, seconds: float = 0.5) -> None:
    """Quit now, not when the index run notices the cancel (at its next batch, seconds
    away on a busy machine): every committed batch is safe on disk and the one under way
    would be lost anyway, so after *seconds* the process ends without waiting for it."""
    import threading
    import time

    deadline = time.monotonic() + seconds
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for t in others:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in others):
        if code == 143:
            report.say(Terminated.note)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
