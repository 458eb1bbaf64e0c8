"""The ``lookalike`` command: the app, and headless commands fit for scripts.

    lookalike [DIR] [--query IMAGE]        open the app (default DIR: ./fashion-dataset or .)
    lookalike index DIR [options]          bring DIR's index up to date
    lookalike search IMAGE... --in DIR     print each query's lookalikes
    lookalike models                       backbones and whether their weights are here
    lookalike fashion-mnist DEST           write Fashion-MNIST (Debian package) as PNGs

Exit status: 0 success, 1 a failure the message explains (unreadable index, missing
weights, mismatched settings), 2 a usage error (bad option, missing folder or file),
130 interrupted. Errors are one line on stderr, never a traceback.

Heavy modules (torch, the engine's search, Textual) are imported inside the commands
that need them, so ``lookalike --help`` and the app's first frame are quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

COMMANDS = ("index", "search", "models", "fashion-mnist")
BACKBONE_CHOICES = ("auto", "resnet50", "efficientnet-lite0")


class UsageError(Exception):
    """Exit status 2."""


class Failure(Exception):
    """Exit status 1."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _add_index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index", metavar="PATH", help="index file (default DIR/.lookalike/index.sqlite)"
    )
    p.add_argument(
        "--backbone",
        choices=BACKBONE_CHOICES,
        default="auto",
        help="CNN backbone (default auto: resnet50 if its weights are here, else efficientnet-lite0)",
    )
    p.add_argument("--weights", metavar="FILE", help="state-dict file for the backbone")
    p.add_argument("--hash-dim", type=_positive, metavar="N", help="code size (default 128)")
    p.add_argument(
        "--num-perm", type=_positive, metavar="N", help="MinHash permutations (default 128)"
    )
    p.add_argument(
        "--batch-size", type=_positive, default=64, metavar="N", help="CNN batch (default 64)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


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
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")

    p = sub.add_parser("search", help="find the lookalikes of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--in", dest="dir", required=True, metavar="DIR", help="the indexed folder")
    p.add_argument(
        "-k", type=_positive, default=10, metavar="K", help="results per query (default 10)"
    )
    p.add_argument(
        "--exact", action="store_true", help="rank every stored image, not LSH candidates"
    )
    p.add_argument(
        "--no-update", action="store_true", help="do not bring the index up to date first"
    )
    _add_index_options(p)
    p.add_argument("--json", action="store_true", help="one JSON line per query")

    sub.add_parser("models", help="list backbones and their weights")

    p = sub.add_parser("fashion-mnist", help="write Fashion-MNIST as PNG files into DEST")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--split", choices=("train", "test", "all"), default="all")
    p.add_argument("--per-class", type=_positive, metavar="N", help="only N images per class")
    return parser


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
    _add_index_options(parser)
    return parser


def _engine_options(args: argparse.Namespace) -> dict:
    """The options every command shares, as ImageSimilaritySearch keywords."""
    return {
        "backbone": args.backbone,
        "hash_dim": args.hash_dim,
        "num_perm": args.num_perm,
        "weights": args.weights,
        "device": args.device,
        "batch_size": args.batch_size,
    }


def _open_search(args: argparse.Namespace, rebuild: bool = False):
    from engine.search import ImageSimilaritySearch

    if not Path(args.dir).is_dir():
        raise UsageError(f"not a folder: {args.dir}")
    return ImageSimilaritySearch(args.dir, args.index, rebuild=rebuild, **_engine_options(args))


def _run_index(search, quiet: bool):
    """Index with a rich progress bar on stderr when it is a terminal."""
    cancel = threading.Event()
    if quiet or not sys.stderr.isatty():
        try:
            return search.index(cancel=cancel)
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


def cmd_index(args: argparse.Namespace) -> int:
    search = _open_search(args, rebuild=args.rebuild)
    with search:
        stats = _run_index(search, quiet=args.json)
    if args.json:
        print(
            json.dumps(
                {
                    "indexed": stats.indexed,
                    "unchanged": stats.unchanged,
                    "removed": stats.removed,
                    "skipped": len(stats.failed),
                    "failed": [{"path": f.path, "reason": f.reason} for f in stats.failed],
                    "total": stats.total,
                    "seconds": round(stats.seconds, 3),
                    "images_per_s": round(stats.images_per_s, 2),
                    "backbone": stats.backbone,
                    "index": stats.index_path,
                }
            )
        )
    else:
        err = sys.stderr
        for f in stats.failed:
            print(f"skipped {f.path}: {f.reason}", file=err)
        print(
            f"{stats.total} images in the index ({stats.indexed} encoded, {stats.unchanged} unchanged,"
            f" {stats.removed} removed, {len(stats.failed)} skipped) in {stats.seconds:.1f} s"
            f" [{stats.images_per_s:.1f} img/s, {stats.backbone}]\nindex: {stats.index_path}",
            file=err,
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    for image in args.images:
        if not Path(image).is_file():
            raise UsageError(f"query image not found: {image}")
    search = _open_search(args)
    with search:
        if not args.no_update:
            stats = _run_index(search, quiet=True)
            if stats.indexed and not args.json:
                print(f"indexed {stats.indexed} new or changed images first", file=sys.stderr)
        root = Path(args.dir)
        for image in args.images:
            result = search.search(image, args.k, exact=args.exact)
            rows = [(m.rank, str(root / m.path), m.score) for m in result.matches]
            if args.json:
                print(
                    json.dumps(
                        {
                            "query": image,
                            "mode": result.mode,
                            "results": [
                                {"rank": r, "path": p, "score": round(s, 6)} for r, p, s in rows
                            ],
                        }
                    ),
                    flush=True,
                )
            else:
                print(f"{image}  ({result.mode}, {result.candidates} of {result.indexed} scored)")
                for r, p, s in rows:
                    print(f"{r:4d}  {s:6.3f}  {p}")
    return 0


def cmd_models(_args: argparse.Namespace) -> int:
    from engine.encoder import backbone_info, resolve_backbone

    auto = resolve_backbone("auto")
    for info in backbone_info():
        mark = "available" if info.available else "missing"
        default = "  (auto picks this)" if info.name == auto else ""
        print(f"{info.name:20s} {mark}{default}")
        print(f"  {info.feature_dim}-d features, {info.input_size} px input")
        print(f"  weights: {info.weights or 'not on this machine'}")
        if not info.available or info.name == "resnet50":
            print(f"  get them: {info.how_to_get}")
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
        raise UsageError(f"not a folder: {folder}")
    if args.query and not Path(args.query).is_file():
        raise UsageError(f"query image not found: {args.query}")
    from tui.app import create_app

    app = create_app(folder, query=args.query, index_path=args.index, **_engine_options(args))
    app.run()
    return app.return_code or 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            args = build_parser().parse_args(argv)
            handler = {
                "index": cmd_index,
                "search": cmd_search,
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
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line, never a traceback
        from engine.errors import LookalikeError

        known = (Failure, LookalikeError, OSError)
        if not isinstance(exc, known) and os.environ.get("LOOKALIKE_DEBUG"):
            raise
        print(
            f"lookalike: {exc}"
            if isinstance(exc, known)
            else f"lookalike: unexpected error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
