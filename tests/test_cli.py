"""The command line: JSON output fit for scripts, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO
from tui.cli import main


def test_index_json_and_search_json(tiny_folder: Path, capsys):
    (tiny_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["index", str(tiny_folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["indexed"] == 6 and summary["total"] == 6 and summary["skipped"] == 1
    assert summary["failed"][0]["path"] == "broken.png" and summary["failed"][0]["reason"]
    assert {"seconds", "images_per_s", "backbone", "index"} <= set(summary)

    q1, q2 = tiny_folder / "a" / "img0.png", tiny_folder / "b" / "img4.png"
    assert main(["search", str(q1), str(q2), "--in", str(tiny_folder), "-k", "3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["query"] == str(q1) and [r["rank"] for r in first["results"]] == [1, 2, 3]
    assert all(Path(r["path"]).is_file() and -1 <= r["score"] <= 1 for r in first["results"])
    assert str(q1) not in [r["path"] for r in first["results"]]


def test_text_output(tiny_folder: Path, capsys):
    assert (
        main(["search", str(tiny_folder / "a" / "img1.png"), "--in", str(tiny_folder), "-k", "2"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(str(tiny_folder / "a" / "img1.png")) and len(out) == 3


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["index", "/no/such/folder"], 2, "not a folder"),
        (["index", "{tiny}", "--backbone", "vgg"], 2, "invalid choice"),
        (["search", "/no/such.png", "--in", "{tiny}"], 2, "query image not found"),
        (["search", "x.png"], 2, "--in"),
        (["index", "{tiny}", "--index", "{junk}"], 1, "unreadable index"),
        (["/no/such/folder"], 2, "not a folder"),
        (["index", "{tiny}", "-h"], 0, ""),
    ],
)
def test_exit_codes_and_one_line_errors(
    tiny_folder: Path, tmp_path: Path, capsys, argv, code, message
):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database, it is a text file" * 10)
    argv = [a.format(tiny=tiny_folder, junk=junk) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1


def test_models_lists_backbones(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0   available" in out and "resnet50" in out and "get them" in out


def test_console_script_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "tui", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and "index" in out.stdout and "search" in out.stdout


def test_fashion_mnist_export(tmp_path: Path, capsys):
    from engine.fashion import DEBIAN_DIR

    if not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists():
        assert main(["fashion-mnist", str(tmp_path)]) == 1  # clear message, not a traceback
        assert "dataset-fashion-mnist" in capsys.readouterr().err
        return
    assert main(["fashion-mnist", str(tmp_path), "--split", "test", "--per-class", "3"]) == 0
    assert len(list(tmp_path.glob("*/*.png"))) == 30
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "ankle-boot"


def test_the_app_in_a_folder_without_pictures_says_so(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "readme.txt").write_text("no pictures here")
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no pictures under {empty}" in err
    assert not (empty / ".lookalike").exists()  # nothing made


def test_weights_files_are_named_in_the_message(tiny_folder: Path, tmp_path: Path, capsys):
    assert main(["index", str(tiny_folder), "--json"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (tiny_folder / ".lookalike").iterdir())
    missing = tmp_path / "missing.pth"
    assert main(["index", str(tiny_folder), "--weights", str(missing), "--rebuild"]) == 1
    assert f"weights file not found: {missing}" in capsys.readouterr().err
    assert sorted(p.name for p in (tiny_folder / ".lookalike").iterdir()) == before
    assert main(["search", str(tiny_folder / "a" / "img0.png"), "--in", str(tiny_folder)]) == 0
    capsys.readouterr()  # the index was not touched: it still answers

    fresh = tmp_path / "fresh"
    (fresh / "a").mkdir(parents=True)
    (tiny_folder / "a" / "img0.png").rename(fresh / "a" / "img0.png")
    for name, content, said in [
        ("empty.pth", b"", "the file is empty or cut short"),
        ("noise.pth", bytes(range(7, 250)), "not a PyTorch weights file"),
    ]:
        (tmp_path / name).write_bytes(content)
        assert main(["index", str(fresh), "--weights", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
        # a rebuild with weights that cannot load leaves the index as it was
        assert (
            main(["index", str(tiny_folder), "--weights", str(tmp_path / name), "--rebuild"]) == 1
        )
        capsys.readouterr()
        assert main(["index", str(tiny_folder), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["unchanged"] == 5


def test_version_and_a_misspelt_command(tmp_path, monkeypatch, capsys):
    from tui.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("lookalike ")
    for typo, meant in (("serach", "search"), ("triag", "triage"), ("indx", "index")):
        assert main([typo, "x"]) == 2
        assert f"did you mean {meant}?" in capsys.readouterr().err
    (tmp_path / "serach").mkdir()  # a folder of that name is a folder, opened as one
    monkeypatch.setattr("tui.commands.cmd_app", lambda args: 0)
    assert main(["serach"]) == 0


def test_search_says_copy_for_what_triage_verified_and_writes_csv(tmp_path: Path, capsys):
    import csv
    import io

    from support import edited_copy, make_picture

    for seed in range(12):
        make_picture(tmp_path / f"p{seed:02d}.png", seed, (320, 240))
    edited_copy(tmp_path / "p00.png", tmp_path / "p00-copy.jpg", "jpeg")
    query, root = str(tmp_path / "p00.png"), str(tmp_path)
    assert main(["search", query, "--in", root, "-k", "3", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["results"]
    assert before[0]["path"].endswith("p00-copy.jpg") and before[0]["word"] != "copy"
    assert main(["triage", root, "--json"]) == 0  # triage verifies the pair
    capsys.readouterr()

    assert main(["search", query, "--in", root, "-k", "3", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["results"]
    assert after[0]["word"] == "copy" and "aligned pixels" in after[0]["why"]
    assert all(r["word"] in ("very similar", "similar", "related") for r in after[1:])
    assert main(["search", query, "--in", root, "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "copy" in lines[1] and lines[1].endswith(f"({after[0]['why']})")
    assert main(["search", query, "--in", root, "-k", "2", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["rank"] for r in rows] == ["1", "2"] and rows[0]["word"] == "copy"
    assert rows[0]["query"] == query and rows[1]["why"] == ""

    assert main(["search", query, "--in", root, "--bogus"]) == 2  # the command's own usage
    assert "usage: lookalike search" in capsys.readouterr().err
    assert main(["triage", query]) == 2  # a picture where a folder is wanted
    assert f"(a file; the folder it is in: {root})" in capsys.readouterr().err
