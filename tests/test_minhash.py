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


def test_the_token_table_is_kept_sealed_and_a_damaged_one_made_again(tmp_path, monkeypatch):
    """Made once with datasketch, then read from the cache folder without importing it
    (SciPy with it: 0.4-0.9 s a run); a damaged, reshaped or linked file is made again."""
    import os
    import subprocess
    import sys

    from engine import minhash

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    minhash._token_table.cache_clear()
    made = np.array(minhash._token_table(16, 32, 3))
    path = minhash._table_path(16, 32, 3)
    assert path.exists() and path.with_name(path.name + ".seal").exists()
    code = (
        "import sys, numpy as np\n"
        "from engine import minhash\n"
        "t = minhash._token_table(16, 32, 3)\n"
        "print('datasketch' in sys.modules, int(t.sum()))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", str(int(made.sum()))], out.stderr
    other = tmp_path / "other.npy"
    np.save(other, made[:, :8])
    for damage in (
        lambda: path.write_bytes(b"garbage"),
        lambda: np.save(path, made[:, :8]),  # resealed below: a table of the wrong shape
        lambda: (path.unlink(), path.symlink_to(other)),
    ):
        damage()
        if not path.is_symlink() and path.stat().st_size > 100:
            from engine.encoding import sealed

            sealed.write_seal(path, [path])
        minhash._token_table.cache_clear()
        np.testing.assert_array_equal(minhash._token_table(16, 32, 3), made)
        assert not path.is_symlink()
