"""The results table: one item per refund, written with conditional updates.

Rules (architecture.md, "Stored item"; docs/internals.md, "Results table"):

- identity: every id form of a refund (``r:<refundId>``, ``rr:<refundRequestId>``) has an alias item naming the
  refund item, created with ``attribute_not_exists`` and read with strongly consistent reads, so messages with
  any mix of a refund's ids meet on one item without the eventually consistent index;
- windows: every write of a poll is conditional on the window it belongs to (``windowId``, still polling), so a
  superseded loop cannot write and ends;
- finality: a final status is never overwritten by a weaker observation nor by the opposite final status (that
  is recorded as a conflict); counters use atomic ``ADD`` so concurrent writers cannot lose an update;
- outbox: the write that closes a window also marks its result event pending (``eventPending``, ``eventId``,
  and ``pendingSince`` for the sweep's sparse ``pendingEvents-index``);
  the flag is cleared only after the event was published.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from refund_core.domain.claim import (
    CONFLICT_EVENT_ID,
    CONFLICT_EVENT_PENDING,
    EVENT_ID,
    EVENT_PENDING,
    IDLE,
    POLLING,
    ClaimVerdict,
    has_pending_event,
    judge_claim,
)
from refund_core.domain.inquiry import (
    ALIAS_PREFIX,
    REFUND_ID,
    REQUEST_ID,
    InquiryMessage,
    RefundRef,
    new_window_id,
)
from refund_core.domain.outcome import Observation, Status
from refund_core.domain.tail import TAIL_STATE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REFUND_ID_INDEX = "refundId-index"
# The outbox's sparse index: only items with a pending event carry its keys, so the sweeper finds them with a Query.
PENDING_INDEX = "pendingEvents-index"
PENDING_SHARD = "pendingShard"
PENDING_SINCE = "pendingSince"
PENDING_SHARD_VALUE = "pending"
SUPERSEDED_REASON = "superseded by a newer window"
# Notifications (docs/internals.md, "Notifications"): the item's and the event's ``source``, and the close reason.
NOTIFICATION_SOURCE = "notification"
FINAL_BY_NOTIFICATION = "final by notification"
_INTERNAL = frozenset(
    {"pk", "refundIdKey", "claimMessageId", "aliasedIds", PENDING_SHARD, PENDING_SINCE, "tailMessageId"}
)
# The long tail's attributes (docs/long-tail.md): a new window starts without them.
TAIL_ATTRIBUTES = (
    "nextPollAt",
    "tailAttempt",
    "tailPlan",
    "tailScheduleName",
    "tailMessageId",
    "tailHistory",
    "gaveUp",
)
# RecordEveryPoll false: the item's polls / lastPollAt are written on status changes and at the close only (the CLI
# says so while a window is open); by the time an event goes out the count is whole, so events leave it out.
POLLS_LIVE = "pollsLive"
_OUTBOX_FLAGS = frozenset({EVENT_PENDING, CONFLICT_EVENT_PENDING, EVENT_ID, CONFLICT_EVENT_ID, POLLS_LIVE})
# Statuses an observation may write; UNKNOWN (a failed poll) leaves the stored status as it was.
STATUS_WRITERS = _STATUS_WRITERS = frozenset({Status.SUCCESS, Status.FAIL, Status.PROCESSING, Status.NOT_FOUND})
# The rate budget's schedule items (refund_core/aws/rate_budget.py) share the table: scans skip them.
RATE_PREFIX = "rate#"
# An alias outlives every write of its refund item: the item's expiry moves with each poll of a window (at most
# the state machine's 30-minute timeout after the claim), the alias's is set this much further at each claim.
ALIAS_TTL_MARGIN_SECONDS = 2 * 86400
_ALIAS_REFRESH_SECONDS = 86400
# How long after a close only the closer (or its retry) publishes the window's pending event.
OUTBOX_GRACE_SECONDS = 60
_serializer, _deserializer = TypeSerializer(), TypeDeserializer()

WriteOutcome = Literal["written", "superseded", "closed", "duplicate", "conflict", "blocked", "later"]


class ClaimContendedError(RuntimeError):
    """Another writer kept changing the item while this one tried to claim it (retry later)."""


@dataclass(frozen=True, slots=True)
class Window:
    """The polling window a write belongs to: ``windowId`` (random per claim) or, for loops started before
    window ids existed, the claim's ``generation``."""

    generation: int
    window_id: str | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Window:
        return cls(int(state["generation"]), state.get("windowId"))

    def holds(self, item: Mapping[str, Any] | None) -> bool:
        """True while ``item`` is still in this window and polling."""
        return item is not None and self.owns(item) and item.get("pollingState") == POLLING

    def owns(self, item: Mapping[str, Any] | None) -> bool:
        if not item:
            return False
        if self.window_id is not None:
            return item.get("windowId") == self.window_id
        return int(item.get("generation", 0)) == self.generation


