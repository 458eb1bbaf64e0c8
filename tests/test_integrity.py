"""Index and store integrity: every hostile state here is built by the test itself.

A crafted index never makes lookalike write outside its folder; one odd file never
stops a run; a walk that finds nothing never empties an index; damage is said in one
line, never answered with zeros; a run killed inside its upkeep is finished later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import ImageSimilaritySearch
from support import can_unshare, in_private_mounts, make_image
from tui.cli import main

DAMAGED = "is damaged"


def _index(root: Path, *extra: str) -> int:
    return main(["index", str(root), *extra])


def _one_line(err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / ".lookalike" / "index.sqlite")


def _meta(root: Path, key: str, default=0):
    db = _db(root)
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    db.close()
    return json.loads(row[0]) if row else default


def _set_meta(root: Path, key: str, value) -> None:
    db = _db(root)
    with db:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
    db.close()


# --- nothing written outside the index folder ---------------------------------------------


def test_a_symlinked_array_file_is_damage_not_a_target(tiny_folder: Path, tmp_path: Path, capsys):
    assert _index(tiny_folder) == 0
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    codes = tiny_folder / ".lookalike" / f"index.codes.{_meta(tiny_folder, 'vec_gen')}"
    codes.unlink()
    codes.symlink_to(victim)
    make_image(tiny_folder / "new.png", 77)
    capsys.readouterr()
    assert _index(tiny_folder) == 1
    _one_line(capsys.readouterr().err, DAMAGED, "symbolic link", "--rebuild")
    q = str(tiny_folder / "a" / "img0.png")
    assert main(["search", q, "--in", str(tiny_folder)]) == 1
    _one_line(capsys.readouterr().err, DAMAGED)
    assert victim.read_bytes() == b"precious"
    # the way out the message names works, and leaves the victim alone
    assert _index(tiny_folder, "--rebuild") == 0
    assert victim.read_bytes() == b"precious" and not codes.is_symlink()


@pytest.mark.parametrize("key", ["vec_gen", "band_gen", "lsh_gen"])
def test_a_generation_that_names_another_file_is_damage(
    tiny_folder: Path, tmp_path: Path, capsys, key: str
):
    assert _index(tiny_folder) == 0
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    # "index.codes.x/../../../victim": a directory of that name is shipped with the index
    traversal = "x/../../../victim"
    for kind in ("codes", "features", "bands", "lsh-keys", "lsh-slots", "lsh-fences"):
        (tiny_folder / ".lookalike" / f"index.{kind}.x").mkdir()
    _set_meta(tiny_folder, key, traversal)
    make_image(tiny_folder / "new.png", 78)
    capsys.readouterr()
    assert _index(tiny_folder) == 1
    _one_line(capsys.readouterr().err, DAMAGED, key)
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("companion", ["index.sqlite-wal", "index.sqlite.lock"])
def test_sqlite_companions_must_be_plain_files(
    tiny_folder: Path, tmp_path: Path, capsys, companion
):
    assert _index(tiny_folder) == 0
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tiny_folder / ".lookalike" / companion
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    make_image(tiny_folder / "new.png", 79)
    capsys.readouterr()
    assert _index(tiny_folder) == 1
    _one_line(capsys.readouterr().err, DAMAGED)
    assert victim.read_bytes() == b"precious"


def test_an_index_folder_that_is_a_link_is_refused(tiny_folder: Path, tmp_path: Path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tiny_folder / ".lookalike").symlink_to(elsewhere)
    assert _index(tiny_folder) == 1
    _one_line(capsys.readouterr().err, "symbolic link", "--index PATH")
    assert list(elsewhere.iterdir()) == []


def test_a_truncated_array_is_damage_not_zeros(tiny_folder: Path, capsys):
    assert _index(tiny_folder) == 0
    codes = tiny_folder / ".lookalike" / f"index.codes.{_meta(tiny_folder, 'vec_gen')}"
    os.truncate(codes, 100)
    make_image(tiny_folder / "new.png", 80)
    capsys.readouterr()
    assert _index(tiny_folder) == 1  # refused before a row is written past the hole
    _one_line(capsys.readouterr().err, DAMAGED, "codes file is shorter")
    assert codes.stat().st_size == 100
    q = str(tiny_folder / "a" / "img0.png")
    assert main(["search", q, "--in", str(tiny_folder), "--no-update"]) == 1
    _one_line(capsys.readouterr().err, DAMAGED)


# --- one file never stops a run ----------------------------------------------------------------


def test_a_thin_giant_picture_is_one_skip(tiny_folder: Path, capsys):
    # 1 x 60,000,000 pixels: 117 KB as a PNG, under the pixel cap
    Image.new("L", (1, 60_000_000), 255).save(tiny_folder / "thin.png")
    Image.new("L", (30_000, 2), 0).save(tiny_folder / "wide.png")
    assert _index(tiny_folder, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    reasons = {f["path"]: f["reason"] for f in out["failed"]}
    assert set(reasons) == {"thin.png", "wide.png"} and out["total"] == 6
    assert all("aspect ratio" in r for r in reasons.values())
    q = str(tiny_folder / "a" / "img0.png")
    assert main(["search", q, "--in", str(tiny_folder), "-k", "2"]) == 0
    assert main(["triage", str(tiny_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {b["path"] for b in report["broken"]} == {"thin.png", "wide.png"}


def test_any_failure_on_one_file_is_that_files_skip(tiny_folder: Path, monkeypatch):
    from engine import copies

    real = copies.thumbnail

    def choking(im, *rest):
        if im.size == (40, 32) and im.getpixel((0, 0)) == (0, 0, 0):
            raise MemoryError
        return real(im, *rest)

    Image.new("RGB", (40, 32)).save(tiny_folder / "black.png")
    monkeypatch.setattr("engine.prepare.thumbnail", choking)
    with ImageSimilaritySearch(tiny_folder) as search:
        stats = search.index()
    assert stats.total == 6
    assert [(f.path, f.reason) for f in stats.failed] == [
        ("black.png", "out of memory processing this image")
    ]


# --- a walk that finds nothing never empties an index --------------------------------------------


def test_an_empty_folder_keeps_a_local_index(tiny_folder: Path, tmp_path: Path, capsys):
    index = tiny_folder / ".lookalike" / "index.sqlite"
    assert _index(tiny_folder) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert _index(empty, "--index", str(index), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == 0 and out["kept_gone"] == 6 and out["total"] == 6
    assert _index(empty, "--index", str(index)) == 0
    assert "6 indexed files are gone" in capsys.readouterr().err
    # more than half gone: kept too; a small share goes as before
    (tiny_folder / "a" / "img0.png").unlink()
    assert _index(tiny_folder, "--json") == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    for name in ("a/img1.png", "a/img2.png", "b/img3.png"):
        (tiny_folder / name).unlink()
    assert _index(tiny_folder, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["removed"], out["kept_gone"], out["total"]) == (0, 3, 5)
    assert _index(tiny_folder, "--prune", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["removed"], out["kept_gone"], out["total"]) == (3, 0, 2)


def test_an_empty_folder_leaves_a_shared_index_alone(
    redis_url, tiny_folder: Path, tmp_path, capsys
):
    assert main(["index", str(tiny_folder), "--store", redis_url]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main(["index", str(empty), "--store", redis_url]) == 1
    line = _one_line(capsys.readouterr().err, "none of the 6 files", "--prune")
    assert str(tiny_folder) in line  # the folder it was built from
    q = str(tiny_folder / "a" / "img0.png")
    assert main(["search", q, "--in", str(tiny_folder), "--store", redis_url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 5
    assert main(["index", str(empty), "--store", redis_url, "--prune", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0


# --- upkeep finished after a kill ------------------------------------------------------------------


def test_a_kill_inside_the_refit_is_finished_by_the_next_run(tiny_folder: Path, monkeypatch):
    from engine.indexer import Indexer

    with ImageSimilaritySearch(tiny_folder) as search:
        search.index()
    for i in range(10, 22):  # the collection more than doubles: a refit is due
        make_image(tiny_folder / "c" / f"img{i}.png", i)

    def killed(self):  # the new band keys are written, then the process dies
        snap = self.store.snapshot()
        base = self.store.location.removesuffix(".sqlite")
        Path(f"{base}.bands.99").write_bytes(np.asarray(snap.band_keys).tobytes())
        raise KeyboardInterrupt

    monkeypatch.setattr(Indexer, "_refit", killed)
    with ImageSimilaritySearch(tiny_folder) as search, pytest.raises(KeyboardInterrupt):
        search.index()
    monkeypatch.undo()
    assert _meta(tiny_folder, "upkeep") == 1
    assert _meta(tiny_folder, "centre_count") < 18
    with ImageSimilaritySearch(tiny_folder) as search:
        stats = search.index()  # nothing new on disk: the upkeep alone
    assert stats.indexed == 0 and stats.total == 18
    assert _meta(tiny_folder, "upkeep") == 0
    assert _meta(tiny_folder, "centre_count") == 18
    names = {p.name for p in (tiny_folder / ".lookalike").iterdir()}
    assert "index.bands.99" not in names and not any(n.endswith(".part") for n in names)


# --- damage said in one line, and --rebuild as the way out ------------------------------------------


def test_a_newer_schema_can_be_rebuilt(tiny_folder: Path, capsys):
    assert _index(tiny_folder) == 0
    _set_meta(tiny_folder, "schema", 99)
    capsys.readouterr()
    assert _index(tiny_folder) == 1
    _one_line(capsys.readouterr().err, "newer lookalike", "--rebuild")
    assert _index(tiny_folder, "--rebuild") == 0
    assert _meta(tiny_folder, "schema") != 99


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE images SET slot = -5 WHERE slot = 3",
        "UPDATE images SET slot = 2147483648 WHERE slot = 3",
        "UPDATE images SET digest = 'abc' WHERE slot = 3",
        "UPDATE images SET dhash = 'abc' WHERE slot = 3",
        "UPDATE images SET pixels = 'abc' WHERE slot = 3",
    ],
)
def test_crafted_records_are_damage(tiny_folder: Path, capsys, sql: str):
    assert _index(tiny_folder) == 0
    db = _db(tiny_folder)
    with db:
        db.execute(sql)
    db.close()
    capsys.readouterr()
    assert main(["triage", str(tiny_folder), "--no-update"]) == 1
    _one_line(capsys.readouterr().err, DAMAGED)
    if "SET slot" in sql:
        q = str(tiny_folder / "a" / "img0.png")
        assert main(["search", q, "--in", str(tiny_folder), "-k", "5", "--no-update"]) == 1
        _one_line(capsys.readouterr().err, DAMAGED)


def _redis(url: str):
    import redis

    from engine.storage.redis import parse_url

    kwargs, name, _ = parse_url(url)
    kwargs.pop("ssl")
    return redis.Redis(**kwargs), f"lookalike:{name}:".encode()


def _set_record_slot(r, prefix: bytes, slot: int) -> None:
    key, raw = next(iter(r.hscan_iter(prefix + b"img")))
    raw = bytearray(raw)
    struct.pack_into("<q", raw, 16, slot)
    r.hset(prefix + b"img", key, bytes(raw))


REDIS_HARM = {
    "slot counter 2**39": lambda r, p: r.set(p + b"slots", 2**39),
    "live bitmap of garbage": lambda r, p: r.set(p + b"live", os.urandom(64)),
    "meta of the wrong type": lambda r, p: (r.delete(p + b"meta"), r.set(p + b"meta", b"x")),
    "records of the wrong type": lambda r, p: (r.delete(p + b"img"), r.lpush(p + b"img", b"x")),
    "a record's slot -5": lambda r, p: _set_record_slot(r, p, -5),
    "a record's slot 2**31": lambda r, p: _set_record_slot(r, p, 2**31),
}


@pytest.mark.parametrize("harm", REDIS_HARM)
def test_crafted_redis_keys_are_damage_and_rebuild_works(
    redis_url, tiny_folder: Path, capsys, harm: str
):
    store = ["--store", redis_url]
    assert main(["index", str(tiny_folder), *store]) == 0
    r, prefix = _redis(redis_url)
    REDIS_HARM[harm](r, prefix)
    capsys.readouterr()
    q = str(tiny_folder / "a" / "img0.png")
    assert main(["search", q, "--in", str(tiny_folder), "-k", "5", *store]) == 1
    _one_line(capsys.readouterr().err, DAMAGED, "--rebuild")
    assert main(["triage", str(tiny_folder), *store]) == 1
    _one_line(capsys.readouterr().err, DAMAGED)
    assert main(["index", str(tiny_folder), "--rebuild", *store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 6


def test_a_newer_shared_schema_can_be_rebuilt(redis_url, tiny_folder: Path, capsys):
    store = ["--store", redis_url]
    assert main(["index", str(tiny_folder), *store]) == 0
    r, prefix = _redis(redis_url)
    r.hset(prefix + b"meta", "schema", "99")
    capsys.readouterr()
    assert main(["index", str(tiny_folder), *store]) == 1
    _one_line(capsys.readouterr().err, "newer lookalike")
    assert main(["index", str(tiny_folder), "--rebuild", *store]) == 0


# --- a full disk ------------------------------------------------------------------------------------


@pytest.mark.skipif(not can_unshare(), reason="needs mount namespaces (unshare -m)")
def test_search_and_triage_answer_from_a_full_disk(tiny_folder: Path, tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    index = disk / "index.sqlite"
    py = sys.executable
    q = tiny_folder / "a" / "img0.png"
    lk = f"{py} -m tui"
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {disk} &&"
        f" {lk} index {tiny_folder} --index {index} 2>/dev/null &&"
        f' {py} -c \'import sys; sys.path.insert(0, "tests"); from support import make_image;'
        f' from pathlib import Path; make_image(Path("{tiny_folder}") / "late.png", 90)\' &&'
        f" (dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null; true) &&"
        f" echo SEARCH && {lk} search {q} --in {tiny_folder} --index {index} -k 3 --json &&"
        f" echo TRIAGE && {lk} triage {tiny_folder} --index {index} --json &&"
        f" echo INDEX && {lk} index {tiny_folder} --index {index}"
    )
    run = in_private_mounts(script)
    out = run.stdout.split("TRIAGE")
    assert "SEARCH" in out[0] and len(out) == 2, (run.stdout, run.stderr)
    assert len(json.loads(out[0].split("SEARCH")[1])["results"]) == 3
    assert json.loads(out[1].split("INDEX")[0])["images"] == 6
    assert run.returncode == 1  # indexing itself cannot go on: said, exit 1
    err = run.stderr.strip().splitlines()
    assert err[-1] == f"lookalike: disk full: cannot write the index at {index}"
    assert all("full disk: it is used as it is (6 images); 1 file new" in e for e in err[:-1])


# --- outliers ----------------------------------------------------------------------------------------


def test_a_picture_with_an_identical_copy_is_no_outlier(tmp_path: Path, capsys):
    import shutil

    root = tmp_path / "pairs"
    for i in range(4):
        make_image(root / f"p{i}.png", 300 + i)
        shutil.copy(root / f"p{i}.png", root / f"p{i}-copy.png")
    make_image(root / "alone.png", 400)
    assert main(["triage", str(root), "--json", "--outliers", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [o["path"] for o in report["outliers"]] == ["alone.png"]
    assert all(o["score"] < 0.999 for o in report["outliers"])
