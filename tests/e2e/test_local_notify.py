"""`refund-poller local up` serves the notification endpoint on loopback and records its URL in the state file."""

from __future__ import annotations

import requests

from tests.e2e.conftest import LocalStack


def test_local_up_serves_the_notification_endpoint_and_records_its_url(local_stack: LocalStack) -> None:
    base = local_stack.state["notify_base_url"]
    assert base.startswith("http://127.0.0.1:")
    unsigned = requests.post(f"{base}/notify/antom/default", data=b"{}", timeout=30)
    assert unsigned.status_code == 401  # the Notify function answered: no signature, nothing recorded
    assert requests.post(f"{base}/elsewhere", data=b"{}", timeout=30).json() == {"message": "Not Found"}
