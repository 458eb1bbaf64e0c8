"""The index folder as a sandbox: every case here is a real folder the test crafts, as a
data set downloaded with a ``.lookalike/`` inside, or a folder someone else can write,
would hold. Nothing under ``DIR/.lookalike`` is followed out, kept pictures stay
whatever path reaches them, crafted caches are dropped and verified again, cached
models are checked before use, and the smaller cases are one line each."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import ImageSimilaritySearch
from engine.quarantine import MoveError, set_aside, undo_latest
from support import can_unshare, edited_copy, in_private_mounts, make_picture
from tui.cli import main


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under *root* (links as their target's text), with its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = b"-> " + os.fsencode(os.readlink(p))
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def _pictures(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _tree(root).items() if not k.startswith(".lookalike/")}


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """``a/x.png`` with an identical copy ``b/x.png``, ``c/y.png`` with one in ``d/``,
    and six unrelated pictures."""
    root = tmp_path / "photos"
    for src, dup, seed in (("a/x.png", "b/x.png", 1), ("c/y.png", "d/y.png", 2)):
        edited_copy(make_picture(root / src, seed), root / dup, "identical")
        os.utime(root / src, ns=(0, 10**18))  # the original is older: it is kept
    for i in range(6):
        make_picture(root / "other" / f"o{i}.png", 50 + i)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "precious.txt").write_bytes(b"not lookalike's")
    return out


def _movable(root: Path) -> list[str]:
    from engine.triage import triage

    with ImageSimilaritySearch(root) as search:
        search.index()
        return triage(search).movable()


# --- 1. one guarded way into the index folder ---------------------------------------------


def test_a_quarantine_that_is_a_link_out_is_refused(pairs: Path, outside: Path):
    movable = _movable(pairs)
    assert sorted(movable) == ["b/x.png", "d/y.png"]
    before = _pictures(pairs)
    (pairs / ".lookalike" / "quarantine").symlink_to(outside)
    with ImageSimilaritySearch(pairs) as search, pytest.raises(MoveError) as err:
        set_aside(search, movable)
    assert "symbolic link" in str(err.value) and "nothing moved" in str(err.value)
    assert _pictures(pairs) == before and _tree(outside) == {"precious.txt": b"not lookalike's"}
    # the same through the command line, naming the quarantine
    quarantine = str(pairs / ".lookalike" / "quarantine")
    assert main(["triage", str(pairs), "--move-to", quarantine]) == 1
    assert _pictures(pairs) == before and len(_tree(outside)) == 1


def test_a_quarantine_subfolder_that_is_a_link_out_keeps_its_files(
    pairs: Path, outside: Path, capsys
):
    movable = _movable(pairs)
    quarantine = pairs / ".lookalike" / "quarantine"
    quarantine.mkdir()
    (quarantine / "b").symlink_to(outside)
    with ImageSimilaritySearch(pairs) as search:
        done = set_aside(search, movable)
    assert done.moved == ["d/y.png"] and done.skipped[0][0] == "b/x.png"
    assert "symbolic link" in done.skipped[0][1]
    assert (pairs / "b" / "x.png").is_file() and (quarantine / "d" / "y.png").is_file()
    assert len(_tree(outside)) == 1
    # undo puts back what moved, and strands nothing outside
    with ImageSimilaritySearch(pairs) as search:
        back = undo_latest(search)
    assert back.moved == ["d/y.png"] and (pairs / "d" / "y.png").is_file()
    assert len(_tree(outside)) == 1


def test_a_moves_folder_that_is_a_link_out_stops_every_move(pairs: Path, outside: Path, capsys):
    movable = _movable(pairs)
    before = _pictures(pairs)
    (pairs / ".lookalike" / "moves").symlink_to(outside)
    aside = pairs.parent / "aside"
    assert main(["triage", str(pairs), "--move-to", str(aside)]) == 1
    err = capsys.readouterr().err
    assert "no move can be recorded" in err and "symbolic link" in err
    assert _pictures(pairs) == before and len(_tree(outside)) == 1
    assert not aside.exists() or not _tree(aside)
    with ImageSimilaritySearch(pairs) as search, pytest.raises(MoveError):
        set_aside(search, movable)
    assert main(["triage", str(pairs), "--undo"]) == 1
    assert "symbolic link" in capsys.readouterr().err


def test_undo_never_takes_files_in_through_a_link(pairs: Path, outside: Path):
    movable = _movable(pairs)
    with ImageSimilaritySearch(pairs) as search:
        set_aside(search, movable)
    quarantine = pairs / ".lookalike" / "quarantine"
    quarantine.rename(pairs.parent / "moved-away")
    for rel in movable:  # planted where undo would look
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(b"planted")
    quarantine.symlink_to(outside)
    planted = _tree(outside)
    with ImageSimilaritySearch(pairs) as search, pytest.raises(MoveError, match="symbolic link"):
        undo_latest(search)
    assert _tree(outside) == planted
    assert not any((pairs / rel).exists() for rel in movable)


def test_exports_are_never_written_through_a_link(sample_copy: Path, tmp_path: Path):
    from tui.export import export_results
    from tui.widgets.results import CardData

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    query = sample_copy / "bag" / "test-00030.png"
    with ImageSimilaritySearch(sample_copy) as search:
        cards = [
            CardData(m.rank, m.score, sample_copy / m.path, m.path)
            for m in search.find_similar_images(query, 3)
        ]
        exports = sample_copy / ".lookalike" / "exports"
        exports.mkdir(exist_ok=True)
        now = time.time()
        for dt in range(-1, 6):  # the names of the next seconds, planted as links
            stem = time.strftime("results-%Y%m%d-%H%M%S", time.localtime(now + dt))
            for suffix in (".json", ".csv"):
                (exports / (stem + suffix)).symlink_to(victim)
        written = export_results(search, query, cards)
        assert victim.read_bytes() == b"keep me"
        assert all(p.is_file() and not p.is_symlink() for p in written)
        assert json.loads(written[0].read_text())["results"][0]["rank"] == 1
        # exports/ itself a link out: refused, nothing written there
        shutil.rmtree(exports)
        (tmp_path / "elsewhere").mkdir()
        exports.symlink_to(tmp_path / "elsewhere")
        try:
            with pytest.raises(Exception, match="symbolic link"):
                export_results(search, query, cards)
            assert not list((tmp_path / "elsewhere").iterdir())
        finally:
            exports.unlink()  # the sample's index is shared by the session's tests


def test_an_index_folder_link_swapped_in_later_is_not_followed(pairs: Path, outside: Path):
    """The index is reached through the folder's descriptor once opened: a link put in
    place of ``.lookalike`` afterwards leads nothing out."""
    with ImageSimilaritySearch(pairs) as search:
        search.index()
        index_dir = pairs / ".lookalike"
        index_dir.rename(pairs.parent / "real-index")
        index_dir.symlink_to(outside)
        search.store.set_meta({"probe": 1})
        assert search.count() == 10
    assert _tree(outside) == {"precious.txt": b"not lookalike's"}
    assert main(["index", str(pairs)]) == 1


def test_a_record_signed_by_another_user_is_refused(
    pairs: Path, tmp_path: Path, monkeypatch, capsys
):
    aside = tmp_path / "aside"
    assert main(["triage", str(pairs), "--move-to", str(aside)]) == 0
    moved = _tree(aside)
    assert len(moved) == 2
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-user"))
    assert main(["triage", str(pairs), "--undo"]) == 1
    assert "not signed by your lookalike" in capsys.readouterr().err
    assert _tree(aside) == moved


def test_an_empty_move_writes_no_record_and_bad_destinations_are_usage_errors(
    pairs: Path, tmp_path: Path, capsys
):
    assert main(["index", str(pairs)]) == 0
    assert main(["triage", str(pairs), "--move-to", ""]) == 2
    assert "--move-to needs a folder" in capsys.readouterr().err
    assert main(["triage", str(pairs), "--move-to", str(pairs / ".lookalike" / "x")]) == 1
    assert "cannot be moved into the index folder" in capsys.readouterr().err
    # everything kept: nothing moves, and no record is written
    args = ["--keep-in", "b", "--keep-in", "d", "--keep-in", "a", "--keep-in", "c"]
    assert main(["triage", str(pairs), *args, "--move-to", str(tmp_path / "aside")]) == 0
    assert not list((pairs / ".lookalike" / "moves").glob("*"))
    assert main(["triage", str(pairs), "--undo"]) == 1
    assert "nothing to undo" in capsys.readouterr().err


def test_moving_into_a_picture_folder_then_undo_indexes_it_again(pairs: Path, capsys):
    assert main(["triage", str(pairs), "--move-to", str(pairs / "other")]) == 0
    capsys.readouterr()
    assert main(["index", str(pairs), "--json"]) == 0
    # meanwhile the moved copies are not indexed again (other/'s own rows are kept: a
    # walk that loses most of the index forgets nothing without --prune)
    assert json.loads(capsys.readouterr().out)["total"] == 8
    assert main(["triage", str(pairs), "--undo"]) == 0
    capsys.readouterr()
    assert main(["index", str(pairs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 10  # other/ counted again


# --- 2. kept means kept, whatever the path ------------------------------------------------------


def test_a_folder_link_inside_cannot_move_a_kept_file(tmp_path: Path, capsys):
    root = tmp_path / "photos"
    src = make_picture(root / "orig" / "x.png", 7)
    (root / "alias").symlink_to("orig")  # alias/x.png is the very file orig/x.png
    big = Image.open(src)  # a copy with more pixels: it would be kept before x.png
    (root / "incoming").mkdir()
    big.resize((big.width * 2, big.height * 2), Image.LANCZOS).save(root / "incoming" / "x-big.png")
    for i in range(5):
        make_picture(root / "other" / f"o{i}.png", 70 + i)
    before = src.read_bytes()
    out = tmp_path / "aside"
    assert main(["triage", str(root), "--keep-in", "orig", "--json"]) == 0
    (group,) = json.loads(capsys.readouterr().out)["groups"]
    # the walk met the file first as alias/x.png: kept all the same, by its real path
    assert group["representative"] in ("alias/x.png", "orig/x.png")
    assert main(["triage", str(root), "--keep-in", "orig", "--move-to", str(out)]) == 0
    assert src.read_bytes() == before and (out / "incoming" / "x-big.png").is_file()
    # and at the move itself, by real location, whatever the report said
    from engine.quarantine import Keep, move_aside

    done = move_aside(root, ["alias/x.png"], tmp_path / "aside2", keep=Keep((), ("orig",)))
    assert not done.moved and "under a kept folder" in done.skipped[0][1]
    done = move_aside(root, ["alias/x.png"], tmp_path / "aside2", keep=Keep(("orig/x.png",)))
    assert not done.moved and "the same file as orig/x.png" in done.skipped[0][1]
    assert src.read_bytes() == before


def test_a_kept_link_never_loses_its_target(tmp_path: Path, capsys):
    root = tmp_path / "photos"
    make_picture(root / "other" / "a.png", 8)
    (root / "keep").mkdir()
    (root / "keep" / "a.png").symlink_to("../other/a.png")
    src = make_picture(root / "plain" / "b.png", 9)
    (root / "dup").mkdir()
    (root / "dup" / "b.png").symlink_to("../plain/b.png")  # a link copy of a plain file
    for i in range(5):
        make_picture(root / "misc" / f"o{i}.png", 90 + i)
    out = tmp_path / "aside"
    code = main(["triage", str(root), "--keep-in", "keep", "--move-to", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "not moved other/a.png: the same file as keep/a.png" in err
    assert (root / "keep" / "a.png").resolve() == (root / "other" / "a.png")
    # the link copy moved as a link; the file it points at stayed
    assert (out / "dup" / "b.png").is_symlink() and src.is_file()
    assert main(["triage", str(root), "--undo"]) == 0
    assert (root / "dup" / "b.png").is_symlink() and (root / "dup" / "b.png").is_file()


# --- 3. crafted caches cannot steer triage -----------------------------------------------------


def _verdicts(root: Path) -> list[bytes]:
    db = sqlite3.connect(root / ".lookalike" / "index.sqlite")
    keys = [r[0] for r in db.execute("SELECT pair FROM verdicts")]
    db.close()
    return keys


def _set_verdicts(root: Path, value) -> None:
    """Every cached verdict crafted, and the candidate graph dropped: the next triage
    reads the verdict cache."""
    db = sqlite3.connect(root / ".lookalike" / "index.sqlite")
    with db:
        db.execute("UPDATE verdicts SET verdict = ?", (value,))
        db.execute("DELETE FROM blobs")
    db.close()


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """Pictures with copies that only local features decide (cropped, mirrored)."""
    root = tmp_path / "copied"
    (root / "copies").mkdir(parents=True)
    for i in range(3):
        src = make_picture(root / f"p{i}.png", 30 + i, size=(240, 180))
        im = Image.open(src).convert("RGB")
        im.crop((12, 9, 228, 171)).save(root / "copies" / f"p{i}-crop.png")
        im.transpose(Image.FLIP_LEFT_RIGHT).save(root / "copies" / f"p{i}-mirror.png")
    for i in range(12):
        make_picture(root / "other" / f"o{i:02d}.png", 200 + i, size=(240, 180))
    return root


def _groups(root: Path, capsys) -> list:
    assert main(["triage", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return sorted(
        (g["representative"], sorted(m["path"] for m in g["members"])) for g in out["groups"]
    )


@pytest.mark.parametrize(
    "crafted",
    [
        '{"copy": "false", "points": 0, "why": ""}',
        '{"copy": 1, "points": 0, "why": ""}',
        '{"copy": false, "points": 0}',
        '{"copy": false, "points": 0, "why": "", "extra": 1}',
        '{"copy": false, "points": -5, "why": ""}',
        "[" * 200_000 + "]" * 200_000,
        '{"copy": false, "points": 0, "why": "' + "x" * 1_000_000 + '"}',  # 2,000x the limit
        "not json",
        b'{"copy": false, "points": 0, "why": ""}',
        12,
    ],
    ids=["text", "number", "short", "extra", "negative", "deep", "huge", "garbage", "blob", "int"],
)
def test_crafted_verdicts_are_verified_again(copied: Path, capsys, crafted):
    truth = _groups(copied, capsys)
    assert truth and _verdicts(copied)
    _set_verdicts(copied, crafted)
    assert _groups(copied, capsys) == truth
    # and each crafted value was replaced by a verdict lookalike wrote
    db = sqlite3.connect(copied / ".lookalike" / "index.sqlite")
    values = [r[0] for r in db.execute("SELECT verdict FROM verdicts")]
    db.close()
    from engine.triage.verdicts import read_verdict

    assert values and all(read_verdict(v) is not None for v in values)


def test_a_cached_reason_is_escaped(copied: Path, capsys):
    _groups(copied, capsys)
    _set_verdicts(copied, json.dumps({"copy": True, "points": 9, "why": "\x1b]0;pwned\x07 x"}))
    assert main(["triage", str(copied)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07" in out


def test_crafted_rejections_are_left_out(copied: Path, capsys):
    truth = _groups(copied, capsys)
    db = sqlite3.connect(copied / ".lookalike" / "index.sqlite")
    with db:
        db.executemany(
            "INSERT INTO rejected VALUES (?, ?)",
            [(b"../p0.png", b"copies/p0-crop.png"), (b"p0.png", b"p0.png"),
             (1, 2), (b"p0.png" * 2000, b"copies/p0-crop.png"), ("p0.png", "x")],
        )  # fmt: skip
    db.close()
    assert _groups(copied, capsys) == truth
    with ImageSimilaritySearch(copied) as search:
        assert search.store.rejections() == set()


def test_cache_tables_of_another_shape_are_damage_and_rebuild_clears_them(copied: Path, capsys):
    truth = _groups(copied, capsys)
    db = sqlite3.connect(copied / ".lookalike" / "index.sqlite")
    with db:
        db.execute("INSERT INTO rejected VALUES (?, ?)", (b"p0.png", b"copies/p0-crop.png"))
        db.execute("ALTER TABLE verdicts ADD COLUMN evil TEXT")
    db.close()
    assert main(["triage", str(copied)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the verdicts table is not one lookalike made" in err
    assert main(["index", str(copied), "--rebuild"]) == 0
    db = sqlite3.connect(copied / ".lookalike" / "index.sqlite")
    assert db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 0
    db.close()
    assert _groups(copied, capsys) == truth  # the rejection went with the rebuild


def test_crafted_redis_caches_are_dropped_and_rebuild_clears_them(
    redis_url: str, copied: Path, capsys
):
    import redis

    from engine.storage import open_store

    args = ["--store", redis_url]
    assert main(["index", str(copied), *args]) == 0
    assert main(["triage", str(copied), *args, "--json"]) == 0
    truth = json.loads(capsys.readouterr().out)["groups"]
    store = open_store(redis_url)
    client = redis.Redis.from_url(redis_url.split("?")[0])
    verdicts = store.k("verdicts")
    assert client.hlen(verdicts)
    for k in client.hkeys(verdicts):
        client.hset(verdicts, k, '{"copy": "false", "points": 0, "why": ""}')
    client.hset(verdicts, b"x" * 16, "x" * 5_000_000)
    client.sadd(store.k("rejected"), b"../a\0b", b"p0.png\0p0.png", b"x" * 9000 + b"\0y")
    assert main(["triage", str(copied), *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == truth
    assert store.rejections() == set()
    store.reject("p0.png", "copies/p0-crop.png")
    assert main(["index", str(copied), *args, "--rebuild"]) == 0
    assert not client.exists(verdicts) and store.rejections() == set()
    store.close()


# --- 4. cached models: the bf16 identity (digests: tests/test_encoder.py) ------------------------


class _Stand:
    """An encoder's identity, as a stand-in: only what the checks read."""

    def __init__(self, precision: str, runtime: str) -> None:
        self.backbone_name, self.weights_id, self.hash_dim = "efficientnet-lite0", "w", 64
        self.input_size, self.precision, self.runtime = 224, precision, runtime

    @property
    def identity(self):
        from engine.encoding.backbones import encoder_identity

        return encoder_identity(self)


