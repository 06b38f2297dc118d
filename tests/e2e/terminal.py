"""Running the CLI in a pseudo-terminal of a given size, as a person at an 80x24 terminal sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import time
from pathlib import Path

from rich.cells import cell_len

from tests.e2e.conftest import CLI, ENV

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_cli_in_pty(cwd: Path, *args: str, columns: int = 80, rows: int = 24, timeout: float = 60) -> tuple[int, str]:
    """Exit status and the screen text (escape sequences removed, one string per line joined by newlines)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**ENV, "COLUMNS": str(columns), "LINES": str(rows), "TERM": "xterm-256color"}
    process = subprocess.Popen([*CLI, *args], cwd=cwd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    text = _ANSI.sub("", b"".join(chunks).decode("utf-8", errors="replace")).replace("\r\n", "\n")
    return code, text


def widest_line(text: str) -> int:
    """Terminal cells of the widest line (CJK characters take two)."""
    return max((cell_len(line) for line in text.splitlines()), default=0)
