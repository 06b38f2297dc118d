"""What AWS Step Functions does and moto 5.2.5's executing backend does not, enforced on the local stack.

Each rule below hid a defect once (docs/internals.md, "Strict local stack: Step Functions", cites AWS for each):

- STANDARD: an execution's name stays taken after it closed (AWS keeps it 90 days, longer than any local stack
  lives). moto forgets a name with its execution (a state machine deleted and created again, a moto reset); the
  names here are kept apart from moto's executions so that nothing in moto can free one. Same name and same input
  while RUNNING is the same execution; anything else is ``ExecutionAlreadyExists``. Names are validated as AWS
  does (moto's executing backend validates none) and a start without a name gets a UUID, as on AWS.
- EXPRESS: no name idempotency (every start is a new execution, ARN ``...:express:<machine>:<name>:<uuid>``); the
  execution stops at ``express_max_seconds`` (AWS: 5 minutes) as a top-level timeout does, which no ``Catch``
  sees; DescribeExecution, GetExecutionHistory, StopExecution and DescribeStateMachineForExecution refuse an
  Express ARN and ListExecutions refuses an Express state machine.
- A DynamoDB service-integration Task that runs past its ``TimeoutSeconds`` fails with ``States.Timeout``
  (``TaskTimedOut``), as every Task does on AWS. moto's DynamoDB integration names any error that is not a
  DynamoDB answer ``DynamoDB.AmazonDynamoDBException``, its own timeout included, so a ``Retry`` or ``Catch`` on
  ``States.Timeout`` never saw it (found at N = 5,000 in ``bench.scale``: a slow close went straight to the
  ``States.ALL`` catch instead of its retry).
- Execution history goes to the state machine's CloudWatch Logs group when it has a LoggingConfiguration, one JSON
  record per history event in the shape AWS documents (``id``, ``type``, ``details``, ``previous_event_id``,
  ``event_timestamp``, ``execution_arn``): for Express, the only history there is.

moto runs in this process (server.py), so the rules replace methods of its backend class while installed; the
methods call moto's own when no rules are installed.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.core.exceptions import AWSError
from moto.logs.models import logs_backends
from moto.stepfunctions.exceptions import ExecutionAlreadyExists, InvalidArn, InvalidExecutionInput, InvalidName
from moto.stepfunctions.parser.api import ExecutionStatus, StateMachineType
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb import (
    StateTaskServiceDynamoDB,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.logging import (
    CloudWatchLoggingConfiguration,
    CloudWatchLoggingSession,
    HistoryLog,
)
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from refund_poller.local.errors import LocalCloudError

EXPRESS_MAX_SECONDS = 300  # https://docs.aws.amazon.com/step-functions/latest/dg/choosing-workflow-type.html
EXPRESS_NOT_SUPPORTED = "Invalid Arn: 'Resource type not valid in this context: express'"
_EXECUTION_ARN_OPERATIONS = (
    "describe_execution",
    "get_execution_history",
    "stop_execution",
    "describe_state_machine_for_execution",
)


@dataclass(frozen=True)
class StepFunctionsRules:
    """The knobs of the Step Functions emulation, given to ``LocalCloud(stepfunctions_rules=...)``.

    ``strict=False`` leaves moto as it is (only to show what the rules catch). ``express_max_seconds`` is the
    Express execution limit, whole seconds as ASL's ``TimeoutSeconds``; tests shorten it.
    """

    strict: bool = True
    express_max_seconds: int = EXPRESS_MAX_SECONDS

    def __post_init__(self) -> None:
        limit = self.express_max_seconds
        if not isinstance(limit, int) or not 1 <= limit <= EXPRESS_MAX_SECONDS:
            raise LocalCloudError(
                f"express_max_seconds must be a whole number from 1 to {EXPRESS_MAX_SECONDS}: {limit!r}"
            )


class StateMachineTypeNotSupported(AWSError):  # noqa: N818  # AWS's error code
    TYPE = "StateMachineTypeNotSupported"
    STATUS = 400


class StrictStepFunctions:
    """The rules while installed: the retained names and the Express executions (which moto does not list)."""

    def __init__(self, rules: StepFunctionsRules) -> None:
        self.rules = rules
        self._lock = threading.RLock()
        self._retained_inputs: dict[str, str] = {}  # Standard execution ARN -> its input, never removed
        self._express: dict[str, Execution] = {}
        self._logs_lock = threading.Lock()

    def start_execution(
        self,
        backend: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: str | None,
        execution_input: str | None,
        trace_header: str | None,
    ) -> Execution:
        state_machine = backend.describe_state_machine(state_machine_arn)
        if name is not None:
            if not name:
                raise InvalidName("Invalid Name: ''")
            backend._validate_name(name)
        text = "{}" if execution_input is None else execution_input
        try:
            json.loads(text)
        except ValueError as error:
            raise InvalidExecutionInput(f"Invalid State Machine Execution Input: '{error}'") from error
        if state_machine.type == StateMachineType.EXPRESS:
            return self._start_express(backend, state_machine, name or str(uuid.uuid4()), text, trace_header)
        return self._start_standard(backend, state_machine, name or str(uuid.uuid4()), text, trace_header)

    def _start_standard(
        self, backend: StepFunctionsParserBackend, state_machine: Any, name: str, text: str, trace_header: str | None
    ) -> Execution:
        place = f"{backend.partition}:states:{backend.region_name}:{backend.account_id}"
        arn = f"arn:{place}:execution:{state_machine.name}:{name}"
        with self._lock:
            if arn in self._retained_inputs:
                running = next(
                    (e for e in state_machine.executions if e.execution_arn == arn and e.status == "RUNNING"), None
                )
                if running is not None and self._retained_inputs[arn] == text:
                    return running  # type: ignore[no-any-return]  # moto is untyped
                raise ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
            execution = self._launch(backend, state_machine, name, text, arn, trace_header, StateMachineType.STANDARD)
            state_machine.executions.append(execution)
            self._retained_inputs[arn] = text
        return execution

    def _start_express(
        self, backend: StepFunctionsParserBackend, state_machine: Any, name: str, text: str, trace_header: str | None
    ) -> Execution:
        place = f"{backend.partition}:states:{backend.region_name}:{backend.account_id}"
        arn = f"arn:{place}:express:{state_machine.name}:{name}:{uuid.uuid4()}"
        execution = self._launch(backend, state_machine, name, text, arn, trace_header, StateMachineType.EXPRESS)
        with self._lock:
            # Only running ones are kept (to stop them with the stack): AWS keeps nothing of an Express execution.
            for done in [key for key, known in self._express.items() if known.exec_status != ExecutionStatus.RUNNING]:
                del self._express[done]
            self._express[arn] = execution
        return execution

    def _launch(
        self,
        backend: StepFunctionsParserBackend,
        state_machine: Any,
        name: str,
        text: str,
        arn: str,
        trace_header: str | None,
        kind: StateMachineType,
    ) -> Execution:
        # As moto's start_execution: a snapshot of the definition, without the executions it holds.
        snapshot = copy.deepcopy(
            state_machine, {id(state_machine.executions): [], id(state_machine.backend): state_machine.backend}
        )
        if kind == StateMachineType.EXPRESS:
            snapshot.definition = _with_time_limit(snapshot.definition, self.rules.express_max_seconds)
        execution = Execution(
            name=name,
            sm_type=kind,
            role_arn=snapshot.roleArn,
            exec_arn=arn,
            account_id=backend.account_id,
            region_name=backend.region_name,
            state_machine=snapshot,
            start_date=datetime.datetime.now(tz=datetime.UTC),
            cloud_watch_logging_session=self._log_session(state_machine, arn, kind),
            input_data=text,
            trace_header=trace_header,
            activity_store={},
        )
        execution.start()
        return execution

    def _log_session(self, state_machine: Any, arn: str, kind: StateMachineType) -> CloudWatchLoggingSession | None:
        logging_configuration: Any = {"includeExecutionData": False, **(state_machine.loggingConfiguration or {})}
        configuration = CloudWatchLoggingConfiguration.from_logging_configuration(
            state_machine_arn=state_machine.arn, logging_configuration=logging_configuration
        )
        if configuration is None:
            return None
        return ExecutionLogSession(arn, configuration, state_machine.name, kind, self._logs_lock)

    def refuse_express_arn(self, execution_arn: str) -> None:
        if _resource_type(execution_arn) == "express":
            raise InvalidArn(EXPRESS_NOT_SUPPORTED)

    def refuse_express_machine(self, backend: StepFunctionsParserBackend, state_machine_arn: str) -> None:
        if backend.describe_state_machine(state_machine_arn).type == StateMachineType.EXPRESS:
            raise StateMachineTypeNotSupported("This operation is not supported by this type of state machine")

    def stop_express_executions(self) -> None:
        """Stop the Express executions still running (their threads would call a server that is gone)."""
        with self._lock:
            running = [e for e in self._express.values() if e.exec_status == ExecutionStatus.RUNNING]
        for execution in running:
            execution.stop(datetime.datetime.now(tz=datetime.UTC), error=None, cause="the local stack stopped")


class ExecutionLogSession(CloudWatchLoggingSession):
    """Writes each history event as AWS does for a state machine with logging: one JSON log record each.

    moto has this session (and the level filter) but never connects it, and its writer loses every record.
    """

    def __init__(
        self,
        execution_arn: str,
        configuration: CloudWatchLoggingConfiguration,
        state_machine_name: str,
        kind: StateMachineType,
        lock: threading.Lock,
    ) -> None:
        super().__init__(execution_arn, configuration)
        now = datetime.datetime.now(tz=datetime.UTC)
        self._stream = f"states/{state_machine_name}/{now:%Y-%m-%d-%H-%M}/{uuid.uuid4().hex[:8]}"
        self._kind = kind
        self._lock = lock

    def publish_history_log(self, history_log: HistoryLog) -> None:
        millis = _epoch_millis(history_log["event_timestamp"])
        record: dict[str, Any] = {
            "id": history_log["id"],
            "type": str(getattr(history_log["type"], "value", history_log["type"])),
            "details": history_log.get("details") or {},
            "previous_event_id": history_log["previous_event_id"],
            "event_timestamp": str(millis),
            "execution_arn": history_log["execution_arn"],
        }
        if self._kind == StateMachineType.STANDARD:
            record["redrive_count"] = "0"
        message = json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False)
        group = self.configuration.log_group_name
        logs = logs_backends[self.configuration.log_account_id][self.configuration.log_region]
        with self._lock:  # moto's log streams are not thread-safe
            if group not in logs.groups:
                # The template's AWS::Logs::LogGroup is not deployed locally; on AWS it exists before any start.
                logs.create_log_group(group, tags={})
            logs.ensure_log_stream(group, self._stream)
            logs.put_log_events(group, self._stream, [{"timestamp": millis, "message": message}])


def _with_time_limit(definition: str, limit_seconds: int) -> str:
    """The definition with a top-level TimeoutSeconds no longer than the limit: the Express maximum duration ends
    the execution as that timeout does (ExecutionTimedOut, States.Timeout), past every Catch."""
    document = json.loads(definition)
    current = document.get("TimeoutSeconds")
    document["TimeoutSeconds"] = min(int(current), limit_seconds) if isinstance(current, int) else limit_seconds
    return json.dumps(document)


def _resource_type(arn: str) -> str:
    parts = arn.split(":")
    return parts[5] if len(parts) > 5 else ""


def _epoch_millis(value: Any) -> int:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp() * 1000)
    return int(datetime.datetime.now(tz=datetime.UTC).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------------------------
# Installing the rules into moto's backend class.

_install_lock = threading.Lock()
_active: StrictStepFunctions | None = None
_originals: dict[str, Callable[..., Any]] = {}


def install(rules: StepFunctionsRules) -> StrictStepFunctions | None:
    """Enforce ``rules`` on this process's moto Step Functions until :func:`uninstall`; None when not strict."""
    global _active
    if not rules.strict:
        return None
    with _install_lock:
        if _active is not None:
            raise LocalCloudError("Step Functions rules are already installed (one local stack per process)")
        _patch_backend()
        _active = StrictStepFunctions(rules)
        return _active


