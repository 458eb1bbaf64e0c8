"""Indexing (incremental, resumable, crash-safe, locked) and searching."""

import os
import pickle
import shutil
import signal
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from engine import ImageSimilaritySearch, IndexBusy, IndexMismatch
from engine.storage.sqlite import SQLiteStore
from support import SAMPLE, make_image, start_indexing


def _class_precision(search: ImageSimilaritySearch, root: Path, exact: bool) -> float:
    hits = []
    for q in sorted(root.glob("*/*.png"))[::4]:
        matches = search.find_similar_images(q, 10, exact=exact)
        assert len(matches) == 10
        hits.append(np.mean([m.path.split("/")[0] == q.parent.name for m in matches]))
    return float(np.mean(hits))


def test_sample_results_are_dominated_by_the_query_class(sample_copy: Path):
    with ImageSimilaritySearch(sample_copy) as search:
        assert search.identity.backbone == "efficientnet-lite0"
        exact = _class_precision(search, sample_copy, exact=True)
        lsh = _class_precision(search, sample_copy, exact=False)
    # ten classes: chance is 0.1; measured about 0.6 on this 200-image sample
    assert exact > 0.5 and lsh > 0.5, (exact, lsh)


def test_query_rules(sample_copy: Path, monkeypatch):
    with ImageSimilaritySearch(sample_copy) as search:
        query = next(iter(sorted(sample_copy.glob("bag/*.png"))))
        rel = query.relative_to(sample_copy).as_posix()
        # an indexed query reuses its stored code: the CNN is never built
        monkeypatch.setattr(type(search), "encoder", property(lambda s: pytest.fail("CNN used")))
        for exact in (False, True):
            result = search.search(query, 10, exact=exact)
            assert result.query_from_index
            assert rel not in [m.path for m in result.matches]
            scores = [m.score for m in result.matches]
            assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
            assert [m.rank for m in result.matches] == list(range(1, 11))
        assert search.search(query, 10, exact=True).mode == "exact"
        # more results than the index holds: all of the others
        big = search.search(query, 500)
        assert len(big.matches) == 199 and big.mode == "exact"
        # LSH alone may return fewer, never the query, never a worse order
        lsh = search.search(query, 10, mode="lsh")
        assert lsh.mode == "lsh" and rel not in [m.path for m in lsh.matches]


def test_outside_query_is_encoded(sample_copy: Path, tmp_path: Path):
    outside = tmp_path / "copy.png"
    original = next(iter(sorted(sample_copy.glob("trouser/*.png"))))
    shutil.copy(original, outside)
    with ImageSimilaritySearch(sample_copy) as search:
        result = search.search(outside, 5)
    assert not result.query_from_index
    best = result.matches[0]
    assert best.path == original.relative_to(sample_copy).as_posix() and best.score > 0.999


def test_incremental_runs(tiny_folder: Path):
    with ImageSimilaritySearch(tiny_folder, batch_size=4) as search:
        first = search.index()
        assert (first.indexed, first.unchanged, first.total) == (6, 0, 6)
        again = search.index()
        assert (again.indexed, again.unchanged) == (0, 6)
        make_image(tiny_folder / "a" / "img0.png", seed=99, size=(50, 50))  # changed
        (tiny_folder / "b" / "img5.png").unlink()  # deleted
        make_image(tiny_folder / "c" / "new.png", seed=7)  # new
        third = search.index()
        assert (third.indexed, third.unchanged, third.removed, third.total) == (2, 4, 1, 6)
        assert "b/img5.png" not in [
            m.path for m in search.find_similar_images(tiny_folder / "a/img1.png", 10)
        ]


def test_decode_threads_follow_what_preparing_costs_against_the_cnn():
    """Every thread allowed to begin with; then as many as the chunk's preparing took CPU
    time over half the CNN's time on it; at least twice as many after a chunk the CNN
    waited for (over a tenth of its time on the chunk before); never more than allowed."""
    from engine.prepare import Widths

    w = Widths(4)
    assert w.now == 4 and Widths(0).most == 1
    w.heard(0, 5.0, 1.0, 0.3)  # the first chunk: always waited for
    assert w.now == 1
    w.heard(1, 0.05, 1.0, 0.4)  # small pictures: one thread keeps up
    assert w.now == 1
    w.heard(2, 0.05, 1.0, 0.7)
    assert w.now == 2
    w.heard(3, 0.3, 1.0, 0.2)  # the CNN waited: doubled, whatever the CPU time
    assert w.now == 4
    w.heard(4, 0.0, 0.1, 30.0)  # large photographs
    assert w.now == 4
    w.heard(5, 0.0, 1.0, 0.1)
    assert w.now == 1


