"""moto with the local stack's speed-ups (devtools/refund_poller/local/moto_speedups.py) answers as moto without.

The DynamoDB requests are the service's own: the store and the rate budget run against the moto server, every
request they make is captured, then replayed on a fresh table by unpatched and by patched moto; the answers
(items, errors and the items they return) and the table afterwards must be equal. The JSONPaths are every path
of the state machine's definition and EventBridge's default input paths.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import jsonpath_ng
import jsonpath_ng.ext
import pytest
from moto.core.serialize import XFormedAttributePicker
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.events.utils import EventTemplateParser
from moto.sqs.models import Message
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import json_path

from refund_core.aws.rate_budget import DynamoDbRateBudget
from refund_core.domain.inquiry import InquiryMessage
from refund_core.domain.outcome import Observation, ProviderResult, Status
from refund_core.store import DynamoDbRefundStore
from refund_poller.local import moto_speedups
from refund_poller.local.moto_speedups import ParsedDefinitions
from tests.integration.core_support import create_results_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "refund_inquiry.asl.json"
NOW = 1_800_000_000.0
Request = tuple[str, dict[str, Any]]


@pytest.fixture
def unpatched() -> Iterator[None]:
    """moto as it comes, then as it was before the test (a local stack of another test may have patched it)."""
    was_installed = moto_speedups.installed()
    moto_speedups.uninstall()
    yield
    if was_installed:
        moto_speedups.install()
    else:
        moto_speedups.uninstall()


def observed(status: Status, refund_id: str) -> Observation:
    return Observation(
        provider="antom",
        status=status,
        verified=True,
        refund_id=refund_id,
        refund_request_id="rr 退款/1.<script>",
        amount_value="100" if status is Status.SUCCESS else None,
        amount_currency="USD" if status is Status.SUCCESS else None,
        result=ProviderResult("SUCCESS", "S", "success"),
    )


def service_requests(dynamodb: DynamoDBClient) -> list[Request]:
    """Every DynamoDB request of a refund's life (claim, polls, close, a refused late write) and rate turns."""
    captured: list[Request] = []

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        captured.append((model.name, copy.deepcopy(params)))

    dynamodb.meta.events.register("provide-client-params.dynamodb.*", capture)
    table = create_results_table(dynamodb)
    captured.clear()  # the table itself is made again for each replay
    store = DynamoDbRefundStore(dynamodb, table)
    message = InquiryMessage(provider="antom", refund_request_id="rr 退款/1.<script>")
    key = store.resolve(message, now=NOW).key
    claim = store.claim(message, key, message_id="m-1", now=NOW, window_end=NOW + 60)
    store.set_execution(key, claim.window, "arn:aws:states:us-east-1:123456789012:execution:sm:e-1")
    store.record(key, claim.window, observed(Status.PROCESSING, "r:1"), now=NOW + 1)
    store.record(key, claim.window, observed(Status.PROCESSING, "r:1"), now=NOW + 2)
    store.record_and_close(key, claim.window, observed(Status.SUCCESS, "r:1"), Status.SUCCESS, None, now=NOW + 3)
    store.record(key, claim.window, observed(Status.PROCESSING, "r:1"), now=NOW + 4)  # refused: window closed
    store.get(key)
    budget = DynamoDbRateBudget(dynamodb, table, 1000.0, sleep=lambda _: None)
    for _ in range(3):
        budget.acquire("antom", "default")
    dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", capture)
    return [(name, params) for name, params in captured if params.get("TableName") == table]


