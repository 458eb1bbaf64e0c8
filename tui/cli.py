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

Every path and message that came from the disk or an index is printed through
:func:`engine.names.printable`: control characters and undecodable bytes appear as
visible escapes, one result per line. ``--json`` output is plain UTF-8 JSON with no
NaN or Infinity; see :func:`engine.names.json_path` for names that are not UTF-8.

Heavy modules (torch, the engine's search, Textual) are imported inside the commands
that need them, so ``lookalike --help`` and the app's first frame are quick.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from engine.names import json_path, printable
from engine.settings import BATCH_RANGE, HASH_DIM_RANGE, INPUT_SIZES, NUM_PERM_RANGE

COMMANDS = ("index", "search", "triage", "models", "fashion-mnist")
BACKBONE_CHOICES = ("auto", "resnet50", "efficientnet-lite0")


class UsageError(Exception):
    """Exit status 2."""


class Failure(Exception):
    """Exit status 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (committed work is kept), exit status 143."""


def _whole(lo: int, hi: int | None = None):
    """An argparse type: a whole number from *lo* to *hi*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {span}: {value}")
        return value

    return parse


_positive = _whole(1)


def _similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1: {value}")
    return value


def _add_index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index", metavar="PATH", help="index file (default DIR/.lookalike/index.sqlite)"
    )
    p.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("LOOKALIKE_STORE") or None,
        help="where the index lives: sqlite:PATH (the default, local) or"
        " redis://[:PASSWORD@]HOST:PORT/DB?name=INDEX, one index shared by several"
        " machines (default $LOOKALIKE_STORE)",
    )
    p.add_argument(
        "--backbone",
        choices=BACKBONE_CHOICES,
        default="auto",
        help="CNN backbone (default auto: resnet50 if its weights are here, else efficientnet-lite0)",
    )
    p.add_argument("--weights", metavar="FILE", help="state-dict file for the backbone")
    p.add_argument(
        "--hash-dim", type=_whole(*HASH_DIM_RANGE), metavar="N", help="code size (default 128)"
    )
    p.add_argument(
        "--num-perm",
        type=_whole(*NUM_PERM_RANGE),
        metavar="N",
        help="MinHash permutations (default 128)",
    )
    p.add_argument(
        "--batch-size",
        type=_whole(*BATCH_RANGE),
        default=64,
        metavar="N",
        help="images per committed batch (default 64)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument(
        "--runtime",
        choices=("auto", "onnx", "openvino", "torch"),
        default="auto",
        help="how the CNN runs (default auto: the fastest measured on this machine)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="CNN precision for a new index (default auto: the fastest measured here; int8"
        " only where its features pass the quality guard)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        choices=INPUT_SIZES,
        help="pixels the CNN sees, for a new index (default 224; 192 is about 1.4x faster"
        " with the same precision by class, see README)",
    )
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="follow symbolic links that lead out of DIR (default: stay inside DIR)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Find visually similar images from the terminal.",
        epilog="Run 'lookalike DIR' for the app, or 'lookalike COMMAND --help'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="index a folder (incremental)")
    p.add_argument("dir", metavar="DIR")
    _add_index_options(p)
    p.add_argument("--rebuild", action="store_true", help="forget the index and start again")
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove files gone from DIR even when that is more than half of the index, or"
        " all of it (without it such a run keeps them: a missing mount looks the same)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")

    p = sub.add_parser("search", help="find the lookalikes of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--in", dest="dir", required=True, metavar="DIR", help="the indexed folder")
    p.add_argument(
        "-k", type=_positive, default=10, metavar="K", help="results per query (default 10)"
    )
    p.add_argument(
        "--mode",
        choices=("auto", "exact", "lsh"),
        default="auto",
        help="auto (default): the planner picks exact scoring or LSH and checks LSH's answer;"
        " exact: score every image; lsh: LSH candidates only, unchecked",
    )
    p.add_argument("--exact", action="store_true", help="the same as --mode exact")
    p.add_argument(
        "--no-update", action="store_true", help="do not bring the index up to date first"
    )
    _add_index_options(p)
    p.add_argument("--json", action="store_true", help="one JSON line per query")

    p = sub.add_parser(
        "triage",
        help="groups of copies (each with the reason), outliers and broken files",
        description="Bring DIR's index up to date, then report groups of copies (each"
        " member close to its group's representative), byte-identical copies, outliers and"
        " files that could not be read. Nothing is touched unless --move-to is given.",
    )
    p.add_argument("dir", metavar="DIR")
    _add_keep_in(p)
    p.add_argument(
        "--against",
        metavar="TEST",
        help="also report every picture of TEST (another folder, indexed too) that is a copy"
        " of one in DIR: a leak between training and test data",
    )
    p.add_argument(
        "--against-store",
        metavar="URL",
        help="where TEST's index lives (sqlite:PATH or redis://...; default TEST/.lookalike)",
    )
    p.add_argument(
        "--threshold",
        type=_similarity,
        metavar="T",
        help="also require this visual similarity of every grouped pair, 0-1 (default: none,"
        " the copy rule decides; see README)",
    )
    p.add_argument(
        "--outliers",
        type=_similarity,
        default=0.01,
        metavar="SHARE",
        help="share of images reported as outliers (default 0.01)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object on stdout")
    out.add_argument(
        "--csv",
        action="store_true",
        help="CSV rows: group_id,path,role,score,sha256,why,path_b64,other,other_b64",
    )
    act = p.add_mutually_exclusive_group()
    act.add_argument(
        "--move-to",
        metavar="FOLDER",
        help="move every duplicate (not the representatives) into FOLDER, keeping paths",
    )
    act.add_argument("--undo", action="store_true", help="put back the files of the last move")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with --move-to: print what would move (and from which folders), move nothing",
    )
    act.add_argument(
        "--not-duplicate",
        nargs=2,
        metavar=("A", "B"),
        help="remember that pictures A and B are not copies: never group them again",
    )
    act.add_argument(
        "--forget-rejections",
        action="store_true",
        help="forget every pair marked with --not-duplicate (or n in the app)",
    )
    p.add_argument(
        "--no-update", action="store_true", help="do not bring the index up to date first"
    )
    _add_index_options(p)

    p = sub.add_parser(
        "models",
        help="list backbones, their weights, and how each runs here",
        description="List the backbones, where their weights are, and which way of running"
        " each is fastest on this machine (measured once, then remembered).",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--runtime", choices=("auto", "onnx", "openvino", "torch"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto")

    p = sub.add_parser("fashion-mnist", help="write Fashion-MNIST as PNG files into DEST")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--split", choices=("train", "test", "all"), default="all")
    p.add_argument("--per-class", type=_positive, metavar="N", help="only N images per class")
    return parser


def _add_keep_in(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-in",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of DIR whose files triage never moves and keeps first in their"
        " group (repeatable)",
    )


def _kept_folders(root, given: list[str]) -> tuple[str, ...]:
    """``--keep-in`` folders relative to *root*, or a usage error."""
    from engine.triage import kept_folder

    try:
        return tuple(kept_folder(Path(root).resolve(), f) for f in given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Open the lookalike app on DIR. Other commands: "
        + ", ".join(COMMANDS)
        + " (see 'lookalike COMMAND --help').",
    )
    parser.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        help="image folder (default ./fashion-dataset if it exists, else .)",
    )
    parser.add_argument("--query", metavar="IMAGE", help="open with this image's lookalikes")
    _add_keep_in(parser)
    parser.add_argument(
        "--against",
        metavar="TEST",
        help="triage also shows the pictures of TEST that copy one of DIR (leaks)",
    )
    parser.add_argument(
        "--pixels",
        choices=("auto", "halfblock", "quadrant", "sextant", "kitty"),
        default=None,
        help="how pictures are drawn: auto (half-blocks, any terminal), quadrant (2x2"
        " pixels per cell), sextant (2x3, fonts with Unicode 13 sextants), kitty (the kitty"
        " graphics protocol) (default $LOOKALIKE_PIXELS, else auto)",
    )
    parser.add_argument(
        "--colors",
        choices=("auto", "truecolor", "256"),
        default=None,
        help="auto (24-bit when the terminal says so in COLORTERM, else 256 colours,"
        " dithered), truecolor or 256 (default $LOOKALIKE_COLORS, else auto)",
    )
    _add_index_options(parser)
    return parser


def _settings(args: argparse.Namespace):
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
            _say(
                "lookalike: the password in --store is visible to other users (ps); set"
                " LOOKALIKE_STORE, LOOKALIKE_REDIS_PASSWORD or password_file= instead"
            )


def _open_search(args: argparse.Namespace, rebuild: bool = False):
    from engine.search import ImageSimilaritySearch

    if not Path(args.dir).is_dir():
        raise UsageError(_not_found("not a folder", args.dir))
    _warn_password_in_argv(args)
    return ImageSimilaritySearch(args.dir, settings=_settings(args), rebuild=rebuild)


def _run_index(search, quiet: bool):
    """Index with a rich progress bar on stderr when it is a terminal."""
    cancel = threading.Event()
    if quiet or not sys.stderr.isatty():
        said = [0.0]

        def on_progress(p) -> None:  # no bar: only say why a run is waiting, every 10 s
            import time

            if p.phase == "waiting" and time.monotonic() - said[0] >= 10:
                said[0] = time.monotonic()
                _say(f"lookalike: waiting for {p.current}")

        try:
            return search.index(on_progress=on_progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} img/s"),
        TimeRemainingColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=None, rate=0.0, failed=0)

        def on_progress(p) -> None:
            bar.update(
                task,
                description=p.phase,
                completed=p.done,
                total=p.total or None,
                rate=p.images_per_s,
                failed=p.failed,
            )

        return search.index(on_progress=on_progress, cancel=cancel)


def _dumps(obj: object) -> str:
    """JSON for scripts: strict (no NaN or Infinity), ASCII-safe."""
    return json.dumps(obj, allow_nan=False)


def _not_found(what: str, given: str) -> str:
    """*what*: *given*, with the closest name beside it when there is one (a typo)."""
    import difflib

    path = Path(given)
    parent = path.parent
    try:
        names = [e.name for e in os.scandir(parent)] if parent.is_dir() else []
    except OSError:
        names = []
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    hint = f" (did you mean {parent / close[0]}?)" if close else ""
    return f"{what}: {given}{hint}"


def _say(text: str) -> None:
    """One line on stderr, with whatever came from the disk escaped."""
    print(printable(text), file=sys.stderr)


def _readonly_note(stats) -> str:
    pending = (
        f"; {stats.pending} files are new, changed or gone since it was written"
        " (pass --index PATH to write an up-to-date index elsewhere)"
        if stats.pending
        else "; it is up to date"
    )
    where = "a full disk" if stats.readonly_why == "disk full" else "read-only media"
    return (
        f"the index {stats.index_path} is on {where}: it is used as it is"
        f" ({stats.total} images){pending}"
    )


def cmd_index(args: argparse.Namespace) -> int:
    search = _open_search(args, rebuild=args.rebuild)
    with search:
        stats = _run_index(search, quiet=args.json)
        note = search.encoder_note()
    if stats.readonly and stats.readonly_why == "disk full":
        from engine.storage import DiskFull

        raise Failure(str(DiskFull(stats.index_path)))
    if args.json:
        print(
            _dumps(
                {
                    "indexed": stats.indexed,
                    "unchanged": stats.unchanged,
                    "removed": stats.removed,
                    "skipped": len(stats.failed),
                    "failed": [{**json_path(f.path), "reason": f.reason} for f in stats.failed],
                    "total": stats.total,
                    "seconds": round(stats.seconds, 3),
                    "images_per_s": round(stats.images_per_s, 2),
                    "backbone": stats.backbone,
                    "encoder": note,
                    "readonly": stats.readonly,
                    "pending": stats.pending,
                    "kept_gone": stats.kept_gone,
                    "store": stats.store,
                    **json_path(stats.index_path, "index"),
                }
            )
        )
        return 0
    for f in stats.failed:
        _say(f"skipped {f.path}: {f.reason}")
    if stats.readonly:
        _say(_readonly_note(stats))
        return 0
    _say(
        f"{stats.total} images in the index ({stats.indexed} encoded"
        + (" by this worker" if "shared" in stats.store else "")
        + f", {stats.unchanged} unchanged,"
        f" {stats.removed} removed, {len(stats.failed)} skipped) in {stats.seconds:.1f} s"
        f" [{stats.images_per_s:.1f} img/s, {stats.backbone}]"
        + (" (cancelled: what was committed is kept)" if stats.cancelled else "")
    )
    if note:
        _say(f"CNN: {note}")
    _say(f"index: {stats.index_path} ({stats.store})")
    if stats.kept_gone:
        _say(_kept_note(stats))
    return 0


def _kept_note(stats) -> str:
    why = "no image was found there" if not stats.found else "that is more than half the index"
    return (
        f"{stats.kept_gone} indexed files are gone from the folder but were kept ({why}:"
        " is a disk unmounted or the folder mistyped?); lookalike index DIR --prune removes"
        " them"
    )


def _check_query(image: str) -> None:
    path = Path(image)
    if path.is_dir():
        raise UsageError(f"the query is a folder, not an image: {image}")
    if not path.is_file():
        raise UsageError(_not_found("query image not found", image))


def _update_before_search(search) -> None:
    """Bring the index up to date, unless another process is doing it or it cannot be
    written: then search what is committed, and say so on stderr. A shared index is
    searched as it is: it is kept up to date by ``lookalike index`` workers, and a query
    should not turn into one."""
    from engine.storage import DiskFull, IndexBusy

    if search.store.shared:
        return
    try:
        stats = _run_index(search, quiet=True)
    except IndexBusy:
        _say(
            "another lookalike process is updating this index:"
            " searching what it has committed so far"
        )
        return
    except DiskFull as exc:
        _say(f"{exc}: searching what it held before")
        return
    if stats.readonly:
        if stats.pending:
            _say(_readonly_note(stats))
    elif stats.indexed:
        _say(f"indexed {stats.indexed} new or changed images first")
    if stats.kept_gone:
        _say(_kept_note(stats))


def cmd_search(args: argparse.Namespace) -> int:
    for image in args.images:
        _check_query(image)
    search = _open_search(args)
    with search:
        if not args.no_update:
            _update_before_search(search)
        root = Path(args.dir)
        for image in args.images:
            result = search.search(image, args.k)
            rows = [(m.rank, str(root / m.path), m.score) for m in result.matches]
            if args.json:
                print(
                    _dumps(
                        {
                            **json_path(image, "query"),
                            "mode": result.mode,
                            "results": [
                                {"rank": r, **json_path(p), "score": round(s, 6)}
                                for r, p, s in rows
                            ],
                        }
                    ),
                    flush=True,
                )
            else:
                print(
                    f"{printable(image)}  ({result.mode},"
                    f" {result.candidates} of {result.indexed} scored)"
                )
                for r, p, s in rows:
                    print(f"{r:4d}  {s:6.3f}  {printable(p)}")
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    from engine.triage import DEFAULT_THRESHOLD, triage

    if args.dry_run and not args.move_to:
        raise UsageError("--dry-run shows what --move-to FOLDER would move: give both")
    search = _open_search(args)
    with search:
        if args.undo:
            return _undo(search)
        if args.not_duplicate or args.forget_rejections:
            return _rejections(search, args)
        keep_in = _kept_folders(search.root, args.keep_in)
        if not args.no_update:
            _update_before_search(search)
        report = triage(search, args.threshold or DEFAULT_THRESHOLD, args.outliers, keep_in=keep_in)
        if args.against:
            report.leaks = _leaks(search, args)
        if args.json:
            print(_dumps(_triage_json(report)))
        elif args.csv:
            _triage_csv(report)
        elif not args.dry_run:
            _triage_text(report)
        if args.move_to:
            return _move(search, report, args)
    return 0


def _leaks(search, args: argparse.Namespace) -> list:
    """``--against TEST``: TEST's index (made with DIR's backbone and code settings, and
    brought up to date), and the pictures of it that copy one of DIR's."""
    from engine.leaks import find_leaks, open_against

    if not Path(args.against).is_dir():
        raise UsageError(_not_found("not a folder", args.against))
    if Path(args.against).resolve() == search.root:
        raise UsageError("--against needs another folder than DIR")
    test = open_against(search, args.against, args.against_store)
    with test:
        if not args.no_update:
            _update_before_search(test)
        try:
            return find_leaks(search, test)
        except ValueError as exc:
            raise Failure(f"cannot compare {args.dir} with {args.against}: {exc}") from None


