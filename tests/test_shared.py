"""One index in Redis, shared: datasketch's tables, workers, failures, names.

Every test runs against a real redis-server (see ``redis_base`` in conftest).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.images import FileEntry
from engine.storage import Batch, IndexFileError, open_store
from support import REPO, SAMPLE, RedisServer, make_picture

BANDS, ROWS, NUM_PERM = 16, 8, 128


def _store_with_codes(url: str, n: int, seed: int = 0):
    """A store holding *n* random codes, hashed the way the engine hashes them."""
    from engine.minhash import band_keys

    store = open_store(url)
    store.set_meta(
        {
            "hash_dim": 32,
            "feature_dim": 0,
            "bands": BANDS,
            "rows": ROWS,
            "num_perm": NUM_PERM,
            "seed": 1,
        }
    )
    rng = np.random.RandomState(seed)
    base = rng.standard_normal((n // 4, 32)).astype(np.float32)
    codes = np.repeat(base, 4, axis=0) + 0.15 * rng.standard_normal((n, 32)).astype(np.float32)
    keys = band_keys(codes, np.zeros(32, np.float32), NUM_PERM, 1, BANDS, ROWS)
    store.commit(
        Batch(
            paths=[f"{i}.png" for i in range(n)],
            sizes=[1] * n,
            mtimes=[1] * n,
            digests=[None] * n,
            codes=codes,
            band_keys=keys,
        )
    )
    return store, codes


def test_lsh_buckets_are_datasketchs(redis_url):
    """The buckets read by name, in one round trip, are the ones datasketch's own
    ``MinHashLSH.query`` finds in the same Redis, and the ones an in-memory
    ``MinHashLSH`` fed the real signatures finds."""
    from datasketch import MinHashLSH

    from engine.minhash import as_minhash, signatures

    store, codes = _store_with_codes(redis_url, 120)
    snap = store.snapshot()
    reference = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    sigs = signatures(codes, NUM_PERM, 1)
    for i, sig in enumerate(sigs):
        reference.insert(i, as_minhash(sig, 1))
    lsh = store.lsh.minhash_lsh(snap.meta)
    for i in range(0, 120, 7):
        ours = set(np.concatenate(snap.lsh.lookup_all(snap.band_keys[i])).tolist())
        theirs = {int(k) for k in lsh.query(as_minhash(sigs[i], 1))}
        assert ours == theirs == set(reference.query(as_minhash(sigs[i], 1)))
        assert i in ours and len(ours) >= 2  # itself, and some of its group of four


def test_removal_leaves_nothing_behind(redis_url):
    """datasketch's deletion_session leaves bucket fields behind; ours does not."""
    store, _ = _store_with_codes(redis_url, 40)
    assert not store.lsh.minhash_lsh(store.get_meta()).is_empty()
    store.commit(Batch(delete=[f"{i}.png" for i in range(40)]))
    assert store.count() == 0
    assert store.lsh.minhash_lsh(store.get_meta()).is_empty()
    assert list(store.r.scan_iter(match=store.prefix + b"lsh*")) == []


def test_named_indexes_do_not_see_each_other(redis_base):
    one, _ = _store_with_codes(f"{redis_base}?name=one-{os.getpid()}", 8)
    two = open_store(f"{redis_base}?name=two-{os.getpid()}")
    assert one.count() == 8 and two.count() == 0 and two.file_states() == {}
    one.clear()
    assert one.count() == 0