def uninstall(engine: StrictStepFunctions | None) -> None:
    global _active
    if engine is None:
        return
    engine.stop_express_executions()
    with _install_lock:
        if _active is engine:
            _active = None


def _patch_backend() -> None:
    if _originals:
        return
    for name in ("start_execution", "list_executions", *_EXECUTION_ARN_OPERATIONS):
        _originals[name] = getattr(StepFunctionsParserBackend, name)
    StepFunctionsParserBackend.start_execution = _start_execution  # type: ignore[method-assign,assignment]
    StepFunctionsParserBackend.list_executions = _list_executions  # type: ignore[method-assign,assignment]
    for name in _EXECUTION_ARN_OPERATIONS:
        setattr(StepFunctionsParserBackend, name, _by_execution_arn(name))
    _originals["dynamodb_from_error"] = StateTaskServiceDynamoDB._from_error
    StateTaskServiceDynamoDB._from_error = _dynamodb_from_error  # type: ignore[method-assign,assignment]


def _dynamodb_from_error(task: StateTaskServiceDynamoDB, env: Environment, ex: Exception) -> FailureEvent:
    if _active is not None and isinstance(ex, TimeoutError):  # moto's EvalTimeoutError is one
        return task._get_timed_out_failure_event(env)
    original: Callable[..., FailureEvent] = _originals["dynamodb_from_error"]
    return original(task, env, ex)


def _start_execution(
    backend: StepFunctionsParserBackend,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Execution:
    engine = _active
    if engine is None:
        return _originals["start_execution"](backend, state_machine_arn, name, execution_input, trace_header)  # type: ignore[no-any-return]
    return engine.start_execution(backend, state_machine_arn, name, execution_input, trace_header)


def _list_executions(backend: StepFunctionsParserBackend, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
    engine = _active
    if engine is not None:
        engine.refuse_express_machine(backend, state_machine_arn)
    return _originals["list_executions"](backend, state_machine_arn, *args, **kwargs)


def _by_execution_arn(operation: str) -> Callable[..., Any]:
    def guarded(backend: StepFunctionsParserBackend, execution_arn: str, *args: Any, **kwargs: Any) -> Any:
        engine = _active
        if engine is not None:
            engine.refuse_express_arn(execution_arn)
        return _originals[operation](backend, execution_arn, *args, **kwargs)

    guarded.__name__ = operation
    return guarded
