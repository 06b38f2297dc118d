"""The moto server, run in this process so that the Lambda runner can be patched into it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from refund_poller.local import moto_speedups, moto_threads
from refund_poller.local.dynamodb_atomicity import serialise_dynamodb_writes
from refund_poller.local.errors import LocalCloudError

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account: every ARN it returns carries it
PARTITION = "aws"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto  # nosec B105

# moto keeps its backends, its configuration and MOTO_PORT process-wide: two servers in one process
# would share (and reset) each other's state, so only one may be running.
_running_lock = threading.Lock()
_running: MotoServer | None = None


class MotoServer:
    """A moto server on a loopback port, with Step Functions executing for real and a fresh state."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = REGION) -> None:
        self.host = host
        self.region = region
        self._requested_port = port
        self._port: int | None = None
        self._server: ThreadedMotoServer | None = None
        self._previous_moto_port: str | None = None
        self._session = boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
            region_name=region,
        )

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise LocalCloudError("the moto server is not running")
        return f"http://{self.host}:{self._port}"

    def start(self) -> None:
        _claim(self)
        serialise_dynamodb_writes()
        moto_speedups.install()
        moto_threads.install()
        try:
            self._start_server()
            # Ones created before this flag disappear (it selects another backend), so set it first.
            self._post("/moto-api/reset", None)
            self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._server is not None:
            _stop_promptly(self._server, self.host, self._port)
            self._server = None
            self._port = None
            _restore_env("MOTO_PORT", self._previous_moto_port)
        _release(self)

    def client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client for ``service`` that talks to this server (botocore clients are thread-safe)."""
        base = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=120)
        return self._session.client(  # type: ignore[call-overload]  # service is a runtime string
            service, endpoint_url=self.endpoint_url, config=base.merge(config) if config else base
        )

    def _start_server(self) -> None:
        if self._requested_port:
            _ensure_free(self.host, self._requested_port)
        # Each request's log line would drown the user's own output (pollers call every second).
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # moto's interpreter logs every failed state at ERROR with a page-long repr, even the ones a Retry or
        # Catch handles; the execution history (where AWS shows them) has them all.
        logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
        # moto logs an execution that failed in its interpreter (States.Runtime) by the exception's name only;
        # the traceback says whose defect it is.
        program_log = logging.getLogger("moto.stepfunctions.parser.asl.component.program.program")
        if not any(isinstance(f, _WithTraceback) for f in program_log.filters):
            program_log.addFilter(_WithTraceback())
        self._server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        self._server.start()
        self._port = int(self._server.get_host_and_port()[1])
        # moto's Step Functions interpreter calls Lambda and DynamoDB back at http://localhost:$MOTO_PORT.
        self._previous_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(self._port)

    def _post(self, path: str, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.endpoint_url + path, data=data, method="POST")  # noqa: S310  # our own loopback URL
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # same  # nosec B310
            response.read()


class _WithTraceback(logging.Filter):
    """Attaches the exception being handled to a record logged without it (moto logs inside its except block)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None and sys.exc_info()[0] is not None:
            record.exc_info = sys.exc_info()
        return True


def _claim(server: MotoServer) -> None:
    global _running
    with _running_lock:
        if _running is not None and _running is not server:
            raise LocalCloudError(
                "a local stack is already running in this process (moto's state is process-wide); stop it first"
            )
        _running = server


def _release(server: MotoServer) -> None:
    global _running
    with _running_lock:
        if _running is server:
            _running = None


def _ensure_free(host: str, port: int) -> None:
    # ThreadedMotoServer.start() waits forever when its thread fails to bind, so fail here instead.
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LocalCloudError(f"cannot listen on {host}:{port}: {error.strerror}") from error


# A server whose accept loop is stuck never stops: a process out of threads (bench/README.md, N = 5,000) leaves
# it waiting for good inside Thread.start. Past this, stop gives up on it (a daemon thread) so its owner can go on.
STOP_GIVE_UP_SECONDS = 15.0


def _stop_promptly(server: ThreadedMotoServer, host: str, port: int | None) -> None:
    """Stop the server without waiting out the 0.5 s poll of werkzeug's serve_forever loop."""
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    give_up = time.monotonic() + STOP_GIVE_UP_SECONDS
    while stopper.is_alive() and port is not None and time.monotonic() < give_up:
        # A connection wakes the loop, which then sees the shutdown request: knock until it has.
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.1):
            pass
        stopper.join(0.02)
    stopper.join(max(0.0, give_up - time.monotonic()))
    if stopper.is_alive():
        logging.getLogger(__name__).warning(
            "the local AWS server on port %s did not stop in %.0f s; left behind", port, STOP_GIVE_UP_SECONDS
        )


def _restore_env(name: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous
