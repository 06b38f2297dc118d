"""The result event is a contract: every event the local stack publishes (a real run through DevStack) matches
result-event.schema.json, names no field the schema does not describe, and the README's example rule selects
what it says it does. The sample events in events/ match the schema too."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from refund_poller.devstack import FAST_POLICY, DevStack
from tests.integration.stack_support import send, wait_closed

REPO = Path(__file__).resolve().parents[2]
SCHEMA: dict[str, Any] = json.loads(
    resources.files("refund_core.schemas").joinpath("result-event.schema.json").read_text(encoding="utf-8")
)
validate = fastjsonschema.compile(SCHEMA)
DESCRIBED = set(SCHEMA["definitions"]["detail"]["properties"])
FINISHED, CONFLICT = "Refund Inquiry Finished", "Refund Final Status Conflict"


def _readme_rule() -> dict[str, Any]:
    """The first JSON block of the README's "Results and events" section: its example rule."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Results and events", 1)[1]
    match = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert match, "the section shows an event pattern"
    rule: dict[str, Any] = json.loads(match.group(1))
    return rule


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]], str]]:
    """(every event captured, the events the README's rule delivered, this run's id suffix)."""
    run = uuid.uuid4().hex[:6]
    with DevStack(tmp_path_factory.mktemp("contract"), parameter_overrides=FAST_POLICY) as stack:
        sqs, events = stack.client("sqs"), stack.client("events")
        queue_url = sqs.create_queue(QueueName="readme-rule")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus = str(stack.outputs["EventBusName"])
        events.put_rule(Name="readme-rule", EventBusName=bus, EventPattern=json.dumps(_readme_rule()))
        events.put_targets(Rule="readme-rule", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        cases = [
            ("antom", "refundRequestId", f"success--{run} 退款/a:1.0"),
            ("alipayplus", "refundRequestId", f"processing1-success--{run}"),
            ("alphapay", "refundId", f"fail--{run}"),
            ("antom", "refundRequestId", f"processing--{run}"),
            ("antom", "refundRequestId", f"notfound--{run}"),
            ("alipayplus", "refundRequestId", f"denied--{run}"),
        ]
        send(
            stack,
            *(
                {
                    "provider": p,
                    field: ref,
                    "correlationId": f"order {n}",
                }
                for n, (p, field, ref) in enumerate(cases)
            ),
        )
        keys = [f"{p}#default#{'r' if f == 'refundId' else 'rr'}:{ref}" for p, f, ref in cases]
        flip = f"success--flip-{run}"
        send(stack, {"provider": "alipayplus", "refundRequestId": flip})
        wait_closed(stack, [*keys, f"alipayplus#default#rr:{flip}"], timeout=90)
        stack.sandbox.set_script("alipayplus", flip, "fail")  # the provider now contradicts its final answer
        send(stack, {"provider": "alipayplus", "refundRequestId": flip, "force": True})
        captured: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len([e for e in captured if run in json.dumps(e)]) < 9 and time.monotonic() < deadline:
            captured.extend(stack.result_events(wait_seconds=1))
        delivered: list[dict[str, Any]] = []
        for _ in range(3):
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            delivered.extend(json.loads(m["Body"]) for m in answer.get("Messages", []))
        yield [e for e in captured if run in json.dumps(e, ensure_ascii=False)], delivered, run


def test_every_event_the_stack_publishes_matches_the_schema_and_uses_only_described_fields(
    published: tuple[list[dict[str, Any]], list[dict[str, Any]], str],
) -> None:
    events, _, _ = published

    for event in events:
        validate(event)
        assert set(event["detail"]) <= DESCRIBED, set(event["detail"]) - DESCRIBED
    outcomes = sorted((e["detail-type"], e["detail"]["status"]) for e in events)
    assert outcomes == sorted(
        [
            (FINISHED, s)
            for s in ("SUCCESS", "SUCCESS", "FAIL", "UNRESOLVED", "NOT_FOUND", "ERROR", "SUCCESS", "SUCCESS")
        ]
        + [(CONFLICT, "SUCCESS")]
    )


def test_the_readme_rule_delivers_the_final_outcomes_only(
    published: tuple[list[dict[str, Any]], list[dict[str, Any]], str],
) -> None:
    events, delivered, run = published

    mine = [e for e in delivered if run in json.dumps(e, ensure_ascii=False)]
    assert sorted(e["detail"]["status"] for e in mine) == ["FAIL", "SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"]
    assert {e["detail-type"] for e in mine} == {FINISHED}
    assert {e["detail"]["eventId"] for e in mine} <= {e["detail"]["eventId"] for e in events}


@pytest.mark.parametrize("sample", sorted((REPO / "events").glob("result_event_*.json")), ids=lambda p: p.stem)
def test_every_sample_result_event_matches_the_schema(sample: Path) -> None:
    event = json.loads(sample.read_text(encoding="utf-8"))

    validate(event)
    assert set(event["detail"]) <= DESCRIBED


def test_the_schema_refuses_what_the_contract_rules_out() -> None:
    sample = json.loads((REPO / "events" / "result_event_success.json").read_text(encoding="utf-8"))
    broken = [
        {**sample, "detail": {k: v for k, v in sample["detail"].items() if k != "eventId"}},
        {**sample, "detail": {**sample["detail"], "final": False}},  # SUCCESS is final
        {**sample, "detail-type": CONFLICT},  # a conflict event carries finalConflict
    ]

    for event in broken:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate(event)
