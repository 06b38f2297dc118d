"""The arithmetic of the strict local stack's Lambda rules (the behaviours themselves are shown in
tests/integration/test_strict_local_concurrency.py and test_strict_local_data.py)."""

from __future__ import annotations

from typing import Any

import pytest

from refund_poller.local.concurrency import poller_concurrency, vcpus
from refund_poller.local.sqs_limits import message_size


@pytest.mark.parametrize(
    ("pollers", "maximum_concurrency", "reserved", "expected"),
    [
        (5, None, None, 5),  # Lambda's first five concurrent batches
        (5, 2, None, 2),  # never more than MaximumConcurrency
        (5, 10, 1, 1),  # scaled down to reserved concurrency, not throttled
        (5, None, 0, 1),  # reserved 0: one poller, whose invokes are all throttled
    ],
)
def test_an_sqs_event_source_runs_the_smallest_of_its_limits(
    pollers: int, maximum_concurrency: int | None, reserved: int | None, expected: int
) -> None:
    assert poller_concurrency(pollers, maximum_concurrency, reserved) == expected


@pytest.mark.parametrize(("memory", "expected"), [(128, 2), (1769, 2), (3008, 2), (3539, 3), (5400, 4), (10240, 6)])
def test_vcpus_follow_memory_from_two_to_six(memory: int, expected: int) -> None:
    assert vcpus(memory) == expected


def test_message_size_counts_utf8_bytes_and_each_attributes_name_type_and_value() -> None:
    attributes: dict[str, dict[str, Any]] = {
        "reason": {"DataType": "String", "StringValue": "退"},  # 6 + 6 + 3
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},  # 4 + 6 + 2
    }
    assert message_size("é", attributes) == 2 + 15 + 12
