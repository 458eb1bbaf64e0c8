"""``lookalike triage DIR``: the report (text, JSON, CSV, a page), and the actions it
takes on request (move the copies aside, undo, remember pairs that are no copies)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui import report
from tui.commands import kept_folders, not_found, open_search, update_before_search
from tui.errors import Failure, UsageError


def cmd_triage(args: argparse.Namespace) -> int:
    from engine.triage import DEFAULT_THRESHOLD, labels, triage

    if args.move_to is not None and not args.move_to.strip():
        raise UsageError("--move-to needs a folder to move the copies into")
    if args.dry_run and not args.move_to:
        raise UsageError("--dry-run shows what --move-to FOLDER would move: give both")
    if args.html is not None:
        _check_html_target(args.html)
    search = open_search(args)
    with search:
        if args.undo:
            return _undo(search)
        if args.not_duplicate or args.forget_rejections:
            return _rejections(search, args)
        keep_in = kept_folders(search.root, args.keep_in)
        if not args.no_update:
            update_before_search(search)
        found = triage(
            search,
            args.threshold or DEFAULT_THRESHOLD,
            args.outliers,
            keep_in=keep_in,
            labels_top=args.labels_top,
            labels_cut=args.labels_min if args.labels_min is not None else labels.CUT,
        )
        if args.against:
            found.leaks = _leaks(search, args)
        if args.html is not None:
            from tui import html

            test_root = Path(args.against).resolve() if args.against else None
            body = html.page(found, search.root, test_root, args.follow_links)
            report.say(f"wrote {html.write(args.html, body)}")
        if args.json:
            print(report.dumps(report.triage_json(found)))
        elif args.csv:
            report.triage_csv(found)
        elif not args.dry_run:
            report.triage_text(found)
        if args.move_to:
            return _move(search, found, args)
    return 0


def _check_html_target(given: str) -> None:
    """``--html FILE``: refused before any work when it cannot be written there."""
    target = Path(given)
    if not given.strip() or target.is_dir():
        raise UsageError(f"--html needs a file name, not a folder: {given}")
    if not target.parent.is_dir():
        raise UsageError(not_found("--html: no such folder", str(target.parent)))


def _leaks(search, args: argparse.Namespace) -> list:
    """``--against TEST``: TEST's index (made with DIR's backbone and code settings, and
    brought up to date), and the pictures of it that copy one of DIR's."""
    from engine.triage.leaks import leaks_against

    if not Path(args.against).is_dir():
        raise UsageError(not_found("not a folder", args.against))
    if Path(args.against).resolve() == search.root:
        raise UsageError("--against needs another folder than DIR")
    update = None if args.no_update else update_before_search
    try:
        return leaks_against(search, args.against, args.against_store, update)[0]
    except ValueError as exc:
        raise Failure(f"cannot compare {args.dir} with {args.against}: {exc}") from None


def _move(search, found, args: argparse.Namespace) -> int:
    """``--move-to`` (and ``--dry-run``): every movable duplicate, or the plan of it."""
    from engine.quarantine import MoveError, plan, set_aside

    planned = plan(found.movable(), args.move_to, found.kept_members())
    if args.dry_run:
        print(
            report.plan_text(planned, search.root),
            file=sys.stderr if args.json or args.csv else None,
        )
        return 0
    try:
        moved = set_aside(search, planned.paths, planned.folder, keep=found.keep())
    except MoveError as exc:
        raise Failure(str(exc)) from None
    for path, why in moved.skipped:
        report.say(f"not moved {path}: {why}")
    report.say(
        f"moved {report.count(len(moved.moved), 'duplicate')} into {moved.folder}"
        + (f", {len(moved.skipped)} could not be moved" if moved.skipped else "")
        + (" (lookalike triage DIR --undo puts them back)" if moved.moved else "")
    )
    return 1 if moved.skipped else 0


def _undo(search) -> int:
    from engine.quarantine import MoveError, undo_latest

    try:
        done = undo_latest(search)
    except MoveError as exc:
        raise Failure(str(exc)) from None
    for path, why in done.skipped:
        report.say(f"not put back {path}: {why}")
    if done.cleaned:
        report.say(
            f"removed {report.count(len(done.cleaned), 'copy', 'copies')} left by an"
            " interrupted move (same bytes)"
        )
    if done.lost:
        report.say(
            f"{report.count(len(done.lost), 'file')} of that move"
            f" {'is' if len(done.lost) == 1 else 'are'} in neither place: " + ", ".join(done.lost)
        )
    report.say(f"put back {report.count(len(done.moved), 'file')} from {done.folder}")
    return 0 if not done.skipped else 1


def _rejections(search, args: argparse.Namespace) -> int:
    """``--not-duplicate A B`` and ``--forget-rejections``: kept in the index."""
    from engine.triage.groups import forget_rejections, reject_pair

    if args.forget_rejections:
        n = forget_rejections(search)
        report.say(f"forgot {report.count(n, 'pair')} marked not duplicates")
        return 0
    rel = []
    for given in args.not_duplicate:
        path = Path(given)
        path = path if path.is_absolute() or path.exists() else search.root / path
        try:
            rel.append(path.resolve().relative_to(search.root).as_posix())
        except (ValueError, OSError):
            raise UsageError(f"not a picture under {search.root}: {given}") from None
        if rel[-1].split("/", 1)[0] == ".lookalike":
            raise UsageError(f"not a picture, a file of the index: {given}")
        if not (search.root / rel[-1]).is_file():
            raise UsageError(not_found("no such picture", given, folder=False))
    if rel[0] == rel[1]:
        raise UsageError(f"the same picture twice: {rel[0]}")
    try:
        reject_pair(search, rel[0], rel[1])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report.say(f"{rel[0]} and {rel[1]} will not be grouped again (--forget-rejections undoes it)")
    return 0
