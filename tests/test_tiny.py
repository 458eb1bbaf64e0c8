"""Copies shrunk to a few pixels, and catalogues of tiny look-alike pictures: candidates by
thumbnail for tiny pictures (engine.triage.tiny), and the margin asked of pixels alike at
full size (engine.copies.FINE_GAP)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from engine import ImageSimilaritySearch, copies
from engine.triage import tiny, triage
from engine.triage.candidates import CandidateGraph, _merged, with_pixel_pairs
from support import make_picture


def _pairs(root: Path) -> set[tuple[str, ...]]:
    with ImageSimilaritySearch(root) as search:
        search.index()
        report = triage(search)
    return {
        tuple(sorted([g.representative.path, m.path])) for g in report.groups for m in g.members
    }


def _icon(root: Path, i: int) -> Image.Image:
    """Icon *i*: 30-40 px, shapes on a gradient."""
    path = make_picture(root / f"icon{i:02d}.png", 500 + i, size=(120, 120))
    with Image.open(path) as im:
        icon = im.convert("RGB").resize((30 + i % 11,) * 2, Image.Resampling.LANCZOS)
    icon.save(path)
    return icon


def _tiny_copy(root: Path, i: int, icon: Image.Image) -> tuple[str, ...]:
    """Icon *i* shrunk to 10-13 px (mirrored for every other one); the planted pair."""
    copy = icon.resize((10 + i // 10 % 4,) * 2, Image.Resampling.BOX)
    copy = ImageOps.mirror(copy) if i % 20 == 0 else copy
    copy.save(root / f"icon{i:02d}-tiny.png")
    return tuple(sorted([f"icon{i:02d}.png", f"icon{i:02d}-tiny.png"]))


def test_copies_shrunk_to_a_few_pixels_are_found(tmp_path: Path):
    """Icons of 30-40 px, a few with a copy of 10-13 px (half of them mirrored): to the
    CNN such a copy is a blur far from its original among 80 icons; its thumbnail,
    aligned under the turns and mirrors, is not (the one missed: a mirrored copy of
    10 px, 0.84 aligned)."""
    root = tmp_path / "icons"
    icons = [_icon(root, i) for i in range(80)]
    planted = {_tiny_copy(root, i, icons[i]) for i in range(0, 80, 10)}
    found = _pairs(root)
    assert found <= planted
    assert len(found) >= 6  # 7 of 8 here, none without candidates by thumbnail


def test_a_refresh_pairs_tiny_copies_with_new_pictures_and_new_tiny_copies(tmp_path: Path):
    """A refresh compares only what is new: a tiny copy already there with its original
    come later, a new tiny copy with every picture; the groups are those of a whole new
    graph."""
    from engine.triage import TriageSession

    root = tmp_path / "icons"
    icons = {i: _icon(root, i) for i in range(80)}
    planted = {_tiny_copy(root, i, icons[i]) for i in (10, 30)}
    for i in (10, 30):
        (root / f"icon{i:02d}.png").rename(tmp_path / f"icon{i:02d}.png")
    with ImageSimilaritySearch(root) as search:
        search.index()
        session = TriageSession(search)
        session.open()
        assert not session.report.groups
        for i in (10, 30):
            (tmp_path / f"icon{i:02d}.png").rename(root / f"icon{i:02d}.png")
        planted |= {_tiny_copy(root, i, icons[i]) for i in (50, 70)}
        search.index()
        session.refresh()
        _icon(root, 80)  # a refresh with tiny pictures, none of them new
        search.index()
        session.refresh()
        followed = {
            tuple(sorted([g.representative.path, m.path]))
            for g in session.report.groups
            for m in g.members
        }
        search.store.put_blob("triage-graph", b"")  # no graph: made whole
        whole = TriageSession(search)
        whole.open()
        made = {
            tuple(sorted([g.representative.path, m.path]))
            for g in whole.report.groups
            for m in g.members
        }
    assert followed == planted == made


def test_tiny_look_alike_products_are_left_alone(tmp_path: Path, sample_copy: Path):
    """200 products of ten kinds shrunk to 14 px, every one tiny: their candidates by
    thumbnail join none of them across kinds."""
    root = tmp_path / "tiny-catalogue"
    for path in sorted(sample_copy.glob("*/*.png")):
        out = root / path.relative_to(sample_copy)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.resize((14, 14), Image.Resampling.LANCZOS).save(out)
    found = _pairs(root)
    assert len({p for pair in found for p in pair}) <= 0.05 * 200
    assert all(a.split("/")[0] == b.split("/")[0] for a, b in found)
    shutil.rmtree(root)


def _thumbs(n: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, copies.THUMB * copies.THUMB)).astype(np.uint8)


def test_each_tiny_picture_gets_its_nearest_by_aligned_thumbnail():
    thumbs = _thumbs(50, 1)
    square = thumbs.reshape(-1, copies.THUMB, copies.THUMB)
    thumbs[7] = np.rot90(square[30]).reshape(-1)  # a turned copy
    thumbs[8] = 128  # blank: never paired
    sides = np.full(50, 40.0)
    sides[[7, 8]] = 10.0
    usable = np.ones(50, bool)
    left, right = tiny.pairs(list(map(bytes, thumbs)), sides, usable, lambda *_: None, None)
    got = set(zip(left.tolist(), right.tolist()))
    assert (7, 30) in got
    assert len(got) == tiny.PER_PICTURE  # row 7's three, none of the blank row 8
    assert all(a < b for a, b in got)
    usable[30] = False  # a row that may not be paired (not in the index, not openable)
    left, right = tiny.pairs(list(map(bytes, thumbs)), sides, usable, lambda *_: None, None)
    assert (7, 30) not in set(zip(left.tolist(), right.tolist()))


def test_pairs_by_thumbnail_join_the_graph_and_stay_through_an_update():
    pairs = copies.Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0, 0]))
    pairs.score[:] = [0.9, 0.8]
    graph = CandidateGraph(
        [f"p{i}" for i in range(4)],
        np.arange(4),
        np.zeros(4, np.float32),
        np.zeros(4, np.float32),
        np.zeros(4, np.int64),
        np.ones(4, bool),
        pairs,
        "fp",
    )

    def cos(a, b):
        return np.full(len(a), 0.1)

    with_pixel_pairs(graph, np.array([0, 1]), np.array([3, 2]), cos)
    assert sorted(zip(graph.pairs.left, graph.pairs.right, graph.pairs.rank)) == [
        (0, 1, 0), (0, 3, tiny.RANK), (1, 2, tiny.RANK),  # (1, 2): found both ways
    ]  # fmt: skip
    assert graph.pairs.score.tolist() == [np.float32(0.9), np.float32(0.8), np.float32(0.1)]
    graph.pairs.pixels[graph.pairs.right == 3] = 0.97  # measured
    # an update's merge keeps them, far as their codes are, evidence and all
    kept = _merged(graph.pairs, 4)
    assert kept.pixels[(kept.left == 0) & (kept.right == 3)].tolist() == [np.float32(0.97)]
    assert sorted(zip(kept.left, kept.right, kept.rank)) == [
        (0, 1, 0), (0, 3, tiny.RANK), (1, 2, tiny.RANK),
    ]  # fmt: skip


def test_pixels_alike_at_full_size_must_stand_out_at_a_small_size():
    """Two tiny look-alikes can correlate above FINE at their own size: such a pair is a
    copy only when its small look stands out from each picture's look-alikes."""
    # pictures 0 and 1, and five look-alikes of each (2-6 and 7-11)
    left = np.array([0] * 6 + [1] * 5)
    right = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    pairs = copies.Pairs(left, right, np.zeros(11, np.int64))
    pairs.pixels[:] = 0.5
    pairs.similarity[:] = 0.5
    pairs.colour[:] = -1.0
    pairs.fine[:] = 0.5
    pairs.fine[0] = 0.99
    sides, flat = np.full(12, 16), np.full(12, 40.0)
    for others, copy in ((0.96, False), (0.90, True)):  # a margin of 0.02, of 0.08
        pairs.small[:] = others
        pairs.small[0] = 0.98
        copies.decide(pairs, flat, sides)
        assert pairs.copy.tolist() == [copy] + [False] * 10
        assert not copy or "pixels alike at full size" in pairs.why[0]


