"""The real app in a real terminal: tmux at 80x24, keys sent, screen read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", "lookalike-test", *args], capture_output=True, text=True
    ).stdout


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
    command = f"cd {REPO} && TERM=xterm-256color {sys.executable} -m tui {sample_copy}; echo $? > {done}; sleep 5"
    _tmux("kill-server")
    _tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    try:
        _wait_for("index up to date")
        _tmux("send-keys", "-t", "app", "j", "j", "Enter")
        _wait_for("test-0")  # the bag folder opened
        _tmux("send-keys", "-t", "app", "j", "Enter")
        _wait_for("lookalikes of bag/")
        screen = _wait_for("#1")  # cards follow the status line
        assert "scored" in screen and "▄" in screen  # scores and pixel art
        _tmux("send-keys", "-t", "app", "?")
        _wait_for("lookalike — keys")
        _tmux("send-keys", "-t", "app", "Escape")
        time.sleep(0.5)
        _tmux("resize-window", "-t", "app", "-x", "160", "-y", "40")
        _wait_for("#4")  # a wider terminal shows more cards per row
        _tmux("send-keys", "-t", "app", "q")
        deadline = time.time() + 20
        while not done.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
    finally:
        _tmux("kill-server")