def test_a_chunk_split_between_threads_comes_back_in_file_order(tiny_folder: Path):
    """Each thread prepares every w-th file; the results (a failure in its place) come
    back in the chunk's order, the same as one thread gives."""
    from types import SimpleNamespace

    from engine.images import ImageError, walk_images
    from engine.prepare import Decoding

    (tiny_folder / "fake.png").write_text("nope")
    chunk = [e for e in walk_images(tiny_folder, False, set()) if hasattr(e, "size")]
    ctx = SimpleNamespace(root=tiny_folder, identity=SimpleNamespace(input_size=160))
    got = {}
    for width in (1, 3):
        with Decoding(ctx, 4, threading.Event()) as decoding:
            decoding.widths.now = width
            parts = decoding.submit(chunk)
            assert len(parts) == width
            got[width] = decoding.results(parts, len(chunk))
    (items1, pixels1), (items3, pixels3) = got[1], got[3]
    assert len(items3) == len(chunk) == 7
    for one, three in zip(items1, items3):
        if isinstance(one, ImageError):
            assert isinstance(three, ImageError) and str(one) == str(three)
        else:
            assert one[1] == three[1] and np.array_equal(one[0], three[0])
    # the pixels of the files prepared, in file order, the failing file left out
    ok = [item[0] for item in items3 if not isinstance(item, ImageError)]
    assert pixels3.shape == (6, 160, 160, 3) and np.array_equal(pixels1, pixels3)
    assert all(np.array_equal(a, b) for a, b in zip(ok, pixels3))


def test_decode_threads_wait_while_the_cnn_is_timed(tiny_folder: Path):
    """Held (the first run on a machine times the CNN's ways of running: nothing else may
    take the cores), the threads finish the file in hand and wait; released, they go on.
    Leaving the context stops them at their next file."""
    import time
    from types import SimpleNamespace

    from engine.images import walk_images
    from engine.prepare import Decoding

    chunk = [e for e in walk_images(tiny_folder, False, set()) if hasattr(e, "size")]
    ctx = SimpleNamespace(root=tiny_folder, identity=SimpleNamespace(input_size=160))
    with Decoding(ctx, 1, threading.Event()) as decoding:
        decoding.hold()
        parts = decoding.submit(chunk)
        time.sleep(0.3)
        assert not parts[0].done()
        decoding.release()
        items, pixels = decoding.results(parts, len(chunk))
        assert len(items) == len(pixels) == len(chunk) == 6
    with Decoding(ctx, 1, threading.Event()) as decoding:
        decoding.hold()
        parts = decoding.submit(chunk)
    assert parts[0].result()[1] == []  # stopped at the first file


def test_bad_files_are_reported_and_the_run_goes_on(tiny_folder: Path):
    (tiny_folder / "empty.jpg").write_bytes(b"")
    (tiny_folder / "fake.png").write_text("nope")
    seen = []
    with ImageSimilaritySearch(tiny_folder) as search:
        stats = search.index(on_progress=seen.append)
        assert stats.indexed == 6 and stats.total == 6
        reasons = {f.path: f.reason for f in stats.failed}
        assert reasons == {"empty.jpg": "empty file", "fake.png": "not an image Pillow can read"}
        assert {f.path for f in search.failures()} == set(reasons)
        again = search.index()  # failures stay reported, without re-decoding
        assert again.indexed == 0 and {f.path for f in again.failed} == set(reasons)
    assert seen[0].phase == "scanning" and seen[-1].phase == "done"
    assert seen[-1].done == seen[-1].total == 8 and seen[-1].failed == 2


def test_cancel_keeps_committed_batches(tmp_path: Path):
    root = tmp_path / "many"
    for i in range(12):
        make_image(root / f"{i:02d}.png", seed=i)
    cancel = threading.Event()

    def stop_after_first_batch(p):
        if p.phase == "encoding" and p.done >= 4:
            cancel.set()

    with ImageSimilaritySearch(root, batch_size=4) as search:
        stats = search.index(on_progress=stop_after_first_batch, cancel=cancel, progress_interval=0)
        assert stats.cancelled and 4 <= stats.total < 12
        rest = search.index()
        assert rest.indexed == 12 - stats.total and rest.total == 12


