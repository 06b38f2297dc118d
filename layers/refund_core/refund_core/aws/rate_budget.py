"""The provider rate budget's shared schedule: one item per (provider, merchant) in the results table.

Item ``rate#<provider>#<merchant>``: ``nextSlot`` (N, epoch seconds), ``loweredRate`` (N, inquiries per second)
and ``loweredAt`` (N) once a rate-limit answer lowered the rate, ``expiresAt`` (TTL, a day after the last use).
Every change is one conditional UpdateItem, atomic on the item, so every Lambda container of the stack takes
its turn from the same schedule (refund_core/domain/rate.py has the arithmetic; docs/internals.md, "Provider
rate budget", the cost and the AWS behaviours relied on).

Taking a turn is usually one UpdateItem: the container remembers the schedule as the last answer showed it
(``ReturnValues``, or ``ReturnValuesOnConditionCheckFailure`` when the condition failed), tries the move that
schedule calls for, and on a failed condition tries again with the item the failure returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from refund_core.domain.rate import (
    LATE_TOLERANCE_SECONDS,
    MAX_AHEAD_SECONDS,
    MAX_KEPT_LATENESS_SECONDS,
    MAX_LEAD_SECONDS,
    MIN_LEAD_SECONDS,
    Grant,
    Plan,
    Schedule,
    plan,
)
from refund_core.store import RATE_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Attempts at one turn: each failed one returns the item as it is, so the next one is informed.
MAX_ATTEMPTS = 4
SCHEDULE_TTL_SECONDS = 86400
# A new container's lead before it has timed a call of its own (DynamoDB answers in milliseconds in-region).
INITIAL_LEAD_SECONDS = 0.1


def rate_key(provider: str, merchant: str) -> str:
    """The schedule item's key (no provider is named ``rate``, so it never meets a refund item)."""
    return f"{RATE_PREFIX}{provider}#{merchant}"


