"""Hostile input: odd file names, links out of the folder, crafted and damaged indexes,
read-only media, a busy index, signals. Every input here is built by the test."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import ImageSimilaritySearch, SearchError
from engine.names import check_relpath, json_path, printable
from engine.storage import IndexDamaged
from engine.storage.sqlite import SQLiteStore
from support import REPO, SAMPLE, can_unshare, in_private_mounts, make_image, start_indexing
from tui.cli import main

#: File names (as bytes) that once broke something: not UTF-8, Rich markup, escape
#: sequences (OSC 52 clipboard, OSC 0 title, SGR colour), a newline, a bidi override.
ODD_NAMES = [
    b"\xff\xfe.png",
    b"x[/i]y.png",  # a folder "x[" holding "i]y.png": markup across the separator
    b"[red]a.png",
    b"osc\x1b]52;c;aGVsbG8=\x07.png",
    b"title\x1b]0;pwned\x07.png",
    b"sgr\x1b[31mred.png",
    b"new\nline.png",
    b"bidi\xe2\x80\xaegnp.png",
]
CONTROL = [chr(c) for c in range(32)] + ["\x7f", "\x9b", "\u202e"]


def _fs(root: Path, raw: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(root), raw)))


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Two plain images, the odd names, and links that lead out of the folder."""
    root = tmp_path / "hostile"
    make_image(root / "ok1.png", 100)
    make_image(root / "ok2.png", 101)
    for i, raw in enumerate(ODD_NAMES):
        make_image(_fs(root, raw), i)
    outside = tmp_path / "outside"
    make_image(outside / "secret.png", 200)
    os.symlink(outside / "secret.png", root / "secret.png")
    os.symlink(outside, root / "elsewhere")
    os.symlink("..", root / "up")
    return root


def _names(root: Path) -> set[str]:
    return {os.fsdecode(raw) for raw in ODD_NAMES} | {"ok1.png", "ok2.png"}


def test_printable_escapes_what_a_terminal_would_act_on():
    for ch in CONTROL:
        assert ch not in printable(f"a{ch}b")
    assert printable("new\nline") == "new\\nline"
    assert printable(os.fsdecode(b"\xff.png")) == "\\xff.png"
    assert printable("\x1b]0;x\x07") == "\\x1b]0;x\\x07"
    assert printable("bidi\u202e") == "bidi\\u202e"
    assert printable("café [b]ok[/b].png") == "café [b]ok[/b].png"  # plain text stays


def test_json_path_is_valid_utf8_and_lossless():
    name = os.fsdecode(b"dir/\xff\xfe.png")
    field = json_path(name)
    text = json.dumps(field)
    text.encode("utf-8")  # strict: no lone surrogates
    assert base64.b64decode(field["path_b64"]) == b"dir/\xff\xfe.png"
    assert json_path("plain.png") == {"path": "plain.png"}


@pytest.mark.parametrize(
    ("path", "ok"),
    [("a/b.png", True), ("/etc/passwd", False), ("../x.png", False), ("a/../../x", False),
     ("", False), ("a//b", False), ("a/./b", False), ("./a", False), ("a/", False),
     ("a\x00b", False), (".", False), ("x/..", False), ("..a", True), ("a..", True)],
)  # fmt: skip
def test_check_relpath(path: str, ok: bool):
    from engine.names import first_bad_relpath

    for around in ([path], ["x.png", path], [path, "a/b.png"], ["x.png", path, "a/b.png"]):
        want = next((i for i, p in enumerate(around) if check_relpath(p) is not None), None)
        assert first_bad_relpath(around) == want, around
    assert (check_relpath(path) is None) == ok


