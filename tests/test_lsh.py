"""The numpy band tables against datasketch's MinHashLSH, and the planner's guard."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHashLSH

from engine.lsh import BandTable, band_keys, candidate_probability, reliable_similarity
from engine.minhash import as_minhash, signatures


def _clustered_codes(n: int, dim: int, seed: int) -> np.ndarray:
    """Codes in tight clusters, so that many pairs share bands (a real test of buckets)."""
    rng = np.random.RandomState(seed)
    centres = rng.standard_normal((n // 10, dim))
    codes = centres[rng.randint(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim))
    return codes.astype(np.float32)


def _sorted_on_disk(keys: np.ndarray, tmp_path) -> BandTable:
    """The keys as the store keeps them: sorted per band in files, with fences of 16."""
    from engine.storage import RowFile, SortedBands

    order = np.argsort(keys.T, axis=1, kind="stable").astype(np.int32)
    sorted_keys = np.take_along_axis(keys.T, order, axis=1)
    sorted_keys.tofile(tmp_path / "keys")
    order.tofile(tmp_path / "slots")
    shape = sorted_keys.shape
    bands = SortedBands(
        RowFile(str(tmp_path / "keys"), np.uint64, shape),
        RowFile(str(tmp_path / "slots"), np.int32, shape),
        np.ascontiguousarray(sorted_keys[:, ::16]),
        16,
    )
    return BandTable(bands, keys[:0], len(keys))


@pytest.mark.parametrize(
    ("num_perm", "bands", "rows"), [(128, 32, 4), (64, 16, 2), (32, 32, 1), (128, 10, 12)]
)
def test_same_candidates_as_datasketch(num_perm: int, bands: int, rows: int, tmp_path):
    codes = _clustered_codes(400, 32, seed=num_perm + rows)
    sigs = signatures(codes, num_perm, seed=1)
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    for i, s in enumerate(sigs):
        lsh.insert(i, as_minhash(s, 1))
    keys = band_keys(sigs, bands, rows)
    tables = [BandTable.from_keys(keys), _sorted_on_disk(keys, tmp_path)]
    nonempty = 0
    for q in range(0, 400, 7):
        expected = sorted(lsh.query(as_minhash(sigs[q], 1)))
        nonempty += len(expected) > 1
        for table in tables:
            assert table.query(keys[q]).tolist() == expected
    assert nonempty > 10  # the buckets were really shared


def test_reliable_similarity_means_what_it_says():
    s = reliable_similarity(32, 4, miss=0.01)
    assert 0.5 < s < 0.9
    assert candidate_probability(s, 32, 4) >= 0.99 > candidate_probability(s - 0.02, 32, 4)
    # more rows per band: a stricter table needs closer neighbours
    assert reliable_similarity(16, 8) > s


def test_a_row_file_reads_rows_in_the_order_asked(tmp_path):
    """Runs read straight into place; rows asked out of order or twice come back as
    asked; a file shorter than its rows is a one-line index error."""
    from engine.storage import IndexFileError, RowFile

    data = np.arange(50 * 3, dtype=np.float16).reshape(50, 3)
    data.tofile(tmp_path / "rows")
    rows = RowFile(str(tmp_path / "rows"), np.float16, data.shape)
    for ask in ([4, 5, 6, 7], [9, 2, 3, 2, 49, 0], list(range(50)), [31]):
        np.testing.assert_array_equal(rows[np.array(ask)], data[ask])
    np.testing.assert_array_equal(rows[10:20], data[10:20])
    short = RowFile(str(tmp_path / "rows"), np.float16, (60, 3))
    with pytest.raises(IndexFileError, match="shorter than its index says"):
        short[np.array([48, 49, 50])]