class DynamoDbRateBudget:
    """The rate budget port of :class:`refund_core.service.InquiryService` on the results table."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        default_rate: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lead: float = INITIAL_LEAD_SECONDS,
    ) -> None:
        """``lead``: the first store call's expected latency (it adapts to the calls made)."""
        self._client = client
        self._table = table_name
        self.default_rate = default_rate
        self._clock = clock
        self._sleep = sleep
        self._known: dict[str, Schedule] = {}
        self._lead = lead

    def acquire(self, provider: str, merchant: str, rate: float | None = None) -> Grant:
        """Take the next turn and sleep until it, or say when to come back (over budget)."""
        configured = rate or self.default_rate
        key = rate_key(provider, merchant)
        schedule, calls = self._known.get(key, Schedule()), 0
        step = plan(schedule, configured, self._clock(), self._lead)
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            step = plan(schedule, configured, now, self._lead)
            if step.move == "over":
                return Grant(False, retry_after=step.retry_after, calls=calls)
            try:
                ok, item, slot = self._take(key, schedule, step, now)
            except (BotoCoreError, ClientError):
                # The schedule cannot be read or moved (throttled, unreachable, after the SDK's own retries): no
                # turn, so no inquiry; the poll waits like one over budget rather than failing the refund.
                return Grant(False, retry_after=max(step.spacing, 1.0), calls=calls + 1)
            calls += 1
            answered = self._clock()
            self._lead = min(MAX_LEAD_SECONDS, max(MIN_LEAD_SECONDS, 2 * (answered - now), 0.8 * self._lead))
            schedule = self._known[key] = _schedule(item)
            if not ok:
                continue
            if slot > answered:
                self._sleep(slot - answered)
            late = self._clock() - slot
            if late > MAX_KEPT_LATENESS_SECONDS:
                continue
            if late > LATE_TOLERANCE_SECONDS:
                # Late (the answer came after the turn, or a starved process woke late): a late send could crowd
                # the turns after it, so it goes only if no one has taken one yet and the schedule moves on by
                # the lateness first (one more write); otherwise the turn is given up, never used late.
                pushed, calls = self._push_back(key, slot), calls + 1
                if not pushed:
                    continue
            return Grant(True, delay=self._clock() - now, calls=calls)
        # Contended or late at every attempt: as if over budget for one spacing (the poll waits, it does not fail).
        return Grant(False, retry_after=step.spacing, calls=calls)

    def _push_back(self, key: str, slot: float) -> bool:
        """Move ``nextSlot`` past a late sender's send (lateness, plus the lead for this call's own answer), only if
        it is still the one this sender's turn left (no later turn taken); True when the send may go now."""
        schedule = self._known[key]
        assert schedule.next_slot is not None  # a turn was just taken
        late_by = self._clock() - slot + self._lead + LATE_TOLERANCE_SECONDS
        values = {":ours": schedule.next_slot, ":by": late_by}
        try:
            ok, item = self._update(key, "SET #nextSlot = #nextSlot + :by", "#nextSlot = :ours", values)
        except (BotoCoreError, ClientError):
            return False
        self._known[key] = _schedule(item)
        # The send must still come before the moved turn's lateness allowance runs out.
        return ok and self._clock() <= slot + late_by + LATE_TOLERANCE_SECONDS

    def lower(self, provider: str, merchant: str, rate: float | None = None) -> bool:
        """Halve the rate after a rate-limit answer (once per cooldown however many answers say so)."""
        configured = rate or self.default_rate
        key = rate_key(provider, merchant)
        schedule = self._known.get(key, Schedule())
        for _ in range(2):  # the second time with the item as it really is
            now = self._clock()
            if not schedule.may_lower(now):
                return False
            values: dict[str, float] = {":rate": schedule.lowered(configured, now), ":now": now, ":exp": _expiry(now)}
            try:
                ok, item = self._update(
                    key,
                    "SET #loweredRate = :rate, #loweredAt = :now, #expiresAt = :exp",
                    _same_lowering(schedule, values),
                    values,
                )
            except (BotoCoreError, ClientError):
                return False  # best effort: the poll's own wait doubled anyway, and the next answer tries again
            schedule = self._known[key] = _schedule(item)
            if ok:
                return True
        return False

    def _take(self, key: str, schedule: Schedule, step: Plan, now: float) -> tuple[bool, dict[str, Any], float]:
        """One attempt at a turn: (taken, the item after or as it was, the turn's instant)."""
        values: dict[str, float] = {":exp": _expiry(now)}
        if step.move == "idle":  # free by our earliest instant: that is the turn, the next one a spacing later
            values[":slot"], values[":next"] = step.slot, step.slot + step.spacing
            update = "SET #nextSlot = :next, #expiresAt = :exp"
            free = "(attribute_not_exists(#nextSlot) OR #nextSlot <= :slot)"
        else:  # queue behind the turns already taken, at most MAX_AHEAD_SECONDS ahead (plan() checked)
            earliest = now + self._lead
            values[":spacing"], values[":earliest"] = step.spacing, earliest
            values[":horizon"] = earliest + MAX_AHEAD_SECONDS
            update = "SET #nextSlot = #nextSlot + :spacing, #expiresAt = :exp"
            free = "#nextSlot BETWEEN :earliest AND :horizon"
        ok, item = self._update(key, update, f"{free} AND {_same_lowering(schedule, values)}", values)
        # A queued turn is where nextSlot was when the update applied.
        slot = float(item["nextSlot"]["N"]) - step.spacing if ok and step.move == "queue" else step.slot
        return ok, item, slot

    def _update(
        self, key: str, update: str, condition: str, values: Mapping[str, float]
    ) -> tuple[bool, dict[str, Any]]:
        """One conditional UpdateItem: (True, item after) or (False, item as it was: empty when absent)."""
        names = ("nextSlot", "loweredRate", "loweredAt", "expiresAt")
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={f"#{n}": n for n in names if f"#{n}" in f"{update} {condition}"},
                ExpressionAttributeValues={k: {"N": _number(v)} for k, v in values.items()},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            return False, dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
        return True, dict(answer.get("Attributes") or {})


def _same_lowering(schedule: Schedule, values: dict[str, float]) -> str:
    """The condition that the rate was not lowered since this schedule was read (so the spacing is right)."""
    if schedule.lowered_at is None:
        return "attribute_not_exists(#loweredAt)"
    values[":seenLoweredAt"] = schedule.lowered_at
    return "#loweredAt = :seenLoweredAt"


def _schedule(item: Mapping[str, Any]) -> Schedule:
    def number(name: str) -> float | None:
        value = item.get(name)
        return float(value["N"]) if value else None

    return Schedule(number("nextSlot"), number("loweredRate"), number("loweredAt"))


def _number(value: float) -> str:
    """Microsecond precision: DynamoDB compares and adds these exactly (numbers are decimals)."""
    return str(Decimal(str(round(value, 6))).normalize())


def _expiry(now: float) -> int:
    return int(now) + SCHEDULE_TTL_SECONDS
