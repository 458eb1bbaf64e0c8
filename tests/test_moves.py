"""Triage you can trust: which copy is kept, a plan before a move, moves that fail say so,
destinations inside the folder left out of later walks, and undo records that cannot be
turned against the user (crafted, or left by a kill mid-move)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import edited_copy, make_picture
from tui.cli import main

REPO = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under *root* but the index, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".lookalike" not in p.parts
    }


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    """``originals/`` and an ``incoming/`` dump of their copies: identical ones with the
    same modification time, and one upscaled (more pixels than its original)."""
    root = tmp_path / "photos"
    for i in range(4):
        src = make_picture(root / "originals" / f"photo_{i}.png", 40 + i)
        dup = edited_copy(src, root / "incoming" / f"c{i}.png", "identical")
        st = src.stat()
        os.utime(dup, ns=(st.st_atime_ns, st.st_mtime_ns))
    big = Image.open(root / "originals" / "photo_0.png")
    big.resize((big.width * 2, big.height * 2), Image.LANCZOS).save(root / "incoming" / "big.png")
    for i in range(6):
        make_picture(root / "other" / f"o{i}.png", 300 + i)
    return root


def _triage(root: Path, capsys, *args: str) -> dict:
    assert main(["triage", str(root), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_keep_in_is_kept_and_never_moved(dump: Path, tmp_path: Path, capsys):
    out = _triage(dump, capsys)  # the default order: most pixels, then the shorter path
    reps = {g["representative"] for g in out["groups"]}
    assert reps and all(r.startswith("incoming/") for r in reps)
    out = _triage(dump, capsys, "--keep-in", str(dump / "originals"))
    assert out["keep_in"] == ["originals"]
    assert {g["representative"] for g in out["groups"]} == {
        f"originals/photo_{i}.png" for i in range(4)
    }
    kept = _tree(dump / "originals")
    aside = tmp_path / "aside"
    code = main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(aside)])
    assert code == 0
    assert _tree(dump / "originals") == kept
    assert sorted(_tree(aside)) == ["incoming/big.png"] + [f"incoming/c{i}.png" for i in range(4)]
    # both folders kept: copies in either stay where they are
    assert main(["triage", str(dump), "--undo"]) == 0
    capsys.readouterr()
    out = _triage(dump, capsys, "--keep-in", "originals", "--keep-in", "incoming")
    assert all(m["kept"] for g in out["groups"] for m in g["members"])
    before = _tree(dump)
    assert main(["triage", str(dump), "--keep-in", "originals", "--keep-in", "incoming",
                 "--move-to", str(aside)]) == 0  # fmt: skip
    assert _tree(dump) == before
    assert main(["triage", str(dump), "--keep-in", str(tmp_path)]) == 2
    assert "not a folder under" in capsys.readouterr().err


def test_dry_run_changes_nothing_and_says_what_would_move(dump: Path, tmp_path: Path, capsys):
    before = _tree(dump)
    aside = tmp_path / "aside"
    assert main(["triage", str(dump), "--move-to", str(aside), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert _tree(dump) == before and not aside.exists()
    assert "5 files would move" in out
    assert "     4 from originals/" in out and "     1 from incoming/" in out
    assert "originals/photo_1.png" in out
    assert main(["triage", str(dump), "--dry-run"]) == 2


def test_a_failed_move_names_the_file_and_exits_non_zero(dump: Path, tmp_path: Path, capsys):
    aside = tmp_path / "aside"
    (aside / "incoming").mkdir(parents=True)
    (aside / "incoming" / "big.png").write_bytes(b"in the way")
    code = main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(aside)])
    err = capsys.readouterr().err
    assert code == 1
    assert "not moved incoming/big.png:" in err and "1 could not be moved" in err
    assert (dump / "incoming" / "big.png").exists()
    assert (aside / "incoming" / "big.png").read_bytes() == b"in the way"


def test_a_destination_inside_the_folder_is_left_out_afterwards(dump: Path, capsys):
    dups = dump / "_dups"
    assert main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(dups)]) == 0
    capsys.readouterr()
    moved = sorted(_tree(dups))
    assert len(moved) == 5
    out = _triage(dump, capsys)
    listed = [m["path"] for g in out["groups"] for m in g["members"]]
    listed += [g["representative"] for g in out["groups"]] + [o["path"] for o in out["outliers"]]
    assert not any(p.startswith("_dups/") for p in listed)
    assert not out["groups"]
    # a second move finds nothing to move, and never nests the folder in itself
    assert main(["triage", str(dump), "--move-to", str(dups)]) == 0
    assert sorted(_tree(dups)) == moved and not (dups / "_dups").exists()
    capsys.readouterr()
    assert main(["index", str(dump), "--json"]) == 0
    assert "_dups" not in capsys.readouterr().out


def test_a_symlink_is_never_kept_over_its_target(tmp_path: Path, capsys):
    root = tmp_path / "photos"
    make_picture(root / "z_real.png", 5)
    os.symlink("z_real.png", root / "a.png")
    for i in range(4):
        make_picture(root / f"o{i}.png", 60 + i)
    out = _triage(root, capsys)
    (group,) = out["groups"]
    assert group["representative"] == "z_real.png"
    assert [m["path"] for m in group["members"]] == ["a.png"]


def _record(root: Path, folder: Path, rels: list[str], name: str, sign: bool = False) -> Path:
    """A move record planted in *root*'s index folder: unsigned (crafted), or signed
    with this user's key (as a genuine but wrong record would be)."""
    from engine.quarantine.records import _key, _mac

    moves = root / ".lookalike" / "moves"
    moves.mkdir(parents=True, exist_ok=True)
    b64 = lambda s: base64.b64encode(os.fsencode(str(s))).decode()  # noqa: E731
    real = os.path.realpath(folder)
    inside = os.path.relpath(real, os.path.realpath(root))
    inside = None if inside.startswith("..") else "" if inside == "." else inside
    head = {"root": b64(os.path.realpath(root)), "folder": b64(real), "nonce": "n" * 32,
            "inside": None if inside is None else b64(inside)}  # fmt: skip
    lines = [head] + [{"planned": b64(r)} for r in rels]
    if sign:
        key = _key(create=True)
        lines = [{**x, "mac": _mac(key, head["nonce"], n, x)} for n, x in enumerate(lines)]
    path = moves / name
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_crafted_move_record_is_refused(dump: Path, tmp_path: Path, capsys):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.png").write_bytes(b"private")
    assert main(["index", str(dump)]) == 0
    for n, folder in enumerate((secret, dump)):  # outside DIR, and DIR itself
        _record(dump, folder, ["key.png"], f"99999999-00000{n}-1-1.jsonl")
        assert main(["triage", str(dump), "--undo"]) == 1
        err = capsys.readouterr().err
        assert "is not signed by your lookalike" in err and "refused" in err
    assert (secret / "key.png").read_bytes() == b"private" and not (dump / "key.png").exists()
    # a record for another folder, even signed and naming a real destination, is refused
    aside = tmp_path / "aside"
    assert main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(aside)]) == 0
    rec = _record(dump, aside, ["incoming/c1.png"], "99999999-000003-1-1.jsonl", sign=True)
    text = rec.read_text().replace(
        json.loads(rec.read_text().splitlines()[0])["root"],
        base64.b64encode(b"/somewhere/else").decode(),
    )
    rec.write_text(text)  # altered: no longer verifies
    assert main(["triage", str(dump), "--undo"]) == 1
    assert "not signed by your lookalike" in capsys.readouterr().err
    # the refused records are kept aside, and the real move is still undoable
    assert main(["triage", str(dump), "--undo"]) == 0
    assert (dump / "incoming" / "c1.png").exists()
    assert len(list((dump / ".lookalike" / "moves").glob("*.refused"))) == 3
    # even a signed record climbing out of the folder, or through a link, brings
    # nothing in, and nothing is ever put back into the index folder
    assert main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(aside)]) == 0
    os.symlink(secret, dump / "out")
    shutil.copy(aside / "incoming" / "c2.png", aside / "evil.png")
    (aside / "out").mkdir()
    shutil.copy(aside / "incoming" / "c2.png", aside / "out" / "planted.png")
    shutil.copy(aside / "incoming" / "c2.png", aside / "planted2.png")
    rels = ["../evil.png", "out/planted.png", ".lookalike/planted2.png"]
    _record(dump, aside, rels, "99999999-000004-1-1.jsonl", sign=True)
    assert main(["triage", str(dump), "--undo"]) == 1
    err = capsys.readouterr().err
    assert "not put back ../evil.png" in err and "not put back out/planted.png" in err
    assert "not put back .lookalike/planted2.png: inside the index folder" in err
    assert sorted(p.name for p in secret.iterdir()) == ["key.png"]
    assert not (dump / ".lookalike" / "planted2.png").exists()