def test_bf16_of_two_runtimes_are_two_identities(tiny_folder: Path):
    from engine import IndexMismatch
    from engine.identity import check_encoder, reconcile
    from engine.search import _build_encoder
    from engine.settings import Settings

    made = _Stand("bf16", "openvino").identity
    assert made["bf16_runtime"] == "openvino" and "bf16_runtime" not in _Stand("fp32", "x").identity
    check_encoder(made, _Stand("bf16", "openvino"), "idx", tiny_folder)
    with pytest.raises(IndexMismatch, match="bf16_runtime openvino"):
        check_encoder(made, _Stand("bf16", "torch"), "idx", tiny_folder)
    meta = {**made, "num_perm": 128, "seed": 1, "bands": 32, "rows": 4}
    ident = reconcile(Settings(), meta, "idx", tiny_folder)
    assert ident.runtime == "openvino"
    with pytest.raises(IndexMismatch, match="made by openvino in bf16.*--rebuild"):
        _build_encoder(Settings(runtime="torch"), ident)


# --- 5. the smaller ones ------------------------------------------------------------------------


def test_dots_rules_and_banners_are_indexed_and_tiny(tmp_path: Path, capsys):
    root = tmp_path / "odd"
    root.mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "dot.png")
    Image.new("RGB", (600, 2), (20, 200, 10)).save(root / "rule.png")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (8, 1200, 3), dtype=np.uint8)).save(root / "banner.png")
    Image.new("RGB", (3000, 2), (9, 9, 9)).save(root / "thread.png")  # 1500:1: refused
    for i in range(4):
        make_picture(root / f"p{i}.png", 400 + i)
    assert main(["index", str(root)]) == 0
    err = capsys.readouterr().err
    assert "ValueError" not in err and "thread.png: extreme aspect ratio" in err
    assert main(["triage", str(root), "--json"]) == 0
    flagged = {u["path"]: u["flags"] for u in json.loads(capsys.readouterr().out)["quality"]}
    assert all("tiny" in flagged[n] for n in ("dot.png", "rule.png", "banner.png"))


