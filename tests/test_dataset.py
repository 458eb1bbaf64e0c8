"""Data-set triage: unusable pictures, suspected wrong labels and leaks between two
folders, on small generated class folders; the JSON and CSV schemas; moving a picture to
its suggested folder and back; the triage screen's sections."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from engine import ImageSimilaritySearch, quality
from engine.triage import triage
from support import make_picture
from tui.cli import main


def _stripes(rng, size=(160, 120)) -> Image.Image:
    im = Image.new("RGB", size)
    d = ImageDraw.Draw(im)
    y = 0
    while y < size[1]:
        h = int(rng.integers(4, 14))
        d.rectangle((0, y, size[0], y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        y += h
    return im


def _dots(rng, size=(160, 120)) -> Image.Image:
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(180, 256, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(14):
        x, y, r = (
            int(rng.integers(0, size[0])),
            int(rng.integers(0, size[1])),
            int(rng.integers(5, 14)),
        )
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 120, 3)))
    return im


def _checks(rng, size=(160, 120)) -> Image.Image:
    cell = int(rng.integers(10, 24))
    a, b = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    im = Image.new("RGB", size, a)
    d = ImageDraw.Draw(im)
    for y in range(0, size[1], cell):
        for x in range(0, size[0], cell):
            if (x // cell + y // cell) % 2:
                d.rectangle((x, y, x + cell - 1, y + cell - 1), fill=b)
    return im


KINDS = {"stripes": _stripes, "dots": _dots, "checks": _checks}


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> Path:
    """Three class folders of ten pictures; one dots picture filed under stripes; and
    unusable pictures among the checks."""
    root = tmp_path_factory.mktemp("data") / "train"
    rng = np.random.default_rng(3)
    for label, make in KINDS.items():
        (root / label).mkdir(parents=True)
        for i in range(10):
            make(rng).save(root / label / f"{i:02d}.png")
    _dots(rng).save(root / "stripes" / "flipped.png")
    checks = root / "checks"
    Image.new("RGB", (160, 120), (90, 140, 60)).save(checks / "blank.png")
    ImageEnhance.Brightness(_checks(rng)).enhance(0.05).save(checks / "dark.png")
    Image.blend(_checks(rng), Image.new("RGB", (160, 120), "white"), 0.95).save(
        checks / "washed.png"
    )
    _checks(rng).filter(ImageFilter.GaussianBlur(10)).save(checks / "blurred.png")
    _stripes(rng, (12, 12)).save(checks / "tiny.png")
    _checks(rng, (600, 60)).save(checks / "long.png")
    return root


@pytest.fixture(scope="module")
def report(training: Path):
    with ImageSimilaritySearch(training) as search:
        search.index()
        return triage(search)


def test_unusable_pictures_are_flagged_and_ordinary_ones_are_not(report):
    flagged = {u.path: set(u.flags) for u in report.unusable}
    planted = {
        "checks/blank.png": "blank",
        "checks/dark.png": "dark",  # near-black has little variation left: blank too
        "checks/washed.png": "bright",
        "checks/blurred.png": "blurry",
        "checks/tiny.png": "tiny",
        "checks/long.png": "odd-aspect",
    }
    assert set(flagged) == set(planted)  # and no ordinary picture
    for path, word in planted.items():
        assert word in flagged[path] and flagged[path] <= {word, "blank"}, (path, flagged[path])
    values = next(u.values for u in report.unusable if u.path == "checks/long.png")
    assert set(values) == set(quality.FIELDS) and (values["width"], values["height"]) == (600, 60)


def test_luminance_percentiles_are_numpys_from_a_histogram():
    """The 1st and 99th percentiles are read off the picture's histogram (faster); they
    are numpy's linear percentiles of the same values, at any size and contrast."""
    rng = np.random.default_rng(5)
    shapes = [(1, 1), (1, 7), (28, 28), (3, 200), (128, 96)]
    for shape in shapes:
        for spread in (0, 3, 256):
            u8 = rng.integers(0, max(spread, 1), shape) + rng.integers(0, 256 - spread + 1)
            u8 = u8.astype(np.uint8)
            want = np.percentile(u8.astype(np.float64) / 255.0, [1, 99])
            got = quality._percentiles(u8, (0.01, 0.99))
            assert np.allclose(got, want, atol=1e-9), (shape, spread)


