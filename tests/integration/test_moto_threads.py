"""Finished Step Functions executions give their threads' memory back (devtools/refund_poller/local/moto_threads.py).

Measured the way the failure showed itself: the process's memory maps. Each thread moto's interpreter keeps
a reference to holds two maps (its stack and guard page) on Python 3.13 until the reference goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from refund_poller.local import moto_threads
from refund_poller.local.server import ACCOUNT_ID, MotoServer

EXECUTIONS = 60
# A Pass, a Task (with its timeout thread) and a Wait: three threads per execution in moto's interpreter.
DEFINITION = {
    "StartAt": "Note",
    "States": {
        "Note": {"Type": "Pass", "Result": {"seen": True}, "ResultPath": "$.note", "Next": "List queues"},
        "List queues": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sqs:listQueues",
            "TimeoutSeconds": 30,
            "ResultPath": "$.queues",
            "Next": "Pause",
        },
        "Pause": {"Type": "Wait", "Seconds": 0, "End": True},
    },
}


def memory_maps() -> int:
    with open("/proc/self/maps", encoding="ascii") as maps:
        return sum(1 for _ in maps)


@pytest.fixture
def server() -> Iterator[MotoServer]:
    moto = MotoServer()
    moto.start()
    yield moto
    moto.stop()


def run_executions(server: MotoServer, count: int) -> None:
    sfn = server.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"threads-{time.monotonic_ns()}",
        definition=json.dumps(DEFINITION),
        roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/threads",
    )["stateMachineArn"]
    started = [
        sfn.start_execution(stateMachineArn=arn, name=f"run-{n}", input="{}")["executionArn"] for n in range(count)
    ]
    deadline = time.monotonic() + 120
    pending = set(started)
    while pending and time.monotonic() < deadline:
        pending = {a for a in pending if sfn.describe_execution(executionArn=a)["status"] == "RUNNING"}
        time.sleep(0.2)
    assert not pending, f"{len(pending)} executions still running after 120 s"
    statuses = {sfn.describe_execution(executionArn=a)["status"] for a in started}
    assert statuses == {"SUCCEEDED"}, statuses
    time.sleep(0.5)  # the threads' last steps after the status is written


def test_finished_executions_do_not_keep_their_threads_stacks(server: MotoServer) -> None:
    run_executions(server, 5)  # the server's own threads and pools exist before counting
    before = memory_maps()
    run_executions(server, EXECUTIONS)
    moto_threads.install()  # idempotent; sweeps what is listed beyond the amortised sweeps
    from moto.stepfunctions.parser import utils

    assert isinstance(utils.TMP_THREADS, moto_threads.LiveThreads)
    utils.TMP_THREADS.sweep()
    grown = memory_maps() - before
    # Kept, they would add two maps per thread: at least 6 x EXECUTIONS.
    assert grown < EXECUTIONS, f"memory maps grew by {grown} over {EXECUTIONS} finished executions"
    assert all(thread.is_alive() or thread.ident is None for thread in utils.TMP_THREADS)


def test_the_list_sweeps_as_it_grows_and_keeps_running_threads() -> None:
    import threading

    stop = threading.Event()
    running = threading.Thread(target=stop.wait, daemon=True)
    running.start()
    threads = moto_threads.LiveThreads([running])
    for _ in range(200):
        finished = threading.Thread(target=lambda: None, daemon=True)
        threads.append(finished)
        finished.start()
        finished.join()
    assert running in threads
    assert len(threads) < 64 + 1  # swept at least once; never more than twice the live ones, or the first bound
    stop.set()
    running.join()


def test_an_execution_moto_fails_in_its_interpreter_is_logged_with_its_traceback(
    server: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    from moto.stepfunctions.parser.asl.component.program.program import Program

    def broken(self: Program, state_name: str) -> None:
        raise IndexError("pop from empty list")  # what moto raised for 104 executions at N = 5,000

    sfn = server.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="interpreter-failure",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/threads",
    )["stateMachineArn"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Program, "_get_state", broken)  # inside the loop whose except logs it
        caplog.set_level("ERROR", logger="moto.stepfunctions.parser.asl.component.program.program")
        execution = sfn.start_execution(stateMachineArn=arn, name="fails", input="{}")["executionArn"]
        deadline = time.monotonic() + 30
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    records = [r for r in caplog.records if "Stepfunctions computation ended" in r.getMessage()]
    assert records and records[0].exc_info is not None
    assert "broken" in caplog.text.split("Stepfunctions computation ended", 1)[1]  # the frame that raised
