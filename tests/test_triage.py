"""Triage: groups (deterministic, copies of a copy one step further), identical copies, outliers, broken files,
the JSON and CSV schemas, and moving duplicates aside and back (also after a crash)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine import ImageSimilaritySearch
from engine.quarantine import MoveError, move_aside, pending_manifest, undo
from engine.triage import Graph, group_pairs, triage
from support import edited_copy, make_picture
from tui.cli import main

EDITS = ("crop", "brighten", "identical")


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """Eight pictures with one to three mildly edited copies each, twenty unrelated
    pictures, and a broken file."""
    root = tmp_path / "photos"
    for i in range(8):
        src = make_picture(root / f"orig{i}.png", i)
        for kind in EDITS[: 1 + i % 3]:
            edited_copy(src, root / "copies" / f"orig{i}-{kind}.png", kind)
    for i in range(20):
        make_picture(root / "other" / f"pic{i:02d}.png", 100 + i)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    return root


def _report(root: Path):
    with ImageSimilaritySearch(root) as search:
        search.index()
        return triage(search)


def test_groups_identical_outliers_broken(collection: Path):
    report = _report(collection)
    grouped = {g.representative.path: {m.path for m in g.members} for g in report.groups}
    for i in range(8):
        expected = {f"copies/orig{i}-{k}.png" for k in EDITS[: 1 + i % 3]}
        assert grouped.get(f"orig{i}.png") == expected
    assert len(report.groups) == 8  # nothing unrelated was grouped
    for g in report.groups:
        assert g.representative.score == 1.0 and not g.representative.identical
        for m in g.members:
            assert m.identical == m.path.endswith("-identical.png")
            assert m.score == 1.0 if m.identical else 0.5 <= m.score < 1.0
            assert m.why == "identical bytes" if m.identical else m.why
        assert [m.score for m in g.members] == sorted((m.score for m in g.members), reverse=True)
    assert report.broken and report.broken[0].path == "broken.png"
    assert report.outliers  # the lowest 1 % at least one
    assert report.outliers[0].path.startswith("other/")
    scores = [o.score for o in report.outliers]
    assert scores == sorted(scores)


def test_same_input_same_groups(collection: Path):
    first = _report(collection)
    second = _report(collection)
    shape = lambda r: [(g.id, g.representative.path, [m.path for m in g.members]) for g in r.groups]  # noqa: E731
    assert shape(first) == shape(second)


def _graph(edges, paths, pixels, mtimes, links=()):
    digests = [bytes([i + 1]) * 32 for i in range(len(paths))]
    return Graph(edges, paths, np.array(pixels), np.array(mtimes), digests, set(links))


def _shape(groups):
    return [(g.representative.path, [m.path for m in g.members]) for g in groups]


def test_copies_of_a_copy_join_one_step_further_and_the_keeper_order():
    # a-b, b-c and c-d are copies, nothing else: c joins a's group through b (a bordered
    # copy kept for its pixels, its original and the original's copy), d does not
    w = (0.9, "0.95 aligned pixels")
    chain = {0: {1: w}, 1: {0: w, 2: w}, 2: {1: w, 3: w}, 3: {2: w}}
    g = _graph(chain, ["a.png", "b.png", "c.png", "d.png"], [100, 50, 50, 50], [5, 1, 1, 1])
    (grp,) = group_pairs(g, 0.0, (), frozenset())
    assert _shape([grp]) == [("a.png", ["b.png", "c.png"])]
    assert [m.via for m in grp.members] == ["", "b.png"]
    assert grp.members[1].described == "0.95 aligned pixels · a copy of b.png"
    # c measured in other colours than a (b a grey copy of both): c stays out
    g.apart = {0: {2}, 2: {0}}
    assert _shape(group_pairs(g, 0.0, (), frozenset())) == [
        ("a.png", ["b.png"]),
        ("c.png", ["d.png"]),
    ]
    g.apart = {}
    # c marked no copy of the keeper (n in the app) or of b: c leaves a's group
    for no in (("a.png", "c.png"), ("b.png", "c.png")):
        g.rejected = {no}
        assert _shape(group_pairs(g, 0.0, (), frozenset())) == [
            ("a.png", ["b.png"]),
            ("c.png", ["d.png"]),
        ]
    pair = {0: {1: w}, 1: {0: w}}
    # equal pixels: the oldest is kept; equal too: the shorter path, then the first
    assert (
        group_pairs(_graph(pair, ["b.png", "a.png"], [9, 9], [2, 1]), 0, (), frozenset())[
            0
        ].representative.path
        == "a.png"
    )
    same = _graph(pair, ["in/copy.png", "a/b/c/orig.png"], [9, 9], [1, 1])
    assert group_pairs(same, 0, (), frozenset())[0].representative.path == "in/copy.png"
    # a kept folder outranks pixels and age; its members are marked kept
    big = _graph(pair, ["incoming/x.png", "originals/x.png"], [900, 9], [1, 5])
    (grp,) = group_pairs(big, 0, ("originals",), frozenset())
    assert grp.representative.path == "originals/x.png" and not grp.members[0].kept
    (grp,) = group_pairs(big, 0, ("incoming", "originals"), frozenset())
    assert grp.members[0].kept
    # a chosen keeper outranks everything; a link never outranks its target
    assert (
        group_pairs(big, 0, ("originals",), frozenset({"incoming/x.png"}))[0].representative.path
        == "incoming/x.png"
    )
    linked = _graph(pair, ["a.png", "z-target.png"], [9, 9], [1, 1], links=[0])
    assert group_pairs(linked, 0, (), frozenset())[0].representative.path == "z-target.png"
    # the threshold leaves out weaker pairs, never identical bytes
    ident = {0: {1: (0.2, "identical bytes"), 2: (0.5, "x")}, 1: {0: (0.2, "identical bytes")}}
    ident[2] = {0: (0.5, "x")}
    three = _graph(ident, ["a.png", "b.png", "c.png"], [9, 9, 9], [1, 2, 3])
    assert _shape(group_pairs(three, 0.6, (), frozenset())) == [("a.png", ["b.png"])]


def test_json_and_csv(collection: Path, capsys):
    assert main(["triage", str(collection), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"threshold", "groups", "outliers", "broken"} <= set(out) and out["threshold"] == 0.0
    g = out["groups"][0]
    assert {"id", "representative", "members"} <= set(g)
    assert all({"path", "score", "identical", "why"} <= set(m) for m in g["members"])
    assert all(m["why"] for m in g["members"])
    assert all({"path", "score"} <= set(o) for o in out["outliers"])
    assert [b["path"] for b in out["broken"]] == ["broken.png"] and out["broken"][0]["reason"]
    assert main(["triage", str(collection), "--csv", "--no-update"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == [
        "group_id",
        "path",
        "role",
        "score",
        "sha256",
        "why",
        "path_b64",
        "other",
        "other_b64",
    ]
    roles = {r[2] for r in rows[1:]}
    assert roles == {"representative", "duplicate", "identical", "outlier", "broken"}
    for r in rows[1:]:
        if r[2] in ("representative", "duplicate", "identical"):
            assert r[0].isdigit() and len(r[4]) == 64
    identical = [r for r in rows if r[2] == "identical"]
    reps = {r[0]: r[4] for r in rows if r[2] == "representative"}
    assert identical and all(reps[r[0]] == r[4] for r in identical)


def test_move_aside_and_undo(collection: Path, tmp_path: Path, capsys):
    before = sorted(p.relative_to(collection) for p in collection.rglob("*.png"))
    aside = tmp_path / "aside"
    assert main(["triage", str(collection), "--move-to", str(aside)]) == 0
    err = capsys.readouterr().err
    copies = sum(1 + i % 3 for i in range(8))
    assert f"moved {copies} duplicates" in err
    moved = sorted(p.relative_to(aside) for p in aside.rglob("*.png"))
    assert len(moved) == copies and all(str(p).startswith("copies/") for p in moved)
    assert not any((collection / p).exists() for p in moved)
    assert all((collection / f"orig{i}.png").exists() for i in range(8))  # representatives stay
    assert main(["triage", str(collection), "--undo"]) == 0
    assert f"put back {copies} files" in capsys.readouterr().err
    assert sorted(p.relative_to(collection) for p in collection.rglob("*.png")) == before
    assert not list(aside.rglob("*.png"))
    with pytest.raises(MoveError, match="nothing to undo"):
        undo(collection)


def test_a_crash_mid_move_can_be_undone(collection: Path, tmp_path: Path, monkeypatch):
    import engine.quarantine.moves as q

    real = q.move_file
    calls = []

    def dies_on_the_third(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed between writing the plan and moving
        real(*args)

    monkeypatch.setattr(q, "move_file", dies_on_the_third)
    rels = [f"copies/orig{i}-crop.png" for i in range(8)]
    with pytest.raises(KeyboardInterrupt):
        move_aside(collection, rels, tmp_path / "aside")
    monkeypatch.setattr(q, "move_file", real)
    assert pending_manifest(collection) is not None
    assert sum((tmp_path / "aside" / r).exists() for r in rels) == 2
    done = undo(collection)
    assert len(done.moved) == 2 and not done.skipped
    assert all((collection / r).exists() for r in rels)


def test_moves_stay_inside_the_rules(collection: Path, tmp_path: Path):
    outside = make_picture(tmp_path / "elsewhere.png", 7)
    os.symlink(outside, collection / "link.png")
    report = move_aside(collection, ["../elsewhere.png", "link.png", "nope.png"], tmp_path / "x")
    reasons = dict(report.skipped)
    assert not report.moved and set(reasons) == {"../elsewhere.png", "link.png", "nope.png"}
    assert outside.exists()
    (tmp_path / "x" / "copies").mkdir(parents=True)
    (tmp_path / "x" / "copies" / "orig0-crop.png").write_bytes(b"already here")
    report = move_aside(collection, ["copies/orig0-crop.png"], tmp_path / "x")
    assert not report.moved and "already exists" in report.skipped[0][1]
    with pytest.raises(MoveError, match="cannot be the indexed folder"):
        move_aside(collection, ["orig0.png"], collection)


def _seen(app, card) -> bool:
    """Whether *card* is drawn where it is: the widget at its centre is it or inside it."""
    region = card.region
    if not region.width or not region.height:
        return False
    x, y = region.x + region.width // 2, region.y + region.height // 2
    try:
        widget, _ = app.screen.get_widget_at(x, y)
    except Exception:
        return False
    return widget is card or card in widget.ancestors


async def open_triage(pilot):
    """Wait for the app's first index run, press ``d``, and wait for the triage report."""
    from test_app import ready, wait_for

    from tui.screens.triage import TriageScreen

    await ready(pilot)
    await pilot.press("d")
    screen = pilot.app.screen
    assert isinstance(screen, TriageScreen)
    await wait_for(pilot, lambda: screen.report is not None)
    return screen


