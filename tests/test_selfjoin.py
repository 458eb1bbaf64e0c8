"""The near-duplicate self-join: both methods agree, pairs are exact, outliers certified."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from engine import ImageSimilaritySearch, open_store
from engine.centre import fit
from engine.storage import Batch
from engine.triage.selfjoin import banding_for, self_join, unit_codes


def _index_of_codes(codes: np.ndarray, where: Path) -> ImageSimilaritySearch:
    """An index holding *codes* (no images, no CNN), written with the public storage API."""
    index = where / "index.sqlite"
    store = open_store(str(index))
    store.set_meta(
        {
            "backbone": "efficientnet-lite0",
            "weights_id": None,
            "hash_dim": codes.shape[1],
            "input_size": 224,
            "hash_layer": 1,
            "precision": "fp32",
            "num_perm": 128,
            "seed": 1,
            "scheme": "affine32",
            "bands": 16,
            "rows": 8,
            "feature_dim": 0,
            "slots": 0,
            **fit(codes, None, None, 1).to_meta(),
        }
    )
    search = ImageSimilaritySearch(Path(tempfile.mkdtemp()), index)
    with store.writer():
        store.commit(
            Batch(
                paths=[f"c/{i:05d}.png" for i in range(len(codes))],
                sizes=[0] * len(codes),
                mtimes=[0] * len(codes),
                digests=[None] * len(codes),
                codes=codes,
                band_keys=search.view.band_keys(codes),
            )
        )
        store.commit(Batch(delete=["c/00007.png"]))  # a dead slot, to be skipped
    store.close()
    search.view.committed()
    return search


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> ImageSimilaritySearch:
    """3,000 codes: groups of 5 near-copies (cosine about 0.97), 960 scattered, and 40
    loners, each along a direction of its own (nearest neighbour at cosine about 0)."""
    rng = np.random.RandomState(0)
    dim = 32
    centres = rng.standard_normal((400, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    near = np.repeat(centres, 5, axis=0)
    noise = rng.standard_normal(near.shape)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    near = np.sqrt(0.985) * near + np.sqrt(0.015) * noise
    scattered = rng.standard_normal((960, dim))
    body = np.concatenate([near, scattered])
    codes = np.zeros((3000, dim + 40), np.float32)
    codes[:2960, :dim] = body
    codes[2960:, dim:] = 3 * np.eye(40)
    return _index_of_codes(codes, tmp_path_factory.mktemp("codes"))


def test_banding_for_finds_pairs_at_tau():
    from engine.lsh import candidate_probability

    for tau in (0.8, 0.9, 0.95):
        bands, rows = banding_for(tau)
        assert candidate_probability(tau, bands, rows) >= 0.99
        assert candidate_probability(0.0, bands, rows) < 0.02  # unrelated codes: rarely


@pytest.mark.parametrize("tau", [0.9, 0.95])
def test_both_methods_find_the_same_pairs(clustered: ImageSimilaritySearch, tau: float):
    vec = clustered.vectors()
    exact = self_join(vec, tau, method="exact")
    lsh = self_join(vec, tau, method="lsh")
    truth = set(zip(exact.left.tolist(), exact.right.tolist()))
    found = set(zip(lsh.left.tolist(), lsh.right.tolist()))
    assert len(truth) > 500 and found <= truth  # LSH never invents a pair
    assert len(found) / len(truth) >= 0.97
    units, slots = unit_codes(vec)
    row = {int(s): i for i, s in enumerate(slots)}
    for a, b, s in zip(exact.left[:50], exact.right[:50], exact.score[:50]):
        assert a < b and 7 not in (a, b)  # the dead slot never pairs
        assert s >= tau and abs(units[row[a]] @ units[row[b]] - s) < 1e-5


@pytest.mark.parametrize("method", ["lsh", "ivf"])
def test_nearest_scores_and_certified_outliers(clustered: ImageSimilaritySearch, method: str):
    """Banding and the inverted file give lower bounds, exact for the lowest."""
    vec = clustered.vectors()
    exact = self_join(vec, 0.95, method="exact")
    top_k = 10 if method == "ivf" else 0
    lsh = self_join(vec, 0.95, method=method, outliers=0.01, top_k=top_k)
    assert exact.nearest_exact[~np.isnan(exact.nearest)].all() and exact.nearest_certain == 1.0
    assert np.isnan(exact.nearest[7]) and np.isnan(lsh.nearest[7])  # dead slot
    live = ~np.isnan(exact.nearest)
    # where LSH's scores are marked exact they are; elsewhere they are lower bounds
    np.testing.assert_allclose(
        lsh.nearest[lsh.nearest_exact], exact.nearest[lsh.nearest_exact], atol=1e-5
    )
    assert (lsh.nearest[live] <= exact.nearest[live] + 1e-5).all()
    # every image below the certified cut is exact: the 40 loners are found
    below = live & (exact.nearest < lsh.nearest_certain)
    assert below.sum() >= 30 and lsh.nearest_exact[below].all()
    loners = np.arange(len(exact.nearest) - 40, len(exact.nearest))
    assert lsh.nearest_exact[loners].all()
    # the nearest neighbour named is one at that score
    units, slots = unit_codes(vec)
    row = {int(s): i for i, s in enumerate(slots)}
    for a in loners[:10]:
        b = exact.nearest_slot[a]
        assert abs(units[row[a]] @ units[row[b]] - exact.nearest[a]) < 1e-5


def test_top_k_pairs_are_each_rows_nearest():
    from engine.triage.selfjoin import exact_blocks

    rng = np.random.RandomState(5)
    units = rng.randn(6000, 16).astype(np.float32)  # more than the sampled columns
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    left, right, score, _n, _a = exact_blocks(units, -1.0, top_k=4)
    assert {(int(a), int(b)) for a, b in zip(left, right)} == _exact_top(units, 4)
    assert np.allclose(score, np.einsum("ij,ij->i", units[left], units[right]), atol=1e-5)


def _exact_top(units: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Each row's *k* best other rows, by brute force: (row, other) pairs."""
    s = units @ units.T
    np.fill_diagonal(s, -np.inf)
    return {(i, int(j)) for i in range(len(units)) for j in np.argsort(-s[i])[:k]}