def _lookalike(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        **kw,
    )


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_wrong_password_and_unreachable_server(tmp_path: Path, tiny_folder: Path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(password="right")
    try:
        url = server.url.replace(":right@", ":wrong@") + "?name=x"
        _one_line_error(
            _lookalike("index", str(tiny_folder), env={"LOOKALIKE_STORE": url}), "password"
        )
        no_pass = server.url.replace(":right@", "") + "?name=x"
        _one_line_error(_lookalike("index", str(tiny_folder), "--store", no_pass), "password")
        ok = _lookalike("index", str(tiny_folder), "--store", server.url + "?name=x")
        assert ok.returncode == 0 and "wrong" not in ok.stderr and "right" not in ok.stderr
        # a password on the command line shows in ps: said; the other ways are quiet
        assert "visible to other users" in ok.stderr
        by_env = _lookalike(
            "index", str(tiny_folder), "--store", no_pass, env={"LOOKALIKE_REDIS_PASSWORD": "right"}
        )
        assert by_env.returncode == 0 and "visible" not in by_env.stderr, by_env.stderr
        secret = tmp_path / "secret"
        secret.write_text("right\n")
        by_file = _lookalike(
            "index", str(tiny_folder), "--store", f"{no_pass}&password_file={secret}"
        )
        assert by_file.returncode == 0, by_file.stderr
        _one_line_error(
            _lookalike(
                "index", str(tiny_folder), "--store", f"{no_pass}&password_file={tmp_path}/none"
            ),
            "cannot read the Redis password file",
        )
    finally:
        server.stop()
    _one_line_error(
        _lookalike("index", str(tiny_folder), env={"LOOKALIKE_STORE": server.url + "?name=x"}),
        "could not make the connection",
    )
    with pytest.raises(IndexFileError, match="index name"):
        open_store(server.url + "?name=a%20b")
    with pytest.raises(IndexFileError, match="index name"):
        open_store(server.url + "?name=")


def _picture_folder(root: Path, extra: int) -> Path:
    """The shipped sample and *extra* generated pictures: enough for a run to last."""
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".lookalike", "*.md"))
    for i in range(extra):
        make_picture(root / "made" / f"{i:03d}.png", seed=1000 + i)
    return root


def _start(root: Path, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui", "index", str(root), "--store", url, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LOOKALIKE_CLAIM_IDLE": "1"},
    )


def _wait_count(store, at_least: int, *procs: subprocess.Popen) -> int:
    deadline = time.time() + 180
    while time.time() < deadline:
        n = store.count()
        if n >= at_least:
            return n
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} images committed")


def _top(search, queries: list[Path]) -> list[list[tuple[str, float]]]:
    return [[(m.path, m.score) for m in search.search(q, 10, exact=True).matches] for q in queries]


def _same_answers(a, b) -> None:
    """Equal top-10 lists, but for neighbours whose scores tie to 1e-4 (the codes of one
    image computed in batches of different sizes differ in their last bits)."""
    for ra, rb in zip(a, b):
        assert [round(s, 3) for _, s in ra] == pytest.approx([round(s, 3) for _, s in rb], abs=2e-3)
        for i, ((pa, _), (pb, _)) in enumerate(zip(ra, rb)):
            if pa != pb:
                near = [s for _, s in ra[max(0, i - 1) : i + 2]]
                assert max(near) - min(near) < 1e-4, (ra, rb)


def test_two_workers_a_killed_one_and_a_searcher(tmp_path: Path, redis_url):
    """Two indexers and a searcher on one shared index; one indexer is killed (-9)
    mid-run. The other takes over its chunk: every image is indexed exactly once, and
    the answers are those of a local SQLite index of the same folder."""
    from engine import ImageSimilaritySearch

    root = _picture_folder(tmp_path / "pics", 60)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    store = open_store(redis_url)
    first = _start(root, redis_url, "--batch-size", "4")
    _wait_count(store, 24, first)
    second = _start(root, redis_url, "--batch-size", "4")
    _wait_count(store, 80, first, second)
    assert first.poll() is None, "the first worker ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    query = root / files[0]  # searched while the second worker goes on
    searched = _lookalike("search", "--in", str(root), str(query), "--store", redis_url)
    assert searched.returncode == 0 and "1 " in searched.stdout, searched.stderr
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err

    facts = store.image_facts()
    assert sorted(facts.paths) == files  # each image once
    assert store.count() == len(files) == len(set(facts.slots.tolist()))
    assert store.failures() == []
    pending = (
        store.r.xpending(store.k("work"), b"workers") if store.r.exists(store.k("work")) else None
    )
    assert pending is None or pending["pending"] == 0

    queries = [root / files[i] for i in range(0, len(files), 45)]
    with ImageSimilaritySearch(root, store=redis_url) as shared:
        assert shared.store.kind == "Redis, shared"
        from_redis = _top(shared, queries)
        assert shared.view.centre.count == len(files)  # refitted once, on every image
    with ImageSimilaritySearch(root) as local:
        local.index()
        _same_answers(from_redis, _top(local, queries))