@dataclass(frozen=True, slots=True)
class Claim:
    proceed: bool
    reason: str
    generation: int = 0
    window_id: str | None = None
    # The item as read when it still had a result event to publish (see ``may_publish``); ``blocked``: this message
    # wants a new window, which cannot open before that event is published.
    pending: dict[str, Any] | None = None
    blocked: bool = False
    # The schedule of the tail attempt this claim superseded (deleting it is an optimisation: a late firing finds
    # a newer window and does nothing).
    superseded_tail: str | None = None

    @property
    def window(self) -> Window:
        return Window(self.generation, self.window_id)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Which refund item a message's ids name (``key``) and the forms that disagreed (ids of another item)."""

    key: str
    unlinked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Written:
    """What a window's write did: ``written``; ``superseded`` (a newer window owns the item: nothing written);
    ``closed`` (this window was closed already, e.g. a retried invocation: nothing written)."""

    outcome: WriteOutcome
    item: dict[str, Any] = field(default_factory=dict)  # the stored item after the write (or as found)
    conflict: dict[str, Any] | None = None  # the final-status conflict this write recorded


class DynamoDbRefundStore:
    """:class:`RefundStore` on a DynamoDB table (key ``pk``, GSI ``refundId-index``)."""

    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int = 90) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86400

    def get(self, key: str) -> dict[str, Any] | None:
        answer = self._client.get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return load_item(answer["Item"]) if "Item" in answer else None

    # -- identity ---------------------------------------------------------------------------------------------

    def resolve(self, message: InquiryMessage, *, now: float) -> Resolution:
        """The refund item this message's ids belong to, binding aliases for the forms not seen before.

        Forms are bound in ``message.refs`` order (``r:`` before ``rr:``), each with a conditional put: two
        messages sharing a form meet on that form's alias item and the loser adopts the winner's target, so
        concurrent messages with overlapping ids always agree on one item (docs/internals.md, "Identity").
        """
        refs = message.refs
        found = {ref: self._alias(ref) for ref in refs}
        known = [alias["target"] for alias in found.values() if alias]
        wanted = known[0] if known else message.proposed_ref.item_key
        key: str | None = None
        unlinked: list[str] = []
        for ref in refs:
            alias = found[ref]
            if alias is None or int(alias.get("expiresAt", 0)) < now + self._ttl_seconds + _ALIAS_REFRESH_SECONDS:
                target = self._bind_alias(ref, alias["target"] if alias else (key or wanted), now)
            else:
                target = str(alias["target"])
            if key is None:
                key = target
            elif target != key:
                unlinked.append(ref.form)  # already bound to another item: see "what it cannot link"
        assert key is not None  # a valid message carries at least one id
        return Resolution(key, tuple(unlinked))

    def find_key(
        self, provider: str, merchant: str, *, refund_id: str | None = None, refund_request_id: str | None = None
    ) -> str | None:
        """The key of the refund item known by either id (request id first), without binding anything."""
        for kind, value in ((REQUEST_ID, refund_request_id), (REFUND_ID, refund_id)):
            if value:
                alias = self._alias(RefundRef(provider, merchant, kind, value))
                if alias:
                    return str(alias["target"])
        return None

    def key_for_refund_id(self, provider: str, merchant: str, refund_id: str) -> str | None:
        """The key of the item that knows this provider refund id, if any (strongly consistent: its alias)."""
        return self.find_key(provider, merchant, refund_id=refund_id)

    def _alias(self, ref: RefundRef) -> dict[str, Any] | None:
        return self.get(ref.alias_key)

    def _bind_alias(self, ref: RefundRef, key: str, now: float) -> str:
        """Point ``ref``'s alias at ``key`` unless it already names another item; returns the item it names."""
        update = _Update().set("target", key, if_absent=True)
        update.set("expiresAt", int(now) + self._ttl_seconds + ALIAS_TTL_MARGIN_SECONDS)
        target = update.name("target")
        condition = f"attribute_not_exists({target}) OR {target} = {update.value(key)}"
        _, item = self._apply(ref.alias_key, update, condition)  # on a failed condition: the alias as it is
        return str(item["target"])

    def _learn_aliases(self, key: str, item: dict[str, Any], observation: Observation, now: float) -> dict[str, Any]:
        """Bind the ids a trusted answer revealed (the provider's refundId, typically) to this item."""
        if not observation.verified or observation.distrust:
            return item
        provider, merchant, _ = key.split("#", 2)
        bound = item.get("aliasedIds") or ()
        revealed = [
            RefundRef(provider, merchant, kind, value)
            for kind, value in ((REFUND_ID, observation.refund_id), (REQUEST_ID, observation.refund_request_id))
            if value
        ]
        new = [ref for ref in revealed if not ref.bound_in(bound)]
        if not new or len(new) == len(revealed):  # an answer must confirm an id we know before it may add one
            return item
        update = _Update()
        for ref in new:
            if self._bind_alias(ref, key, now) != key:  # the other id already started an item of its own
                update.set("unlinkedIds", sorted({*(item.get("unlinkedIds") or ()), ref.form}))
        update.add_to_set("aliasedIds", {ref.tag for ref in new})
        ok, after = self._apply(key, update, "attribute_exists(pk)")
        return after if ok else item

    # -- claims -----------------------------------------------------------------------------------------------

    def claim(self, message: InquiryMessage, key: str, *, message_id: str, now: float, window_end: float) -> Claim:
        """Take the right to poll this refund for one new window (optimistic lock on ``generation``).

        A claim never proceeds over an unpublished result event (``pending``): the caller publishes it first,
        so a new window's close cannot overwrite it.
        """
        for _ in range(3):
            item = self.get(key)
            verdict: ClaimVerdict = judge_claim(item, message_id=message_id, force=message.force, now=now)
            if has_pending_event(item):
                blocked = verdict.verdict != "skip"
                return Claim(False, verdict.reason, pending=item, blocked=blocked)
            if verdict.verdict == "skip":
                return Claim(False, verdict.reason)
            generation = int((item or {}).get("generation", 0))
            window_id = new_window_id()
            if self._try_claim(message, key, message_id, generation, window_id, now, window_end):
                pending_tail = (item or {}).get("tailScheduleName") if _tail_pending(item) else None
                return Claim(True, verdict.reason, generation + 1, window_id, superseded_tail=pending_tail)
        raise ClaimContendedError(f"could not claim {key}: concurrent writers")

    def _try_claim(
        self,
        message: InquiryMessage,
        key: str,
        message_id: str,
        generation: int,
        window_id: str,
        now: float,
        window_end: float,
    ) -> bool:
        update = (
            _Update()
            .set("generation", generation + 1)
            .set("windowId", window_id)
            .set("pollingState", POLLING)
            .set("claimMessageId", message_id)
            .set("claimedAt", _iso(now))
            .set("windowEndsAt", Decimal(str(round(window_end, 3))))
            .set("provider", message.provider)
            .set("merchant", message.merchant)
            .set("status", Status.UNKNOWN.value, if_absent=True)
            .set("final", False, if_absent=True)
            .set("expiresAt", int(now) + self._ttl_seconds)
            .set("executionArn", None)
            .remove(*TAIL_ATTRIBUTES)
        )
        for attribute, value in (
            ("refundId", message.refund_id),
            ("refundRequestId", message.refund_request_id),
            ("correlationId", message.correlation_id),
        ):
            if value:
                update.set(attribute, value)
        if message.refund_id:
            update.set(
                "refundIdKey", RefundRef(message.provider, message.merchant, REFUND_ID, message.refund_id).item_key
            )
        update.add_to_set("aliasedIds", {ref.tag for ref in message.refs})
        generation_name = update.name("generation")
        same = f"attribute_not_exists(pk) OR {update.generation_is(generation)}"
        if generation == 0:
            same += f" OR attribute_not_exists({generation_name})"
        condition = f"({same}) AND {update.flag_off(EVENT_PENDING)} AND {update.flag_off(CONFLICT_EVENT_PENDING)}"
        ok, _ = self._apply(key, update, condition)
        return ok

    def set_execution(self, key: str, window: Window, execution_arn: str, *, polls: int = 0) -> bool:
        """Record the loop's ARN; False when the window was superseded meanwhile (that loop will end itself).

        Still recorded when the window closed already (a short window on a busy account can close before
        StartExecution returns): the item must name the execution that polled it, for ``trace`` and the console.
        ``polls``: polls made but not counted yet (the starter's, when :meth:`record_first` came too late).
        """
        update = _Update().set("executionArn", execution_arn)
        if polls:
            update.add("polls", polls)
        ok, _ = self._apply(key, update, update.of_window(window))
        return ok

    def record_first(
        self, key: str, window: Window, observation: Observation, execution_arn: str, *, now: float
    ) -> Written:
        """The starter's first answer and the loop's ARN in one write (RecordEveryPoll false: one write less per
        refund). Written after StartExecution, so a poll of the loop may have written first: the write is also
        conditional on no later poll recorded (``lastPollAt``) and answers ``later`` then (nothing written), or
        ``closed`` when the loop closed the window; either way the caller records the ARN alone."""
        return self._write(key, window, observation, None, None, now, live=False, execution_arn=execution_arn)

    # -- a window's writes ------------------------------------------------------------------------------------

    def record(
        self, key: str, window: Window, observation: Observation, *, now: float, polls: int = 1, live: bool = True
    ) -> Written:
        """Store one observation of a window that goes on polling: counters always, the status when it does not
        regress, nothing at all when the window is no longer the item's. ``polls``: the polls this write accounts
        for (more than 1 when polls in between were not recorded); ``live`` False (RecordEveryPoll false) marks
        the item ``pollsLive = false``: its poll count and last poll are written on status changes and the close."""
        return self._write(key, window, observation, None, None, now, polls=polls, live=live)

    def enter_tail(
        self,
        key: str,
        window: Window,
        observation: Observation,
        tail: Mapping[str, Any],
        *,
        now: float,
        polls: int = 1,
        live: bool = True,
    ) -> Written:
        """Store the observation and leave the window waiting for its next tail attempt (``pollingState`` TAIL).

        ``tail``: ``tailAttempt`` (the pending attempt), ``nextPollAt``, ``tailPlan``, ``tailScheduleName`` and,
        after a tail attempt, ``history`` (that attempt's entry for ``tailHistory``). No event: the window is
        still open. Conditional on the window, as every loop write.
        """
        return self._write(key, window, observation, None, None, now, tail=tail, polls=polls, live=live)

    def take_tail_attempt(
        self, key: str, window_id: str, attempt: int, *, message_id: str, now: float
    ) -> tuple[bool, dict[str, Any]]:
        """Take tail attempt ``attempt`` of window ``window_id`` for this message: (True, item) only while that
        attempt is pending and the refund is not final, or for a redelivery of the message that took it (its
        process died before the attempt's write). A late, duplicate or superseded firing gets False and the item
        as it is, and must not ask the provider."""
        update = _Update().set("pollingState", POLLING).set("tailMessageId", message_id)
        update.set("lastTailFiredAt", _iso(now))
        state, taker = update.name("pollingState"), update.name("tailMessageId")
        condition = (
            f"{update.name('windowId')} = {update.value(window_id)} AND {update.name('tailAttempt')} = "
            f"{update.value(attempt)} AND {update.not_final()} AND ({state} = {update.value(TAIL_STATE)} OR "
            f"({state} = {update.value(POLLING)} AND {taker} = {update.value(message_id)}))"
        )
        return self._apply(key, update, condition)

    def record_and_close(
        self,
        key: str,
        window: Window,
        observation: Observation | None,
        status: Status,
        reason: str | None,
        *,
        now: float,
        tail: Mapping[str, Any] | None = None,
        polls: int = 1,
        live: bool = True,
    ) -> Written:
        """The window's last observation and its close as one conditional write, marking its result event pending.

        One write: the final answer, the end of the window and the outbox flag appear together (no reader sees a
        final status on an item still polling; a crash after this write cannot lose the event). ``tail``: a tail
        attempt's ``history`` entry and ``gaveUp``.
        """
        return self._write(key, window, observation, status, reason, now, tail=tail, polls=polls, live=live)

    def close(
        self,
        key: str,
        window: Window,
        status: Status,
        reason: str | None,
        *,
        now: float,
        tail: Mapping[str, Any] | None = None,
    ) -> Written:
        """End a window without a new observation (and without counting a poll)."""
        return self._write(key, window, None, status, reason, now, tail=tail, polls=0)

    def _write(
        self,
        key: str,
        window: Window,
        observation: Observation | None,
        closing: Status | None,
        reason: str | None,
        now: float,
        *,
        tail: Mapping[str, Any] | None = None,
        polls: int = 1,
        live: bool = True,
        execution_arn: str | None = None,
    ) -> Written:
        keep_status = False  # set once the item turned out final and this write would change its status
        stored_final: dict[str, Any] | None = None
        for _ in range(3):
            written = None if keep_status else _written_status(observation, closing)
            fields = _observation_fields(observation, full=written is not None) if observation else {}
            update = self._counters(observation, now, polls, "result" in fields) if observation else _Update()
            if observation is None and polls > 0:  # a close without an observation still counts unrecorded polls
                update.add("polls", polls)
            if not live:
                update.set(POLLS_LIVE, False)
            if observation is not None:
                for attribute, value in fields.items():
                    update.set(attribute, value)
                fields_written = written is not None and observation.status in _STATUS_WRITERS
                if fields_written and observation.refund_id and not observation.distrust:  # for the index (unused)
                    provider, merchant, _ = key.split("#", 2)
                    update.set("refundIdKey", RefundRef(provider, merchant, REFUND_ID, observation.refund_id).item_key)
            condition = update.in_window(window)
            if execution_arn is not None:
                update.set("executionArn", execution_arn)
                last = update.name("lastPollAt")
                condition += f" AND (attribute_not_exists({last}) OR {last} <= {update.value(_iso(now))})"
            if written is not None:
                update.set("status", written.value).set("final", written.final)
                if written.final:
                    update.set("finalAt", _iso(now), if_absent=True)
                    update.set("finalVerified", bool(observation and observation.verified), if_absent=True)
                    condition += (
                        f" AND ({update.not_final()} OR {update.name('status')} = {update.value(written.value)})"
                    )
                else:
                    condition += f" AND {update.not_final()}"
            conflict = None
            if stored_final is not None and observation is not None and _contradicts(stored_final, observation):
                conflict = _conflict(stored_final, observation, now)
                update.set("finalConflict", conflict).add("finalConflictCount", 1)
                update.set(CONFLICT_EVENT_PENDING, True).set(CONFLICT_EVENT_ID, uuid.uuid4().hex)
            if tail is not None:
                _tail_fields(update, tail, pending=closing is None)
                if closing is None:
                    condition += f" AND {update.not_final()}"  # a final refund has no tail
            if closing is not None:
                update.set("pollingState", IDLE).set("resolvedAt", _iso(now)).set("reason", reason)
                update.set(EVENT_PENDING, True).set(EVENT_ID, uuid.uuid4().hex)
            if conflict is not None or closing is not None:
                update.set(PENDING_SHARD, PENDING_SHARD_VALUE).set(PENDING_SINCE, int(now), if_absent=True)
            ok, item = self._apply(key, update, condition)
            if ok:
                if observation is not None:
                    item = self._learn_aliases(key, item, observation, now)
                return Written("written", item, conflict)
            if not window.holds(item):
                # A window waiting for its next tail attempt was closed for this loop too (a retried invocation).
                owned = window.owns(item) and item.get("pollingState") in (IDLE, TAIL_STATE)
                return Written("closed" if owned else "superseded", item)
            if execution_arn is not None and str(item.get("lastPollAt", "")) > _iso(now):
                return Written("later", item)  # a later poll of the loop was recorded first: keep its answer
            if tail is not None and closing is None and item.get("final"):
                # Final by another channel (a notification) while this window polled: no tail, close keeping it.
                closing, reason = Status(item["status"]), "final status recorded meanwhile by another channel"
                tail = {"history": tail["history"]} if tail.get("history") else None
            keep_status, stored_final = True, item  # still our window: the item is final, keep its status
        raise ClaimContendedError(f"could not write {key}: concurrent writers")

    # -- notifications ----------------------------------------------------------------------------------------

    def record_notification(
        self, key: str, observation: Observation, *, now: float, forms: Iterable[str] = ()
    ) -> Written:
        """Store a verified final notification with the rules a poll's answer follows (docs/internals.md,
        "Notifications"); ``forms`` are the id forms the notification bound to this item.

        Outcomes: ``closed`` (it closed the open polling window: the loop ends at its next step), ``written`` (no
        window was open: the item, created if need be, is final and its event pending), ``duplicate`` (the item
        already says so, or already records this contradiction: nothing written), ``conflict`` (the opposite
        final status is stored: it stays, the conflict is recorded), ``blocked`` (a finished window's event is
        still pending: publish it, then call again). Raises ClaimContendedError when writers keep racing it.
        """
        for _ in range(3):
            item = self.get(key)
            if item and item.get("final"):
                if item.get("status") == observation.status.value or (
                    (item.get("finalConflict") or {}).get("observed", {}).get("status") == observation.status.value
                ):
                    return Written("duplicate", item)
                update, condition = self._notified_conflict(item, observation, now)
                ok, after = self._apply(key, update, condition)
                if ok:
                    return Written("conflict", after, after["finalConflict"])
                continue
            polling = item is not None and item.get("pollingState") == POLLING
            if item is not None and not polling and has_pending_event(item):
                return Written("blocked", item)
            update = self._notified_final(key, item, observation, now, forms)
            if polling:
                assert item is not None
                condition = update.in_window(Window(int(item.get("generation", 0)), item.get("windowId")))
            elif item is None:
                condition = f"attribute_not_exists({update.name('pk')})"
            else:
                condition = (
                    f"{update.name('pollingState')} <> {update.value(POLLING)} AND {update.flag_off(EVENT_PENDING)}"
                )
            ok, after = self._apply(key, update, f"({condition}) AND {update.not_final()}")
            if ok:
                return Written("closed" if polling else "written", after)
        raise ClaimContendedError(f"could not record the notification for {key}: concurrent writers")

    def _notified_final(
        self, key: str, item: Mapping[str, Any] | None, observation: Observation, now: float, forms: Iterable[str]
    ) -> _Update:
        """The write that makes the item final by notification, closing any window with one pending event."""
        provider, merchant, _ = key.split("#", 2)
        update = _Update()
        for attribute, value in _observation_fields(observation, full=True).items():
            update.set(attribute, value)
        update.set("status", observation.status.value).set("final", True).set("source", NOTIFICATION_SOURCE)
        update.set("finalAt", _iso(now), if_absent=True).set("finalVerified", True, if_absent=True)
        update.set("notifiedAt", _iso(now)).set("lastNotification", _observation_summary(observation))
        update.set("provider", provider).set("merchant", merchant).set("expiresAt", int(now) + self._ttl_seconds)
        update.set("pollingState", IDLE).set("resolvedAt", _iso(now)).set("reason", FINAL_BY_NOTIFICATION)
        update.remove("nextPollAt")  # a pending tail attempt, if any, will find the refund final and do nothing
        update.set(EVENT_PENDING, True).set(EVENT_ID, uuid.uuid4().hex)
        update.set(PENDING_SHARD, PENDING_SHARD_VALUE).set(PENDING_SINCE, int(now), if_absent=True)
        if item is None:
            update.set("polls", 0)
        if observation.refund_id:
            update.set("refundIdKey", RefundRef(provider, merchant, REFUND_ID, observation.refund_id).item_key)
        update.add_to_set("aliasedIds", forms)
        return update

    def _notified_conflict(self, item: Mapping[str, Any], observation: Observation, now: float) -> tuple[_Update, str]:
        """A notification contradicting the stored final status: kept, the conflict and its event recorded."""
        conflict = _conflict(item, observation, now)
        conflict["observed"]["source"] = NOTIFICATION_SOURCE
        update = _Update().set("finalConflict", conflict).add("finalConflictCount", 1)
        update.set("lastNotification", _observation_summary(observation)).set("notifiedAt", _iso(now))
        update.set(CONFLICT_EVENT_PENDING, True).set(CONFLICT_EVENT_ID, uuid.uuid4().hex)
        update.set(PENDING_SHARD, PENDING_SHARD_VALUE).set(PENDING_SINCE, int(now), if_absent=True)
        status = update.name("status")
        condition = (
            f"{status} = {update.value(item.get('status'))} AND {update.name('final')} = {update.value(True)}"
            f" AND attribute_not_exists({update.name('finalConflict')})"
        )
        return update, condition

    def _counters(self, observation: Observation, now: float, polls: int = 1, result_written: bool = False) -> _Update:
        """``result_written``: the same write stores the answer's ``result``, so the summary leaves out its code and
        status (readers take them from ``result``: the item stays under one write unit, see "Results table")."""
        summary = _observation_summary(observation)
        if result_written:
            summary.pop("resultCode", None)
            summary.pop("resultStatus", None)
        return (
            _Update()
            .add("polls", polls)
            .set("firstPollAt", _iso(now), if_absent=True)
            .set("lastPollAt", _iso(now))
            .set("lastObservation", summary)
            .set("expiresAt", int(now) + self._ttl_seconds)
        )

    # -- the outbox -------------------------------------------------------------------------------------------

    def clear_event(self, key: str, event_id: str, *, conflict: bool = False) -> bool:
        """Mark a published event done, only if it is still the pending one (a newer close keeps its own).

        The last pending flag cleared takes the item out of ``pendingEvents-index`` in the same write; while the
        other event is still pending the item stays in it.
        """
        pending, ident = (CONFLICT_EVENT_PENDING, CONFLICT_EVENT_ID) if conflict else (EVENT_PENDING, EVENT_ID)
        other = EVENT_PENDING if conflict else CONFLICT_EVENT_PENDING
        for last in (True, False):
            update = _Update().set(pending, False)
            condition = (
                f"{update.name(ident)} = {update.value(event_id)} AND {update.name(pending)} = {update.value(True)}"
            )
            if last:
                update.remove(PENDING_SHARD, PENDING_SINCE)
                condition += f" AND {update.flag_off(other)}"
            ok, item = self._apply(key, update, condition)
            if ok or item.get(ident) != event_id or item.get(pending) is not True:
                return ok
        return False

    def pending_keys(
        self, *, pending_before: float, limit: int, after: Mapping[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of keys of items whose events have been pending since ``pending_before`` or earlier, oldest
        first (the sparse ``pendingEvents-index``; eventually consistent, so the caller re-reads), and the cursor of
        the next page (``None`` after the last)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "#shard = :shard AND #since <= :before",
            "ExpressionAttributeNames": {"#shard": PENDING_SHARD, "#since": PENDING_SINCE},
            "ExpressionAttributeValues": {
                ":shard": {"S": PENDING_SHARD_VALUE},
                ":before": {"N": str(int(pending_before))},
            },
            "Limit": limit,
        }
        if after is not None:
            request["ExclusiveStartKey"] = after
        answer = self._client.query(**request)
        return [row["pk"]["S"] for row in answer.get("Items", [])], answer.get("LastEvaluatedKey")

    def forget_pending(self, key: str) -> bool:
        """Take an item with no pending event out of ``pendingEvents-index`` (left there by a clear that raced the
        other flag's, or by the state machine's clear, which cannot see the conflict flag)."""
        update = _Update().remove(PENDING_SHARD, PENDING_SINCE)
        flags_off = f"{update.flag_off(EVENT_PENDING)} AND {update.flag_off(CONFLICT_EVENT_PENDING)}"
        ok, _ = self._apply(key, update, f"attribute_exists({update.name('pk')}) AND {flags_off}")
        return ok

    def _apply(self, key: str, update: _Update, condition: str | None = None) -> tuple[bool, dict[str, Any]]:
        """One UpdateItem: (True, item after) or, when the condition failed, (False, item as it was).

        Other client errors propagate (the caller retries).
        """
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": {k: _serializer.serialize(v) for k, v in update.values.items()},
            "ReturnValues": "ALL_NEW",
        }
        if condition:
            request["ConditionExpression"] = condition
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if not request["ExpressionAttributeValues"]:
            del request["ExpressionAttributeValues"]
        try:
            answer = self._client.update_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            return False, load_item(exc.response.get("Item", {}))  # type: ignore[arg-type]
        return True, load_item(answer.get("Attributes", {}))