MOVER = """
import errno, os, sys, time
import engine.quarantine.files as q
from tui.cli import main

aside = sys.argv[2]
real_rename, real_write = q._rename, os.write
def rename(src, name, dst, dst_name):
    if dst.path.startswith(aside) and not src.path.startswith(aside):
        raise OSError(errno.EXDEV, "Invalid cross-device link")  # as from another disk
    return real_rename(src, name, dst, dst_name)
def write(fd, data):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".lookalike-part"):  # the copy itself
        open(sys.argv[3], "a").close()
        time.sleep(0.05)
    return real_write(fd, data)
q._rename, os.write, q.CHUNK = rename, write, 1 << 16
sys.exit(main(["triage", sys.argv[1], "--no-update", "--move-to", aside, "--keep-in", "big"]))
"""


def test_kill_mid_cross_device_move_then_undo_restores_every_byte(tmp_path: Path, capsys):
    root = tmp_path / "photos"
    (root / "big").mkdir(parents=True)
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (700, 700, 3), dtype=np.uint8))
    noise.save(root / "big" / "noise.png")  # 1.5 MB that does not compress
    (root / "dump").mkdir()
    shutil.copy(root / "big" / "noise.png", root / "dump" / "noise-copy.png")
    src = make_picture(root / "big" / "a.png", 3)
    edited_copy(src, root / "small" / "a-copy.png", "identical")
    for i in range(4):
        make_picture(root / "other" / f"o{i}.png", 80 + i)
    # an earlier move, finished: only the copy of a.png
    first = tmp_path / "first"
    code = main(
        ["triage", str(root), "--keep-in", "big", "--keep-in", "dump", "--move-to", str(first)]
    )
    assert code == 0 and sorted(_tree(first)) == ["small/a-copy.png"]
    original = (root / "dump" / "noise-copy.png").read_bytes()
    second = tmp_path / "second"
    started = tmp_path / "copying"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", MOVER, str(root), str(second), str(started)],
        env=env,
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, "the move ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    part = second / "dump" / ".noise-copy.png.lookalike-part"
    assert part.exists() and 0 < part.stat().st_size < len(original)
    assert main(["triage", str(root), "--undo"]) == 0  # finishes the interrupted move
    assert "removed 1 copy left by an interrupted move" in capsys.readouterr().err
    assert (root / "dump" / "noise-copy.png").read_bytes() == original
    assert not [p for p in second.rglob("*") if p.is_file()]
    assert main(["triage", str(root), "--undo"]) == 0  # and the older move is still there
    assert (root / "small" / "a-copy.png").read_bytes() == src.read_bytes()