def test_a_server_that_goes_away_loses_nothing_committed(tmp_path: Path, redis_base):
    """The server stops answering mid-run (SIGSTOP): the worker gives one line and
    exits; once it answers again, everything committed is there and a new run ends
    the job."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    try:
        url = server.url + "?name=away"
        root = _picture_folder(tmp_path / "pics", 40)
        store = open_store(url)
        worker = subprocess.Popen(
            [sys.executable, "-m", "tui", "index", str(root), "--store", url, "--batch-size", "4"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LOOKALIKE_REDIS_TIMEOUT": "1"},
        )
        _wait_count(store, 40, worker)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            _out, err = worker.communicate(timeout=120)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert worker.returncode == 1 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and "Redis" in err, err
        kept = store.count()
        assert kept >= 40
        again = _lookalike("index", str(root), "--store", url, env={"LOOKALIKE_CLAIM_IDLE": "1"})
        assert again.returncode == 0, again.stderr
        assert store.count() == 240 and len(store.file_states()) == 240
    finally:
        server.stop()


def test_band_keys_of_an_old_centre_are_refused(redis_url):
    """A worker still holding the centre of before a refit cannot commit band keys made
    with it: the store refuses, and the indexer re-signs with the stored centre."""
    from engine.storage import CentreMoved

    store, codes = _store_with_codes(redis_url, 8)
    store.set_meta({"centre_gen": 2})
    late = Batch(
        paths=["late.png"],
        sizes=[1],
        mtimes=[1],
        digests=[None],
        codes=codes[:1],
        band_keys=np.zeros((1, BANDS), np.uint64),
        centre_gen=1,
    )
    with pytest.raises(CentreMoved):
        store.commit(late)
    late.centre_gen = 2
    store.commit(late)
    assert store.count() == 9


def test_an_index_without_features(redis_url, tiny_folder: Path):
    """``features=0``: codes only (no re-ranking), and no feature rows in Redis."""
    from engine import ImageSimilaritySearch

    url = redis_url + "&features=0"
    with ImageSimilaritySearch(tiny_folder, store=url) as search:
        search.index()
        assert search.store.get_meta()["feature_dim"] == 0 and "features=0" in str(
            search.index_path
        )
        result = search.search(tiny_folder / "a" / "img0.png", 3)
        assert len(result.matches) == 3 and result.reranked == 0
        assert list(search.store.r.scan_iter(match=search.store.prefix + b"feats*")) == []


def test_job_handover(redis_url):
    """A walker whose lease ran out is replaced by the next worker; a worker reading a job
    another worker closed meanwhile ends quietly."""
    import threading

    from engine.images import FileEntry
    from engine.storage.redis.streams import Job, pack_entries, unpack_entries

    entries = [FileEntry("a/\udcff.png", 3, 4), FileEntry("b.png", 5, 6)]
    assert unpack_entries(pack_entries(entries)) == entries
    store = open_store(redis_url)
    go = threading.Event()
    walker, other = Job(store), Job(store)
    assert walker.join(go) and not other.join(go)  # one walker at a time
    store.r.delete(store.k("walker"))  # its lease ran out (the process died)
    assert other.join(go)  # walks again
    other.enqueue(entries, 1)
    other.walked()
    (mid, got), *_ = list(_take(other.chunks(go), 1))
    assert got == entries
    other.ack(mid)
    assert other.finish(lambda: None) and not walker.finish(lambda: None)
    assert list(walker.chunks(go)) == []  # the stream is gone: nothing, no error


def _take(it, n):
    for i, x in enumerate(it):
        yield x
        if i + 1 >= n:
            return


async def test_the_app_on_a_shared_index_searches_without_indexing(redis_url, sample_copy):
    """Opening the app on a shared index does not make it a worker; searching works;
    i joins the workers."""
    from test_app import search_first_bag, wait_for

    from engine import ImageSimilaritySearch
    from tui.app import create_app

    with ImageSimilaritySearch(sample_copy, store=redis_url, batch_size=50) as search:
        assert search.index().indexed == 200
    app = create_app(sample_copy, store=redis_url)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.search_engine is not None)
        state = lambda: str(app.query_one("#index-state").render())  # noqa: E731
        await wait_for(pilot, lambda: "shared index" in state())
        assert "200 images" in state() and not app.indexing
        assert "redis://" in str(app.query_one("#index-info").render())
        await search_first_bag(pilot)
        assert len(app.search_view.last_result.matches) == 12
        await pilot.press("i")
        await wait_for(pilot, lambda: "up to date" in state())


@pytest.mark.parametrize(
    "harm",
    ["hash_dim", "short codes", "record", "bucket", "centre", "schema"],
)
def test_a_crafted_shared_index_is_refused_in_one_line(redis_url, tiny_folder: Path, harm):
    """What is read from Redis is checked before use: each crafted value gives one line
    (exit 1), never a traceback, and nothing is unpickled."""
    from engine import ImageSimilaritySearch

    with ImageSimilaritySearch(tiny_folder, store=redis_url) as search:
        search.index()
        store = search.store
    r, k = store.r, store.k
    if harm == "hash_dim":
        r.hset(k("meta"), "hash_dim", "1000000000")
    elif harm == "short codes":
        r.set(k("codes:0"), b"\0" * 10)
    elif harm == "record":
        key = next(iter(r.hkeys(k("img"))))
        r.hset(k("img"), key, b"\x01\x02")
    elif harm == "bucket":
        for bucket in r.scan_iter(match=store.prefix + b"lsh_bucket_*"):
            if r.type(bucket) == b"set":
                r.sadd(bucket, b"not-a-slot")
    elif harm == "centre":
        r.hset(k("meta"), "centre", "[1e999]")
    elif harm == "schema":
        r.hset(k("meta"), "schema", "99")
    query = tiny_folder / "a" / "img0.png"
    args = ["search", "--in", str(tiny_folder), str(query), "--store", redis_url]
    if harm == "bucket":
        args += ["--mode", "lsh"]
    proc = _lookalike(*args)
    _one_line_error(proc)
    assert any(w in proc.stderr for w in ("damaged", "newer lookalike", "not valid JSON")), (
        proc.stderr
    )


def test_a_worker_given_another_folder_leaves_the_job_alone(redis_url, tmp_path: Path):
    """A worker whose folder holds none of the queued files stops with one line and
    records nothing: the chunk stays for the workers that see the collection."""
    import threading

    from engine.images import FileEntry
    from engine.storage.redis.streams import Job

    store = open_store(redis_url)
    job = Job(store)
    assert job.join(threading.Event())
    job.enqueue([FileEntry(f"elsewhere/{i}.png", 10, 20) for i in range(4)], 1)
    job.walked()
    other = tmp_path / "other"
    make_picture(other / "x.png", 1)
    proc = _lookalike("index", str(other), "--store", redis_url)
    _one_line_error(proc, "none of the files queued", "same collection")
    assert store.file_states() == {} and store.failures() == []
    assert store.r.xpending(store.k("work"), b"workers")["pending"] == 1


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_searcher_sees_what_other_processes_commit(kind, request, tmp_path, monkeypatch):
    """A long-lived searcher (the app) answers over images another process indexed after
    it opened the index, on either store."""
    import engine.live
    from engine import ImageSimilaritySearch
    from support import make_image

    monkeypatch.setattr(engine.live, "RECHECK", 0.0)
    root = tmp_path / "pics"
    for i in range(4):
        make_image(root / f"{i}.png", seed=i)
    where = {"store": request.getfixturevalue("redis_url")} if kind == "redis" else {}
    with ImageSimilaritySearch(root, **where) as writer:
        writer.index()
        reader = ImageSimilaritySearch(root, **where)
        assert len(reader.search(root / "0.png", 10).matches) == 3
        for i in range(4, 8):
            make_image(root / f"{i}.png", seed=i)
        writer.index()  # another process's view: the reader was not told
        assert len(reader.search(root / "0.png", 10).matches) == 7
        (root / "1.png").unlink()
        writer.index()
        assert len(reader.search(root / "0.png", 10).matches) == 6
        reader.close()


def test_chunks_go_out_while_the_walk_goes_on(redis_url, tmp_path: Path, monkeypatch):
    """The walker queues each chunk as soon as the walk has found it: other workers need
    not wait for a walk of millions of files to end."""
    import engine.indexer
    from engine import ImageSimilaritySearch
    from engine.storage.redis.streams import Job
    from support import make_image

    root = tmp_path / "pics"
    for i in range(10):
        make_image(root / f"{i:02d}.png", seed=i)
    queued_when_walk_ended = []
    real_walk = engine.indexer.walk_images
    real_enqueue = Job.enqueue
    sent = []

    def walk(*args, **kwargs):
        yield from real_walk(*args, **kwargs)
        queued_when_walk_ended.append(len(sent))

    def enqueue(self, chunk, queued_after):
        sent.append(len(chunk))
        return real_enqueue(self, chunk, queued_after)

    monkeypatch.setattr(engine.indexer, "walk_images", walk)
    monkeypatch.setattr(Job, "enqueue", enqueue)
    with ImageSimilaritySearch(root, store=redis_url, batch_size=4) as search:
        stats = search.index()
    assert stats.indexed == 10 and search.count() == 10
    assert sent == [4, 4, 2] and queued_when_walk_ended == [2]


def test_a_worker_says_it_waits_for_an_abandoned_chunk(redis_url, tmp_path: Path):
    from engine.storage.redis.streams import Job

    root = tmp_path / "pics"
    for i in range(12):
        make_picture(root / f"{i:02d}.png", seed=500 + i)
    # a worker took a chunk and died before committing it (its job is walked)
    job = Job(open_store(redis_url, root=str(root)))
    assert job.join(threading.Event())
    job.enqueue([FileEntry(f"{i:02d}.png", 1, 1) for i in range(12)], 1)
    job.walked()
    (_s, [(mid, _f)]), *_ = job.r.xreadgroup(job.group, "dead-worker", {job.stream: ">"}, count=1)
    run = subprocess.Popen(
        [sys.executable, "-m", "tui", "index", str(root), "--store", redis_url],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LOOKALIKE_CLAIM_IDLE": "1"},
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(run.stderr), daemon=True)
    reader.start()
    # the dead worker's chunk looks fresh until the new worker has said it waits on it:
    # the claim time short, and no test time spent waiting out a long one
    deadline = time.time() + 120
    while not any("waiting for" in line for line in said) and run.poll() is None:
        job.r.xclaim(job.stream, job.group, "dead-worker", 0, [mid])
        assert time.time() < deadline, said
        time.sleep(0.05)
    assert run.wait(timeout=120) == 0, said
    reader.join(10)
    waits = [line for line in said if "waiting for" in line]
    assert waits and "taken over in" in waits[0], said
    assert "12 images in the index" in "".join(said)


def test_leaks_and_quality_from_a_shared_index(redis_url, tmp_path: Path, capsys):
    """TRAIN in Redis, TEST in another Redis index: leaks found, quality measurements
    kept in the shared records."""
    from tui.cli import main

    train, test = tmp_path / "train", tmp_path / "test"
    for i in range(6):
        make_picture(train / "a" / f"{i}.png", 40 + i)
    test.mkdir()
    shutil.copy(train / "a" / "2.png", test / "leak.png")
    make_picture(test / "new.png", 99)
    from PIL import Image

    Image.new("RGB", (90, 60), (10, 10, 10)).save(train / "a" / "black.png")
    other = redis_url.replace("?name=", "?name=test-")
    assert main(["index", str(train), "--store", redis_url]) == 0
    assert main(["index", str(test), "--store", other]) == 0
    args = ["triage", str(train), "--store", redis_url, "--json"]
    assert main([*args, "--against", str(test), "--against-store", other]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(x["path"], x["other"], x["identical"]) for x in out["leaks"]] == [
        ("a/2.png", "leak.png", True)
    ]
    flagged = {q["path"]: q["flags"] for q in out["quality"]}
    assert "blank" in flagged.get("a/black.png", []) and "dark" in flagged["a/black.png"]
