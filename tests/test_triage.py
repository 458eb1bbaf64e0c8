"""Triage: groups (deterministic, no chaining), identical copies, outliers, broken files,
the JSON and CSV schemas, and moving duplicates aside and back (also after a crash)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import edited_copy, make_picture
from engine import ImageSimilaritySearch
from engine.quarantine import MoveError, move_aside, pending_manifest, undo
from engine.triage import Graph, _group, triage
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


def test_no_chaining_and_the_keeper_order():
    # a-b and b-c are near-duplicates, a-c is not: c must not join a's group
    w = (0.9, "0.95 aligned pixels")
    chain = {0: {1: w}, 1: {0: w, 2: w}, 2: {1: w}}
    g = _graph(chain, ["a.png", "b.png", "c.png"], [100, 50, 50], [5, 1, 1])
    assert _shape(_group(g, 0.0, (), frozenset())) == [("a.png", ["b.png"])]
    pair = {0: {1: w}, 1: {0: w}}
    # equal pixels: the oldest is kept; equal too: the shorter path, then the first
    assert (
        _group(_graph(pair, ["b.png", "a.png"], [9, 9], [2, 1]), 0, (), frozenset())[
            0
        ].representative.path
        == "a.png"
    )
    same = _graph(pair, ["in/copy.png", "a/b/c/orig.png"], [9, 9], [1, 1])
    assert _group(same, 0, (), frozenset())[0].representative.path == "in/copy.png"
    # a kept folder outranks pixels and age; its members are marked kept
    big = _graph(pair, ["incoming/x.png", "originals/x.png"], [900, 9], [1, 5])
    (grp,) = _group(big, 0, ("originals",), frozenset())
    assert grp.representative.path == "originals/x.png" and not grp.members[0].kept
    (grp,) = _group(big, 0, ("incoming", "originals"), frozenset())
    assert grp.members[0].kept
    # a chosen keeper outranks everything; a link never outranks its target
    assert (
        _group(big, 0, ("originals",), frozenset({"incoming/x.png"}))[0].representative.path
        == "incoming/x.png"
    )
    linked = _graph(pair, ["a.png", "z-target.png"], [9, 9], [1, 1], links=[0])
    assert _group(linked, 0, (), frozenset())[0].representative.path == "z-target.png"
    # the threshold leaves out weaker pairs, never identical bytes
    ident = {0: {1: (0.2, "identical bytes"), 2: (0.5, "x")}, 1: {0: (0.2, "identical bytes")}}
    ident[2] = {0: (0.5, "x")}
    three = _graph(ident, ["a.png", "b.png", "c.png"], [9, 9, 9], [1, 2, 3])
    assert _shape(_group(three, 0.6, (), frozenset())) == [("a.png", ["b.png"])]


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
    assert rows[0] == ["group_id", "path", "role", "score", "sha256", "why", "path_b64"]
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
    import engine.quarantine as q

    real = q._move
    calls = []

    def dies_on_the_third(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed between writing the plan and moving
        real(src, dst)

    monkeypatch.setattr(q, "_move", dies_on_the_third)
    rels = [f"copies/orig{i}-crop.png" for i in range(8)]
    with pytest.raises(KeyboardInterrupt):
        move_aside(collection, rels, tmp_path / "aside")
    monkeypatch.setattr(q, "_move", real)
    assert pending_manifest(collection) is not None
    assert sum((tmp_path / "aside" / r).exists() for r in rels) == 2
    done = undo(collection, folders={str(tmp_path / "aside")})
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


async def test_triage_screen(collection: Path):
    from test_app import SIZE, ready, wait_for

    from tui.app import create_app
    from tui.screens.triage import TriageScreen

    app = create_app(collection)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, TriageScreen)
        await wait_for(pilot, lambda: screen.report is not None)
        assert len(screen.rows) == 8 + 1  # eight groups, then the outliers
        assert screen.rows[0][0].slot.kind == "keep"
        status = str(screen.query_one("#triage-status").render())
        assert "8 groups" in status and "1 broken" in status
        await pilot.press("space")  # the representative cannot be set aside
        assert not screen.marked()
        await pilot.press("right", "space")
        marked = screen.marked()
        assert len(marked) == 1 and marked[0].startswith("copies/")
        await pilot.press("m")
        await wait_for(pilot, lambda: (collection / ".lookalike/quarantine" / marked[0]).exists())
        assert not (collection / marked[0]).exists()
        await wait_for(pilot, lambda: screen.report is not None)
        assert screen.report.duplicates == 14
        await pilot.press("u")
        await wait_for(pilot, lambda: (collection / marked[0]).exists())
        await wait_for(pilot, lambda: screen.report is not None)
        assert screen.report.duplicates == 15
        await pilot.press("down")
        second = screen.current.data.path
        assert screen.current is screen.rows[1][0]
        await pilot.press("enter")  # search with the second group's representative
        await wait_for(pilot, lambda: app.last_result is not None)
        assert not isinstance(app.screen, TriageScreen)
        assert app.query_path == second


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