def test_odd_names_are_indexed_and_links_stay_inside(hostile: Path):
    with ImageSimilaritySearch(hostile) as search:
        stats = search.index()
        assert stats.indexed == len(ODD_NAMES) + 2 and stats.total == len(ODD_NAMES) + 2
        skipped = {f.path: f.reason for f in stats.failed}
        assert set(skipped) == {"secret.png", "elsewhere", "up"}
        assert all("outside the folder" in r for r in skipped.values())
        found = search.find_similar_images(hostile / "ok1.png", 20)
        assert {m.path for m in found} == _names(hostile) - {"ok1.png"}
        for m in found:  # names come back exactly as on disk
            assert (hostile / m.path).is_file()


def test_follow_links_allows_leaving_the_folder(hostile: Path):
    with ImageSimilaritySearch(hostile, follow_links=True) as search:
        stats = search.index()
        assert "secret.png" not in {f.path for f in stats.failed}
        assert stats.total == len(ODD_NAMES) + 2 + 2  # secret.png and elsewhere/secret.png
        assert "secret.png" in {m.path for m in search.find_similar_images(hostile / "ok1.png", 20)}
    # Without the option the same index never returns what a link leads out to.
    with ImageSimilaritySearch(hostile) as search:
        paths = {m.path for m in search.find_similar_images(hostile / "ok1.png", 20)}
        assert "secret.png" not in paths and "elsewhere/secret.png" not in paths