class _Update:
    """An UpdateItem expression with every attribute name and value as a placeholder.

    DynamoDB reserves hundreds of words (status, result, final, reason, …); placeholders for all
    names avoid the list entirely.
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._adds: list[str] = []
        self._removes: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: Any, *, if_absent: bool = False) -> _Update:
        name, placeholder = self.name(attribute), self.value(value)
        self._sets.append(f"{name} = if_not_exists({name}, {placeholder})" if if_absent else f"{name} = {placeholder}")
        return self

    def append(self, attribute: str, entry: Any) -> _Update:
        """Append ``entry`` to a list attribute (created empty when absent)."""
        name = self.name(attribute)
        self._sets.append(f"{name} = list_append(if_not_exists({name}, {self.value([])}), {self.value([entry])})")
        return self

    def add(self, attribute: str, amount: int) -> _Update:
        self._adds.append(f"{self.name(attribute)} {self.value(amount)}")
        return self

    def remove(self, *attributes: str) -> _Update:
        self._removes.extend(self.name(attribute) for attribute in attributes)
        return self

    def add_to_set(self, attribute: str, members: Iterable[str]) -> _Update:
        distinct = {*members}
        if distinct:
            self._adds.append(f"{self.name(attribute)} {self.value(distinct)}")
        return self

    def expression(self) -> str:
        parts = [f"SET {', '.join(self._sets)}"] if self._sets else []
        parts += [f"ADD {', '.join(self._adds)}"] if self._adds else []
        return " ".join(parts + ([f"REMOVE {', '.join(self._removes)}"] if self._removes else []))

    def not_final(self) -> str:
        return self.flag_off("final")

    def flag_off(self, attribute: str) -> str:
        flag = self.name(attribute)
        return f"(attribute_not_exists({flag}) OR {flag} = {self.value(False)})"

    def generation_is(self, generation: int) -> str:
        return f"{self.name('generation')} = {self.value(generation)}"

    def in_window(self, window: Window) -> str:
        """The item is still in ``window`` and polling: the condition of every write a loop makes."""
        return f"{self.of_window(window)} AND {self.name('pollingState')} = {self.value(POLLING)}"

    def of_window(self, window: Window) -> str:
        """The item's window is still ``window`` (polling or closed)."""
        if window.window_id is None:
            return self.generation_is(window.generation)
        return f"{self.name('windowId')} = {self.value(window.window_id)}"