async def _after(pilot, screen, *keys: str):
    """Press *keys* and wait for the report the last action gives back."""
    from test_app import wait_for

    before = screen.report
    await pilot.press(*keys)
    await wait_for(pilot, lambda: screen.report is not before)
    await pilot.pause()


def _groups_of(report) -> dict[str, list[str]]:
    return {g.representative.path: sorted(m.path for m in g.members) for g in report.groups}


async def test_triage_screen(collection: Path, capsys):
    from test_app import SIZE, wait_for

    from tui.app import create_app
    from tui.screens.compare import CompareScreen
    from tui.screens.confirm import ConfirmMove
    from tui.screens.triage import TriageScreen

    app = create_app(collection)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        rows = screen.rows
        assert rows.section("copies").items == 8 and rows.section("broken").items == 1
        assert screen.current.slot.kind == "keep"
        status = str(screen.query_one("#triage-status").render())
        assert "8 groups" in status and "15 pictures could go" in status
        bar = str(screen.query_one("#triage-sections").render())
        assert "1 copies 8" in bar and "3 broken 1" in bar
        marks = lambda: str(screen.query_one("#triage-marks").render())  # noqa: E731
        assert marks().startswith("0 marked") and "threshold" in marks()
        session = app.triage_screen.session
        await pilot.press("space")  # the keeper cannot be set aside
        assert not session.marks
        await pilot.press("right", "space")
        marked = sorted(session.marks)
        assert len(marked) == 1 and marked[0].startswith("copies/") and "1 marked" in marks()
        # every section is one key away; the broken file says why
        await pilot.press("3")
        assert screen.current.slot.kind == "broken" and _seen(app, screen.current)
        assert "broken.png" in str(screen.query_one("#triage-why").render())
        await pilot.press("home")
        assert screen.row == 0 and screen.current.slot.kind == "keep"
        await pilot.press("end")
        assert screen.row == len(rows) - 1
        await pilot.press("home", "pagedown")
        assert screen.row == len(screen.views)
        # marks survive a trip to compare and to search
        screen.row, screen.col = 0, 1
        screen._paint()
        await pilot.press("z")
        assert isinstance(app.screen, CompareScreen) and app.screen.left == "keep"
        shown = app.screen.cards[app.screen.index]  # with triage's reason beside its score
        assert shown.label == screen.current.slot.why != ""
        title = str(app.screen.query_one("#compare-result .compare-title").render())
        assert shown.label[:20] in title
        await pilot.press("escape")
        assert app.screen is screen and sorted(session.marks) == marked
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.search_view.last_result is not None)
        assert not isinstance(app.screen, TriageScreen)
        await pilot.press("d")
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None)
        assert (screen.row, screen.col) == (0, 1)  # where the cursor was
        # m shows the plan and asks once; escape moves nothing
        await pilot.press("m")
        assert isinstance(app.screen, ConfirmMove)
        assert "1 file would move" in str(app.screen.query_one("#confirm-plan").render())
        await pilot.press("escape")
        assert (collection / marked[0]).exists()
        await _after(pilot, screen, "m", "enter")
        assert (collection / ".lookalike/quarantine" / marked[0]).exists()
        assert not (collection / marked[0]).exists() and not session.marks
        assert screen.report.duplicates == 14  # the moved copy left its group at once
        assert marked[0] not in str(_groups_of(screen.report))
        await _after(pilot, screen, "u")
        assert (collection / marked[0]).exists() and screen.report.duplicates == 15
        # a toggles a group, A every group; the threshold steps from the rule's own
        screen.row, screen.col = 0, 0
        screen._paint()
        await pilot.press("a")
        assert len(session.marks) == len(screen.rows.row(0).slots) - 1
        await pilot.press("a")
        assert not session.marks
        await pilot.press("A")
        assert len(session.marks) == 15
        await pilot.press("A")
        assert not session.marks
        floor = screen.report.floor
        assert f"threshold {floor:.2f}: every copy found" in marks()
        await _after(pilot, screen, "plus")
        assert screen.report.threshold == round(floor + 0.05, 2)
        assert f"threshold {floor + 0.05:.2f}: only copies this alike" in marks()
        await _after(pilot, screen, "minus")
        assert screen.report.threshold == 0.0 and screen.report.duplicates == 15
        # k keeps the highlighted copy instead: its group is made again around it
        screen.row, screen.col = 0, 1
        screen._paint()
        chosen = screen.current.slot.path
        await _after(pilot, screen, "k")
        assert screen.current.slot.path == chosen and screen.current.slot.kind == "keep"
        assert screen.current.slot.why == "you chose it"
        # n: not a copy of its keeper: it leaves the group
        await pilot.press("right")
        other = screen.current.slot.path
        await _after(pilot, screen, "n")
        assert other not in _groups_of(screen.report).get(chosen, [])
        await pilot.press("down")
        second = screen.current.data.path
        await pilot.press("enter")  # search with the next group's keeper
        await wait_for(pilot, lambda: app.search_view.query_path == second)
        assert not isinstance(app.screen, TriageScreen)
    # the keeper chosen is remembered: the command line keeps it too
    capsys.readouterr()
    assert main(["triage", str(collection), "--json", "--no-update"]) == 0
    out = json.loads(capsys.readouterr().out)
    (group,) = [g for g in out["groups"] if g["representative"] == chosen]
    assert group["kept_because"] == "you chose it"