def test_a_float_picture_with_an_infinite_pixel_keeps_its_picture(tmp_path: Path):
    from engine.images import open_image

    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))
    ramp[3, 4] = np.inf
    ramp[5, 6] = np.nan
    Image.fromarray(ramp, "F").save(tmp_path / "float.tif")
    grey = np.asarray(open_image(tmp_path / "float.tif"))[:, :, 0].astype(int)
    assert grey[10, 0] == 0 and grey[10, -1] == 255 and 120 <= grey[10, 32] <= 135
    assert grey[3, 4] == 255 and grey[5, 6] == 0


def test_not_duplicate_refuses_what_is_no_pair_of_indexed_pictures(pairs: Path, capsys):
    assert main(["index", str(pairs)]) == 0
    (pairs / "late.png").write_bytes((pairs / "a" / "x.png").read_bytes())  # not indexed
    for a, b, why in [
        ("a/x.png", "a/x.png", "the same picture twice"),
        ("a/x.png", str(pairs / "a" / ".." / "a" / "x.png"), "the same picture twice"),
        ("a/x.png", ".lookalike/index.sqlite", "a file of the index"),
        ("a/x.png", "late.png", "not an indexed picture: late.png"),
        ("a/x.png", "a/nope.png", "no such picture"),
    ]:
        assert main(["triage", str(pairs), "--not-duplicate", a, b]) == 2, (a, b)
        assert why in capsys.readouterr().err
    with ImageSimilaritySearch(pairs) as search:
        assert search.store.rejections() == set()