def test_settings_mismatch_and_rebuild(tiny_folder: Path):
    with ImageSimilaritySearch(tiny_folder, hash_dim=32) as search:
        search.index()
    with pytest.raises(IndexMismatch, match="hash_dim 32 .asked 64.*--rebuild"):
        ImageSimilaritySearch(tiny_folder, hash_dim=64)
    with ImageSimilaritySearch(tiny_folder) as search:  # no settings: keeps the index's own
        assert search.identity.hash_dim == 32
    with ImageSimilaritySearch(tiny_folder, hash_dim=64, rebuild=True) as search:
        assert search.index().indexed == 6 and search.identity.hash_dim == 64


def test_index_never_unpickles(tiny_folder: Path, monkeypatch):
    with ImageSimilaritySearch(tiny_folder) as search:
        search.index()

    def boom(*_a, **_k):
        raise AssertionError("unpickling attempted")

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, boom)
    with ImageSimilaritySearch(tiny_folder) as search:
        assert len(search.find_similar_images(tiny_folder / "a" / "img0.png", 3)) == 3
        files = {
            Path(p).name.split(".")[1]: Path(p).stat().st_size for p in search.store.array_files()
        }
    # raw little-endian arrays: 6 slots of 128 float32, 1280 float16, 16 uint64 band keys
    assert files["codes"] == 6 * 128 * 4 and files["features"] == 6 * 1280 * 2
    assert files["bands"] == 6 * 16 * 8


def test_second_writer_is_refused_readers_are_not(tiny_folder: Path):
    with ImageSimilaritySearch(tiny_folder) as search:
        search.index()
        other = SQLiteStore(search.index_path)
        with other.writer():
            with pytest.raises(IndexBusy, match="another lookalike process is indexing"):
                search.index()
            assert len(search.find_similar_images(tiny_folder / "a" / "img1.png", 2)) == 2
        other.close()


def test_read_only_root_falls_back_to_user_cache(tiny_folder: Path, tmp_path: Path, monkeypatch):
    import engine.paths as store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(
        store.os,
        "access",
        lambda p, m: False if Path(p) == tiny_folder.resolve() else real_access(p, m),
    )
    path = store.default_index_path(tiny_folder)
    assert str(path).startswith(str(tmp_path / "cache" / "lookalike"))


def test_kill_9_mid_run_leaves_a_usable_index(tmp_path: Path):
    root = tmp_path / "killme"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    db = root / ".lookalike" / "index.sqlite"
    proc, committed = start_indexing(root, db, 16, "--json")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = SQLiteStore(db)
    with sqlite3.connect(store.location) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = len(store.file_states())
    store.close()
    assert kept >= committed
    with ImageSimilaritySearch(root) as search:
        stats = search.index()
    assert stats.unchanged == kept and stats.indexed == 200 - kept and stats.total == 200


def test_indexing_reads_the_index_once_not_per_batch(tmp_path: Path):
    root = tmp_path / "batches"
    for i in range(12):
        make_image(root / f"{i:02d}.png", seed=i)
    with ImageSimilaritySearch(root, batch_size=2) as search:
        calls = []
        real = search.store.file_states
        search.store.file_states = lambda: calls.append(1) or real()
        stats = search.index()
        assert stats.indexed == 12 and stats.total == 12
        assert len(calls) == 1  # the walk's diff; batches and centre refits never re-read it
        meta = search.store.get_meta()
        # fitted on the first batch, refitted once after the run, on all twelve
        assert meta["centre_count"] == 12 and meta["centre_gen"] == 2


