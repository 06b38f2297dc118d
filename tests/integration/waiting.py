"""Waiting for something the local stack does in the background (a poller, a sweeper, an index)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1) -> T:
    """The first truthy answer of ``probe``, polled every ``interval`` until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"gave up after {timeout} s"
        time.sleep(interval)