async def test_every_key_of_the_footer_is_seen_at_80_columns(collection: Path):
    from textual.widgets._footer import FooterKey

    from tui.app import create_app

    app = create_app(collection)
    async with app.run_test(size=(80, 24)) as pilot:
        for opened in (False, True):
            if opened:
                await open_triage(pilot)
            else:
                from test_app import ready

                await ready(pilot)
            await pilot.pause(0.1)
            keys = sorted(app.screen.query(FooterKey), key=lambda k: k.region.x)
            assert keys and keys[-1].region.right <= 80  # none drawn over another
            assert all(a.region.right <= b.region.x for a, b in zip(keys, keys[1:]))
            text = " ".join(str(k.render()) for k in keys)
            assert "Quit" in text and "Help" in text, text


async def test_every_card_of_a_wide_group_can_be_seen(tmp_path: Path):
    import shutil

    from test_app import SIZE

    from tui.app import create_app

    root = tmp_path / "wide"
    src = make_picture(root / "a.png", 1)
    for i in range(14):
        shutil.copy(src, root / f"copy{i:02d}.png")
    for i in range(5):
        make_picture(root / "o" / f"{i}.png", 50 + i)
    app = create_app(root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        slots = screen.rows.row(0).slots
        assert len(slots) == 15
        for i in range(1, 15):
            await pilot.press("right")
            await pilot.pause()
            card = screen.current
            assert card is not None and card.slot == slots[i] and _seen(app, card), i
        for _ in range(14):
            await pilot.press("left")
        await pilot.pause()
        assert screen.current.slot == slots[0] and _seen(app, screen.current)


async def test_marks_are_remembered_and_new_pictures_come_in_by_themselves(
    collection: Path, tmp_path: Path
):
    """Marks outlive the app; a picture copied in while the screen is open is triaged
    alone once indexing ends, and the screen says so."""
    import shutil

    from test_app import SIZE, wait_for

    from tui.app import create_app

    app = create_app(collection)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        await pilot.press("right", "space")
        marked = set(app.triage_screen.session.marks)
        await pilot.pause(0.3)
    app = create_app(collection)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        assert app.triage_screen.session.marks == marked
        assert screen.current_row().slots[1].marked or screen.rows.row(0).slots[1].marked
        shutil.copy(collection / "orig0.png", collection / "late-copy.png")
        before = screen.report
        await pilot.press("i")
        await wait_for(pilot, lambda: screen.report is not before and "late-copy.png" in str(
            _groups_of(screen.report)))  # fmt: skip
        assert "refreshed" in str(screen.query_one("#triage-status").render())
        assert "late-copy.png" in _groups_of(screen.report)["orig0.png"]


async def test_moves_and_undo_while_indexing_lose_no_byte(collection: Path):
    """Set a group aside and put it back while the app indexes new pictures: every file
    is where it was, byte for byte, and the index holds every picture."""
    from test_app import SIZE, wait_for

    from tui.app import create_app

    def tree() -> dict[str, bytes]:
        return {
            p.relative_to(collection).as_posix(): p.read_bytes()
            for p in sorted(collection.rglob("*"))
            if p.is_file() and ".lookalike" not in p.parts
        }

    class Slow:
        """The real CNN, a tenth of a second slower per batch: the run lasts while the
        files move."""

        def __init__(self, real) -> None:
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def encode(self, batch):
            time.sleep(0.1)
            return self.real.encode(batch)

    from engine.encoding import build_encoder

    real = build_encoder(
        128, "efficientnet-lite0", weights=None, device="cpu", precision="fp32", runtime="auto"
    )
    app = create_app(collection, batch_size=2, encoder=Slow(real))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        for i in range(60):
            make_picture(collection / "later" / f"new{i:03d}.png", 700 + i)
        before = tree()
        await pilot.press("i")
        await wait_for(pilot, lambda: app.indexing)
        await pilot.press("a")
        moving = sorted(app.triage_screen.session.marks)
        assert moving
        await _after(pilot, screen, "m", "enter")
        assert all(not (collection / p).exists() for p in moving)
        assert app.indexing, "the move should have happened while indexing"
        await _after(pilot, screen, "u")
        await wait_for(pilot, lambda: not app.indexing, timeout=300)
        await wait_for(pilot, lambda: all((collection / p).exists() for p in moving))
        await wait_for(pilot, lambda: not app.indexing, timeout=300)
        assert tree() == before
    with ImageSimilaritySearch(collection) as search:
        search.index()
        assert search.count() == len([p for p in before if p != "broken.png"])


def test_csv_cells_are_escaped_and_never_formulas(tmp_path: Path, capsys):
    import base64
    import shutil

    root = tmp_path / "odd"
    make_picture(root / "=HYPERLINK(1).png", 1)
    hostile = os.fsdecode(b"sgr\x1b[31m\xff.png")
    shutil.copy(root / "=HYPERLINK(1).png", root / hostile)
    make_picture(root / "+plain.png", 2)
    (root / "-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    assert main(["triage", str(root), "--csv"]) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    by_role = {r["role"]: r for r in rows}
    for r in rows:
        assert r["path"][:1] not in "=+-@", r
    odd = next(r for r in rows if r["path"].startswith("sgr"))
    assert odd["path"] == "sgr\\x1b[31m\\xff.png"
    assert base64.b64decode(odd["path_b64"]) == b"sgr\x1b[31m\xff.png"
    assert by_role["broken"]["path"] == "'-broken.png" and by_role["broken"]["why"]
    assert any(r["path"] == "'=HYPERLINK(1).png" and not r["path_b64"] for r in rows)


def test_many_resized_copies_of_one_picture_make_one_group(tmp_path: Path):
    """Look-alikes so many that aligned pixels cannot stand out from them: each pair is
    still checked by local features, and one picture keeps them all."""
    from PIL import Image

    root = tmp_path / "burst"
    src = make_picture(root / "original.png", 11, size=(480, 360))
    im = Image.open(src)
    for k in range(7):
        w = 330 + 20 * k
        im.resize((w, w * 3 // 4), Image.LANCZOS).save(root / f"small_{k}.jpg", quality=80 + k)
    for i in range(8):
        make_picture(root / "other" / f"{i}.png", 500 + i, size=(480, 360))
    (group,) = _report(root).groups
    assert group.representative.path == "original.png"
    assert sorted(m.path for m in group.members) == [f"small_{k}.jpg" for k in range(7)]


def test_the_candidate_graph_is_kept_exactly_and_a_crafted_one_is_not_used():
    """The graph round-trips through its blob at any size (its header stays small); a
    blob of another fingerprint, cut short, with a row out of range or a path that
    leaves the folder is not used."""
    from engine import copies
    from engine.triage import candidates as cand
    from engine.triage import graph_blob

    rng = np.random.default_rng(0)
    n, m = 70_000, 1000
    left = np.sort(rng.integers(0, n - 1, m))
    pairs = copies.Pairs(left, left + 1, rng.integers(0, 10, m))
    pairs.score = rng.random(m).astype(np.float32)
    pairs.small[::3] = rng.random(len(pairs.small[::3]))
    pairs.colour[::5] = -1.0
    pairs.point_why[::7] = "mirrored copy · 40 matching points"
    graph = cand.CandidateGraph(
        [f"class{i % 10}/é-{i}.png" for i in range(n)],
        rng.integers(-(2**62), 2**62, n),
        np.full(n, np.nan, np.float32),
        rng.random(n).astype(np.float32),
        rng.integers(-1, n, n),
        np.ones(n, bool),
        pairs,
        "fp",
    )
    blob = graph_blob.encode(graph)
    back = graph_blob.decode(blob, "fp")
    assert back is not None and back.paths == graph.paths
    assert np.array_equal(back.pairs.left, left) and list(back.pairs.point_why) == list(
        pairs.point_why
    )
    for name in ("small", "colour"):  # NaN (not measured) kept as NaN
        assert np.array_equal(getattr(back.pairs, name), getattr(pairs, name), equal_nan=True)
    assert graph_blob.decode(blob, "other") is None
    assert graph_blob.decode(blob[:-1], "fp") is None
    bad = graph_blob.encode(cand.CandidateGraph(["../x.png"], *(a[:1] for a in (
        graph.tags, graph.flat, graph.nearest, graph.nearest_row, graph.nearest_exact)),
        copies.Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)),
        "fp"))  # fmt: skip
    assert graph_blob.decode(bad, "fp") is None
    out_of_range = bytearray(blob)
    head = (
        len(graph_blob.MAGIC)
        + 4
        + int.from_bytes(blob[len(graph_blob.MAGIC) : len(graph_blob.MAGIC) + 4], "little")
    )
    at = head + n * (8 + 4 + 4)  # tags, flat, nearest: then nearest_row
    out_of_range[at : at + 8] = np.array([n + 5], "<i8").tobytes()
    assert graph_blob.decode(bytes(out_of_range), "fp") is None


def _pairs_by_path(graph) -> dict[tuple[str, str], int]:
    p = graph.paths
    return {
        tuple(sorted((p[a], p[b]))): int(r)
        for a, b, r in zip(
            graph.pairs.left.tolist(), graph.pairs.right.tolist(), graph.pairs.rank.tolist()
        )
    }


def _by_bytes(root: Path, pairs: dict[tuple[str, str], int]) -> set[tuple[bytes, ...]]:
    def digest(path: str) -> bytes:
        return hashlib.sha256((root / path).read_bytes()).digest()

    return {tuple(sorted((digest(a), digest(b)))) for a, b in pairs}


def test_the_graph_followed_is_the_graph_made_whole(collection: Path, tmp_path: Path):
    """New pictures and gone ones: the candidate graph brought up to date holds exactly
    the pairs a whole new join gives, and the same groups come out."""
    import shutil

    from engine.triage import TriageSession

    with ImageSimilaritySearch(collection) as search:
        search.index()
        session = TriageSession(search)
        session.open()
        for i in range(6):
            src = make_picture(collection / "later" / f"new{i}.png", 900 + i)
            edited_copy(src, collection / "later" / f"new{i}-copy.png", "brighten")
        shutil.copy(collection / "orig3.png", collection / "later" / "orig3-again.png")
        (collection / "other" / "pic05.png").unlink()
        (collection / "copies" / "orig1-crop.png").unlink()
        search.index()
        session.refresh()
        followed = _pairs_by_path(session.graph)
        groups = {
            g.representative.path: sorted(m.path for m in g.members) for g in session.report.groups
        }
        assert "later/new0-copy.png" in str(groups) and "later/orig3-again.png" in str(groups)
        search.store.put_blob("triage-graph", b"")  # no graph: made whole
        whole = TriageSession(search)
        whole.open()
        made = _pairs_by_path(whole.graph)
        # a picture's k-th nearest may be either of two identical pictures (orig3.png and
        # its copy score exactly alike): pairs are compared by the pictures' bytes
        assert len(made) == len(followed)
        assert _by_bytes(collection, made) == _by_bytes(collection, followed)
        # ranks agree but for ties (identical pictures score alike with a third)
        assert sum(made[k] != followed[k] for k in made.keys() & followed.keys()) <= 4
        assert {
            g.representative.path: sorted(m.path for m in g.members) for g in whole.report.groups
        } == groups


async def test_thumbnails_follow_a_fast_scroll_by_themselves(collection: Path):
    """Keys pressed faster than pictures are drawn: once the keys stop, every card in
    view gets its picture without another key."""
    from test_app import SIZE, wait_for

    from tui.app import create_app

    app = create_app(collection)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        for _ in range(3):
            await pilot.press("end", "home", "pagedown", "down", "down")
        shown = lambda: [  # noqa: E731
            c for v in screen.views for c in v.cards if c.display and c.slot.kind != "broken"
        ]
        await wait_for(
            pilot,
            lambda: shown() and all("…" not in str(c._thumb.render()) for c in shown()),
            timeout=30,
        )


def test_a_graph_kept_from_lsh_bands_is_made_again(collection: Path):
    """A candidate graph made from LSH bands (which missed edited copies past 120,000
    pictures) is not followed: the next triage makes it whole again, and the same groups
    come out."""
    from engine.triage import graph_blob, triage
    from engine.triage.view import fingerprint

    with ImageSimilaritySearch(collection) as search:
        search.index()
        first = _groups_of(triage(search))
        fp = fingerprint(search)
        kept = graph_blob.decode(search.store.get_blob(graph_blob.BLOB), fp)
        assert kept is not None and kept.method == "exact blocks"
        kept.method = "LSH banding 78x8"
        kept.pairs = kept.pairs.take(np.zeros(0, np.int64))  # what bands would not find
        search.store.put_blob(graph_blob.BLOB, graph_blob.encode(kept))
        again = _groups_of(triage(search))
        made = graph_blob.decode(search.store.get_blob(graph_blob.BLOB), fp)
    assert made is not None and made.method == "exact blocks" and len(made.pairs)
    assert again == first and first