def test_undo_finishes_a_copy_made_but_not_yet_removed(dump: Path, tmp_path: Path, capsys):
    aside = tmp_path / "aside"
    assert main(["triage", str(dump), "--keep-in", "originals", "--move-to", str(aside)]) == 0
    # as if killed after the copy was in place, before the original was removed
    shutil.copy2(aside / "incoming" / "c3.png", dump / "incoming" / "c3.png")
    assert main(["triage", str(dump), "--undo"]) == 0
    assert "removed 1 copy" in capsys.readouterr().err
    assert not [p for p in aside.rglob("*") if p.is_file()]
    assert len(_tree(dump / "incoming")) == 5


def test_a_crafted_record_inside_the_folder_never_removes_a_file(dump: Path, capsys):
    """A signed record 'moving' originals/photo_1.png to its identical copy in incoming/
    (as if cut short) must not take the copy for a leftover: inside DIR a move is a
    rename."""
    assert main(["index", str(dump)]) == 0
    before = _tree(dump)
    from engine.quarantine.records import _key, _mac

    rec = _record(dump, dump, [], "99999999-000003-1-1.jsonl", sign=True)
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    entry = {"planned": b64("originals/photo_1.png"), "to": b64("incoming/c1.png")}
    entry["mac"] = _mac(_key(create=False), "n" * 32, 1, entry)
    rec.write_text(rec.read_text() + json.dumps(entry) + "\n")
    assert main(["triage", str(dump), "--undo"]) == 0
    assert _tree(dump) == before


def test_undo_takes_the_newest_move_of_the_same_second(dump: Path, tmp_path: Path, monkeypatch):
    """Two moves in one second, the later from a process id that sorts first as text
    (100000 after 99999): undo must take the later one."""
    from engine.quarantine import move_aside, records, undo

    monkeypatch.setattr(records.time, "strftime", lambda *_: "20260101-000000")
    for pid, rel in ((99999, "incoming/c1.png"), (100000, "incoming/c2.png")):
        monkeypatch.setattr(records.os, "getpid", lambda pid=pid: pid)
        assert move_aside(dump, [rel], tmp_path / "aside").moved == [rel]
    monkeypatch.undo()
    assert undo(dump).moved == ["incoming/c2.png"]
    assert (dump / "incoming" / "c2.png").exists() and not (dump / "incoming" / "c1.png").exists()