def _move(search, report, args: argparse.Namespace) -> int:
    """``--move-to`` (and ``--dry-run``): every movable duplicate, or the plan of it."""
    from engine.quarantine import MoveError, plan

    planned = plan(report.movable(), args.move_to, report.kept_members())
    if args.dry_run:
        print(_plan_text(planned, search.root), file=sys.stderr if args.json or args.csv else None)
        return 0
    try:
        moved = search.move_aside(planned.paths, planned.folder)
    except MoveError as exc:
        raise Failure(str(exc)) from None
    for path, why in moved.skipped:
        _say(f"not moved {path}: {why}")
    _say(
        f"moved {len(moved.moved)} duplicates into {moved.folder}"
        + (f", {len(moved.skipped)} could not be moved" if moved.skipped else "")
        + " (lookalike triage DIR --undo puts them back)"
    )
    return 1 if moved.skipped else 0


def _plan_text(planned, root) -> str:
    lines = planned.summary(root)
    lines += ["", *(printable(p) for p in planned.paths)] if planned.paths else []
    return "\n".join(lines)


def _undo(search) -> int:
    from engine.quarantine import MoveError

    try:
        done = search.undo_move()
    except MoveError as exc:
        raise Failure(str(exc)) from None
    for path, why in done.skipped:
        _say(f"not put back {path}: {why}")
    if done.cleaned:
        _say(f"removed {len(done.cleaned)} copies left by an interrupted move (same bytes)")
    if done.lost:
        _say(f"{len(done.lost)} files of that move are in neither place: " + ", ".join(done.lost))
    _say(f"put back {len(done.moved)} files from {done.folder}")
    return 0 if not done.skipped else 1


