"""Wrong labels (engine.triage.labels) on features made here: planted flips listed with
their true class, classes that overlap summarised once, the cut and --labels-top, and the
classifier's cache in the index checked before it is believed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.triage import labels

CLASSES = ("a", "b", "c", "d", "shirt", "tshirt")


def _world(seed: int = 0, per_class: int = 80, flips: int = 8):
    """Codes of six classes (the last two overlapping broadly), some pictures filed under
    a wrong folder, and each picture's ten nearest neighbours as candidate pairs."""
    rng = np.random.RandomState(seed)
    dim = 24
    means = rng.normal(0, 1, (len(CLASSES), dim)) * 3.0
    means[5] = means[4] + rng.normal(0, 1, dim) * 0.35  # shirts and T-shirts
    truth = np.repeat(np.arange(len(CLASSES)), per_class)
    codes = means[truth] + rng.normal(0, 1, (len(truth), dim))
    filed = truth.copy()
    # flips among the well-separated classes only: each far from its folder
    planted = rng.choice(np.flatnonzero(truth < 4), flips, replace=False)
    for i in planted:
        filed[i] = (truth[i] + 1 + rng.randint(3)) % 4
    paths = [f"{CLASSES[c]}/{i:04d}.png" for i, c in enumerate(filed)]
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1)[:, :10]
    left = np.repeat(np.arange(len(paths)), 10)
    right = near.reshape(-1)
    packed = np.unique(np.minimum(left, right) * len(paths) + np.maximum(left, right))
    a, b = packed // len(paths), packed % len(paths)
    pairs = (a, b, sim[a, b])
    flipped = {paths[i]: CLASSES[truth[i]] for i in planted}
    return paths, codes.astype(np.float32), pairs, flipped


def test_flips_are_listed_with_their_class_and_overlapping_classes_summarised():
    paths, codes, (left, right, sim), flipped = _world()
    got = labels.wrong_labels(paths, lambda: codes, left, right, sim)
    listed = {m.path: m for m in got.listed}
    assert set(flipped) <= set(listed), set(flipped) - set(listed)
    for path, true_class in flipped.items():
        m = listed[path]
        assert m.suggested == true_class and m.confidence >= labels.CUT
        assert 0 <= m.classifier <= 1 and 0 <= m.vote <= 1 and m.neighbours
    scores = [m.confidence for m in got.listed]
    assert scores == sorted(scores, reverse=True)
    # shirts and T-shirts are confused as a rule: summarised once, not listed one by one
    pair = next(c for c in got.confusions if c.classes == ("shirt", "tshirt"))
    assert pair.count >= 5 and "shirt ↔ tshirt" in pair.text()
    between = [m for m in got.listed if {m.folder, m.suggested} == {"shirt", "tshirt"}]
    assert len(between) < pair.count
    assert not any(c.classes != ("shirt", "tshirt") and c.count > 3 for c in got.confusions)


def test_top_n_lists_the_likeliest_summarised_ones_included():
    paths, codes, (left, right, sim), flipped = _world(seed=1)
    whole = labels.wrong_labels(paths, lambda: codes, left, right, sim)
    n = len(whole.listed) + sum(c.count for c in whole.confusions) + whole.under_cut
    top = labels.wrong_labels(paths, lambda: codes, left, right, sim, top=n)
    assert len(top.listed) == n and not top.confusions
    scores = [m.confidence for m in top.listed]
    assert scores == sorted(scores, reverse=True)
    assert set(flipped) <= {m.path for m in top.listed[: len(flipped) + 5]}
    three = labels.wrong_labels(paths, lambda: codes, left, right, sim, top=3)
    assert [m.path for m in three.listed] == [m.path for m in top.listed[:3]]
    # a lower cut lists more
    low = labels.wrong_labels(paths, lambda: codes, left, right, sim, cut=0.05)
    assert len(low.listed) >= len(whole.listed) and low.under_cut <= whole.under_cut


def test_the_classifier_is_kept_in_the_index_and_checked_before_use():
    paths, codes, (left, right, sim), _ = _world(seed=2)
    kept: dict[str, bytes] = {}
    key = labels.cache_key("fp", "\n".join(paths), left, right, sim)
    cache = (key, lambda: kept.get("blob"), lambda b: kept.__setitem__("blob", b))
    first = labels.wrong_labels(paths, lambda: codes, left, right, sim, cache)
    assert kept["blob"]

    def never() -> np.ndarray:
        raise AssertionError("the codes were read though the cache holds the answer")

    again = labels.wrong_labels(paths, never, left, right, sim, cache)
    assert again.listed == first.listed and again.confusions == first.confusions
    n, c = len(paths), len(CLASSES)
    blob = kept["blob"]
    assert labels.decode_cache(blob, key, n, c) is not None
    bad_key = labels.cache_key("another", "\n".join(paths))
    nan = bytearray(blob)
    nan[len(labels.MAGIC) + 32 + 8 : len(labels.MAGIC) + 32 + 12] = np.float32("nan").tobytes()
    big = bytearray(blob)
    big[len(labels.MAGIC) + 32 + 8 : len(labels.MAGIC) + 32 + 12] = np.float32(7).tobytes()
    for crafted, k in [
        (blob, bad_key),  # made for other pictures
        (blob[:-1], key),  # truncated
        (blob + b"\0", key),  # longer
        (b"garbage", key),
        (None, key),
        ("text", key),
        (bytes(nan), key),  # not a probability
        (bytes(big), key),
    ]:
        assert labels.decode_cache(crafted, k, n, c) is None
    # a crafted blob is made again, never believed
    kept["blob"] = bytes(big)
    remade = labels.wrong_labels(paths, lambda: codes, left, right, sim, cache)
    assert remade.listed == first.listed and kept["blob"] == blob


