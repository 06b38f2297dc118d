"""The local runtime's worker pool and moto's parsed definitions (devtools/refund_poller/local): cold starts are
limited per function, and a state machine definition is parsed once, each execution getting its own copy."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

from refund_poller.local.moto_speedups import ParsedDefinitions
from refund_poller.local.worker_process import FunctionSpec, Worker
from refund_poller.local.workers import FunctionPool

SPEC = FunctionSpec(
    name="f",
    arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    handler="app.handler",
    runtime="python3.13",
    timeout=3,
    memory_size=128,
    code_dir=Path("."),
)


class SlowStartingWorker:
    """Stands in for a worker process: its init takes a while, and the test counts inits running at once."""

    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.alive = True

    def initialise(self, timeout: float) -> tuple[None, str, float]:
        cls = SlowStartingWorker
        with cls.lock:
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
        time.sleep(0.2)
        with cls.lock:
            cls.running -= 1
        return None, "", 200.0

    def kill(self) -> None:
        self.alive = False

    def close(self) -> None:
        self.alive = False


def test_a_function_starts_at_most_its_cold_start_limit_of_workers_at_once() -> None:
    pool = FunctionPool(lambda spec: cast(Worker, SlowStartingWorker(spec)), size=6, cold_starts=2)
    workers: list[Any] = []

    def invoke() -> None:
        worker = pool.acquire(SPEC)
        workers.append(worker)
        time.sleep(0.5)  # busy: the callers after it cannot reuse it
        pool.release(worker)

    callers = [threading.Thread(target=invoke) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert SlowStartingWorker.most_at_once == 2
    assert len({id(worker) for worker in workers}) >= 3  # the pool still grew past the cold start limit
    pool.close()


def test_a_definition_is_parsed_once_and_every_execution_gets_its_own_program() -> None:
    parsed: list[str] = []

    def parse(definition: str) -> dict[str, Any]:
        parsed.append(definition)
        return {"definition": definition, "state": []}

    definitions = ParsedDefinitions(parse)
    first, second = definitions.program("{}"), definitions.program("{}")
    first["state"].append("evaluated")  # an execution's changes stay its own
    assert parsed == ["{}"]
    assert second == {"definition": "{}", "state": []}
    assert definitions.program('{"other": 1}')["definition"] == '{"other": 1}'
    assert parsed == ["{}", '{"other": 1}']
