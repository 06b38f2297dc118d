"""Refund ids and merchant names from the full range a merchant may send, for the load driver.

Ids: 1 to 64 characters, no control characters (the message schema's ``refundIdentifier``), drawn from
letters, digits, CJK, other scripts, an astral character, spaces and the punctuation that collided in
execution names (``/ . : - _ #``). The sandbox plays the script before the first ``--`` (sandbox/script.py), so
an id is ``<script>--<tag>`` followed by random characters up to a random length of at most 64.
Merchant names are ``[A-Za-z0-9_-]{1,64}``; the extra ones get the sandbox's profile for each provider.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from refund_core.aws.profiles import secret_name
from refund_poller.devstack import DevStack
from refund_poller.sandbox import PROFILE_SPECS

MAX_ID = 64
# Every character a valid id may hold is fair; these are the ones that broke names, keys or encodings before.
_PIECES = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "退款编号甲乙丙丁订单號碼",
    "テストﾃｽﾄ환불éßøΩЖ",
    "💳",
    "     ",  # spaces weigh more: "R 1" against "R/1" was a collision
    "/.:-_#",
)
ALPHABET = "".join(_PIECES)
# Merchants whose names contain "-": "a-b" + id "x" against "a" + id "b-x" was a collision.
MERCHANTS = ("default", "shop-eu-1", "a-b", "a")


def random_id(rng: random.Random, script: str, tag: str) -> str:
    """``<script>--<tag>`` then random characters, at most 64 in all (the tag keeps ids of one run apart)."""
    head = f"{script}--{tag}"
    if len(head) >= MAX_ID:
        raise ValueError(f"refund id head {head!r} leaves no room for random characters")
    length = rng.randint(len(head) + 1, MAX_ID)
    return head + "".join(rng.choice(ALPHABET) for _ in range(length - len(head)))


def random_plain_id(rng: random.Random, tag: str) -> str:
    """An id without a script (a merchant's own refund request id), from the same range."""
    length = rng.randint(len(tag) + 1, MAX_ID)
    return tag + "".join(rng.choice(ALPHABET) for _ in range(length - len(tag)))


def provision_merchants(stack: DevStack, merchants: Iterable[str]) -> None:
    """Give every merchant a profile per provider: the sandbox's own, under the merchant's secret name."""
    prefix = str(stack.outputs["ProfileSecretPrefix"])
    for merchant in merchants:
        if merchant == "default":  # DevStack provisioned it
            continue
        for spec in PROFILE_SPECS:
            if spec.name == spec.provider:  # the sandbox-path profile of each provider (not antom-live)
                profile = stack.sandbox.profiles[spec.name].read_text()
                stack.cloud.put_secret(secret_name(prefix, spec.provider, merchant), profile)
