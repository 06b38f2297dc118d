"""The demo's refunds: one per lifecycle, across the three providers, each with the outcome it must reach.

Every refund id carries its sandbox script before ``--`` (docs/sandbox.md) and a suffix unique to the run
after it, so the demo can run again on the same stack.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

REJECTED = "REJECTED"


@dataclass(frozen=True)
class DemoRefund:
    label: str
    provider: str
    script: str
    expected: str
    suffix: str
    copies: int = 1  # a duplicate is sent twice
    invalid: bool = False  # sent with a field the contract does not know
    # Resolved by the provider's pushed notification: its message asks for polls this far apart, so the push
    # (its script turns final seconds after the first poll) lands well before the next poll, whatever the policy.
    notified_interval: int | None = None
    # Resolved in the long tail (docs/long-tail.md): its window makes one inquiry and hands it over to the tail,
    # whose attempts the demo's stack fires time-compressed (minutes apart on the schedule, about a second here).
    tail: bool = False
    # Kept out of the long tail (its message sets the tail's maximum age to 0): closes UNRESOLVED with its window.
    no_tail: bool = False

    @property
    def refund(self) -> str:
        tag = "-invalid" if self.invalid else ""  # keeps it apart from a valid refund with the same script
        return f"{self.script}--demo-{self.suffix}{tag}"

    @property
    def id_option(self) -> str:
        return "--refund-id" if self.provider == "alphapay" else "--refund-request-id"

    @property
    def ids(self) -> tuple[str | None, str | None]:
        """(refund_id, refund_request_id): AlphaPay needs the provider's id, the others take the merchant's."""
        return (self.refund, None) if self.provider == "alphapay" else (None, self.refund)

    def body(self) -> str:
        field_name = "refundId" if self.provider == "alphapay" else "refundRequestId"
        message: dict[str, Any] = {"provider": self.provider, field_name: self.refund, "correlationId": "demo"}
        if self.notified_interval:
            message["polling"] = {"intervalSeconds": self.notified_interval}
        if self.tail:
            message["polling"] = {"maxDurationSeconds": 1}  # one inquiry, then the tail
        if self.no_tail:
            message["tail"] = {"maxAgeSeconds": 0}
        if self.invalid:
            message["amount"] = "10.00"  # not part of the contract: the starter rejects the message
        return json.dumps(message)

    def trace_command(self) -> str:
        verb = "dlq" if self.invalid else f"trace --provider {self.provider} {self.id_option} {self.refund}"
        return f"refund-poller {verb}"


@dataclass
class Progress:
    """What the demo has seen of one refund so far."""

    status: str = "sent"
    polls: int = 0
    done: bool = False
    note: str = ""
    generation: int = 0
    item: dict[str, Any] = field(default_factory=dict)

    @property
    def tail_attempts(self) -> int:
        """The long tail's attempts made for this refund's window (0: resolved by its window)."""
        return len(self.item.get("tailHistory") or [])

    def judged(self, refund: DemoRefund) -> bool:
        """Whether the refund ended as expected (a duplicate must also have started one execution only)."""
        if not self.done or self.status != refund.expected:
            return False
        if refund.notified_interval and self.item.get("source") != "notification":
            return False
        if refund.tail and not self.tail_attempts:
            return False
        return refund.copies == 1 or self.generation == 1


def plan(suffix: str | None = None, *, tail: bool = True) -> list[DemoRefund]:
    """The demo's refunds; ``tail``: with the one resolved in the long tail (the stack runs the tail)."""
    run = suffix or secrets.token_hex(3)
    cases = [
        ("success after polling", "antom", "processing2-success", "SUCCESS"),
        ("not found, then found", "antom", "notfound1-success", "SUCCESS"),
        ("final at the first inquiry", "alipayplus", "success", "SUCCESS"),
        ("fail at the first inquiry", "alipayplus", "fail", "FAIL"),
        ("fail after polling", "alipayplus", "processing1-fail", "FAIL"),
        ("not found twice, then found", "alphapay", "notfound2-success", "SUCCESS"),
        ("unknown answer, then success", "alphapay", "unknown1-success", "SUCCESS"),
        ("never final: unresolved", "alphapay", "processing", "UNRESOLVED"),
    ]
    refunds = [
        DemoRefund(label, provider, script, expected, run, no_tail=expected == "UNRESOLVED")
        for label, provider, script, expected in cases
    ]
    if tail:
        refunds.append(
            DemoRefund("final in the long tail", "alipayplus", "processing3-success", "SUCCESS", run, tail=True)
        )
    refunds.append(
        DemoRefund("final by notification", "antom", "processing2s-success", "SUCCESS", run, notified_interval=8)
    )
    refunds.append(DemoRefund("duplicate message", "antom", "processing3-success", "SUCCESS", run, copies=2))
    refunds.append(DemoRefund("invalid message", "antom", "success", REJECTED, run, invalid=True))
    return refunds
