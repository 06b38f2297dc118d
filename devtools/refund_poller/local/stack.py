"""LocalCloud: the Docker-free ``sam local``. A SAM template deployed into an in-process moto server, its
functions run for real in local worker processes, its SQS events polled as Lambda polls them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from botocore.config import Config

from refund_poller.local.deploy import Deployment, deploy
from refund_poller.local.errors import LocalCloudError
from refund_poller.local.event_source import SqsPoller
from refund_poller.local.http_api import LocalHttpApi
from refund_poller.local.moto_lambda import LambdaBridge, install, uninstall
from refund_poller.local.resources_compute import CREATORS as COMPUTE_CREATORS
from refund_poller.local.resources_data import CREATORS as DATA_CREATORS
from refund_poller.local.scheduler import ScheduleFirer, SchedulerSettings
from refund_poller.local.server import ACCOUNT_ID, REGION, MotoServer
from refund_poller.local.stepfunctions_rules import StepFunctionsRules, StrictStepFunctions
from refund_poller.local.stepfunctions_rules import install as install_stepfunctions_rules
from refund_poller.local.stepfunctions_rules import uninstall as uninstall_stepfunctions_rules
from refund_poller.local.strict import StrictEmulation, StrictSettings
from refund_poller.local.template import load_template
from refund_poller.local.workers import DEFAULT_CONCURRENCY, INIT_TIMEOUT_SECONDS, FunctionRunner

CREATORS = {**DATA_CREATORS, **COMPUTE_CREATORS}
STATE_FILE = "deployment.json"


class InvokeResult(NamedTuple):
    """What ``sam local invoke`` shows: the payload (parsed JSON), FunctionError (or None) and the logs."""

    payload: Any
    function_error: str | None
    logs: str


class LocalCloud:
    """A template's stack on this machine, with no AWS account and no Docker.

    Only one can run per process at a time (moto's state is process-wide); each ``start()`` begins from an
    empty moto. ``state_dir`` receives a log file per function and ``deployment.json`` (endpoint, resources,
    outputs) while the stack runs.

    Example::

        with LocalCloud(Path("template.yaml"), {"Stage": "dev"}) as cloud:
            result = cloud.invoke("MyFunction", {"hello": "world"})
            queue_url = cloud.deployment.outputs["QueueUrl"]
            cloud.client("sqs").send_message(QueueUrl=queue_url, MessageBody="{}")
    """

    def __init__(
        self,
        template_path: Path | str,
        parameter_overrides: Mapping[str, Any] | None = None,
        state_dir: Path | None = None,
        *,
        stack_name: str = "local",
        concurrency: int = DEFAULT_CONCURRENCY,
        port: int = 0,
        http_api_port: int = 0,
        stepfunctions_rules: StepFunctionsRules | None = None,
        strict: StrictSettings | None = None,
        scheduler: SchedulerSettings | None = None,
    ) -> None:
        self.template_path = Path(template_path)
        self.parameter_overrides = dict(parameter_overrides or {})
        self.state_dir = state_dir or self.template_path.parent / ".refund-poller" / "local"
        self.stack_name = stack_name
        self.concurrency = concurrency
        self._port = port
        self._http_api_port = http_api_port
        self._http_api: LocalHttpApi | None = None
        # What AWS Step Functions enforces and moto does not (stepfunctions_rules.py); strict unless told.
        self.stepfunctions_rules = stepfunctions_rules or StepFunctionsRules()
        self._stepfunctions: StrictStepFunctions | None = None
        self._server: MotoServer | None = None
        self._runner: FunctionRunner | None = None
        self._bridge: LambdaBridge | None = None
        self._deployment: Deployment | None = None
        self._pollers: list[SqsPoller] = []
        # What AWS does that moto forgives (TTL, index lag, sizes, PutEvents faults, concurrency): on unless
        # StrictSettings.forgiving() is passed; the knobs may change while the stack runs.
        self.strict = strict if strict is not None else StrictSettings()
        self._strict: StrictEmulation | None = None
        # EventBridge Scheduler: moto keeps schedules, the firer fires them (time-compressible, local/scheduler.py).
        self.scheduler = scheduler if scheduler is not None else SchedulerSettings()
        self._firer: ScheduleFirer | None = None

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        return self._running_server().endpoint_url

    @property
    def http_api_url(self) -> str:
        """``http://127.0.0.1:<port>``: where the template's HTTP API routes answer ("" when it declares none)."""
        return self._http_api.base_url if self._http_api is not None else ""

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise LocalCloudError("the local stack is not started")
        return self._deployment

    def start(self) -> Deployment:
        """Start moto, deploy the template, start the SQS pollers. Raises TemplateError or DeploymentError."""
        if self._server is not None:
            raise LocalCloudError("the local stack is already started")
        template = load_template(self.template_path)
        self._server = MotoServer(port=self._port)
        try:
            self._server.start()
            self._stepfunctions = install_stepfunctions_rules(self.stepfunctions_rules)
            self._strict = StrictEmulation(self.strict, ACCOUNT_ID, REGION)
            self._strict.start()
            self._deployment = deploy(
                template, self._server.client, CREATORS, self.parameter_overrides, self.stack_name, REGION, ACCOUNT_ID
            )
            self._start_functions(self._deployment)
            self._start_pollers(self._deployment)
            self._start_http_api(self._deployment)
            self._firer = ScheduleFirer(self.scheduler, self.client("sqs"), ACCOUNT_ID, REGION)
            self._firer.start()
            self._write_state_file(self._deployment)
        except BaseException:
            self.stop()
            raise
        return self._deployment

    def stop(self) -> None:
        """Stop pollers, running executions, workers and the server; safe to call more than once."""
        if self._http_api is not None:
            self._http_api.stop()
            self._http_api = None
        if self._firer is not None:
            self._firer.stop()
            self._firer = None
        for poller in self._pollers:
            poller.request_stop()
        for poller in self._pollers:
            poller.join()
        self._pollers = []
        if self._server is not None and self._deployment is not None:
            self._stop_executions()
        uninstall_stepfunctions_rules(self._stepfunctions)
        self._stepfunctions = None
        if self._bridge is not None:
            uninstall(self._bridge)
            self._bridge = None
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
        if self._strict is not None:
            self._strict.stop()
            self._strict = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._deployment = None
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client for ``service`` that talks to the local stack (annotate it with mypy_boto3 types)."""
        return self._running_server().client(service, config)

    def function_name(self, function: str) -> str:
        """The physical name of a function given by logical id (a physical name is returned as it is)."""
        deployed = self.deployment.functions.get(function)
        return deployed.name if deployed is not None else function

    def invoke(self, function: str, event: Any = None) -> InvokeResult:
        """Invoke a function (logical id or name) synchronously through the Lambda API, as ``sam local invoke``."""
        name = self.function_name(function)
        timeout = self.client("lambda").get_function_configuration(FunctionName=name)["Timeout"]
        lambda_client = self.client("lambda", Config(read_timeout=timeout + INIT_TIMEOUT_SECONDS + 30))
        response = lambda_client.invoke(
            FunctionName=name, Payload=json.dumps({} if event is None else event).encode(), LogType="Tail"
        )
        text = response["Payload"].read().decode("utf-8")
        logs = base64.b64decode(response.get("LogResult", "")).decode("utf-8", errors="replace")
        return InvokeResult(json.loads(text) if text else None, response.get("FunctionError"), logs)

    def function_logs(self, function: str) -> str:
        """Everything a function (logical id or name) logged since ``start()``."""
        if self._runner is None:
            raise LocalCloudError("the local stack is not started")
        path = self._runner.log_path(self.function_name(function))
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def inject_failures(self, function: str, rate: float, seed: int | None = None) -> None:
        """Make this share of a function's invocations fail like a crashed runtime (``Runtime.ExitError``)."""
        self._running_runner().inject_failures(self.function_name(function), rate, seed)

    def injected_failures(self, function: str) -> int:
        return self._running_runner().injected_failures(self.function_name(function))

    def route_functions_through(self, endpoint_url: str) -> None:
        """Send the functions' AWS calls to ``endpoint_url`` (a fault proxy in front of :attr:`endpoint_url`)."""
        self._running_runner().reroute(endpoint_url)

    def expire_items(self, now: float | None = None) -> int:
        """Run DynamoDB's TTL deletion once, at epoch ``now`` (default: the TTL clock); returns how many went."""
        if self._strict is None:
            raise LocalCloudError("the local stack is not started")
        return self._strict.expire_items(now)

    def put_secret(self, name: str, value: str | Mapping[str, Any]) -> str:
        """Create or update a Secrets Manager secret (a mapping is stored as JSON); returns its ARN."""
        text = value if isinstance(value, str) else json.dumps(value)
        secrets = self.client("secretsmanager")
        try:
            return str(secrets.create_secret(Name=name, SecretString=text)["ARN"])
        except secrets.exceptions.ResourceExistsException:
            return str(secrets.put_secret_value(SecretId=name, SecretString=text)["ARN"])

    def wait_for_execution(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        """DescribeExecution once the execution has left RUNNING; LocalCloudError after ``timeout``."""
        stepfunctions = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
            if execution["status"] != "RUNNING":
                return execution
            if time.monotonic() > deadline:
                raise LocalCloudError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.05)

    @property
    def schedule_firer(self) -> ScheduleFirer:
        """The EventBridge Scheduler firer (its counters; ``settings`` may change while the stack runs)."""
        if self._firer is None:
            raise LocalCloudError("the local stack is not started")
        return self._firer

    def _running_runner(self) -> FunctionRunner:
        if self._runner is None:
            raise LocalCloudError("the local stack is not started")
        return self._runner

    def _running_server(self) -> MotoServer:
        if self._server is None:
            raise LocalCloudError("the local stack is not started")
        return self._server

    def _start_functions(self, deployment: Deployment) -> None:
        logs = self.state_dir / "logs"
        for old in logs.glob("*.log"):
            old.unlink()
        self._runner = FunctionRunner(self.endpoint_url, REGION, logs, self.concurrency)
        code_dirs = {function.name: function.code_dir for function in deployment.functions.values()}
        self._bridge = LambdaBridge(self._runner, code_dirs, deployment.layer_dirs, self.state_dir / "unpacked")
        install(self._bridge)

    def _start_pollers(self, deployment: Deployment) -> None:
        for source in deployment.event_sources:
            if not source.enabled:
                continue
            invoke_timeout = Config(read_timeout=source.function_timeout + INIT_TIMEOUT_SECONDS + 30)
            lambda_client = self.client("lambda", invoke_timeout)
            reserved = lambda_client.get_function_concurrency(FunctionName=source.function_name)
            assert self._strict is not None
            concurrency = self._strict.poller_concurrency(
                source.maximum_concurrency, reserved.get("ReservedConcurrentExecutions")
            )
            poller = SqsPoller(source, self.client("sqs"), lambda_client, REGION, concurrency)
            poller.start()
            self._pollers.append(poller)

    def _start_http_api(self, deployment: Deployment) -> None:
        """Serve the template's HttpApi routes on loopback, as ``sam local start-api`` would (one port for all)."""
        if not deployment.http_routes:
            return
        self._http_api = LocalHttpApi(
            deployment.http_apis,
            deployment.http_routes,
            lambda config: self.client("lambda", config),
            port=self._http_api_port,
            account_id=ACCOUNT_ID,
        )
        self._http_api.start()

    def _stop_executions(self) -> None:
        # The interpreter's threads would otherwise go on calling a server that is gone.
        stepfunctions = self.client("stepfunctions")
        for resource in self.deployment.resources.values():
            if resource.type != "AWS::Serverless::StateMachine":
                continue
            try:
                running = stepfunctions.list_executions(stateMachineArn=resource.physical_id, statusFilter="RUNNING")
                for execution in running["executions"]:
                    stepfunctions.stop_execution(executionArn=execution["executionArn"])
            except Exception:  # noqa: S112  # best effort: the server goes away next anyway  # nosec B112
                continue

    def _write_state_file(self, deployment: Deployment) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"endpointUrl": self.endpoint_url, "httpApiUrl": self.http_api_url, **deployment.to_json()}
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
