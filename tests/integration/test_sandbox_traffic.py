"""The sandbox's traffic limit and counters: over the limit a merchant's inquiries are refused as the providers
refuse them (REQUEST_TRAFFIC_EXCEED_LIMIT, or HTTP 429), and arrivals are counted per second per merchant."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from refund_core.domain import Status, parse_profile
from refund_core.domain.polling import rate_limited
from refund_core.providers import Provider, RefundQuery, provider_for
from refund_poller.sandbox import Sandbox
from refund_poller.sandbox.traffic import Traffic, TrafficConfig


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own: a traffic limit must not slow down the other tests' sandbox."""
    with Sandbox(port=0, profiles_dir=tmp_path / "profiles") as running:
        yield running


def adapter(sandbox: Sandbox, name: str = "antom") -> Provider:
    data = json.loads(sandbox.profiles[name].read_text())
    return provider_for(parse_profile(data, allow_plain_http=True), timeout=(2.0, 5.0))


def ask(provider: Provider) -> Status:
    """One inquiry about a new refund (AlphaPay needs its refundId)."""
    return provider.inquire(RefundQuery(refund_id=f"processing--{uuid.uuid4().hex[:8]}")).status


@pytest.mark.parametrize(("answer", "http_status"), [("ratelimit", 200), ("http429", 429)])
def test_over_the_limit_inquiries_are_refused_and_counted(own_sandbox: Sandbox, answer: str, http_status: int) -> None:
    url = f"{own_sandbox.base_url}/_sandbox/traffic"
    assert requests.put(url, json={"limitPerSecond": 2, "answer": answer}, timeout=5).status_code == 200
    antom = adapter(own_sandbox)
    observations = [antom.inquire(RefundQuery(refund_request_id=f"processing--{n}")) for n in range(5)]
    refused = [o for o in observations if rate_limited(o)]
    # Five inquiries in well under a second: two answered, the rest refused (the clock may tick over once).
    assert 1 <= len(refused) <= 3, [o.result.code for o in observations]
    assert all(o.status is Status.UNKNOWN and o.http_status == http_status for o in refused)
    assert observations[0].status is Status.PROCESSING
    counts = requests.get(url, timeout=5).json()
    [(caller, antom_counts)] = counts["callers"].items()
    assert caller.startswith("antom/")
    assert antom_counts["requests"] == 5 and antom_counts["refused"] == len(refused)
    assert antom_counts["maxPerSecond"] >= 4
    assert sum(antom_counts["perSecond"].values()) == 5
    assert 3 <= antom_counts["maxSentPerCalendarSecond"] <= 5  # read from the signed Request-Time


def test_inquiries_are_also_counted_by_when_the_caller_sent_them() -> None:
    """Arrivals bunched by a late server still count apart by the Request-Time each was signed with."""
    traffic = Traffic()
    for sent_at in (10.0, 10.3, 10.6, 10.9, 11.2):
        traffic.admit("antom", "c", now=11.5, sent_at=sent_at)
    traffic.admit("antom", "c", now=11.6)  # a caller that stamps no time: counted on arrival only
    [counts] = traffic.to_dict()["callers"].values()
    assert counts["maxPerCalendarSecond"] == 6
    assert counts["maxSentPerCalendarSecond"] == 4


def test_each_merchant_is_counted_on_its_own_and_the_limit_can_be_lifted(own_sandbox: Sandbox) -> None:
    own_sandbox.set_traffic(TrafficConfig(limit_per_second=1))
    antom, alphapay = adapter(own_sandbox), adapter(own_sandbox, "alphapay")
    assert ask(antom) is Status.PROCESSING
    assert ask(alphapay) is Status.PROCESSING  # another caller: its own second
    assert ask(antom) is Status.UNKNOWN
    own_sandbox.set_traffic(TrafficConfig())
    assert ask(antom) is Status.PROCESSING
    callers = own_sandbox.traffic()["callers"]
    assert sorted(name.split("/")[0] for name in callers) == ["alphapay", "antom"]
    assert sum(c["requests"] for c in callers.values()) == 4
    own_sandbox.reset()
    assert own_sandbox.traffic()["callers"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limitPerSecond": 0}, "limitPerSecond"),
        ({"limitPerSecond": 1.5}, "limitPerSecond"),
        ({"answer": "x"}, "answer"),
        ({"limit": 1}, "limit"),
    ],
)
def test_a_bad_traffic_setting_is_a_400_naming_the_field(
    own_sandbox: Sandbox, body: dict[str, object], field: str
) -> None:
    answer = requests.put(f"{own_sandbox.base_url}/_sandbox/traffic", json=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{field}:")
