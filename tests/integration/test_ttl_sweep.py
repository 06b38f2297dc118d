"""The local TTL sweep (devtools/refund_poller/local/ttl.py) on tables keyed by hash and by hash and range.

tests/integration/test_strict_local_data.py runs the sweeper inside a LocalCloud; this one calls one sweep at a
time on a moto server of its own, with tables of both key shapes, and checks that a sweep never sorts the table
(moto's ``Table.all_items`` does, and did so every second under the write lock: the stack's main cost at
N = 5,000 refunds).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import pytest
from moto.dynamodb.models.table import Table

from refund_poller.local import ttl
from refund_poller.local.server import ACCOUNT_ID, REGION
from refund_poller.local.ttl import expire_items

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOW = time.time()
ID_ALPHABET = "AZaz09-_ /.:退款號碼テスト한국어€"


def some_id(draw: random.Random) -> str:
    return "".join(draw.choice(ID_ALPHABET) for _ in range(draw.randint(1, 64)))


def make_table(dynamodb: DynamoDBClient, name: str, *, ranged: bool) -> None:
    keys: list[Any] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes: list[Any] = [{"AttributeName": "pk", "AttributeType": "S"}]
    if ranged:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    dynamodb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )


def ttl_value(draw: random.Random) -> tuple[dict[str, str] | None, bool]:
    """A TTL attribute as merchants' items may hold it, and whether a sweep at NOW deletes the item."""
    kind = draw.choice(["past", "future", "ancient", "text", "absent", "fraction", "now"])
    if kind == "past":
        return {"N": str(int(NOW) - draw.randint(1, 10**6))}, True
    if kind == "fraction":
        return {"N": f"{NOW - draw.random() * 100:.3f}"}, True
    if kind == "now":
        return {"N": repr(NOW)}, True  # the very second: expired (DynamoDB deletes at or after it)
    if kind == "future":
        return {"N": str(int(NOW) + draw.randint(2, 10**6))}, False
    if kind == "ancient":  # more than five years old: DynamoDB ignores it
        return {"N": str(int(NOW) - 6 * 365 * 86_400)}, False
    if kind == "text":
        return {"S": str(int(NOW) - 10)}, False
    return None, False


@pytest.mark.parametrize("ranged", [False, True], ids=["hash key", "hash and range key"])
def test_one_sweep_deletes_exactly_the_expired_items_without_sorting_the_table(
    dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch, ranged: bool
) -> None:
    draw = random.Random(f"ttl-sweep-{ranged}")
    table = f"ttl-sweep-{'ranged' if ranged else 'plain'}"
    make_table(dynamodb, table, ranged=ranged)
    expected_left: set[tuple[str, ...]] = set()
    deleting = 0
    for n in range(300):
        key = {"pk": {"S": some_id(draw) + f"#{n % 40 if ranged else n}"}}
        if ranged:
            key["sk"] = {"S": some_id(draw) + f"#{n}"}
        value, goes = ttl_value(draw)
        item = {**key, **({"expiresAt": value} if value is not None else {})}
        dynamodb.put_item(TableName=table, Item=item)
        if goes:
            deleting += 1
        else:
            expected_left.add(tuple(v["S"] for v in key.values()))

    def no_sorting(self: Table) -> Any:
        raise AssertionError("the sweep listed the table through Table.all_items (it sorts every item)")

    monkeypatch.setattr(Table, "all_items", no_sorting)
    deleted = expire_items(ACCOUNT_ID, REGION, NOW)
    monkeypatch.undo()

    left = {
        tuple(item[k]["S"] for k in ("pk", "sk") if k in item)
        for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    }
    assert left == expected_left
    assert deleted == deleting > 0
    assert expire_items(ACCOUNT_ID, REGION, NOW) == 0  # nothing more to do at the same time


def test_sweeps_space_out_when_one_takes_longer_than_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    sweeps: list[float] = []

    def slow_sweep(account_id: str, region: str, now: float) -> int:
        sweeps.append(time.monotonic())
        time.sleep(0.1)  # a large table: a hundred times the interval below
        return 0

    monkeypatch.setattr(ttl, "expire_items", slow_sweep)
    sweeper = ttl.TtlSweeper(ACCOUNT_ID, REGION, interval=lambda: 0.001, clock=time.time)
    sweeper.start()
    time.sleep(1.5)
    sweeper.stop()
    # Every 1 ms, it would sweep about 14 times in 1.5 s; at 5 % of its time, about once every 2 s.
    assert 1 <= len(sweeps) <= 2, sweeps
