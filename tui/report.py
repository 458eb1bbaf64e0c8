"""What the headless commands print: JSON for scripts, CSV for spreadsheets, text for
people, and the progress bar on stderr.

Every path and message that came from the disk or an index goes through
:func:`engine.names.printable` (plain text, CSV) or :func:`engine.names.json_path`
(JSON): control characters and undecodable bytes appear as visible escapes, one result
per line. JSON is strict (no NaN or Infinity).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from engine.names import count, json_path, printable


def say(text: str) -> None:
    """One line on stderr, with whatever came from the disk escaped."""
    print(printable(text), file=sys.stderr)


def dumps(obj: object) -> str:
    """JSON for scripts: strict (no NaN or Infinity), ASCII-safe."""
    return json.dumps(obj, allow_nan=False)


def index_with_progress(search, quiet: bool):
    """Index with a rich progress bar on stderr when it is a terminal."""
    cancel = threading.Event()
    if quiet or not sys.stderr.isatty():
        said = [0.0]

        def on_progress(p) -> None:  # no bar: say why a run waits (every 10 s) or times
            import time

            if p.phase == "waiting" and time.monotonic() - said[0] >= 10:
                said[0] = time.monotonic()
                say(f"lookalike: waiting for {p.current}")
            elif p.phase == "preparing" and p.total:
                say(f"lookalike: {p.current}…")

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
        TextColumn("{task.description}", style="bold", markup=False),
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
                description=p.current if p.phase == "preparing" else p.phase,
                completed=p.done,
                total=p.total or None,
                rate=p.images_per_s,
                failed=p.failed,
            )

        return search.index(on_progress=on_progress, cancel=cancel)


def readonly_note(stats) -> str:
    pending = (
        f"; {count(stats.pending, 'file')} new, changed or gone since it was written"
        " (pass --index PATH to write an up-to-date index elsewhere)"
        if stats.pending
        else "; it is up to date"
    )
    where = "a full disk" if stats.readonly_why == "disk full" else "read-only media"
    return (
        f"the index {stats.index_path} is on {where}: it is used as it is"
        f" ({count(stats.total, 'image')}){pending}"
    )


def kept_note(stats) -> str:
    why = "no image was found there" if not stats.found else "that is more than half the index"
    return (
        f"{stats.kept_gone} indexed files are gone from the folder but were kept ({why}:"
        " is a disk unmounted or the folder mistyped?); lookalike index DIR --prune removes"
        " them"
    )


def index_json(stats, note: str) -> dict:
    """What ``lookalike index --json`` prints."""
    return {
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


def index_text(stats, note: str) -> None:
    """What ``lookalike index`` says on stderr: skips, then one summary."""
    for f in stats.failed:
        say(f"skipped {f.path}: {f.reason}")
    if stats.readonly:
        say(readonly_note(stats))
        return
    say(
        f"{count(stats.total, 'image')} in the index ({stats.indexed} encoded"
        + (" by this worker" if "shared" in stats.store else "")
        + f", {stats.unchanged} unchanged,"
        f" {stats.removed} removed, {len(stats.failed)} skipped) in {stats.seconds:.1f} s"
        f" [{stats.images_per_s:.1f} img/s, {stats.backbone}]"
        + (" (cancelled: what was committed is kept)" if stats.cancelled else "")
    )
    if note:
        say(f"CNN: {note}")
    say(f"index: {stats.index_path} ({stats.store})")
    if stats.kept_gone:
        say(kept_note(stats))


class SearchWords:
    """Each query's lookalikes on stdout, each score with its word: ``copy`` (and why)
    for a pair the last triage verified, else the collection's word for the score
    (:mod:`engine.labels`). Paths are shown under *root* as the user gave it. *fmt*: ""
    (a header and a line each), "json" (a line per query) or "csv" (a header, then a
    row per result)."""

    def __init__(self, search, root: Path, fmt: str = "") -> None:
        from engine.labels import measure
        from engine.triage.known import known_copies

        self.root, self.fmt = root, fmt
        self.scale, self.known = measure(search), known_copies(search)
        if fmt == "csv":
            import csv

            self.csv = csv.writer(sys.stdout, lineterminator="\n")
            self.csv.writerow(
                ["query", "rank", "path", "score", "word", "why", "query_b64", "path_b64"]
            )

    def print(self, image: str, result) -> None:
        from engine.labels import word_for

        q = result.query_path
        rows = [
            (m.rank, str(self.root / m.path), m.score, *word_for(self.scale, self.known, q, m.path, m.score))
            for m in result.matches
        ]  # fmt: skip
        if self.fmt == "json":
            results = [
                {"rank": r, **json_path(p), "score": round(s, 6), "word": w, "why": why or None}
                for r, p, s, w, why in rows
            ]
            line = {**json_path(image, "query"), "mode": result.mode, "results": results}
            print(dumps(line), flush=True)
        elif self.fmt == "csv":
            for r, p, s, w, why in rows:
                self.csv.writerow(
                    [csv_cell(image), r, csv_cell(p), f"{s:.6f}", w, csv_cell(why)]
                    + [exact_bytes(image), exact_bytes(p)]
                )
            sys.stdout.flush()
        else:
            head = f"({result.mode}, {result.candidates} of {result.indexed} scored)"
            print(f"{printable(image)}  {head}")
            for r, p, s, w, why in rows:
                tail = f"  ({why})" if why else ""
                print(f"{r:4d}  {s:6.3f}  {w:<12}  {printable(p)}{tail}")


def plan_text(planned, root) -> str:
    lines = planned.summary(root)
    lines += ["", *(printable(p) for p in planned.paths)] if planned.paths else []
    return "\n".join(lines)


def triage_json(report) -> dict:
    def member(m) -> dict:
        return {
            **json_path(m.path),
            "score": round(m.score, 6),
            "identical": m.identical,
            "kept": m.kept,
            "why": m.why,
            **json_path(m.via, "via"),
        }

    return {
        "threshold": report.threshold,
        "rule_floor": report.floor,
        "keep_in": list(report.keep_in),
        "candidates": report.candidates,
        "verified": report.verified,
        "verified_now": report.verified_now,
        "images": report.images,
        "groups": [
            {
                "id": g.id,
                **json_path(g.representative.path, "representative"),
                "kept_because": g.kept_because,
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
        "mislabeled": [_mislabel_json(m) for m in report.mislabeled],
        "confused_classes": [
            {
                "classes": [json_path(c)["path"] for c in x.classes],
                "count": x.count,
                "pictures": [_mislabel_json(m) for m in x.pictures],
            }
            for x in report.confusions
        ],
        "labels_under_cut": report.labels_under_cut,
        "quality": [
            {**json_path(u.path), "flags": list(u.flags), "values": u.values}
            for u in report.unusable
        ],
        "notes": report.notes,
        "method": report.method,
        "seconds": round(report.seconds, 3),
    }


def _mislabel_json(m) -> dict:
    return {
        **json_path(m.path),
        **json_path(m.folder, "folder"),
        **json_path(m.suggested, "suggested"),
        "confidence": m.confidence,
        "classifier": m.classifier,
        "vote": m.vote,
        "neighbours": [json_path(x)["path"] for x in m.neighbours],
    }


def csv_cell(text: str) -> str:
    """A cell that came from the disk, fit for a terminal and a spreadsheet: control
    characters and undecodable bytes escaped as in plain output, and a leading ``=``,
    ``+``, ``-``, ``@``, tab or carriage return neutralised with ``'`` (OWASP's advice on
    CSV injection: such a cell would be a live formula)."""
    shown = printable(text)
    return "'" + shown if shown[:1] in ("=", "+", "-", "@", "\t", "\r") else shown


def exact_bytes(path: str) -> str:
    """A path's exact bytes in base64 for a CSV cell, where its shown text differs from it
    (else empty)."""
    import base64

    return "" if printable(path) == path else base64.b64encode(os.fsencode(path)).decode()


def triage_csv(report) -> None:
    import csv

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(
        ["group_id", "path", "role", "score", "sha256", "why", "path_b64", "other", "other_b64"]
    )

    def row(group, path: str, role: str, score: str, sha: str, why: str, other: str = "") -> None:
        cells = [group, csv_cell(path), role, score, sha, csv_cell(why), exact_bytes(path)]
        out.writerow(cells + [csv_cell(other), exact_bytes(other)])

    for g in report.groups:
        rep = g.representative
        row(g.id, rep.path, "representative", "1.000000", rep.sha256 or "", "")
        for m in g.members:
            role = "kept" if m.kept else "identical" if m.identical else "duplicate"
            row(g.id, m.path, role, f"{m.score:.6f}", m.sha256 or "", m.why, m.via)
    for o in report.outliers:
        row("", o.path, "outlier", f"{o.score:.6f}", "", "", o.neighbour)
    for b in report.broken:
        row("", b.path, "broken", "", "", b.reason)
    for x in report.leaks:
        row("", x.path, "leak", f"{x.score:.6f}", "", x.why, x.other)
    for m in report.mislabeled:
        row("", m.path, "mislabeled", f"{m.confidence:.6f}", "", m.folder, m.suggested)
    for c in report.confusions:
        for m in c.pictures:
            row("", m.path, "between classes", f"{m.confidence:.6f}", "", m.folder, m.suggested)
    for u in report.unusable:
        row("", u.path, "quality", "", "", " ".join(u.flags))


def triage_text(report) -> None:
    groups = report.groups
    floor = f", visual similarity ≥ {report.threshold:.2f}" if report.threshold else ""
    print(
        f"{count(len(groups), 'group')} of copies: {count(report.duplicates, 'image')} could go"
        f" ({count(report.images, 'image')}{floor}; {count(report.candidates, 'candidate pair')},"
        f" {report.verified} verified by local features; {report.seconds:.1f} s)"
    )
    for g in groups:
        rep = g.representative
        print(f"\ngroup {g.id}: keep {printable(rep.path)}  ({rep.pixels:,} px)")
        for m in g.members:
            mark = "kept " if m.kept else "=    " if m.identical else "     "
            print(f"  {mark}{m.score:6.3f}  {printable(m.path)}  ({printable(m.described)})")
    if report.outliers:
        print(f"\n{count(len(report.outliers), 'outlier')} (least like anything else):")
        for o in report.outliers:
            print(f"  {o.score:6.3f}  {printable(o.path)}  (nearest: {printable(o.neighbour)})")
    if report.broken:
        print(f"\n{count(len(report.broken), 'broken file')}:")
        for b in report.broken:
            print(f"  {printable(b.path)}: {printable(b.reason)}")
    if report.leaks:
        print(
            f"\n{count(len(report.leaks), 'leak')} (pictures of the other folder that copy one here):"
        )
        for x in report.leaks:
            print(
                f"  {x.score:6.3f}  {printable(x.other)}  copies  {printable(x.path)}  ({printable(x.why)})"
            )
    if report.mislabeled:
        print(
            f"\n{count(len(report.mislabeled), 'suspected wrong label')}"
            " (score: how likely the folder is wrong; now → suggested):"
        )
        for m in report.mislabeled:
            print(
                f"  {m.confidence:5.2f}  {printable(m.path)}"
                f"  {printable(m.folder)} → {printable(m.suggested)}"
            )
    if report.confusions:
        print("\nclasses confused as a rule (not listed above; --labels-top N lists them too):")
        for c in report.confusions:
            shown = ", ".join(printable(m.path) for m in c.pictures[:3])
            print(f"  {printable(c.text())}, e.g. {shown}")
    if report.labels_under_cut:
        print(
            f"\n{count(report.labels_under_cut, 'more picture')} scored under the cut"
            " (--labels-min lowers it)"
        )
    if report.unusable:
        print(f"\n{count(len(report.unusable), 'picture')} hard to learn from:")
        for u in report.unusable:
            print(f"  {' '.join(u.flags):20s}  {printable(u.path)}")
    for note in report.notes:
        say(note)