def _rejections(search, args: argparse.Namespace) -> int:
    """``--not-duplicate A B`` and ``--forget-rejections``: kept in the index."""
    if args.forget_rejections:
        n = search.store.forget_rejections()
        _say(f"forgot {n} pairs marked not duplicates")
        return 0
    rel = []
    for given in args.not_duplicate:
        path = Path(given)
        path = path if path.is_absolute() or path.exists() else search.root / path
        try:
            rel.append(path.resolve().relative_to(search.root).as_posix())
        except (ValueError, OSError):
            raise UsageError(f"not a picture under {search.root}: {given}") from None
        if not (search.root / rel[-1]).is_file():
            raise UsageError(f"no such picture: {given}")
    search.store.reject(*rel)
    _say(f"{rel[0]} and {rel[1]} will not be grouped again (--forget-rejections undoes it)")
    return 0


def _triage_json(report) -> dict:
    def member(m) -> dict:
        return {
            **json_path(m.path),
            "score": round(m.score, 6),
            "identical": m.identical,
            "kept": m.kept,
            "why": m.why,
        }

    return {
        "threshold": report.threshold,
        "keep_in": list(report.keep_in),
        "candidates": report.candidates,
        "verified": report.verified,
        "images": report.images,
        "groups": [
            {
                "id": g.id,
                **json_path(g.representative.path, "representative"),
                "members": [member(m) for m in g.members],
            }
            for g in report.groups
        ],
        "outliers": [
            {**json_path(o.path), "score": round(o.score, 6), **json_path(o.neighbour, "nearest")}
            for o in report.outliers
        ],
        "broken": [{**json_path(b.path), "reason": b.reason} for b in report.broken],
        "leaks": [
            {
                **json_path(x.path),
                **json_path(x.other, "other"),
                "score": round(x.score, 6),
                "identical": x.identical,
                "why": x.why,
            }
            for x in report.leaks
        ],
        "mislabeled": [
            {
                **json_path(m.path),
                **json_path(m.folder, "folder"),
                **json_path(m.suggested, "suggested"),
                "confidence": m.confidence,
                "neighbours": [json_path(x)["path"] for x in m.neighbours],
            }
            for m in report.mislabeled
        ],
        "quality": [
            {**json_path(u.path), "flags": list(u.flags), "values": u.values}
            for u in report.unusable
        ],
        "notes": report.notes,
        "method": report.method,
        "seconds": round(report.seconds, 3),
    }