def test_cli_plain_output_is_one_escaped_line_per_result(hostile: Path, capsys):
    assert main(["index", str(hostile)]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "skipped secret.png: symbolic link to outside" in err
    k = len(ODD_NAMES) + 1
    assert main(["search", str(hostile / "ok1.png"), "--in", str(hostile), "-k", str(k)]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in CONTROL if ch != "\n")
    lines = out.splitlines()
    assert len(lines) == k + 1
    text = "\n".join(lines)
    for expected in ("\\xff\\xfe.png", "x[/i]y.png", "osc\\x1b]52;c;", "new\\nline.png", "\\u202e"):
        assert expected in text


def test_cli_json_is_strict_utf8(hostile: Path, capsysbinary):
    assert main(["index", str(hostile), "--json"]) == 0
    raw = capsysbinary.readouterr().out
    summary = json.loads(raw.decode("utf-8"))
    assert summary["indexed"] == len(ODD_NAMES) + 2
    q = hostile / "ok1.png"
    assert main(["search", str(q), "--in", str(hostile), "-k", "20", "--json"]) == 0
    raw = capsysbinary.readouterr().out
    result = json.loads(raw.decode("utf-8"), parse_constant=lambda c: pytest.fail(c))
    byte_paths = set()
    for r in result["results"]:
        exact = base64.b64decode(r["path_b64"]) if "path_b64" in r else r["path"].encode()
        byte_paths.add(os.path.basename(exact) if b"x[" not in exact else b"x[/i]y.png")
    assert byte_paths == {os.path.basename(n) if b"x[" not in n else n for n in ODD_NAMES} | {
        b"ok2.png"
    }


def _crafted(tiny_folder: Path, sql: str | None = None, params: tuple = (), array=None) -> None:
    """Index *tiny_folder*, then doctor its index: run *sql*, and/or call *array* with the
    index folder to damage the array files."""
    assert main(["index", str(tiny_folder), "--json"]) == 0
    folder = tiny_folder / ".lookalike"
    if sql is not None:
        con = sqlite3.connect(folder / "index.sqlite")
        with con:
            con.execute(sql, params)
        con.close()
    if array is not None:
        array(folder)


def _truncate(kind: str):
    def damage(folder: Path) -> None:
        (path,) = folder.glob(f"index.{kind}.*")
        path.write_bytes(path.read_bytes()[:100])

    return damage


def _nan_code(folder: Path) -> None:
    (path,) = folder.glob("index.codes.*")
    data = bytearray(path.read_bytes())
    data[512:1024] = np.full(128, np.nan, "<f4").tobytes()  # slot 1
    path.write_bytes(bytes(data))


SECOND = "WHERE slot = 1"


@pytest.mark.parametrize(
    ("sql", "params", "array", "why"),
    [
        (f"UPDATE images SET path = ? {SECOND}", (b"/etc/passwd",), None, "absolute path"),
        (f"UPDATE images SET path = ? {SECOND}", (b"../../x.png",), None, "leaves the folder"),
        (None, (), _truncate("codes"), "codes file is shorter"),
        (None, (), _truncate("features"), "features file is shorter"),
        (None, (), _truncate("bands"), "band keys file is shorter"),
        (None, (), _nan_code, "not finite"),
        ("UPDATE meta SET value = '1000000000000000' WHERE key = 'slots'", (), None, "slots"),
        ("UPDATE meta SET value = '1000' WHERE key = 'slots'", (), None, "shorter"),
        ("UPDATE meta SET value = '1000000000' WHERE key = 'hash_dim'", (), None, "hash_dim"),
        ("UPDATE meta SET value = '99999999' WHERE key = 'feature_dim'", (), None, "feature_dim"),
        ("UPDATE meta SET value = '\"abc\"' WHERE key = 'num_perm'", (), None, "num_perm"),
        ("UPDATE meta SET value = '[NaN]' WHERE key = 'centre'", (), None, "centre"),
        ("UPDATE meta SET value = '{' WHERE key = 'seed'", (), None, "not valid JSON"),
        ("UPDATE meta SET value = '\"fp8\"' WHERE key = 'precision'", (), None, "precision"),
        ("INSERT INTO dead (slot) VALUES (99999)", (), None, "dead slot"),
    ],
)
def test_crafted_index_is_reported_damaged(tiny_folder: Path, capsys, sql, params, array, why):
    _crafted(tiny_folder, sql, params, array)
    capsys.readouterr()
    q = tiny_folder / "a" / "img0.png"
    code = main(["search", str(q), "--in", str(tiny_folder), "-k", "5", "--no-update", "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "", (out, err)
    assert "is damaged" in err and why in err and "--rebuild" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # and the way out works
    assert main(["index", str(tiny_folder), "--rebuild", "--json"]) == 0


def test_damaged_index_in_the_api_is_a_search_error(tiny_folder: Path):
    _crafted(tiny_folder, f"UPDATE images SET path = ? {SECOND}", (b"/etc/passwd",))
    with ImageSimilaritySearch(tiny_folder) as search, pytest.raises(IndexDamaged):
        search.search(tiny_folder / "a" / "img1.png", 6, exact=True)
    assert issubclass(IndexDamaged, SearchError.__mro__[-3])  # a LookalikeError


def test_link_out_of_the_folder_in_a_crafted_index_is_never_returned(tiny_folder: Path, tmp_path):
    outside = make_image(tmp_path / "private" / "p.png", 300)
    assert main(["index", str(tiny_folder), "--json"]) == 0
    os.symlink(outside, tiny_folder / "a" / "link.png")
    con = sqlite3.connect(tiny_folder / ".lookalike" / "index.sqlite")
    with con:
        con.execute("UPDATE images SET path = ? WHERE path = ?", (b"a/link.png", b"a/img2.png"))
    con.close()
    with ImageSimilaritySearch(tiny_folder) as search:
        paths = [m.path for m in search.find_similar_images(tiny_folder / "a" / "img0.png", 10)]
    assert "a/link.png" not in paths and len(paths) == 4


def test_read_only_index_is_searched_and_not_written(tiny_folder: Path, monkeypatch, capsys):
    import engine.storage.sqlite.store as store

    assert main(["index", str(tiny_folder), "--json"]) == 0
    capsys.readouterr()
    make_image(tiny_folder / "late.png", 55)  # a change the read-only index cannot take
    monkeypatch.setattr(store, "writable", lambda _f, _n: False)
    q = tiny_folder / "a" / "img0.png"
    assert main(["search", str(q), "--in", str(tiny_folder), "-k", "3"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4 and "read-only media" in err and "1 file new" in err
    assert main(["index", str(tiny_folder)]) == 0
    err = capsys.readouterr().err
    assert "read-only media: it is used as it is (6 images)" in err
    with ImageSimilaritySearch(tiny_folder) as search:
        assert search.store.readonly and search.count() == 6


@pytest.mark.skipif(not can_unshare(), reason="needs mount namespaces (unshare -m)")
def test_real_read_only_mount(tiny_folder: Path, tmp_path: Path):
    assert main(["index", str(tiny_folder), "--json"]) == 0
    mnt = tmp_path / "ro"
    mnt.mkdir()
    py = sys.executable
    q = mnt / "a" / "img0.png"
    run = in_private_mounts(
        f"mount --bind {tiny_folder} {mnt} && mount -o remount,bind,ro {mnt} &&"
        f" {py} -m tui search {q} --in {mnt} -k 3 --json &&"
        f" {py} -m tui index {mnt}"
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[0])
    assert len(result["results"]) == 3
    assert "read-only media: it is used as it is (6 images); it is up to date" in run.stderr


@pytest.mark.skipif(not can_unshare(), reason="needs mount namespaces (unshare -m)")
def test_disk_full_is_said_in_those_words(tmp_path: Path):
    small = tmp_path / "small"
    small.mkdir()
    py = sys.executable
    # A small file system: ten images, then a filler that takes every byte left.
    script = (
        f"mount -t tmpfs -o size=512k tmpfs {small} &&"
        f' {py} -c \'import sys; sys.path.insert(0, "tests"); from support import make_image;'
        f' from pathlib import Path; [make_image(Path("{small}") / f"{{i}}.png", i)'
        f" for i in range(10)]' &&"
        f" mkdir {small}/.lookalike &&"
        f" (dd if=/dev/zero of={small}/.filler bs=4k 2>/dev/null; true) &&"
        f" {py} -m tui index {small} --batch-size 4"
    )
    run = in_private_mounts(script)
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "disk full" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_search_while_another_process_indexes(tiny_folder: Path, capsys):
    assert main(["index", str(tiny_folder), "--json"]) == 0
    capsys.readouterr()
    make_image(tiny_folder / "late.png", 66)
    other = SQLiteStore(tiny_folder / ".lookalike" / "index.sqlite")
    with other.writer():
        q = tiny_folder / "a" / "img0.png"
        assert main(["search", str(q), "--in", str(tiny_folder), "-k", "2"]) == 0
    other.close()
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert "another lookalike process is updating this index" in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["index", "{tiny}", "--hash-dim", "5"], 2, "--hash-dim: must be from 8 to 2048"),
        (["index", "{tiny}", "--num-perm", "1"], 2, "--num-perm: must be from 2 to 1024"),
        (["search", "{tiny}", "--in", "{tiny}"], 2, "is a folder, not an image"),
        (["{tiny}", "--query", "{tiny}"], 2, "is a folder, not an image"),
    ],
)
def test_small_ones(tiny_folder: Path, capsys, argv, code, message):
    assert main([a.format(tiny=tiny_folder) for a in argv]) == code
    assert message in capsys.readouterr().err


def test_refused_weights_file_says_why_in_one_line(tmp_path: Path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": Evil()}, protocol=4))
    make_image(tmp_path / "imgs" / "a.png", 1)
    run = subprocess.run(
        [sys.executable, "-m", "tui", "index", str(tmp_path / "imgs"), "--weights", str(evil)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 1
    assert (
        run.stderr.count("\n") == 1 and "refused because loading them could run code" in run.stderr
    )
    assert "weights_only" not in run.stderr and "Warning" not in run.stderr


def test_sigterm_keeps_committed_work_and_exits_143(tmp_path: Path):
    root = tmp_path / "term"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    db = root / ".lookalike" / "index.sqlite"
    proc, _ = start_indexing(root, db, 16)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1].startswith("lookalike: terminated")
    with ImageSimilaritySearch(root) as search:
        kept = search.count()
        assert kept >= 16
        assert search.index().indexed == 200 - kept


async def test_app_shows_odd_names_as_plain_text(hostile: Path):
    from test_app import SIZE, ready, wait_for

    from tui.app import create_app
    from tui.screens.failures import FailuresScreen
    from tui.text import fit_path
    from tui.widgets.image_tree import ImageTree
    from tui.widgets.results import ResultsGrid

    app = create_app(hostile)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tree = app.query_one(ImageTree)
        labels = [str(n.label) for n in tree.root.children]
        assert "\\xff\\xfe.png" in labels and "new\\nline.png" in labels and "[red]a.png" in labels
        assert not {"secret.png", "elsewhere", "up"} & set(labels)  # links out: not listed
        assert all(not any(ch in label for ch in CONTROL) for label in labels)
        app.search_view.run_search(_fs(hostile, b"x[/i]y.png"))
        await wait_for(pilot, lambda: app.search_view.last_result is not None)
        status = str(app.query_one("#results-status").render())
        assert "lookalikes of x[/i]y.png" in status
        grid = app.query_one(ResultsGrid)
        names = {str(c.query_one(".card-name").render()).strip() for c in grid.cards}
        width = grid.cards[0].card_width - 4  # long names are cut, escaped first
        shown = ("[red]a.png", "osc\\x1b]52;c;aGVsbG8=\\x07.png", "\\xff\\xfe.png")
        assert {fit_path(n, width).plain for n in shown} <= names
        assert all(not any(ch in n for ch in CONTROL) for n in names)
        await pilot.press("f")
        assert isinstance(app.screen, FailuresScreen)
        await pilot.press("escape")
        copied = []
        app.copy_to_clipboard = copied.append
        await pilot.press("tab", "c")
        assert copied and app.is_running


async def test_app_reports_a_crafted_index_and_stays_up(tiny_folder: Path):
    from test_app import SIZE, ready, wait_for

    from tui.app import create_app

    _crafted(tiny_folder, f"UPDATE images SET path = ? {SECOND}", (b"/etc/passwd",))
    app = create_app(tiny_folder, auto_index=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.search_view.run_search(tiny_folder / "a" / "img0.png")
        await wait_for(
            pilot, lambda: "is damaged" in str(app.query_one("#results-status").render())
        )
        assert app.search_view.last_result is None and app.is_running


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        (f"UPDATE images SET path = '/etc/passwd' {SECOND}", "absolute path"),
        (f"UPDATE images SET path = '../../x.png' {SECOND}", "leaves the folder"),
        (
            "INSERT INTO images (path, size, mtime_ns, status, error)"
            " VALUES ('../../../etc/shadow', 1, 1, 'failed', 'x')",
            "leaves the folder",
        ),
    ],
)
@pytest.mark.parametrize("out", [[], ["--json"], ["--csv"], ["--move-to", "AWAY"]])
def test_triage_refuses_a_crafted_stored_path(tiny_folder: Path, tmp_path, capsys, sql, why, out):
    _crafted(tiny_folder, sql)
    capsys.readouterr()
    before = sorted(p for p in tiny_folder.rglob("*") if ".lookalike" not in p.parts)
    out = [str(tmp_path / "away") if o == "AWAY" else o for o in out]
    assert main(["triage", str(tiny_folder), "--no-update", *out]) == 1
    std, err = capsys.readouterr()
    assert std == "" and "is damaged" in err and why in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p for p in tiny_folder.rglob("*") if ".lookalike" not in p.parts) == before
    assert not (tmp_path / "away").exists()


async def test_app_triage_reports_a_crafted_index(tiny_folder: Path):
    from test_app import SIZE, ready, wait_for

    from tui.app import create_app

    _crafted(tiny_folder, f"UPDATE images SET path = '../../x.png' {SECOND}")
    app = create_app(tiny_folder, auto_index=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("d")
        status = lambda: str(app.screen.query_one("#triage-status").render())  # noqa: E731
        await wait_for(pilot, lambda: "is damaged" in status())
        assert "triage failed" in status() and app.is_running