def test_index_with_damaged_arrays_and_nothing_new_says_damaged(pairs: Path, capsys):
    assert main(["index", str(pairs)]) == 0
    capsys.readouterr()
    codes = next((pairs / ".lookalike").glob("index.codes.*"))
    os.truncate(codes, 10)
    assert main(["index", str(pairs)]) == 1
    err = capsys.readouterr().err.strip()
    assert "is damaged" in err and "--rebuild" in err and "\n" not in err


def test_a_garbage_index_file_is_made_again_by_rebuild(pairs: Path, tmp_path: Path, capsys):
    assert main(["index", str(pairs)]) == 0
    db = pairs / ".lookalike" / "index.sqlite"
    for f in db.parent.glob("index.sqlite-*"):
        f.unlink()
    db.write_bytes(b"garbage, not a database" * 100)
    capsys.readouterr()
    assert main(["index", str(pairs)]) == 1
    assert "--rebuild makes a new one" in capsys.readouterr().err
    assert main(["index", str(pairs), "--rebuild", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 10
    # elsewhere than the folder's own place, a file that is no index is never removed
    other = tmp_path / "mine.sqlite"
    other.write_bytes(b"the user's own file" * 100)
    assert main(["index", str(pairs), "--index", str(other), "--rebuild"]) == 1
    assert "not removed" in capsys.readouterr().err
    assert other.read_bytes() == b"the user's own file" * 100


def test_invalid_index_names_are_usage_errors(tiny_folder: Path, capsys):
    for url in ("redis://127.0.0.1:1/0?name=a b", "redis://127.0.0.1:1/0?name=", "mongo://x"):
        assert main(["index", str(tiny_folder), "--store", url]) == 2, url
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_runtime_file_is_read_with_a_bound(tmp_path: Path, monkeypatch):
    from engine.encoding import chooser

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = chooser.runtime_cache_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"k": "' + "x" * (chooser.CACHE_MAX + 10) + '"}')
    assert chooser._read_cache() == {}
    path.write_text("[" * 100_000)
    assert chooser._read_cache() == {}
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"a": {}}')
    assert chooser._read_cache() == {}


