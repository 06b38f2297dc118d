"""Warm workers per function, kept as Lambda keeps execution environments: reused, grown on demand, replaced
when they die or overrun the function's timeout; and the invocation's result and logs as Lambda reports them."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from refund_poller.local.errors import LocalCloudError
from refund_poller.local.worker_process import FunctionSpec, Worker

INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit for the init phase of an on-demand environment
# Workers per function at most (a caller beyond that waits for a free one; Lambda's own concurrency limits are
# concurrency.py's). Every worker is a Python process of 70-80 MB, and on a small machine more of them than its
# cores plus one only wait on the moto process, which holds one core (one interpreter lock): the local stack's
# memory then grows for no throughput (bench/README.md, "Local stack profile": 4 → 3 per function on 2 cores kept
# N = 100 under 800 MB). At least three, at most ten.
DEFAULT_CONCURRENCY = min(10, max(3, (os.cpu_count() or 1) + 1))
# Cold starts of one function that run at once. Lambda initialises each environment on hardware of its own; here
# they share this machine's cores, and ten imports of boto3 side by side on two cores each take longer than
# Lambda's 10 s init limit, fail, and start over (bench/README.md, "Local stack profile"). A caller that finds
# no idle worker and this many already starting waits for whichever comes first: one of them, or a worker
# that finishes its invocation.
MAX_CONCURRENT_COLD_STARTS = max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Invocation:
    """What the Invoke API returns: the payload (JSON text), FunctionError (``Unhandled`` or None) and logs."""

    request_id: str
    payload: str
    function_error: str | None
    logs: str


class FunctionPool:
    """The workers of one function: at most ``size`` at once; a caller beyond that waits for a free one."""

    def __init__(
        self, start: Callable[[FunctionSpec], Worker], size: int, cold_starts: int = MAX_CONCURRENT_COLD_STARTS
    ) -> None:
        self.size = size
        self._start = start
        self._cold_starts = cold_starts
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._starting = 0
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self, spec: FunctionSpec) -> Worker:
        """A warm worker for ``spec`` (the last one used), or a new one when none is free."""
        with self._changed:
            stale = self._drop_stale(spec)
            while not self._idle and not self._closed and self._must_wait():
                self._changed.wait()
                stale += self._drop_stale(spec)
            if self._closed:
                raise LocalCloudError("the local runtime is stopping")
            reused = self._idle.pop() if self._idle else None
            if reused is None:
                self._starting += 1
        for worker in stale:  # a configuration change retires the old environments, as in Lambda
            worker.close()
        return reused if reused is not None else self._start_counted(spec)

    def release(self, worker: Worker) -> None:
        with self._changed:
            keep = worker.alive and not self._closed and worker in self._workers
            if keep:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._changed.notify_all()
        if not keep:
            worker.kill()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            workers, self._workers, self._idle = list(self._workers), set(), []
            self._changed.notify_all()
        for worker in workers:
            worker.kill()

    def _must_wait(self) -> bool:
        return len(self._workers) + self._starting >= self.size or self._starting >= self._cold_starts

    def _drop_stale(self, spec: FunctionSpec) -> list[Worker]:
        stale = [worker for worker in self._idle if worker.spec != spec]
        self._idle = [worker for worker in self._idle if worker.spec == spec]
        self._workers.difference_update(stale)
        return stale

    def _start_counted(self, spec: FunctionSpec) -> Worker:
        worker: Worker | None = None
        try:
            worker = self._start(spec)
            worker.initialise(INIT_TIMEOUT_SECONDS)  # counted as starting until its init is done
            return worker
        finally:
            with self._changed:
                self._starting -= 1
                if worker is not None:
                    self._workers.add(worker)
                self._changed.notify_all()


_INJECTED_FAULT = {
    "errorType": "Runtime.ExitError",
    "errorMessage": "RequestId: injected Error: Runtime exited with error: injected fault (local stack)",
}


class FaultPlan:
    """Which share of each function's invocations fails on purpose (reliability tests and `make soak`)."""

    def __init__(self) -> None:
        self._rates: dict[str, tuple[float, random.Random]] = {}
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}

    def set(self, function_name: str, rate: float, seed: int | None) -> None:
        with self._lock:
            self._rates[function_name] = (rate, random.Random(seed))  # noqa: S311 - fault injection, not crypto

    def hit(self, function_name: str) -> bool:
        with self._lock:
            rate, draw = self._rates.get(function_name, (0.0, None))
            if draw is None or draw.random() >= rate:
                return False
            self.injected[function_name] = self.injected.get(function_name, 0) + 1
            return True