def test_a_picture_in_the_wrong_class_folder_is_suspected(report):
    assert report.mislabeled, report.notes
    top = report.mislabeled[0]
    assert (top.path, top.folder, top.suggested) == ("stripes/flipped.png", "stripes", "dots")
    assert 0.5 <= top.confidence <= 1.0
    assert top.neighbours and all(n.startswith("dots/") for n in top.neighbours[:2])
    confidences = [m.confidence for m in report.mislabeled]
    assert confidences == sorted(confidences, reverse=True)


def test_no_wrong_labels_without_class_folders(tmp_path: Path):
    root = tmp_path / "flat"
    for i in range(8):
        make_picture(root / f"{i}.png", i)
    with ImageSimilaritySearch(root) as search:
        search.index()
        got = triage(search)
    assert not got.mislabeled and any("no class folders" in n for n in got.notes)


def test_crafted_quality_records_are_the_damaged_message(training: Path, tmp_path, capsys):
    import sqlite3

    root = tmp_path / "copy"
    shutil.copytree(training, root)
    assert main(["index", str(root)]) == 0
    con = sqlite3.connect(root / ".lookalike" / "index.sqlite")
    with con:
        bad = np.array([1, 1, 2.0, 0, 0, 0, 0], "<f4").tobytes()  # a mean of 2
        con.execute("UPDATE images SET quality = ? WHERE slot = 0", (bad,))
    con.close()
    capsys.readouterr()
    assert main(["triage", str(root), "--no-update"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "quality" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def test_split(training: Path) -> Path:
    """Copies of two training pictures (one byte-identical, one re-encoded), and pictures
    of another kind."""
    root = training.parent / "test"
    (root / "dots").mkdir(parents=True)
    shutil.copy(training / "dots" / "03.png", root / "dots" / "same.png")
    Image.open(training / "stripes" / "04.png").save(root / "reencoded.jpg", quality=70)
    for i in range(6):
        make_picture(root / "other" / f"{i}.png", 900 + i)
    return root


def test_leaks_json_csv_and_text(training: Path, test_split: Path, capsys):
    assert main(["triage", str(training), "--against", str(test_split), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    leaks = {(x["other"], x["path"]): x for x in out["leaks"]}
    assert set(leaks) == {
        ("dots/same.png", "dots/03.png"),
        ("reencoded.jpg", "stripes/04.png"),
    }
    assert leaks[("dots/same.png", "dots/03.png")]["identical"]
    assert all({"score", "identical", "why"} <= set(x) for x in out["leaks"])
    assert {"path", "folder", "suggested", "confidence", "neighbours"} <= set(out["mislabeled"][0])
    assert {"path", "flags", "values"} <= set(out["quality"][0])
    assert main(["triage", str(training), "--against", str(test_split), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    roles = {r["role"] for r in rows}
    assert {"leak", "mislabeled", "quality"} <= roles
    leak = next(r for r in rows if r["role"] == "leak" and r["other"] == "reencoded.jpg")
    assert leak["path"] == "stripes/04.png" and leak["why"]
    wrong = next(r for r in rows if r["role"] == "mislabeled")
    assert (wrong["why"], wrong["other"]) == ("stripes", "dots")
    assert main(["triage", str(training), "--against", str(test_split)]) == 0
    text = capsys.readouterr().out
    assert "2 leaks" in text and "suspected wrong label" in text and "hard to learn from" in text
    assert main(["triage", str(training), "--against", str(training / "nope")]) == 2


async def test_triage_screen_sections_and_moving_to_the_suggested_folder(
    training: Path, test_split: Path, tmp_path: Path, capsys
):
    from test_app import SIZE
    from test_triage import _after, open_triage

    from tui.app import create_app

    root = tmp_path / "train"
    shutil.copytree(training, root, ignore=shutil.ignore_patterns(".lookalike"))
    test = tmp_path / "test"
    shutil.copytree(test_split, test, ignore=shutil.ignore_patterns(".lookalike"))
    app = create_app(root, against=str(test))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_triage(pilot)
        counts = {s.name: s.items for s in screen.rows.sections}
        assert counts["leaks"] == 2 and counts["labels"] >= 1 and counts["unusable"] >= 1
        await pilot.press("5")
        card = screen.current
        assert card.slot.path == "stripes/flipped.png" and card.slot.why == "dots"
        assert [c.kind for c in screen.current_row().slots[1:]] == ["neighbour"] * (
            len(screen.current_row().slots) - 1
        )
        await _after(pilot, screen, "l")
        assert (root / "dots" / "flipped.png").exists()
        assert not (root / "stripes" / "flipped.png").exists()
        assert not any(m.path.endswith("flipped.png") for m in screen.report.mislabeled)
        await _after(pilot, screen, "u")
        assert (root / "stripes" / "flipped.png").exists()
        assert not (root / "dots" / "flipped.png").exists()
        # an unusable picture can be marked and set aside like a copy
        await pilot.press("6")
        await pilot.press("space")
        assert app.triage_screen.session.marks == {screen.current.slot.path}
        await pilot.press("space")
        # a leak: its copy in the other folder is set aside there (and put back), or it
        # is marked not a leak and never reported again
        await pilot.press("4")
        leak = screen.current.slot
        assert leak.kind == "leak" and leak.base == test.resolve()
        await pilot.press("space")
        assert app.triage_screen.session.test_marks == {leak.path}
        await _after(pilot, screen, "m", "enter")
        assert (test / ".lookalike" / "quarantine" / leak.path).exists()
        assert not (test / leak.path).exists()
        assert leak.path not in [x.other for x in screen.report.leaks]
        await _after(pilot, screen, "u")
        assert (test / leak.path).exists()
        await pilot.press("4")
        first = screen.current.slot.extra
        await _after(pilot, screen, "n")
        assert (first.path, first.other) not in [(x.path, x.other) for x in screen.report.leaks]
    capsys.readouterr()
    assert main(["triage", str(root), "--against", str(test), "--json"]) == 0
    leaks = json.loads(capsys.readouterr().out)["leaks"]
    assert (first.path, first.other) not in [(x["path"], x["other"]) for x in leaks]
    assert len(leaks) == 1


def test_labels_top_and_min_on_the_command_line(training: Path, capsys):
    assert main(["triage", str(training), "--labels-top", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["mislabeled"]) == 2 and out["mislabeled"][0]["path"] == "stripes/flipped.png"
    assert {"classifier", "vote"} <= set(out["mislabeled"][0])
    assert "confused_classes" in out and "labels_under_cut" in out
    assert main(["triage", str(training), "--labels-min", "0.99", "--json"]) == 0
    strict = json.loads(capsys.readouterr().out)["mislabeled"]
    assert all(m["confidence"] >= 0.99 for m in strict)
    for bad in (
        ["--labels-top", "0"],
        ["--labels-min", "2"],
        ["--labels-top", "1", "--labels-min", "0.5"],
    ):
        assert main(["triage", str(training), *bad]) == 2
        assert "error: argument --labels" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["sqlite", "redis"])
def test_wrong_labels_on_both_stores_keep_the_classifier_in_the_index(
    training: Path, where: str, request, monkeypatch
):
    from engine.triage import labels

    store = request.getfixturevalue("redis_url") if where == "redis" else None
    with ImageSimilaritySearch(training, store=store) as search:
        search.index()
        first = triage(search)
        assert first.mislabeled[0].path == "stripes/flipped.png"
        assert search.store.get_blob(labels.BLOB)

        def trained_again(*_a, **_k):
            raise AssertionError("the classifier was trained again though nothing changed")

        monkeypatch.setattr(labels, "out_of_fold", trained_again)
        again = triage(search)
        assert again.mislabeled == first.mislabeled