def test_a_stored_path_through_a_link_out_is_never_listed(redis_url: str, tmp_path: Path, capsys):
    """A shared index holds another machine's paths: where one of them leads out of the
    folder through a link here, it is neither listed nor opened."""
    root = tmp_path / "photos"
    src = make_picture(root / "inside" / "x.png", 11)
    edited_copy(src, root / "inside" / "x-copy.png", "identical")
    for i in range(5):
        make_picture(root / "other" / f"o{i}.png", 120 + i)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    args = ["--store", redis_url]
    assert main(["index", str(root), *args]) == 0
    secret = tmp_path / "secret"
    shutil.move(root / "inside", secret)
    (root / "inside").symlink_to(secret)  # on this machine, inside/ leads out
    (root / "broken.png").rename(secret / "broken.png")
    (root / "broken.png").symlink_to(secret / "broken.png")
    capsys.readouterr()
    assert main(["triage", str(root), *args, "--json", "--no-update"]) == 0
    out = capsys.readouterr().out
    assert "inside/" not in out and "broken.png" not in out
    assert main(["search", str(root / "other" / "o1.png"), "--in", str(root), *args]) == 0
    assert "inside/" not in capsys.readouterr().out


@pytest.mark.skipif(not can_unshare(), reason="needs mount namespaces (unshare -m)")
def test_a_full_destination_says_disk_full(pairs: Path, tmp_path: Path):
    import sys

    rng = np.random.default_rng(0)
    for name in ("a/x.png", "b/x.png"):  # 300 KB each that does not compress
        Image.fromarray(rng.integers(0, 256, (300, 340, 3), dtype=np.uint8)).save(pairs / name)
    shutil.copy(pairs / "a" / "x.png", pairs / "b" / "x.png")
    disk = tmp_path / "disk"
    disk.mkdir()
    before = _pictures(pairs)
    py = sys.executable
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {disk} &&"
        f" {py} -m tui triage {pairs} --move-to {disk} --keep-in d --keep-in c"
    )
    run = in_private_mounts(script)
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "not moved b/x.png: disk full" in run.stderr, run.stderr
    assert _pictures(pairs) == before


def test_a_cache_that_cannot_be_written_makes_no_noise(tiny_folder: Path, tmp_path, capsys):
    """No model cache, no timings file: the CNN still runs, and the summary says why a
    path was skipped in words, with no raw error numbers."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    env = {**os.environ, "XDG_CACHE_HOME": str(blocked)}
    env.pop("LOOKALIKE_PRECISION", None)
    import subprocess
    import sys

    from support import REPO

    run = subprocess.run(
        [sys.executable, "-m", "tui", "index", str(tiny_folder)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Errno" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert "6 images in the index" in run.stderr
    # the first run on a machine says what it does while it times the CNN's ways
    timing = [ln for ln in run.stderr.splitlines() if "timing the ways the CNN" in ln]
    assert timing and "1 of " in timing[0] and "under a minute" in timing[0], run.stderr