def test_the_inverted_file_probing_every_cell_is_exact(monkeypatch):
    """Probing every cell, each row's top k is the exact one: cells of every size, the
    row itself left out, codes that probe a cell compared in blocks."""
    from engine.triage import ivf

    monkeypatch.setattr(ivf, "QUERY_ROWS", 100)  # several blocks per cell
    rng = np.random.RandomState(3)
    units = rng.randn(1500, 16).astype(np.float32)
    units[:300] = units[0] + 0.3 * units[:300]  # one dense cluster: one large cell
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    left, right, score = ivf.top_k(units, 4, lists=20, probes=20)
    assert {(int(a), int(b)) for a, b in zip(left, right)} == _exact_top(units, 4)
    assert np.allclose(score, np.einsum("ij,ij->i", units[left], units[right]), atol=1e-5)
    assert len(left) == 4 * len(units)


def test_the_inverted_file_keeps_copies_far_below_the_bands_floor(tmp_path: Path):
    """Planted pairs at code cosine 0.40-0.75 among clustered codes (what copies turned or
    cropped hard look like): past EXACT_MAX the candidate graph comes from the inverted
    file, which keeps nearly all of them, where bands strict enough to be fast (cosine
    0.85) would keep almost none."""
    import threading

    from engine.triage import candidates as cand

    rng = np.random.RandomState(11)
    dim, n, pairs = 48, 12_000, 300
    centres = rng.standard_normal((60, dim))
    codes = centres[rng.randint(0, 60, n)] + 1.2 * rng.standard_normal((n, dim))
    originals = rng.choice(n, pairs, replace=False)
    copies_at = n + np.arange(pairs)
    cos = rng.uniform(0.40, 0.75, pairs)
    base = codes[originals] - codes.mean(axis=0)
    noise = rng.standard_normal(base.shape)
    noise -= (noise * base).sum(1, keepdims=True) / (base * base).sum(1, keepdims=True) * base
    noise *= (np.linalg.norm(base, axis=1) / np.linalg.norm(noise, axis=1))[:, None]
    edited = base + noise * np.sqrt(1 / cos**2 - 1)[:, None] + codes.mean(axis=0)
    search = _index_of_codes(np.concatenate([codes, edited]).astype(np.float32), tmp_path)
    vec = search.vectors()
    units, slots = unit_codes(vec)
    row = {int(s): i for i, s in enumerate(slots)}
    planted = {(row[a], row[b]) for a, b in zip(originals, copies_at) if a in row}

    def candidates(exact: bool) -> tuple[str, set[tuple[int, int]]]:
        graph = cand.build(vec, [""] * len(slots), np.zeros(len(slots)), "", 0.01,
                           lambda *_: 0, threading.Event(), exact=exact)  # fmt: skip
        return graph.method, set(zip(graph.pairs.left.tolist(), graph.pairs.right.tolist()))

    method, got = candidates(exact=False)
    assert method.startswith("inverted file")
    wanted = planted & candidates(exact=True)[1]
    assert len(wanted) >= 0.8 * len(planted)  # most copies are among the nearest
    assert len(got & wanted) >= 0.85 * len(wanted)  # 235 of 257 when written
    true_cos = np.array([units[a] @ units[b] for a, b in planted])
    assert (true_cos < 0.8).mean() > 0.9  # below what the bands would keep
