"""Triage as a live session: how long opening takes and how long each action takes to give
back a ready report, at 10,000 and 100,000 indexed pictures.

The sets: Fashion-MNIST (real 28 px product pictures, the test split for 10k, all 70,000
for 100k) plus edited copies of some of them written as real files (enlarged, shrunk,
re-encoded as JPEG, mirrored, brightened, cropped by a pixel), so that there are groups
to act on: 2 % of the 10k set, 30,000 of the 100k set. Each set is indexed for real.

Measured with the engine's session (what the app's workers run), every action on a
session opened once, medians of several: *open* with everything cached (the candidate
graph and the verdicts in the index), the command line's triage of an up-to-date index,
and the actions: mark a group, set one group aside (files moved for real), undo it,
keep another picture, not a copy, a threshold step, and a refresh with a few new
pictures (only theirs joined and verified).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.data import DATA, REPO, SMOKE, sized
from benchmarks.report import table

EDITS = ("enlarged", "shrunk", "jpeg", "mirrored", "brighter", "cropped")


def _edit(src: Path, dest: Path, kind: str) -> None:
    im = Image.open(src).convert("L")
    w, h = im.size
    if kind == "enlarged":
        im = im.resize((w * 2, h * 2), Image.BICUBIC)
    elif kind == "shrunk":
        im = im.resize((w * 6 // 7, h * 6 // 7), Image.LANCZOS)
    elif kind == "mirrored":
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    elif kind == "brighter":
        im = ImageEnhance.Brightness(im).enhance(1.1)
    elif kind == "cropped":
        im = im.crop((1, 1, w - 1, h - 1)).resize((w, h), Image.BICUBIC)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jpeg":
        im.save(dest.with_suffix(".jpg"), "JPEG", quality=70)
    else:
        im.save(dest)


def ensure_set(size: str, copies: int) -> Path:
    """``bench-data/session-SIZE``: Fashion-MNIST pictures under ``fashion/`` and
    *copies* edited copies under ``copies/``, indexed."""
    from engine import ImageSimilaritySearch
    from engine.fashion import export

    root = DATA / f"session-{size}"
    split = ("test",) if size == "10k" else ("train", "test")
    done = root / ".built"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"writing the {size} session set…", flush=True)
        export(root / "fashion", split, sized(None, 60 if size == "10k" else 100))
        sources = sorted((root / "fashion").glob("*/*.png"))
        rng = np.random.RandomState(28)
        for n, i in enumerate(rng.choice(len(sources), copies, replace=False)):
            src = sources[i]
            kind = EDITS[n % len(EDITS)]
            _edit(src, root / "copies" / src.parent.name / f"{src.stem}-{kind}.png", kind)
        done.write_text("ok\n")
    with ImageSimilaritySearch(root) as search:
        if search.count() < len(list(root.glob("*/*/*.*"))):
            print(f"indexing the {size} session set…", flush=True)
            search.index()
    return root


def _median_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(root: Path, repeats: int = 5) -> dict:
    """Seconds to open a session (cached) and milliseconds per action, medians."""
    from engine import ImageSimilaritySearch
    from engine.triage import TriageSession

    out: dict = {}
    with ImageSimilaritySearch(root) as search:
        TriageSession(search).open()  # makes the graph and verdicts once: cached after
        opened = []
        for _ in range(max(1, repeats // 2)):
            t0 = time.perf_counter()
            session = TriageSession(search)
            session.open()
            opened.append(time.perf_counter() - t0)
        out["open"] = statistics.median(opened)
        report = session.report
        out["groups"], out["images"] = len(report.groups), report.images
        big = sorted(report.groups, key=lambda g: -len(g.members))
        group = big[0]
        paths = [m.path for m in group.members]
        out["mark"] = _median_ms(
            lambda: (session.mark(paths, True), session.mark(paths, False)), repeats
        )

        def aside_and_back():
            t0 = time.perf_counter()
            session.set_aside(paths)
            aside.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            session.undo()
            back.append(time.perf_counter() - t0)

        aside: list[float] = []
        back: list[float] = []
        for _ in range(repeats):
            aside_and_back()
        out["set aside"] = statistics.median(aside) * 1000
        out["undo"] = statistics.median(back) * 1000
        other = group.members[0].path
        rep = group.representative.path
        out["keep"] = _median_ms(lambda: (session.keep(other), session.keep(rep)), repeats) / 2
        out["threshold"] = (
            _median_ms(lambda: (session.set_threshold(0.5), session.set_threshold(None)), repeats)
            / 2
        )
        out["not a copy"] = _median_ms(lambda: session.not_copy(rep, other), 1)
        search.store.forget_rejections()
        search.index()  # the undone files come back into the index
        fresh = []
        for i, src in enumerate(sorted((root / "fashion").glob("*/*.png"))[:5]):
            dest = root / "late" / f"late-{i}.png"
            _edit(src, dest, "enlarged")
            fresh.append(dest)
        search.index()
        t0 = time.perf_counter()
        session.refresh()
        out["refresh with 5 new"] = (time.perf_counter() - t0) * 1000
        shutil.rmtree(root / "late")
        search.index()
        session.refresh()
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "tui", "triage", str(root), "--json"],
        capture_output=True,
        cwd=REPO,
        timeout=3600,
    )
    out["command line"] = time.perf_counter() - t0
    if run.returncode:
        raise RuntimeError(run.stderr.decode(errors="replace"))
    return out


def in_terminal(root: Path, repeats: int = 5) -> dict:
    """The same actions in the app in a real terminal (tmux 160x50), each timed from the
    key sent to the first screen read back (capture-pane, polled) that shows its result:
    milliseconds, medians; *open* in seconds."""
    sock = ["tmux", "-L", "lookalike-session"]

    def screen() -> str:
        return subprocess.run(
            [*sock, "capture-pane", "-p", "-t", "s"], capture_output=True, text=True
        ).stdout

    def send(*keys: str) -> None:
        subprocess.run([*sock, "send-keys", "-t", "s", *keys], check=True)

    def timed(keys, pred, timeout: float = 120.0) -> float:
        t0 = time.perf_counter()
        send(*keys)
        while time.perf_counter() - t0 < timeout:
            if pred(screen()):
                return time.perf_counter() - t0
            time.sleep(0.002)
        raise RuntimeError("the app did not show what was expected:\n" + screen())

    def head(text: str, n: int = 6) -> str:
        return "\n".join(text.splitlines()[:n])

    cmd = f"cd {REPO} && COLORTERM=truecolor {sys.executable} -m tui {root}"
    subprocess.run([*sock, "kill-server"], capture_output=True)
    subprocess.run(
        [*sock, "new-session", "-d", "-s", "s", "-x", "160", "-y", "50", cmd], check=True
    )
    out: dict[str, list[float]] = {}
    try:
        deadline = time.perf_counter() + 600
        while "index up to date" not in screen() and time.perf_counter() < deadline:
            time.sleep(0.1)
        out["open"] = [timed(["d"], lambda t: "groups of copies" in t and "keep ·" in t)]

        def line(text: str, n: int) -> str:
            lines = text.splitlines()
            return lines[n] if len(lines) > n else ""

        def highlighted() -> str:
            """The path the why line names (it starts the line)."""
            return line(screen(), 2).strip().split(": ")[0].split(" · ")[0]

        for _ in range(repeats):
            before = head(screen())
            out.setdefault("next row", []).append(timed(["Down"], lambda t, b=before: head(t) != b))
            before = head(screen(), 8)
            out.setdefault("page down", []).append(
                timed(["PageDown"], lambda t, b=before: head(t, 8) != b)
            )
            out.setdefault("to a section", []).append(timed(["2"], lambda t: "outliers 1-" in t))
            send("1")
            time.sleep(0.3)
            send("Right")
            time.sleep(0.5)
            picked = highlighted()
            out.setdefault("mark", []).append(timed(["Space"], lambda t: "1 marked" in line(t, 3)))
            out.setdefault("set aside", []).append(
                timed(["m", "Enter"], lambda t: "0 marked" in line(t, 3) and "set 1 aside" in t)
            )
            out.setdefault("undo", []).append(
                timed(
                    ["u"],
                    lambda t, p=picked: (
                        "put back" in line(t, 0) and line(t, 2).strip().startswith(p)
                    ),
                )
            )
            # the index takes the file back in, and triage follows: let both end
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline and not any(
                w in line(screen(), 0) for w in ("were triaged", "refreshed:")
            ):
                time.sleep(0.1)
            send("1")
            time.sleep(0.3)
            send("Right")
            time.sleep(0.5)
            picked = highlighted()
            out.setdefault("keep", []).append(
                timed(
                    ["k"],
                    lambda t, p=picked: (
                        line(t, 2).strip().startswith(p) and " · kept: you chose it" in line(t, 2)
                    ),
                )
            )
            out.setdefault("threshold step", []).append(
                timed(["+"], lambda t: "only copies" in line(t, 3))
            )
            timed(["-"], lambda t: "every copy found" in line(t, 3))
    finally:
        subprocess.run([*sock, "kill-server"], capture_output=True)
    return {k: statistics.median(v) * (1 if k == "open" else 1000) for k, v in out.items()}


def with_pilot(root: Path, repeats: int = 5) -> dict:
    """The actions through Textual's Pilot at 160x50: from each key press until the
    screen has painted the report it gives back (milliseconds, medians; *open* in
    seconds)."""
    import asyncio

    from tui.app import create_app

    async def run() -> dict:
        app = create_app(root)
        out: dict[str, list[float]] = {}
        async with app.run_test(size=(160, 50)) as pilot:

            async def until(cond, timeout: float = 600.0) -> None:
                t0 = time.perf_counter()
                while not cond() and time.perf_counter() - t0 < timeout:
                    await pilot.pause(0.002)

            await until(lambda: app.search_engine is not None and not app.indexing)
            t0 = time.perf_counter()
            await pilot.press("d")
            await until(lambda: getattr(app.screen, "report", None) is not None)
            out["open"] = [time.perf_counter() - t0]
            screen = app.screen
            # when the screen has painted each report: read from the screen itself, since
            # Pilot's pauses wait for the app to be idle and indexing keeps it busy
            painted: list[tuple[float, object]] = []
            paint = screen._paint

            def timed_paint(*a, **k):
                done = paint(*a, **k)
                painted.append((time.perf_counter(), screen.report))
                return done

            screen._paint = timed_paint

            async def timed(name: str, *keys: str) -> None:
                before = screen.report
                painted.clear()
                t0 = time.perf_counter()
                await pilot.press(*keys)
                await until(lambda: any(r is not before for _t, r in painted))
                t1 = next(t for t, r in painted if r is not before)
                out.setdefault(name, []).append(t1 - t0)

            async def at_first_copy() -> None:
                screen.row, screen.col = 0, 1  # a copy of the first group, not its keeper
                screen._paint()
                await until(lambda: screen.current is not None)  # its row is bound

            for _ in range(repeats):
                await at_first_copy()
                await timed("keep", "k")
                await timed("threshold step", "plus")
                await timed("threshold back", "minus")
                await at_first_copy()  # not the keeper `k` just chose
                await pilot.press("space")
                await timed("set aside", "m", "enter")
                await timed("undo", "u")
                await until(lambda: not app.indexing)
        return {k: statistics.median(v) * (1 if k == "open" else 1000) for k, v in out.items()}

    return asyncio.run(run())


def bench_session(rep, small: bool = False) -> None:
    rows, screens, pilots = [], [], []
    sets = [("10k", 200)] if small else [("10k", 200), ("100k", 30_000)]
    if SMOKE:
        sets, small = [("10k", 20), ("100k", 60)], True
    for size, copies in sets:
        root = ensure_set(size, copies)
        m = measure(root, repeats=3 if small else 5)
        rows.append(
            [
                f"{m['images']:,}",
                m["groups"],
                f"**{m['open']:.2f} s**",
                f"{m['command line']:.1f} s",
                *(f"{m[k]:.0f} ms" for k in ("mark", "set aside", "undo", "keep")),
                *(f"{m[k]:.0f} ms" for k in ("not a copy", "threshold", "refresh with 5 new")),
            ]
        )
        t = in_terminal(root, repeats=2 if small else 5)
        screens.append(
            [
                f"{m['images']:,}",
                f"**{t['open']:.2f} s**",
                *(
                    f"{t[k]:.0f} ms"
                    for k in ("next row", "page down", "to a section", "mark", "set aside",
                              "undo", "keep", "threshold step")
                ),
            ]
        )  # fmt: skip
        if size != "10k":  # see the note under the table
            continue
        p = with_pilot(root, repeats=2 if small else 5)
        pilots.append(
            [
                f"{m['images']:,}",
                f"{p['open']:.2f} s",
                *(f"{p[k]:.0f} ms" for k in ("keep", "threshold step", "set aside", "undo")),
            ]
        )
    body = table(
        ["images", "groups", "open (cached)", "`lookalike triage`", "mark a group",
         "set a group aside", "undo", "keep", "not a copy", "threshold step",
         "refresh, 5 new"],
        rows,
    )  # fmt: skip
    body += (
        "\n\nThe engine's session (what the app's workers run), medians; each action gives"
        " back the report the screen lays out (groups made again from the pairs found,"
        " sections updated), files moved for real. *open* and `lookalike triage` with the"
        " candidate graph and verdicts already in the index (a first triage builds them:"
        " 147 s at 100,000 pictures, most of it the exact self-join).\n\n"
    )
    body += table(
        ["images", "`d` to the groups", "↓ next row", "PageDown", "`2` outliers",
         "`space` mark", "`m` set aside", "`u` undo", "`k` keep", "`+` threshold"],
        screens,
    )  # fmt: skip
    body += (
        "\n\nThe app in a real terminal (tmux 160x50): each key timed from `send-keys` to"
        " the first screen read back (capture-pane, polled every 2 ms) that shows its"
        " result.\n\n"
    )
    body += table(
        ["images", "`d` to the groups", "`k` keep", "`+` threshold", "`m` set aside", "`u` undo"],
        pilots,
    )
    body += (
        "\n\nThe same through Textual's Pilot (160x50), from the key press until the screen"
        " has painted the report it gives back (at 10k only: at 100k, `k` pressed through"
        " Pilot gave back no report within a minute, while the same key in tmux did in the"
        " time above; not understood yet). Targets: open ≤ 2 s at 10k and ≤ 10 s at 100k; each"
        " action ≤ 300 ms at 10k and ≤ 1 s at 100k; the command line ≤ 3 s at 10k and"
        " ≤ 15 s at 100k. Sets: Fashion-MNIST (the test split for 10k, all 70,000 for"
        " 100k) and edited copies of some of its pictures (enlarged, shrunk, JPEG,"
        " mirrored, brighter, cropped a pixel): 200 and 30,000, built by"
        " `benchmarks/session_bench.py`."
    )
    rep.section("Triage as a live session", body, "python -m benchmarks.run --only session")
