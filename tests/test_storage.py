"""The storage contract: what every backend behind ``open_store`` must do.

Each test runs against every backend in ``STORES``; a new backend joins the list and
passes the same tests.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.lsh import BandTable
from engine.storage import (
    Batch,
    IndexBusy,
    IndexFileError,
    OlderIndex,
    Store,
    image_id,
    open_store,
    remove_index,
)

HASH_DIM, FEATURE_DIM, BANDS = 8, 12, 4


def _sqlite(tmp_path: Path) -> Callable[[], Store]:
    return lambda: open_store(f"sqlite:{tmp_path / 'idx' / 'index.sqlite'}", root=str(tmp_path))


STORES = ("sqlite", "redis")


@pytest.fixture(params=STORES)
def make_store(request, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        factory = lambda: open_store(url, root=str(tmp_path))  # noqa: E731
    else:
        factory = _sqlite(tmp_path)
    store = factory()
    store.set_meta(
        {
            "hash_dim": HASH_DIM,
            "feature_dim": FEATURE_DIM,
            "bands": BANDS,
            "rows": 2,
            "num_perm": 2 * BANDS,
            "seed": 1,
            "slots": 0,
        }
    )
    store.close()
    return factory


def batch(names: list[str], seed: int = 0) -> Batch:
    rng = np.random.RandomState(seed)
    n = len(names)
    return Batch(
        paths=list(names),
        sizes=[100 + i for i in range(n)],
        mtimes=[1000 + i for i in range(n)],
        digests=[bytes([i]) * 32 for i in range(n)],
        codes=rng.standard_normal((n, HASH_DIM)).astype(np.float32),
        features=rng.standard_normal((n, FEATURE_DIM)).astype(np.float16),
        band_keys=rng.randint(0, 5, (n, BANDS)).astype(np.uint64),
    )


def vectors_by_path(store: Store) -> dict[str, np.ndarray]:
    snap = store.snapshot()
    live = np.setdiff1d(np.arange(snap.slots), snap.dead)
    return dict(zip(store.paths_of(live), np.asarray(snap.codes[live])))


def test_empty(make_store):
    store = make_store()
    snap = store.snapshot()
    assert snap.slots == 0 and store.count() == 0 and store.file_states() == {}
    assert snap.codes.shape == (0, HASH_DIM) and snap.band_keys.shape == (0, BANDS)


def test_commit_is_seen_whole(make_store):
    store = make_store()
    b = batch(["a.png", "b.png", "c.png"])
    with store.writer():
        assert store.commit(b) == []
    snap = store.snapshot()
    assert snap.slots == 3 and store.count() == 3
    np.testing.assert_array_equal(np.asarray(snap.codes), b.codes)
    np.testing.assert_array_equal(np.asarray(snap.features), b.features)
    np.testing.assert_array_equal(np.asarray(snap.band_keys), b.band_keys)
    assert store.paths_of(np.array([2, 0])) == ["c.png", "a.png"]
    state, slot = store.slot_of("b.png")
    assert (state.size, state.mtime_ns, state.ok, slot) == (101, 1001, True, 1)
    facts = store.image_facts()
    assert facts.digests[2] == bytes([2]) * 32 and facts.paths[2] == "c.png"
    assert store.slot_of("nope.png") is None


def test_replace_delete_and_failures(make_store):
    store = make_store()
    with store.writer():
        store.commit(batch(["a.png", "b.png", "c.png"]))
        again = batch(["b.png"], seed=1)
        again.failed = [("bad.png", 5, 6, "not an image")]
        again.delete = ["c.png"]
        store.commit(again)
    snap = store.snapshot()
    assert snap.slots == 4 and sorted(snap.dead.tolist()) == [1, 2]
    assert store.count() == 2
    assert store.failures() == [("bad.png", "not an image")]
    states = store.file_states()
    assert set(states) == {"a.png", "b.png", "bad.png"} and not states["bad.png"].ok
    np.testing.assert_array_equal(vectors_by_path(store)["b.png"], again.codes[0])


def test_one_writer_at_a_time(make_store):
    """The embedded store takes one writer; a shared one takes any number, each batch in
    slots of its own."""
    first, second = make_store(), make_store()
    if getattr(first, "shared", False):
        with first.writer(), second.writer():
            first.commit(batch(["a.png", "b.png"]))
            second.commit(batch(["c.png"], seed=2))
            first.commit(batch(["d.png"], seed=3))
        assert first.count() == 4 and sorted(second.file_states()) == [
            "a.png",
            "b.png",
            "c.png",
            "d.png",
        ]
        return
    with first.writer(), pytest.raises(IndexBusy, match="another lookalike"), second.writer():
        pass
    with second.writer():  # free again once released
        pass


def test_rows_past_the_committed_count_are_never_seen(make_store, tmp_path):
    """A writer killed between writing its rows and committing them: readers see the
    committed count only, and the next writer overwrites the orphans."""
    store = make_store()
    with store.writer():
        store.commit(batch(["a.png"]))
    if store.kind == "SQLite":  # write orphan rows the way a killed writer would
        (codes,) = [p for p in store.array_files() if ".codes." in p]
        with open(codes, "ab") as fh:
            fh.write(np.ones((5, HASH_DIM), np.float32).tobytes())
    assert store.snapshot().slots == 1
    later = batch(["b.png"], seed=3)
    with store.writer():
        store.commit(later)
    snap = store.snapshot()
    assert snap.slots == 2
    np.testing.assert_array_equal(np.asarray(snap.codes[1]), later.codes[0])


def test_compaction_keeps_every_image(make_store):
    """The embedded store drops dead rows; a shared one never moves rows (other machines
    may be writing) and keeps them until --rebuild."""
    store = make_store()
    with store.writer():
        store.commit(batch([f"{i}.png" for i in range(10)]))
        store.commit(Batch(delete=[f"{i}.png" for i in range(0, 10, 2)]))
        before = vectors_by_path(store)
        dropped = store.compact()
    snap = store.snapshot()
    if store.shared:
        assert dropped == 0 and snap.slots == 10 and len(snap.dead) == 5
    else:
        assert dropped == 5 and snap.slots == 5 and len(snap.dead) == 0
    after = vectors_by_path(store)
    assert set(after) == set(before)
    for path, code in after.items():
        np.testing.assert_array_equal(code, before[path])


def test_band_keys_and_sorted_tables(make_store):
    store = make_store()
    b = batch([f"{i}.png" for i in range(30)])
    with store.writer():
        store.commit(b)
        new_keys = np.random.RandomState(9).randint(0, 4, (30, BANDS)).astype(np.uint64)
        store.rewrite_band_keys(new_keys, {"centre_gen": 2})
    snap = store.snapshot()
    assert snap.meta["centre_gen"] == 2 and snap.lsh_base == 30
    np.testing.assert_array_equal(np.asarray(snap.band_keys), new_keys)
    table = BandTable(snap.lsh, snap.band_keys[snap.lsh_base :], snap.lsh_base)
    brute = BandTable.from_keys(new_keys)
    for q in new_keys[:10]:
        np.testing.assert_array_equal(table.query(q), brute.query(q))
    with store.writer():  # slots added after the sort are found too
        store.commit(batch(["late.png"], seed=4))
    snap = store.snapshot()
    table = BandTable(snap.lsh, snap.band_keys[snap.lsh_base :], snap.lsh_base)
    assert 30 in table.query(np.asarray(snap.band_keys[30]))


def test_stable_ids_and_collisions(make_store, monkeypatch):
    assert image_id("a/b.png") == image_id("a/b.png") != image_id("a/c.png")
    store = make_store()
    if store.kind == "SQLite":
        import sqlite3

        with store.writer():
            store.commit(batch(["a.png"]))
        with sqlite3.connect(store.location) as db:
            (stored,) = db.execute("SELECT id FROM images").fetchone()
        assert stored == image_id("a.png")
    import sys

    for name, module in list(sys.modules.items()):  # every store module that hashes paths
        if name.startswith("engine.storage") and hasattr(module, "image_id"):
            monkeypatch.setattr(module, "image_id", lambda _p: 42)
    with store.writer():
        refused = store.commit(batch(["x.png", "y.png"]))
    assert [p for p, _ in refused] == ["y.png"] and "collides with x.png" in refused[0][1]
    assert "y.png" not in store.file_states()


def test_read_only_store_refuses_writes(make_store, monkeypatch):
    store = make_store()
    if store.shared:
        pytest.skip("a shared index is never opened read-only")
    with store.writer():
        store.commit(batch(["a.png"]))
    store.close()
    import engine.storage.sqlite.store as sq

    monkeypatch.setattr(sq, "writable", lambda _f, _n: False)
    ro = make_store()
    assert ro.readonly and ro.snapshot().slots == 1
    with pytest.raises(IndexFileError, match="read-only"), ro.writer():
        pass
    with pytest.raises(IndexFileError, match="read-only"):
        ro.set_meta({"x": 1})


def test_clear_forgets_everything(make_store):
    store = make_store()
    with store.writer():
        store.commit(batch(["a.png"]))
    store.clear()
    assert store.count() == 0 and store.file_states() == {}
    assert "hash_dim" not in store.get_meta()


def test_older_schema_is_refused_with_the_way_out(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT)")
        con.execute("INSERT INTO meta VALUES ('schema', '1')")
    con.close()
    with pytest.raises(OlderIndex, match="older lookalike .schema 1.*--rebuild"):
        open_store(str(path), root="DIR")
    remove_index(str(path))  # what --rebuild does with it
    assert not path.exists() and open_store(str(path)).count() == 0


def test_version_follows_every_change(make_store):
    """What a long-lived reader asks before a query to learn that another process wrote."""
    store = make_store()
    seen = {store.version()}
    with store.writer():
        store.commit(batch(["a.png", "b.png"]))
        assert store.version() not in seen
        seen.add(store.version())
        store.commit(Batch(delete=["a.png"]))
        assert store.version() not in seen
        seen.add(store.version())
        store.rewrite_band_keys(np.zeros((2, BANDS), np.uint64), {"centre_gen": 5})
        assert store.version() not in seen
    assert store.version() == store.version()


def test_verdicts_and_rejections_are_kept(make_store):
    store = make_store()
    store.put_verdicts({b"k" * 16: '{"copy": true}', b"j" * 16: '{"copy": false}'})
    assert store.verdicts([b"k" * 16, b"x" * 16]) == {b"k" * 16: '{"copy": true}'}
    store.forget_verdicts()
    assert store.verdicts([b"k" * 16]) == {}
    odd = os.fsdecode(b"a/\xff.png")
    store.reject("b.png", odd)
    store.reject(odd, "b.png")  # either order: one pair
    assert store.rejections() == {tuple(sorted(("b.png", odd)))}
    store.close()
    store = make_store()  # kept across opening again
    assert store.rejections() == {tuple(sorted(("b.png", odd)))}
    assert store.forget_rejections() == 1 and store.rejections() == set()


def test_quality_measurements_are_kept_with_each_image(make_store):
    store = make_store()
    b = batch(["a.png", "b.png"])
    b.quality = [np.arange(7, dtype="<f4").tobytes(), None]
    b.failed = [("bad.png", 5, 6, "cannot decode")]
    with store.writer():
        store.commit(b)
    facts = store.image_facts()
    got = dict(zip(facts.paths, facts.quality))
    assert got == {"a.png": np.arange(7, dtype="<f4").tobytes(), "b.png": None}
    assert dict(store.failures()) == {"bad.png": "cannot decode"}  # failures keep reasons