def test_a_leak_search_asks_the_margin_of_tiny_pictures_only():
    """Test picture 6 against training pictures 1-5, all alike at full size, picture 1
    the most at a small size (by 0.02): at 28 px a leak, at 16 px not one."""
    pairs = copies.Pairs(np.arange(1, 6), np.full(5, 6), np.arange(5))  # training rows first
    pairs.pixels[:] = 0.5
    pairs.similarity[:] = 0.5
    pairs.colour[:] = -1.0
    pairs.fine[:] = 0.99
    pairs.small[:] = [0.97, 0.95, 0.95, 0.95, 0.95]
    flat = np.full(7, 40.0)
    for side, leak in ((28, True), (16, False)):
        copies.decide(pairs, flat, np.full(7, side), one_sided=6)
        assert bool(pairs.copy[0]) == leak


def test_tiny_copies_of_training_pictures_are_leaks(tmp_path: Path):
    """Copies of 10-13 px of training icons in a test folder: candidates by thumbnail,
    then compared pixel by pixel at their size (the only verdict a leak search gives
    small pictures)."""
    from engine.triage.leaks import find_leaks

    train, test = tmp_path / "train", tmp_path / "test"
    icons = [_icon(train, i) for i in range(60)]
    for i in range(60, 80):
        _icon(test, i)
    planted = set()
    for i in range(5, 60, 10):
        _tiny_copy(test, i, icons[i])
        planted.add((f"icon{i:02d}.png", f"icon{i:02d}-tiny.png"))
    with ImageSimilaritySearch(train) as a:
        a.index()
        with ImageSimilaritySearch(
            test, backbone=a.identity.backbone, input_size=a.identity.input_size
        ) as b:
            b.index()
            found = {(x.path, x.other) for x in find_leaks(a, b)}
    assert found <= planted
    assert len(found) >= 4  # 5 of 6 here, 2 without candidates by thumbnail