def _near_duplicate_folder(root: Path) -> Path:
    """Twelve pictures with six barely edited copies each (a byte copy, re-encoded at
    high quality, faint noise, 2 % brighter, 2 % smaller), and thirty unrelated ones:
    dense clusters of near-duplicates, which LSH answers with certainty."""
    import shutil

    from PIL import Image, ImageEnhance

    rng = np.random.RandomState(5)
    for i in range(12):
        base = make_image(root / f"set{i}" / "original.png", 1000 + i, size=(96, 80))
        im = Image.open(base).convert("RGB")
        shutil.copy(base, root / f"set{i}" / "copy.png")
        im.save(root / f"set{i}" / "q95.jpg", quality=95)
        noisy = np.clip(np.asarray(im, np.int16) + rng.randint(-2, 3, (80, 96, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(root / f"set{i}" / "noise.png")
        ImageEnhance.Brightness(im).enhance(1.02).save(root / f"set{i}" / "bright.png")
        im.resize((94, 78)).save(root / f"set{i}" / "small.png")
        im.save(root / f"set{i}" / "again.webp", lossless=True)
    for j in range(30):
        make_image(root / "other" / f"{j}.png", 5000 + j, size=(64 + j, 64))
    return root


@pytest.mark.parametrize("source", ["sample", "near-duplicates"])
def test_default_answer_matches_exact_even_where_lsh_is_tried(
    source: str, sample_copy: Path, tmp_path: Path, monkeypatch
):
    from engine.vectors import Planner

    monkeypatch.setattr(Planner, "try_lsh", lambda self, n: True)  # LSH first, every query
    root = sample_copy if source == "sample" else _near_duplicate_folder(tmp_path / "dups")
    k = 3
    with ImageSimilaritySearch(root) as search:
        search.index()
        queries = sorted(p for p in root.rglob("*") if p.is_file() and ".lookalike" not in str(p))
        recall, modes = [], []
        for q in queries:
            auto = search.search(q, k)
            exact = search.search(q, k, exact=True)
            raw = search.search(q, k, mode="lsh")
            assert exact.mode == "exact" and raw.mode == "lsh"
            modes.append(auto.mode)
            recall.append(len({m.path for m in auto.matches} & {m.path for m in exact.matches}) / k)
            if auto.mode == "lsh":
                assert [m.path for m in auto.matches] == [m.path for m in raw.matches]
    assert np.mean(recall) >= 0.99, np.mean(recall)
    assert set(modes) <= {"lsh", "exact-lsh-unsure"}
    if source == "near-duplicates":
        assert modes.count("lsh") >= 40  # the near-duplicates find each other by LSH


def test_input_size_is_part_of_the_index(tiny_folder: Path):
    with ImageSimilaritySearch(tiny_folder, input_size=160) as search:
        search.index()
        assert search.store.get_meta()["input_size"] == 160
        assert search.encoder.input_size == 160
        assert len(search.find_similar_images(tiny_folder / "a" / "img0.png", 3)) == 3
    with pytest.raises(IndexMismatch, match="input_size 160 .asked 224"):
        ImageSimilaritySearch(tiny_folder, input_size=224)
    with ImageSimilaritySearch(tiny_folder) as search:  # no setting: the index's own
        assert search.identity.input_size == 160


def test_a_reader_that_goes_away_ends_the_output_quietly(sample_copy: Path):
    """`lookalike search ... | head -1`: no "Broken pipe" message, SIGPIPE's status."""
    import subprocess
    import sys

    from support import REPO
    from tui.cli import main

    assert main(["index", str(sample_copy)]) == 0
    queries = [str(p) for p in sorted(sample_copy.rglob("*.png"))]
    cmd = [sys.executable, "-m", "tui", "search", *queries, "--in", str(sample_copy)]
    proc = subprocess.Popen(
        [*cmd, "-k", "60", "--no-update"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout.readline()  # 200 × 61 lines: far more than a pipe holds
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_typo_gets_the_closest_name(sample_copy: Path, capsys):
    from tui.cli import main

    typo = str(sample_copy) + "x"
    assert main(["index", typo]) == 2
    assert f"not a folder: {typo} (did you mean {sample_copy}?)" in capsys.readouterr().err
    query = sample_copy / "bag" / "test-00018.pgn"
    assert main(["search", str(query), "--in", str(sample_copy), "--no-update"]) == 2
    assert "(did you mean " + str(query.with_suffix(".png")) in capsys.readouterr().err
    assert main(["index", str(sample_copy)]) == 0
    capsys.readouterr()
    assert main(["search", str(query.with_suffix(".png")), "--in", str(sample_copy),
                 "--hash-dim", "64"]) == 1  # fmt: skip
    assert f"run lookalike index {sample_copy} --rebuild" in capsys.readouterr().err