def replay(dynamodb: DynamoDBClient, requests: list[Request]) -> Any:
    """The answers to ``requests`` on a fresh table of the same shape, then the table's items (the fresh table's
    name, which the answers carry, replaced by ``TABLE``)."""
    table = create_results_table(dynamodb)
    answers: list[Any] = []
    for name, params in requests:
        method = getattr(dynamodb, _snake(name))
        try:
            answer = method(**{**params, "TableName": table})
            answer.pop("ResponseMetadata", None)
            answers.append(answer)
        except dynamodb.exceptions.ClientError as error:
            answers.append({"error": error.response["Error"], "item": error.response.get("Item")})
    answers.append(sorted(json.dumps(item, sort_keys=True) for item in dynamodb.scan(TableName=table)["Items"]))
    return json.loads(json.dumps(answers, default=str).replace(table, "TABLE"))


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def test_the_service_s_dynamodb_requests_get_the_same_answers_patched_and_unpatched(
    dynamodb: DynamoDBClient, unpatched: None
) -> None:
    requests = service_requests(dynamodb)
    assert {name for name, _ in requests} >= {"GetItem", "UpdateItem"}
    assert any("ConditionExpression" in params for _, params in requests)
    plain = replay(dynamodb, requests)
    moto_speedups.install()
    assert replay(dynamodb, requests) == plain
    # and a refused write's answer (ReturnValuesOnConditionCheckFailure) was among them
    assert any(isinstance(answer, dict) and answer.get("item") for answer in plain)
    assert any(isinstance(answer, dict) and '{"M": ' in json.dumps(answer.get("Attributes")) for answer in plain)


def test_update_expressions_are_parsed_once_per_text_and_items_skip_the_reflective_serializer(
    dynamodb: DynamoDBClient, unpatched: None
) -> None:
    requests = service_requests(dynamodb)
    expressions = {params["UpdateExpression"] for _, params in requests if "UpdateExpression" in params}
    table = create_results_table(dynamodb)
    item = next(params for name, params in requests if name == "UpdateItem")
    dynamodb.update_item(**{**item, "TableName": table})

    def member_lookups() -> int:
        calls = 0
        original = XFormedAttributePicker.get_possible_keys

        def counting(picker: Any, context: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(picker, context)

        XFormedAttributePicker.get_possible_keys = counting  # type: ignore[method-assign,assignment]
        try:
            dynamodb.get_item(TableName=table, Key=item["Key"], ConsistentRead=True)
        finally:
            XFormedAttributePicker.get_possible_keys = original  # type: ignore[method-assign]
        return calls

    unpatched_lookups = member_lookups()
    moto_speedups.install()
    for text in expressions:
        assert UpdateExpressionParser.make(text) is UpdateExpressionParser.make(text)
    # moto looks up all ten AttributeValue members of every attribute by reflection; patched, none of them
    assert member_lookups() < unpatched_lookups / 5


def asl_paths() -> set[str]:
    paths: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith("$") and not node.startswith("$$"):
            paths.add(node)

    walk(json.loads(ASL.read_text(encoding="utf-8")))
    return paths


def test_jsonpaths_of_the_state_machine_and_eventbridge_parse_the_same_and_once(unpatched: None) -> None:
    paths = asl_paths() | set(EventTemplateParser.DEFAULT_EVENT_INPUT_PATHS_MAP.values())
    assert len(paths) > 5
    document = {
        "detail": {"status": "SUCCESS"},
        "id": "e-1",
        "state": {"polling": {"intervalSeconds": 1}, "key": "antom#default#rr:1"},
        "poll": {"outcome": "PROCESSING", "closed": False, "waitSeconds": 1},
    }
    parsers = (vars(jsonpath_ng)["parse"], vars(jsonpath_ng.ext)["parse"])
    plain = {(path, index): outcome(parse, path, document) for path in paths for index, parse in enumerate(parsers)}
    assert sum(1 for result in plain.values() if result[0] == "ok") > 5
    moto_speedups.install()
    patched_parsers = (vars(result_path)["parse"], vars(json_path)["parse"])
    assert patched_parsers != parsers
    assert vars(jsonpath_ng.ext)["parse"] is patched_parsers[1]  # what EventBridge imports at each call
    for (path, index), result in plain.items():
        parse = patched_parsers[index]
        assert outcome(parse, path, document) == result
        assert outcome(parse, path, document) == result  # a second time: from the cache, or failing again
        if result[0] == "ok":
            assert parse(path) is parse(path)


def outcome(parse: Any, path: str, document: Any) -> tuple[str, Any, Any]:
    """What parsing ``path`` gives: the expression and what it finds in ``document``, or the error."""
    try:
        expression = parse(path)
    except Exception as error:  # a text that is not a JSONPath must fail the same way
        return ("error", type(error).__name__, str(error))
    return ("ok", expression, [match.value for match in expression.find(document)])


def queue_life(sqs: Any, name: str) -> list[Any]:
    """A queue's counts as messages are sent, delayed, received and deleted (what the starter's poller does)."""
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "600"})["QueueUrl"]
    counted: tuple[str, ...] = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed")
    counted += ("ApproximateNumberOfMessagesNotVisible", "MessageRetentionPeriod")
    seen: list[Any] = []

    def counts() -> None:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        seen.append({name: attributes[name] for name in counted})

    for first in range(0, 30, 10):
        entries: Any = [{"Id": str(i), "MessageBody": f"m{first + i}"} for i in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    counts()
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
    seen.append(len(received))
    counts()
    sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)]
    )
    counts()
    return seen