def csv_cell(text: str) -> str:
    """A cell that came from the disk, fit for a terminal and a spreadsheet: control
    characters and undecodable bytes escaped as in plain output, and a leading ``=``,
    ``+``, ``-``, ``@``, tab or carriage return neutralised with ``'`` (OWASP's advice on
    CSV injection: such a cell would be a live formula)."""
    shown = printable(text)
    return "'" + shown if shown[:1] in ("=", "+", "-", "@", "\t", "\r") else shown


def _triage_csv(report) -> None:
    import base64
    import csv

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(
        ["group_id", "path", "role", "score", "sha256", "why", "path_b64", "other", "other_b64"]
    )

    def exact(path: str) -> str:
        return "" if printable(path) == path else base64.b64encode(os.fsencode(path)).decode()

    def row(group, path: str, role: str, score: str, sha: str, why: str, other: str = "") -> None:
        cells = [group, csv_cell(path), role, score, sha, csv_cell(why), exact(path)]
        out.writerow(cells + [csv_cell(other), exact(other)])

    for g in report.groups:
        rep = g.representative
        row(g.id, rep.path, "representative", "1.000000", rep.sha256 or "", "")
        for m in g.members:
            role = "kept" if m.kept else "identical" if m.identical else "duplicate"
            row(g.id, m.path, role, f"{m.score:.6f}", m.sha256 or "", m.why)
    for o in report.outliers:
        row("", o.path, "outlier", f"{o.score:.6f}", "", "", o.neighbour)
    for b in report.broken:
        row("", b.path, "broken", "", "", b.reason)
    for x in report.leaks:
        row("", x.path, "leak", f"{x.score:.6f}", "", x.why, x.other)
    for m in report.mislabeled:
        row("", m.path, "mislabeled", f"{m.confidence:.6f}", "", m.folder, m.suggested)
    for u in report.unusable:
        row("", u.path, "quality", "", "", " ".join(u.flags))


