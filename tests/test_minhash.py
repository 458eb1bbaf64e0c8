import numpy as np
import pytest
from datasketch import MinHash

from engine import create_minhash
from engine.minhash import (
    SCHEME,
    expected_jaccard,
    minhash_reference,
    signatures,
    token_bytes,
    tokens_for,
)


@pytest.mark.parametrize(("dim", "num_perm", "seed"), [(128, 128, 1), (64, 256, 7), (16, 32, 3)])
def test_batched_signatures_equal_datasketch(dim, num_perm, seed):
    rng = np.random.RandomState(dim + seed)
    codes = rng.standard_normal((25, dim)).astype(np.float32)
    fast = signatures(codes, num_perm, seed)
    for row, code in zip(fast, codes):
        ref = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
        ref.update_batch([token_bytes(t) for t in tokens_for(code)])
        np.testing.assert_array_equal(row, ref.hashvalues)
        np.testing.assert_array_equal(row, minhash_reference(code, num_perm, seed).hashvalues)


def test_create_minhash_is_a_datasketch_minhash():
    code = np.linspace(-1, 1, 128)
    m = create_minhash(code)
    assert m.jaccard(create_minhash(code)) == 1.0
    assert m.jaccard(create_minhash(-code)) == 0.0  # every sign flipped: no token shared


def test_jaccard_tracks_cosine():
    rng = np.random.RandomState(0)
    base = rng.standard_normal(128)
    for noise in (0.2, 0.6, 1.5):
        other = base + noise * rng.standard_normal(128)
        cos = base @ other / np.linalg.norm(base) / np.linalg.norm(other)
        true_j = len(set(tokens_for(base)) & set(tokens_for(other))) / len(
            set(tokens_for(base)) | set(tokens_for(other))
        )
        est = create_minhash(base, 256).jaccard(create_minhash(other, 256))
        assert abs(est - true_j) < 0.12
        assert abs(true_j - expected_jaccard(cos)) < 0.15


def test_the_index_records_datasketchs_scheme():
    from engine.identity import MINHASH_SCHEME
    from engine.minhash import SCHEME

    assert MINHASH_SCHEME == SCHEME
