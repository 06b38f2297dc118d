"""A process kill between a window's close and its result event's publish, for real.

The functions' AWS calls go through this proxy (``LocalCloud.route_functions_through``). When a PutEvents
request arrives, the proxy finds the worker process that holds the calling socket (/proc/net/tcp, then the
workers' file descriptors) and SIGKILLs it before forwarding anything: the close was written, the event was
never sent, the runtime reports ``Runtime.ExitError``, exactly as if Lambda's process died there.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from refund_poller.local.fault_proxy import FaultProxy

PUT_EVENTS = "AWSEvents.PutEvents"


class KillingProxy(FaultProxy):
    """Forwards everything, except that a share of PutEvents calls kill their caller's process instead."""

    def __init__(self, upstream: str, *, kill_rate: float, seed: int | None = None) -> None:
        super().__init__(upstream, seed=seed)
        self.kill_rate = kill_rate
        self.kills = 0
        self.kill_misses = 0  # a PutEvents whose caller could not be found (forwarded instead)
        self._draw = random.Random(seed)
        self._kill_lock = threading.Lock()
        report_error = self._server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed worker's other connections reset
                report_error(request, client_address)

        self._server.handle_error = handle_error  # type: ignore[method-assign]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler_class()
        proxy = self
        forward: Callable[[BaseHTTPRequestHandler], None] = base._any  # type: ignore[attr-defined]

        class KillingHandler(base):  # type: ignore[valid-type,misc]
            def _any(self) -> None:
                if self.headers.get("X-Amz-Target") == PUT_EVENTS and proxy.kill_now():
                    pid = caller_pid(self.client_address[1], self.server.server_address[1])
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)  # a worker this test's stack started
                        with proxy._kill_lock:
                            proxy.kills += 1
                        self.close_connection = True
                        return
                    with proxy._kill_lock:
                        proxy.kill_misses += 1
                forward(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any  # noqa: N815 - stdlib naming

        return KillingHandler

    def kill_now(self) -> bool:
        with self._kill_lock:
            return self.kill_rate > 0 and self._draw.random() < self.kill_rate


def caller_pid(client_port: int, server_port: int) -> int | None:
    """The child process of this one that owns the TCP socket from ``client_port`` to ``server_port``."""
    inode = _socket_inode(client_port, server_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in _children():
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == wanted:
                    return pid
        except OSError:  # it exited meanwhile
            continue
    return None


def _socket_inode(port: int, peer_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            ports = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
            # The live connection: a closed one on the same local port lingers in TIME_WAIT with inode 0.
            if ports == (port, peer_port) and inode != "0":
                return inode
    return None


def _children() -> set[int]:
    """This process's children: every process whose parent is this one. The PPid is the process id even when a
    thread started the child, and stays so after that thread ended (the per-thread ``children`` lists do not)."""
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:  # it exited meanwhile
            continue
        if int(fields[1]) == me:
            found.add(int(stat.parent.name))
    return found
