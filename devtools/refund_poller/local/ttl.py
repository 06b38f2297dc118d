"""DynamoDB Time to Live: a background sweeper deletes the items whose TTL attribute is in the past.

moto records a table's TTL specification and never deletes anything, so code that assumes an item outlives
what it started (an execution name, a result event) cannot fail locally. AWS deletes an expired item
within a few days, as a service delete (so it leaves global secondary indexes as any delete does), and only
when the attribute is a Number of epoch seconds no more than five years in the past. Locally an item goes
within one sweep interval, against a clock a test may move.

The sweep runs every second beside everything else the stack's process does, so it walks the table as moto
stores it (not ``Table.all_items``, which sorts every item by key with Python comparisons: 59 % of the stack
process's time at N = 5,000 refunds in ``bench.scale``), holds the write lock only to take a snapshot, and
spaces sweeps out when one takes more than ``MAX_SHARE`` of the interval (a large table in a busy process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from moto.dynamodb.models import dynamodb_backends

from refund_poller.local.dynamodb_atomicity import WRITE_LOCK

LOGGER = logging.getLogger(__name__)
FIVE_YEARS_SECONDS = 5 * 365 * 24 * 3600  # older TTL values are ignored by DynamoDB
MAX_SHARE = 0.05  # of the sweeper's wall time spent sweeping; beyond it, sweeps space out


def expired(value: Any, now: float) -> bool:
    """Whether a TTL attribute value (moto's ``DynamoType``) makes its item eligible for deletion at ``now``."""
    if getattr(value, "type", None) != "N":
        return False  # a String, a date text, a list: DynamoDB ignores the item
    text = str(value.value)
    try:
        rough = float(text)
    except ValueError:
        return False
    # Most items expire far from now (days ahead): a float settles those; near the bounds, exact decimals do.
    if rough > now + 1 or rough < now - FIVE_YEARS_SECONDS - 1:
        return False
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        return False
    return now - FIVE_YEARS_SECONDS <= seconds <= Decimal(repr(now))


def _stored_items(table: Any) -> list[Any]:
    """Every item of a moto table, in no order (moto keeps ``{hash: item}``, or ``{hash: {range: item}}``)."""
    if not table.range_key_attr:
        return list(table.items.values())
    return [item for by_range in list(table.items.values()) for item in list(by_range.values())]


def expire_items(account_id: str, region: str, now: float) -> int:
    """Delete every expired item of every table with TTL enabled; returns how many went."""
    backend = dynamodb_backends[account_id][region]
    deleted = 0
    for table_name, table in list(backend.tables.items()):
        ttl = getattr(table, "ttl", None) or {}
        attribute = ttl.get("AttributeName")
        if ttl.get("TimeToLiveStatus") != "ENABLED" or not attribute:
            continue
        with WRITE_LOCK:  # moto's item dicts change under concurrent writes
            items = _stored_items(table)
        for item in items:
            if not expired(item.attrs.get(attribute), now):
                continue
            key = {table.hash_key_attr: item.hash_key.to_json()}
            if table.range_key_attr is not None and item.range_key is not None:
                key[table.range_key_attr] = item.range_key.to_json()
            with WRITE_LOCK:  # an update may have moved the TTL since the scan: check again, then delete
                current = table.get_item(item.hash_key, item.range_key)
                if current is None or not expired(current.attrs.get(attribute), now):
                    continue
                backend.delete_item(table_name, key)
            deleted += 1
    return deleted


class TtlSweeper:
    """Runs :func:`expire_items` every ``interval()`` seconds until stopped (an interval of 0 pauses it)."""

    def __init__(self, account_id: str, region: str, interval: Callable[[], float], clock: Callable[[], float]) -> None:
        self._account_id = account_id
        self._region = region
        self._interval = interval
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dynamodb-ttl", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        last_sweep_s = 0.0
        while True:
            interval = self._interval()
            # A sweep walks every item: on a large table in a busy process, sweep less often rather than take
            # more than MAX_SHARE of the time (AWS itself deletes within days).
            wait = max(interval, last_sweep_s / MAX_SHARE) if interval > 0 else 0.5
            if self._stopping.wait(wait):
                return
            if interval <= 0:
                continue
            started = time.monotonic()
            try:
                expire_items(self._account_id, self._region, self._clock())
            except Exception:  # a table deleted mid-sweep, say: try again next time
                LOGGER.exception("TTL sweep failed; retrying")
            last_sweep_s = time.monotonic() - started
