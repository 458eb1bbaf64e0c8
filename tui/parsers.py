"""What each ``lookalike`` command takes: the argument parsers of the commands and of the
app, with the ranges the engine's settings allow (:mod:`engine.settings`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from engine.settings import BATCH_RANGE, HASH_DIM_RANGE, INPUT_SIZES, NUM_PERM_RANGE

COMMANDS = ("index", "search", "triage", "models", "fashion-mnist")
BACKBONE_CHOICES = ("auto", "resnet50", "efficientnet-lite0")


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
        " with the same precision by class, see docs/PERFORMANCE.md)",
    )
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="follow symbolic links that lead out of DIR (default: stay inside DIR)",
    )


class CommandParser(argparse.ArgumentParser):
    """The parser of the commands, which knows each command's own parser (for its usage
    in errors)."""

    commands: Mapping[str, argparse.ArgumentParser]


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lookalike",
        description="Find visually similar images from the terminal.",
        epilog="Run 'lookalike DIR' for the app, or 'lookalike COMMAND --help'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = sub.choices
    _index_command(sub)
    _search_command(sub)
    _triage_command(sub)
    _models_command(sub)
    _fashion_mnist_command(sub)
    return parser


def _index_command(sub) -> None:
    """``lookalike index``: its options."""
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


def _search_command(sub) -> None:
    """``lookalike search``: its options."""
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
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON line per query")
    out.add_argument(
        "--csv",
        action="store_true",
        help="CSV rows: query,rank,path,score,word,why,query_b64,path_b64",
    )


def _triage_command(sub) -> None:
    """``lookalike triage``: its options."""
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
        " the copy rule decides; see docs/HOW-IT-WORKS.md)",
    )
    p.add_argument(
        "--outliers",
        type=_similarity,
        default=0.01,
        metavar="SHARE",
        help="share of images reported as outliers (default 0.01)",
    )
    labels = p.add_mutually_exclusive_group()
    labels.add_argument(
        "--labels-top",
        type=_positive,
        metavar="N",
        help="list the N pictures most likely filed in the wrong class folder, those between"
        " classes confused as a rule included (default: those scored at least 0.5)",
    )
    labels.add_argument(
        "--labels-min",
        type=_similarity,
        metavar="SCORE",
        help="list wrong labels scored at least SCORE, 0-1 (default 0.5: more likely wrong"
        " than right; lower asks for more)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object on stdout")
    out.add_argument(
        "--csv",
        action="store_true",
        help="CSV rows: group_id,path,role,score,sha256,why,path_b64,other,other_b64",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as one self-contained web page (pictures embedded, no"
        " script, no server) to share: groups, leaks, wrong labels, unusable pictures",
    )
    _triage_actions(p)
    p.add_argument(
        "--no-update", action="store_true", help="do not bring the index up to date first"
    )
    _add_index_options(p)


def _triage_actions(p: argparse.ArgumentParser) -> None:
    """What ``lookalike triage`` does besides reporting: one action at a time."""
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


def _models_command(sub) -> None:
    """``lookalike models``: its options."""
    p = sub.add_parser(
        "models",
        help="list backbones, their weights, and how each runs here",
        description="List the backbones, where their weights are, and which way of running"
        " each is fastest on this machine (measured once, then remembered).",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--runtime", choices=("auto", "onnx", "openvino", "torch"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto")
    p.add_argument(
        "--measure",
        action="store_true",
        help="time the ways of running each backbone again (say, after the machine was busy"
        " the first time)",
    )


def _fashion_mnist_command(sub) -> None:
    """``lookalike fashion-mnist``: its options."""
    p = sub.add_parser("fashion-mnist", help="write Fashion-MNIST as PNG files into DEST")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--split", choices=("train", "test", "all"), default="all")
    p.add_argument("--per-class", type=_positive, metavar="N", help="only N images per class")


def _add_keep_in(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-in",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of DIR whose files triage never moves and keeps first in their"
        " group (repeatable)",
    )


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
    parser.add_argument("--version", action="version", version=f"lookalike {_version()}")
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookalike")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"