def _triage_text(report) -> None:
    groups = report.groups
    floor = f", visual similarity ≥ {report.threshold:.2f}" if report.threshold else ""
    print(
        f"{len(groups)} groups of copies: {report.duplicates} images could go"
        f" ({report.images} images{floor}; {report.candidates} candidate pairs,"
        f" {report.verified} verified by local features; {report.seconds:.1f} s)"
    )
    for g in groups:
        rep = g.representative
        print(f"\ngroup {g.id}: keep {printable(rep.path)}  ({rep.pixels:,} px)")
        for m in g.members:
            mark = "kept " if m.kept else "=    " if m.identical else "     "
            print(f"  {mark}{m.score:6.3f}  {printable(m.path)}  ({m.why})")
    if report.outliers:
        print(f"\n{len(report.outliers)} outliers (least like anything else):")
        for o in report.outliers:
            print(f"  {o.score:6.3f}  {printable(o.path)}  (nearest: {printable(o.neighbour)})")
    if report.broken:
        print(f"\n{len(report.broken)} broken files:")
        for b in report.broken:
            print(f"  {printable(b.path)}: {printable(b.reason)}")
    if report.leaks:
        print(f"\n{len(report.leaks)} leaks (pictures of the other folder that copy one here):")
        for x in report.leaks:
            print(f"  {x.score:6.3f}  {printable(x.other)}  copies  {printable(x.path)}  ({x.why})")
    if report.mislabeled:
        print(f"\n{len(report.mislabeled)} suspected wrong labels (confidence, now → suggested):")
        for m in report.mislabeled:
            print(
                f"  {m.confidence:5.2f}  {printable(m.path)}"
                f"  {printable(m.folder)} → {printable(m.suggested)}"
            )
    if report.unusable:
        print(f"\n{len(report.unusable)} pictures hard to learn from:")
        for u in report.unusable:
            print(f"  {' '.join(u.flags):20s}  {printable(u.path)}")
    for note in report.notes:
        _say(note)


