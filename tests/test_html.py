"""``lookalike triage DIR --html FILE``: one page, pictures embedded, no script, hostile
names shown as text, opened in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from support import edited_copy, make_picture
from tui.cli import main

HOSTILE = '"><script>alert(1)<!-- <img src=x onerror=alert(2)>\x1b[31m.png'


class Elements(HTMLParser):
    """Every element of a page with its attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(page: str) -> Elements:
    out = Elements()
    out.feed(page)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    """Class folders with a copy, a broken file and a hostile name; TEST with a leak."""
    base = tmp_path_factory.mktemp("html")
    root, test = base / "train", base / "test"
    for c, cls in enumerate(("cats", "dogs")):
        for i in range(6):
            make_picture(root / cls / f"{cls}{i}.png", 10 * c + i, (200, 150))
    edited_copy(root / "cats" / "cats0.png", root / "cats" / "cats0-copy.jpg", "jpeg")
    shutil.copy(root / "dogs" / "dogs1.png", root / "dogs" / HOSTILE)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    outside = make_picture(base / "secret.png", 99, (200, 150))
    os.symlink(outside, root / "cats" / "link-out.png")  # never opened, never embedded
    make_picture(test / "a.png", 50, (200, 150))
    edited_copy(root / "dogs" / "dogs3.png", test / "dogs3-leak.png", "downscale")
    return root, test


@pytest.fixture(scope="module")
def report(dataset, tmp_path_factory) -> Path:
    root, test = dataset
    out = tmp_path_factory.mktemp("out") / "report.html"
    assert main(["triage", str(root), "--against", str(test), "--html", str(out)]) == 0
    return out


def test_the_page_holds_everything_and_runs_nothing(report: Path, dataset):
    page = report.read_text(encoding="utf-8")
    tags = parsed(page)
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "iframe" not in names and "link" not in names
    assert not any(k.startswith("on") for _, a in tags.tags for k in a)  # no handler
    images = [a["src"] for t, a in tags.tags if t == "img"]
    assert images and all(src.startswith("data:image/jpeg;base64,") for src in images)
    for src in images:  # each embedded picture decodes
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"(src|href)=\"(https?:|file:|//)", page)  # nothing to fetch
    text = "".join(tags.text)
    # the hostile name is there as text, escaped as in plain output
    assert '"><script>alert(1)<!-- <img src=x onerror=alert(2)>\\x1b[31m.png' in text
    assert "\x1b" not in page
    assert "cats0-copy.jpg" in text and "aligned pixels" in text  # a copy, with its reason
    assert "dogs3-leak.png" in text and "broken.png" in text
    assert "secret" not in page  # the link out of the folder is never followed
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_the_page_renders_in_headless_chromium(report: Path, tmp_path: Path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1400",
    ]  # fmt: skip
    url = report.resolve().as_uri()
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    tags = parsed(dom)  # the page as the browser built it: every picture of the file
    figures = [t for t, _ in parsed(report.read_text(encoding="utf-8")).tags].count("figure")
    assert [t for t, _ in tags.tags].count("figure") == figures >= 5
    assert not any(t == "script" for t, _ in tags.tags)
    assert "Groups of copies" in "".join(tags.text)
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    im = Image.open(shot).convert("RGB")
    colours = im.getcolors(1 << 20)
    assert colours is not None and len(colours) > 200  # text and pictures, not a blank page


def test_html_target_is_checked_before_any_work(dataset, tmp_path: Path, capsys):
    root, _ = dataset
    assert main(["triage", str(root), "--html", str(tmp_path / "no" / "r.html")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["triage", str(root), "--html", str(tmp_path)]) == 2
    assert "not a folder" in capsys.readouterr().err
    # a link at the name is replaced, never written through
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    (tmp_path / "r.html").symlink_to(target)
    assert main(["triage", str(root), "--html", str(tmp_path / "r.html")]) == 0
    assert target.read_text() == "keep me" and not (tmp_path / "r.html").is_symlink()
    assert not list(tmp_path.glob("*.part"))
