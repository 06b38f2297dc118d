"""The whole product on one machine: the provider sandbox, the template deployed into moto, profiles provisioned.

This is the only place that joins the provider side (sandbox, merchant profiles) to the generic
local runtime, which knows nothing about providers: it writes the sandbox's profiles into the
emulated Secrets Manager under the names the functions look up, lets the functions talk plain
http to the loopback sandbox (the development-only setting a deployed stack never has), and
routes result events to a queue so they can be read back. With ``notifications=True`` the sandbox
also pushes each refund's final result to the stack's notification endpoint, as a provider would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from refund_core.aws.profiles import PLAIN_HTTP_LOOPBACK, PLAIN_HTTP_SETTING, secret_name
from refund_poller.local import LocalCloud
from refund_poller.local.scheduler import SchedulerSettings
from refund_poller.local.stepfunctions_rules import StepFunctionsRules
from refund_poller.sandbox import PROFILE_SPECS, Sandbox
from refund_poller.sandbox.notifications import NotifyTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
EVENTS_QUEUE = "refund-poller-result-events"
# Sandbox profile name → merchant name in the secret (the live-path Antom profile is merchant "live").
MERCHANTS = {spec.name: ("live" if spec.name.endswith("-live") else "default") for spec in PROFILE_SPECS}
# Short intervals for tests and `demo --fast`: the same loop, seconds instead of minutes.
FAST_POLICY = {
    "AntomIntervalSeconds": "1",
    "AntomWindowSeconds": "12",
    "AntomNotFoundIntervalSeconds": "1",
    "AntomNotFoundMaxPolls": "3",
    "AlipayPlusIntervalSeconds": "1",
    "AlipayPlusWindowSeconds": "12",
    "AlphaPayIntervalSeconds": "1",
    "AlphaPayWindowSeconds": "12",
}

# The long tail off (today's behaviour: a window closes UNRESOLVED): the default of a DevStack, so a local run
# never leaves refunds waiting days in real time. Tail tests pass ``tail=True`` with a compressed scheduler.
TAIL_OFF = {f"{provider}TailMaxAgeSeconds": "0" for provider in ("Antom", "AlipayPlus", "AlphaPay")}


class DevStack:
    """``with DevStack(state_dir) as stack:`` gives a running sandbox and a deployed local stack."""

    def __init__(
        self,
        state_dir: Path,
        *,
        parameter_overrides: Mapping[str, str] | None = None,
        template: Path = TEMPLATE,
        sandbox_port: int = 0,
        port: int = 0,
        stepfunctions_rules: StepFunctionsRules | None = None,
        scheduler: SchedulerSettings | None = None,
        tail: bool = False,
        notifications: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.notifications = notifications
        self.sandbox = Sandbox(port=sandbox_port, profiles_dir=state_dir / "profiles")
        self.cloud = LocalCloud(
            template,
            parameter_overrides={**({} if tail else TAIL_OFF), **dict(parameter_overrides or {})},
            state_dir=state_dir,
            port=port,
            stepfunctions_rules=stepfunctions_rules,
            scheduler=scheduler,
        )
        self.events_queue_url = ""

    def start(self) -> DevStack:
        self.sandbox.start()
        try:
            self.cloud.start()
            self._allow_plain_http_to_loopback()
            self._provision_profiles()
            self._capture_events()
            if self.notifications:
                self.send_notifications()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.cloud.stop()
        self.sandbox.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def notify_base_url(self) -> str:
        """Where providers push notifications: ``<notify_base_url>/notify/<provider>/<merchant>`` (loopback)."""
        return self.cloud.http_api_url

    def notify_url(self, provider: str, merchant: str = "default") -> str:
        """The endpoint a provider pushes ``merchant``'s notifications to."""
        return f"{self.notify_base_url}/notify/{provider}/{merchant}"

    def send_notifications(self) -> None:
        """From now on the sandbox pushes every refund that turns final to this stack's endpoint, per merchant.

        Off unless asked for (``notifications=True``; ``local up`` and the demo ask): a push races the poll
        that saw the same final answer, and tests written about polling alone must keep their meaning. A test
        that wants one refund pushed scripts it with :meth:`notify_target` instead.
        """
        self.sandbox.notify_to(self.notify_base_url, MERCHANTS)

    def notify_target(self, provider: str, merchant: str = "default", **faults: Any) -> NotifyTarget:
        """A per-refund target at this stack's endpoint (``Sandbox.set_script_with_notify``), signed for the
        merchant's profile; ``faults`` are NotifyTarget's (``faults=("dropped",), rate=0.3, seed=1``)."""
        caller = next(
            spec.caller_id for spec in PROFILE_SPECS if spec.provider == provider and MERCHANTS[spec.name] == merchant
        )
        return NotifyTarget(url=self.notify_url(provider, merchant), merchant=merchant, client_id=caller, **faults)

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.cloud.deployment.outputs)

    def client(self, service: str) -> Any:
        return self.cloud.client(service)

    def secret_names(self) -> dict[str, str]:
        """Sandbox profile name → the secret the functions read it from."""
        prefix = str(self.outputs["ProfileSecretPrefix"])
        names = {}
        for spec in PROFILE_SPECS:
            names[spec.name] = secret_name(prefix, spec.provider, MERCHANTS[spec.name])
        return names

    def _allow_plain_http_to_loopback(self) -> None:
        """Add REFUND_POLLER_ALLOW_PLAIN_HTTP=loopback to every function, the way an operator would (the Lambda API).

        Set here rather than in template.yaml, which is what gets deployed: the sandbox speaks plain http on
        loopback, and only this stack may let the functions talk to it.
        """
        lambda_client = self.client("lambda")
        for function in self.cloud.deployment.functions.values():
            current = lambda_client.get_function_configuration(FunctionName=function.name)
            variables = current.get("Environment", {}).get("Variables", {})
            lambda_client.update_function_configuration(
                FunctionName=function.name,
                Environment={"Variables": {**variables, PLAIN_HTTP_SETTING: PLAIN_HTTP_LOOPBACK}},
            )

    def _provision_profiles(self) -> None:
        for profile_name, secret in self.secret_names().items():
            self.cloud.put_secret(secret, self.sandbox.profiles[profile_name].read_text())

    def _capture_events(self) -> None:
        """A rule on the stack's bus that copies every result event to a queue we can read."""
        sqs, events = self.client("sqs"), self.client("events")
        self.events_queue_url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.events_queue_url, AttributeNames=["QueueArn"])
        bus = str(self.outputs["EventBusName"])
        events.put_rule(
            Name="capture-results", EventBusName=bus, EventPattern=json.dumps({"source": ["refund-poller"]})
        )
        events.put_targets(
            Rule="capture-results",
            EventBusName=bus,
            Targets=[{"Id": "queue", "Arn": queue_arn["Attributes"]["QueueArn"]}],
        )

    def result_events(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Drain the captured result events (each the stored outcome as ``detail``)."""
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            )
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
            wait_seconds = 0
