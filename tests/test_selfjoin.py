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


def test_nearest_scores_and_certified_outliers(clustered: ImageSimilaritySearch):
    vec = clustered.vectors()
    exact = self_join(vec, 0.95, method="exact")
    lsh = self_join(vec, 0.95, method="lsh", outliers=0.01)
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
    got = {(int(a), int(b)) for a, b in zip(left, right)}
    s = units @ units.T
    np.fill_diagonal(s, -np.inf)
    want = {(i, int(j)) for i in range(len(units)) for j in np.argsort(-s[i])[:4]}
    assert got == want
    assert np.allclose(score, s[left, right], atol=1e-5)