def test_a_queue_s_counts_and_receives_are_the_same_patched_and_unpatched(moto_endpoint: str, unpatched: None) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    plain = queue_life(sqs, "speedups-plain")
    assert plain[0]["ApproximateNumberOfMessages"] == "30"
    assert plain[0]["ApproximateNumberOfMessagesDelayed"] == "1"
    moto_speedups.install()
    assert queue_life(sqs, "speedups-patched") == plain


def test_receiving_from_a_queue_walks_its_messages_once_not_per_message_received(
    moto_endpoint: str, unpatched: None
) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")

    def visibility_reads(name: str) -> int:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        for first in range(0, 50, 10):
            entries: Any = [{"Id": str(i), "MessageBody": f"m{first + i}"} for i in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        reads = 0
        original = Message.__dict__["visible"]

        def counting(message: Message) -> bool:
            nonlocal reads
            reads += 1
            return bool(original.fget(message))

        setattr(Message, "visible", property(counting))  # noqa: B010
        try:
            assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 10
        finally:
            setattr(Message, "visible", original)  # noqa: B010
        return reads

    unpatched_reads = visibility_reads("speedups-walks-plain")
    moto_speedups.install()
    assert visibility_reads("speedups-walks-patched") < unpatched_reads / 5


def test_each_execution_gets_a_fresh_copy_of_the_parsed_program_equal_to_a_new_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = {"Partition": "aws", "MissedPollLimit": "8"}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return names.get(name, f"arn:aws:lambda:us-east-1:123456789012:function:{name}")

    definition = re.sub(r"\$\{(\w+)\}", substitute, ASL.read_text(encoding="utf-8"))
    definitions = ParsedDefinitions(lambda text: AmazonStateLanguageParser.parse(text)[0])
    first = definitions.program(definition)

    def no_deepcopy(value: Any, memo: Any = None) -> Any:
        raise AssertionError("copied object by object")

    monkeypatch.setattr(copy, "deepcopy", no_deepcopy)
    second = definitions.program(definition)
    assert second is not first
    fresh = AmazonStateLanguageParser.parse(definition)[0]
    assert pickle.dumps(second) == pickle.dumps(first) == pickle.dumps(fresh)


def test_an_account_s_backends_are_found_without_moto_s_lock_and_reset_still_clears_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.core.base_backend import BackendDict
    from moto.sqs.models import sqs_backends

    moto_speedups.install()
    account = "210987654321"  # an account no other test touches
    created: list[str] = []
    original = BackendDict._create_account_specific_backend

    def counting(self: Any, account_id: str) -> None:
        created.append(account_id)
        original(self, account_id)

    monkeypatch.setattr(BackendDict, "_create_account_specific_backend", counting)
    sqs_backends[account]["us-east-1"].create_queue("speedups-backends")
    first = sqs_backends[account]
    for _ in range(50):
        assert sqs_backends[account] is first
    assert created == [account]  # moto's path (and its lock) once, when the account first appears
    instances: list[Any] = BackendDict._instances  # type: ignore[misc]  # moto's class-level registry
    assert sqs_backends in instances  # registered, so a reset finds it

    BackendDict.reset()
    assert account not in dict.keys(sqs_backends)
    assert sqs_backends[account]["us-east-1"].list_queues("") == []  # a fresh backend: the queue went
    assert created == [account, account] and sqs_backends in instances