@pytest.mark.parametrize(
    "paths, note",
    [
        ([f"{i}.png" for i in range(40)], "no class folders"),
        ([f"{i % 2}/{i}.png" for i in range(40)], "do not look like classes"),
    ],
)
def test_folders_that_are_not_classes_give_a_note(paths, note):
    rng = np.random.RandomState(0)
    codes = rng.normal(0, 1, (len(paths), 8)).astype(np.float32)
    left = np.arange(len(paths) - 1)
    right = left + 1
    got = labels.wrong_labels(paths, lambda: codes, left, right, np.full(len(left), 0.5))
    assert not got.listed and note in got.note


def test_the_screen_shows_each_confused_pair_as_one_row_after_the_listed_ones():
    from engine.triage import TriageReport
    from tui.widgets.triage_rows import CHUNK, Rows

    paths, codes, (left, right, sim), _ = _world(seed=3)
    got = labels.wrong_labels(paths, lambda: codes, left, right, sim)
    report = TriageReport(0.0, [], [], [], len(paths), 0.0, "exact")
    report.mislabeled, report.confusions = got.listed, got.confusions
    rows = Rows(report, set(), set())
    section = rows.section("labels")
    assert section.items == len(got.listed)
    assert section.rows == len(got.listed) + len(got.confusions)
    first = rows.row(section.start + len(got.listed))
    assert "sit between these classes" in first.label.plain
    pair = got.confusions[0]
    assert [s.path for s in first.slots] == [m.path for m in pair.pictures[:CHUNK]]
    assert all(s.kind == "mislabeled" and s.why for s in first.slots)  # l moves them too


def test_a_move_takes_pictures_out_of_confused_pairs_and_an_undo_puts_them_back():
    from engine.triage.sections import drop_from, put_back

    paths, codes, (left, right, sim), _ = _world(seed=4)
    got = labels.wrong_labels(paths, lambda: codes, left, right, sim)
    sections = {"confusions": list(got.confusions), "mislabeled": list(got.listed), "images": 9}
    gone = {got.confusions[0].pictures[0].path, got.listed[0].path}
    stash = drop_from(sections, gone)
    inside = {m.path for c in sections["confusions"] for m in c.pictures}
    assert not gone & inside and got.listed[0] not in sections["mislabeled"]
    put_back(sections, stash, 2)
    assert sections["confusions"] == got.confusions and sections["mislabeled"] == got.listed
    assert sections["images"] == 9


def test_the_classifier_reads_the_features_turned_onto_their_leading_directions():
    rng = np.random.RandomState(5)
    n, wide = 300, labels.COMPONENTS * 2
    features = (rng.normal(0, 1, (n + 20, wide)) * rng.uniform(0.1, 5, wide)).astype(np.float16)
    units = rng.normal(0, 1, (n, 16)).astype(np.float32)
    slots = np.sort(rng.choice(n + 20, n, replace=False))  # dead slots between
    x = labels.inputs(features, units, slots)
    assert x.shape == (n, labels.COMPONENTS)
    assert abs(float(x.std(0).mean()) - 1.0) < 0.05
    assert np.allclose(x, labels.inputs(features[slots], units, np.arange(n)), atol=1e-4)
    # leading directions first: the spread falls along the columns
    spread = x.std(0)
    assert spread[0] > spread[-1] * 1.5
    # an index without features: its codes, standardised
    y = labels.inputs(None, units, np.arange(n))
    assert np.allclose(y.mean(0), 0, atol=1e-4) and np.allclose(y.std(0), 1, atol=1e-3)


def test_a_cache_made_another_way_is_made_again(monkeypatch):
    paths, codes, (left, right, sim), _ = _world(seed=6)
    key = labels.cache_key("fp", "\n".join(paths), left, right, sim)
    monkeypatch.setattr(labels, "PENALTY", labels.PENALTY * 3)
    assert labels.cache_key("fp", "\n".join(paths), left, right, sim) != key