def cmd_models(args: argparse.Namespace) -> int:
    from engine.encoder import DeepImageEncoder, EncoderError, backbone_info, resolve_backbone

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
            try:
                enc = DeepImageEncoder(
                    backbone=info.name,
                    device=args.device,
                    precision=args.precision,
                    runtime=args.runtime,
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


def cmd_app(argv: list[str]) -> int:
    args = build_app_parser().parse_args(argv)
    folder = args.dir
    if folder is None:
        folder = "fashion-dataset" if Path("fashion-dataset").is_dir() else "."
    if not Path(folder).is_dir():
        raise UsageError(_not_found("not a folder", folder))
    if args.query:
        _check_query(args.query)
    keep_in = _kept_folders(folder, args.keep_in)
    if args.against and not Path(args.against).is_dir():
        raise UsageError(_not_found("not a folder", args.against))
    from tui.app import create_app

    if (args.colors or os.environ.get("LOOKALIKE_COLORS")) == "truecolor":
        # the terminal has 24-bit colour though it does not say so (SSH drops COLORTERM):
        # Rich, which draws every frame, must not reduce colours to 256 either
        os.environ["COLORTERM"] = "truecolor"
    app = create_app(
        folder,
        query=args.query,
        settings=_settings(args),
        pixels=args.pixels,
        colours=args.colors,
        keep_in=keep_in,
        against=args.against,
    )
    app.run()
    if app.return_code == 143:
        raise Terminated
    return app.return_code or 0


def _on_sigterm(_signum, _frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if argv and argv[0] in COMMANDS:
            args = build_parser().parse_args(argv)
            handler = {
                "index": cmd_index,
                "search": cmd_search,
                "triage": cmd_triage,
                "models": cmd_models,
                "fashion-mnist": cmd_fashion,
            }[args.command]
            return handler(args)
        if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
            build_parser().print_help()
            print("\n" + build_app_parser().format_usage().strip())
            return 0
        return cmd_app(argv)
    except SystemExit as exc:  # argparse: 2 for usage, 0 for --help
        return int(exc.code or 0)
    except Terminated:
        _say("lookalike: terminated (work committed before the signal is kept)")
        return 143
    except KeyboardInterrupt:
        _say("lookalike: interrupted (work committed before the interruption is kept)")
        return 130
    except UsageError as exc:
        _say(f"lookalike: {exc}")
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
        _say(
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
