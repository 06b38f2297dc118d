"""One worker: a Python subprocess that plays one warm Lambda execution environment."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from refund_poller.local.concurrency import worker_cpu_count
from refund_poller.local.server import FAKE_CREDENTIALS
from refund_poller.local.worker_main import LOG_MARK

WORKER_MAIN = Path(__file__).with_name("worker_main.py")


@dataclass(frozen=True)
class FunctionSpec:
    """A function's configuration as a worker needs it; a change means fresh workers (as Lambda does)."""

    name: str
    arn: str
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    code_dir: Path
    layer_dirs: tuple[Path, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, hash=False)
    log_group: str = ""


def worker_environment(spec: FunctionSpec, endpoint_url: str, region: str) -> dict[str, str]:
    """The function's variables plus what Lambda sets, with every AWS SDK pointed at moto."""
    now = datetime.now(UTC)
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "POWERTOOLS_TRACE_DISABLED": "true",  # X-Ray's SDK costs 100-300 ms per cold start, for nothing here
        **spec.environment,
        # Lambda reserves the rest: a function cannot override them.
        "_HANDLER": spec.handler,
        "PYTHONPATH": os.pathsep.join(str(path) for path in (spec.code_dir, *spec.layer_dirs)),
        "PYTHONUNBUFFERED": "1",  # so that a function killed on timeout still leaves its logs
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": "testing",  # moto's dummy credentials  # nosec B105
        "AWS_ENDPOINT_URL": endpoint_url,
        # Never read the developer's own AWS profiles: they could name a region or real credentials.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return environment


class LogCollector:
    """Reads a worker's stderr on a thread and hands out the text written before each mark."""

    def __init__(self, stream: IO[str]) -> None:
        self._pending: list[str] = []
        self._done: dict[str, str] = {}
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def take(self, mark: str, timeout: float) -> str:
        """The text before ``mark``; whatever there is if the mark does not come within ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: mark in self._done or self._closed, timeout)
            if mark in self._done:
                return self._done.pop(mark)
            text, self._pending = "".join(self._pending), []
            return text

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            text, found, mark = line.partition(LOG_MARK)
            with self._changed:
                if text:
                    self._pending.append(text if text.endswith("\n") or not found else text + "\n")
                if found:
                    self._done[mark.strip()] = "".join(self._pending)
                    self._pending = []
                    self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class Worker:
    """A subprocess running worker_main.py: its init reply first, then one reply per request."""

    def __init__(self, spec: FunctionSpec, endpoint_url: str, region: str) -> None:
        self.spec = spec
        self.initialised = False
        self.init_result: tuple[dict[str, Any] | None, str, float] | None = None
        """The init reply, its logs and its duration (ms), kept until the first invocation reports them."""
        self.init_reported = False
        self.timed_out = False
        # -X cpu_count: os.cpu_count() (and so ThreadPoolExecutor's default size) as Lambda's vCPUs for this
        # function's memory, not the host's.
        cpu_count = worker_cpu_count(spec.memory_size)
        options = ["-X", f"cpu_count={cpu_count}"] if cpu_count is not None else []
        self._process = subprocess.Popen(  # noqa: S603  # our own interpreter and script
            [sys.executable, "-P", *options, str(WORKER_MAIN)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.code_dir,
            env=worker_environment(spec, endpoint_url, region),
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own process group, so that a kill takes its children too
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._logs = LogCollector(self._process.stderr)
        threading.Thread(target=self._read_replies, args=(self._process.stdout,), daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def exit_description(self) -> str:
        code = self._process.wait()
        if code < 0:
            return f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"
        return f"exit status {code}"

    def initialise(self, timeout: float) -> tuple[dict[str, Any] | None, str, float]:
        """The init reply (``None`` if the worker died, or overran ``timeout`` and was killed), its logs and its
        duration in ms; also kept in ``init_result``."""
        started = time.monotonic()
        reply = self._wait(timeout)
        duration_ms = (time.monotonic() - started) * 1000
        self.initialised = reply is not None and reply.get("error") is None
        self.init_result = (reply, self._logs.take("init", 1.0), duration_ms)
        return self.init_result

    def invoke(self, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str]:
        """The reply to ``request`` (``None`` if the worker died, or overran ``timeout`` and was killed)."""
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except OSError:
            return None, self._logs.take(request["requestId"], 1.0)
        reply = self._wait(timeout)
        return reply, self._logs.take(request["requestId"], 1.0)

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):  # it exited between the check and the kill
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def close(self, grace_seconds: float = 1.0) -> None:
        """Let the worker finish (its stdin closes, its loop ends), and kill it if it does not."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(OSError):  # a worker that died leaves a broken pipe
                self._process.stdin.close()
        try:
            self._process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    def _wait(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            self.timed_out = True
            self.kill()
            return None

    def _read_replies(self, stream: IO[str]) -> None:
        for line in stream:
            self._replies.put(json.loads(line))
        self._replies.put(None)  # end of stream: the worker exited