class FunctionRunner:
    """Runs invocations in the workers of each function and appends their logs to one file per function."""

    def __init__(self, endpoint_url: str, region: str, log_dir: Path, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.log_dir = log_dir
        self.concurrency = concurrency
        self._pools: dict[str, FunctionPool] = {}
        self._lock = threading.Lock()
        self._faults = FaultPlan()
        log_dir.mkdir(parents=True, exist_ok=True)

    def inject_failures(self, function_name: str, rate: float, seed: int | None = None) -> None:
        """Fail this share of the function's invocations as a crashed runtime would (0 turns it off)."""
        self._faults.set(function_name, rate, seed)

    def injected_failures(self, function_name: str) -> int:
        return self._faults.injected.get(function_name, 0)

    def reroute(self, endpoint_url: str) -> None:
        """Point the functions' AWS SDK calls at another endpoint; running workers are replaced."""
        self.endpoint_url = endpoint_url
        self.stop()

    def invoke(self, spec: FunctionSpec, event: Any, invoked_arn: str | None = None) -> Invocation:
        request_id = str(uuid.uuid4())
        if self._faults.hit(spec.name):
            invocation = _LogText(request_id, spec).failed(_INJECTED_FAULT, 0.0, None)
        else:
            pool = self._pool(spec.name)
            worker = pool.acquire(spec)
            try:
                invocation = _run(worker, request_id, event, invoked_arn or spec.arn)
            finally:
                pool.release(worker)
        with self._lock, self.log_path(spec.name).open("a", encoding="utf-8") as log_file:
            log_file.write(invocation.logs)
        return invocation

    def log_path(self, function_name: str) -> Path:
        return self.log_dir / f"{function_name}.log"

    def limit(self, function_name: str, reserved_concurrency: int | None) -> None:
        """Honour a function's reserved concurrency when it is below the runner's own limit."""
        if reserved_concurrency:
            self._pool(function_name).size = min(self.concurrency, reserved_concurrency)

    def stop(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def _pool(self, function_name: str) -> FunctionPool:
        with self._lock:
            pool = self._pools.get(function_name)
            if pool is None:
                pool = self._pools[function_name] = FunctionPool(self._start_worker, self.concurrency)
            return pool

    def _start_worker(self, spec: FunctionSpec) -> Worker:
        return Worker(spec, self.endpoint_url, self.region)


def _run(worker: Worker, request_id: str, event: Any, invoked_arn: str) -> Invocation:
    spec = worker.spec
    logs = _LogText(request_id, spec)
    init_ms: float | None = None
    if worker.init_result is None:  # not started by a pool: initialise now
        worker.initialise(INIT_TIMEOUT_SECONDS)
    if worker.init_result is not None and not worker.init_reported:
        # The first invocation of a worker reports its init (INIT_START, Init Duration), as Lambda's logs do.
        worker.init_reported = True
        reply, text, init_ms = worker.init_result
        logs.init(spec.runtime, text)
        if reply is None or reply.get("error"):
            error = reply["error"] if reply else _lost(worker, request_id, INIT_TIMEOUT_SECONDS, logs)
            worker.kill()  # Lambda runs init again on the next invoke: so will a fresh worker
            return logs.failed(error, 0.0, init_ms)
    request = {
        "requestId": request_id,
        "event": event,
        "invokedFunctionArn": invoked_arn,
        "deadlineMs": int(time.time() * 1000) + spec.timeout * 1000,
        "traceId": _trace_id(),
    }
    started = time.monotonic()
    reply, text = worker.invoke(request, spec.timeout)
    duration_ms = (time.monotonic() - started) * 1000
    logs.body(text)
    if reply is None:
        return logs.failed(_lost(worker, request_id, spec.timeout, logs), duration_ms, init_ms)
    if reply["type"] == "error":
        return logs.failed(reply["error"], duration_ms, init_ms, reply.get("maxMemoryMB"))
    return logs.succeeded(reply["payload"], duration_ms, init_ms, reply.get("maxMemoryMB"))


def _lost(worker: Worker, request_id: str, timeout: float, logs: _LogText) -> dict[str, Any]:
    """The error Lambda reports when the runtime overran its timeout or exited."""
    if worker.timed_out:
        message = f"Task timed out after {timeout:.2f} seconds"
        logs.body(f"{datetime.now(UTC).isoformat(timespec='milliseconds')[:-6]}Z {request_id} {message}\n")
        return {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {request_id} Error: {message}"}
    message = f"RequestId: {request_id} Error: Runtime exited with error: {worker.exit_description()}"
    logs.body(f"{message}\nRuntime.ExitError\n")
    return {"errorType": "Runtime.ExitError", "errorMessage": message}


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


class _LogText:
    """One invocation's log text in Lambda's layout: INIT_START, START, the function's output, END, REPORT."""

    def __init__(self, request_id: str, spec: FunctionSpec) -> None:
        self._request_id = request_id
        self._spec = spec
        self._parts: list[str] = []
        self._started = False

    def init(self, runtime: str, text: str) -> None:
        self._parts.append(f"INIT_START Runtime Version: {runtime} (local worker)\n{text}")

    def body(self, text: str) -> None:
        if not self._started:
            self._parts.append(f"START RequestId: {self._request_id} Version: $LATEST\n")
            self._started = True
        self._parts.append(text)

    def succeeded(self, payload: str, duration_ms: float, init_ms: float | None, memory: int | None) -> Invocation:
        return self._finish(payload, None, self._report(duration_ms, init_ms, memory, None))

    def failed(
        self, error: dict[str, Any], duration_ms: float, init_ms: float | None, memory: int | None = None
    ) -> Invocation:
        status = "timeout" if error.get("errorType") == "Sandbox.Timedout" else "error"
        report = self._report(duration_ms, init_ms, memory, f"Status: {status}\tError Type: {error['errorType']}")
        return self._finish(json.dumps(error), "Unhandled", report)

    def _report(self, duration_ms: float, init_ms: float | None, memory: int | None, status: str | None) -> str:
        fields = [
            f"REPORT RequestId: {self._request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms + (init_ms or 0.0))} ms",
            f"Memory Size: {self._spec.memory_size} MB",
            f"Max Memory Used: {memory if memory is not None else '-'} MB",
        ]
        if init_ms is not None:
            fields.append(f"Init Duration: {init_ms:.2f} ms")
        if status:
            fields.append(status)
        return "\t".join(fields) + "\n"

    def _finish(self, payload: str, function_error: str | None, report: str) -> Invocation:
        self.body("")
        self._parts.append(f"END RequestId: {self._request_id}\n{report}")
        return Invocation(self._request_id, payload, function_error, "".join(self._parts))