def _tail_fields(update: _Update, tail: Mapping[str, Any], *, pending: bool) -> None:
    """The long tail's part of a window write: the pending attempt (``pending``) or, on a close, none any more."""
    history = tail.get("history")
    if history is not None:
        update.append("tailHistory", _numbers(history))
    if pending:
        update.set("pollingState", TAIL_STATE)
        for attribute in ("tailAttempt", "nextPollAt", "tailPlan", "tailScheduleName"):
            update.set(attribute, _numbers(tail[attribute]))
    else:
        update.remove("nextPollAt", "tailScheduleName")
        if tail.get("gaveUp"):
            update.set("gaveUp", True)


def _numbers(value: Any) -> Any:
    """Floats as Decimal, as DynamoDB's serializer wants them (nested maps and lists included)."""
    if isinstance(value, float):
        return Decimal(str(round(value, 3)))
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _tail_pending(item: Mapping[str, Any] | None) -> bool:
    return bool(item) and item.get("pollingState") == TAIL_STATE  # type: ignore[union-attr]


def public_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """The stored outcome as merchants see it (CLI): no internal bookkeeping."""
    return {k: v for k, v in item.items() if k not in _INTERNAL}


def event_detail(item: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """A result event's detail: the stored outcome with the event's id (consumers dedupe by it), no outbox flags."""
    return {**{k: v for k, v in public_view(item).items() if k not in _OUTBOX_FLAGS}, "eventId": event_id}


def may_publish(item: Mapping[str, Any], *, message_id: str | None, now: float) -> bool:
    """Whether a touch of the item may publish its pending events now.

    The window's closer publishes right after its close; a retry of the closer (the same message redelivered, or
    a retried poll of the same window) may publish at once. Anyone else waits ``OUTBOX_GRACE_SECONDS`` after the
    close, so two live publishers of one event are not the normal case of a duplicate message.
    """
    if message_id is not None and item.get("claimMessageId") == message_id:
        return True
    closed = _epoch(item.get("resolvedAt"))
    return closed is None or now - closed >= OUTBOX_GRACE_SECONDS


def is_refund_item(item: Mapping[str, Any]) -> bool:
    """False for the alias items and the rate budget's schedule items that share the table with refund items."""
    return not str(item.get("pk", "")).startswith((ALIAS_PREFIX, RATE_PREFIX))


def _written_status(observation: Observation | None, closing: Status | None) -> Status | None:
    """The status this write sets: the window's outcome when it closes, else what the provider said."""
    if closing is not None:
        return closing
    if observation is not None and observation.status in _STATUS_WRITERS:
        return observation.status
    return None


def _observation_fields(observation: Observation, *, full: bool) -> dict[str, Any]:
    """What the observation says about the refund; only its ``result`` when the stored status must stay."""
    result = {
        "code": observation.result.code,
        "status": observation.result.status,
        "message": observation.result.message,
    }
    if not full or observation.status not in _STATUS_WRITERS:
        return {"result": result} if observation.status is Status.ERROR else {}
    fields: dict[str, Any] = {
        "result": result,
        "refundId": observation.refund_id,
        "refundRequestId": observation.refund_request_id,
        "amount": (
            {"value": observation.amount_value, "currency": observation.amount_currency}
            if observation.amount_value is not None
            else None
        ),
        "refundTime": observation.refund_time,
        "failReason": observation.fail_reason,
        # AlphaPay's refund.description: the merchant's own remark, kept apart from any fail reason (seed 002).
        "remark": observation.description,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _contradicts(stored: Mapping[str, Any] | None, observation: Observation | None) -> bool:
    """True when a final answer is the opposite of the final status stored (SUCCESS after FAIL or back)."""
    if stored is None or observation is None or not observation.final or not stored.get("final"):
        return False
    return stored.get("status") != observation.status.value


def _conflict(stored: Mapping[str, Any], observation: Observation, now: float) -> dict[str, Any]:
    """Both final answers, when each came and whether each was verified (docs/internals.md, "Final conflicts")."""
    return {
        "stored": {
            "status": stored.get("status"),
            "at": stored.get("finalAt") or stored.get("resolvedAt"),
            "verified": stored.get("finalVerified"),
            "resultCode": (stored.get("result") or {}).get("code"),
        },
        "observed": {
            "status": observation.status.value,
            "at": _iso(now),
            "verified": observation.verified,
            "resultCode": observation.result.code,
            "reason": observation.reason,
        },
    }


def _observation_summary(observation: Observation) -> dict[str, Any]:
    summary = {
        "status": observation.status.value,
        "verified": observation.verified,
        "reason": observation.reason,
        "resultCode": observation.result.code,
        "resultStatus": observation.result.status,
        "latencyMs": None if observation.latency_ms is None else Decimal(str(round(observation.latency_ms, 1))),
    }
    return {k: v for k, v in summary.items() if v is not None}


def load_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed JSON as plain Python: numbers as ints or floats, sets as lists."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in raw.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; give JSON-friendly ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return sorted(_plain(v) for v in value) if isinstance(value, set) else [_plain(v) for v in value]
    return value


def iso_time(epoch: float) -> str:
    """Epoch seconds as the item's ISO 8601 UTC text (milliseconds, ``Z``)."""
    return _iso(epoch)


def epoch_time(iso: Any) -> float | None:
    """The item's ISO 8601 text as epoch seconds (None when absent or unreadable)."""
    return _epoch(iso)


def _epoch(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() if iso else None
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
