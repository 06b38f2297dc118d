"""A local AWS server whose accept loop is stuck (a process out of threads) does not hang its owner's stop."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from refund_poller.local import server as server_module


class StuckServer:
    """Stands in for ThreadedMotoServer whose serve loop never sees the shutdown request."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def stop(self) -> None:
        self.released.wait()


def test_a_stuck_server_is_given_up_after_the_limit(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(server_module, "STOP_GIVE_UP_SECONDS", 0.5)
    stuck = StuckServer()
    with socket.socket() as listener:  # something to knock at, as the real loop has
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        started = time.monotonic()
        server_module._stop_promptly(stuck, "127.0.0.1", listener.getsockname()[1])  # type: ignore[arg-type]
        waited = time.monotonic() - started
    stuck.released.set()

    assert waited < 5, f"stop waited {waited:.1f} s for a server that never stops"
    assert "did not stop" in caplog.text


def test_a_server_that_stops_is_waited_for(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    stuck = StuckServer()
    threading.Timer(0.2, stuck.released.set).start()
    server_module._stop_promptly(stuck, "127.0.0.1", None)  # type: ignore[arg-type]

    assert stuck.released.is_set()
    assert "did not stop" not in caplog.text
