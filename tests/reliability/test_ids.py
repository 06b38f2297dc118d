"""The load's ids and merchants are valid messages, cover the full range, and keep the sandbox's script."""

from __future__ import annotations

import json
import random
import re

from refund_core.validation import parse_message
from refund_poller.sandbox import script_for_id
from tests.reliability.ids import MAX_ID, MERCHANTS, random_id, random_plain_id
from tests.reliability.load import SCRIPTS

MERCHANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def test_generated_ids_pass_the_message_schema_and_keep_their_script() -> None:
    rng = random.Random(7)
    seen = ""
    for n in range(600):
        script = SCRIPTS[n % len(SCRIPTS)]
        refund_id, request_id = random_id(rng, script, f"t{n}"), random_plain_id(rng, f"rq{n}")
        merchant = rng.choice(MERCHANTS)
        body = {"provider": "antom", "merchant": merchant, "refundId": refund_id, "refundRequestId": request_id}
        message = parse_message(json.dumps(body, ensure_ascii=n % 2 == 0))
        assert (message.refund_id, message.refund_request_id, message.merchant) == (refund_id, request_id, merchant)
        assert len(refund_id) <= MAX_ID and len(request_id) <= MAX_ID
        assert script_for_id(refund_id).text == script
        seen += refund_id + request_id
    for wanted in (" ", "/", ".", ":", "-", "#", "退", "💳", "환"):
        assert wanted in seen, wanted
    assert any(len(random_id(rng, "success", "x")) == MAX_ID for _ in range(400))  # the full length is drawn


def test_merchants_include_names_with_a_dash_and_are_valid() -> None:
    assert all(MERCHANT_NAME.fullmatch(name) for name in MERCHANTS)
    assert any("-" in name for name in MERCHANTS)
