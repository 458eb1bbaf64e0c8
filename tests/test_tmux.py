"""The real app in a real terminal: tmux at 80x24, keys sent, screen read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import REPO

#: tmux server of this test process (test runs in parallel do not share one)
SOCKET = f"lookalike-test-{os.getpid()}"

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True).stdout


def _tmux_err(*args: str) -> str:
    run = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    return run.stdout + run.stderr


def _start(root: Path, done: Path, cols: int = 80, rows: int = 24, *options: str) -> None:
    """The app on *root* in a fresh tmux session; its exit status lands in *done*.
    COLUMNS and LINES are dropped: the test process may hold them (80 and 24), and the
    app would take them over the terminal's real size."""
    command = (
        f"cd {REPO} && TERM=xterm-256color env -u LOOKALIKE_COLORS -u COLORTERM -u COLUMNS -u LINES"
        f" {sys.executable} -m tui {root}; echo $? > {done};"
        " sleep 5"
    )
    _tmux("kill-server")
    _tmux(*options, "new-session", "-d", "-s", "app", "-x", str(cols), "-y", str(rows), command)


def _exit_status(done: Path) -> str:
    deadline = time.time() + 20
    while not done.exists() and time.time() < deadline:
        time.sleep(0.2)
    return done.read_text().strip()


def _screen() -> str:
    return _tmux("capture-pane", "-p", "-t", "app")


def _wait_for(text: str, timeout: float = 90.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        screen = _screen()
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; screen:\n{_screen()}")


def test_real_terminal_session(sample_copy: Path, tmp_path: Path):
    done = tmp_path / "exit-code"
    _start(sample_copy, done)
    try:
        _wait_for("256 colours")  # no COLORTERM here: the app says how it draws
        _wait_for("index up to date")
        _tmux("send-keys", "-t", "app", "j", "j", "Enter")
        _wait_for("test-0")  # the bag folder opened
        _tmux("send-keys", "-t", "app", "j", "Enter")
        _wait_for("lookalikes of bag/")
        screen = _wait_for("very similar")  # cards follow, each score with its word
        assert "scored" in screen and "▄" in screen  # scores and pixel art
        for key in ("Compare", "Triage", "Filter", "Help", "Quit"):  # 80 columns hold them
            assert key in screen.splitlines()[-1]
        _tmux("send-keys", "-t", "app", "Tab", "z")  # compare the query with result #1
        _wait_for("1 of 12")
        _tmux("send-keys", "-t", "app", "Right")
        _wait_for("2 of 12")
        deadline = time.time() + 30
        while _screen().count("28×28 px") < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert _screen().count("28×28 px") == 2  # both pictures drawn, with their sizes
        _tmux("send-keys", "-t", "app", "Escape")
        _wait_for("lookalikes of bag/")
        _tmux("send-keys", "-t", "app", "?")
        _wait_for("lookalike — keys")
        _tmux("send-keys", "-t", "app", "Escape")
        time.sleep(0.5)
        _tmux("resize-window", "-t", "app", "-x", "160", "-y", "40")
        _wait_for("#4")  # a wider terminal shows more cards per row, ranked
        _tmux("send-keys", "-t", "app", "q")
        assert _exit_status(done) == "0"
    finally:
        _tmux("kill-server")


def test_large_terminal_shows_the_query_whole(sample_copy: Path, tmp_path: Path):
    """At 160x50 the query picture is drawn whole with its caption (path, pixels, size)
    below it, and the footer holds every key that matters."""
    done = tmp_path / "exit-code"
    _start(sample_copy, done, 160, 50)
    try:
        _wait_for("index up to date")
        _tmux("send-keys", "-t", "app", "j", "j", "Enter")
        _wait_for("test-0")
        _tmux("send-keys", "-t", "app", "j", "Enter")
        _wait_for("#4")
        screen = _wait_for("28×28 px · 448 B")
        query = [ln for ln in screen.splitlines() if "28×28 px · 448 B" in ln][0]
        assert query.index("28×28") < 40  # in the query panel, on the left
        assert "bag/test-00018.png" in screen
        for key in ("Compare", "Triage", "Filter", "Help", "Quit"):
            assert key in screen.splitlines()[-1]
        _tmux("send-keys", "-t", "app", "q")
        assert _exit_status(done) == "0"
    finally:
        _tmux("kill-server")


def test_hostile_names_never_reach_the_terminal(tmp_path: Path):
    """Names holding OSC 52 (clipboard), OSC 0 (title) and SGR sequences, in a tmux that
    lets programs set its clipboard and titles: browsing them changes neither, and the
    screen shows them escaped. Then ``c`` does set the clipboard (the check is live),
    and SIGTERM ends the app with status 143."""
    import os

    from support import make_image

    root = tmp_path / "odd"
    for i, raw in enumerate(
        [
            b"a-osc\x1b]52;c;aGVsbG8=\x07.png",
            b"b-title\x1b]0;pwned\x07.png",
            b"c-sgr\x1b[31mred.png",
        ]
    ):
        make_image(Path(os.fsdecode(os.path.join(os.fsencode(root), raw))), i)
    done = tmp_path / "exit-code"
    _start(root, done, 100, 30, "-f", "/dev/null")
    _tmux("set", "-g", "set-clipboard", "on")
    try:
        screen = _wait_for("index up to date")
        assert "a-osc\\x1b]52;c;" in screen and "c-sgr\\x1b[31mred" in screen  # tree: escaped
        _tmux("send-keys", "-t", "app", "j", "j", "j")
        time.sleep(1.0)
        assert "no buffers" in _tmux_err("show-buffer")
        assert "pwned" not in _tmux("display", "-p", "-t", "app", "#{pane_title}")
        _tmux("send-keys", "-t", "app", "c")
        _wait_for("(OSC")  # one word: the toast wraps "OSC 52" where the path's length says
        assert _tmux("show-buffer").endswith("red.png")
        pane = _tmux("list-panes", "-t", "app", "-F", "#{pane_pid}").strip()
        app_pid = subprocess.run(["pgrep", "-P", pane], capture_output=True, text=True).stdout
        os.kill(int(app_pid.split()[0]), 15)
        assert _exit_status(done) == "143"
    finally:
        _tmux("kill-server")


def test_triage_in_a_real_terminal(tmp_path: Path):
    from support import edited_copy, make_picture

    root = tmp_path / "pics"
    for i in range(3):
        src = make_picture(root / f"orig{i}.png", i)
        edited_copy(src, root / "copies" / f"orig{i}-crop.png", "crop")
    done = tmp_path / "exit-code"
    _start(root, done, 120, 36)
    try:
        _wait_for("index up to date")
        _tmux("send-keys", "-t", "app", "d")
        screen = _wait_for("groups of copies")
        _wait_for("keep")
        assert "3 groups" in screen or "3 groups" in _screen()
        _tmux("send-keys", "-t", "app", "Right", "Space")
        _wait_for("✓ set")
        _tmux("send-keys", "-t", "app", "Escape")
        _wait_for("images indexed")
        _tmux("send-keys", "-t", "app", "q")
        assert _exit_status(done) == "0"
    finally:
        _tmux("kill-server")
