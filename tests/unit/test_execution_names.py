"""Execution names and item keys: distinct refunds and windows never share one, whatever their ids hold."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from refund_core.domain.inquiry import (
    REFUND_ID,
    REQUEST_ID,
    InquiryMessage,
    RefundRef,
    execution_name,
    item_key,
    new_window_id,
)

NAME = re.compile(r"[0-9A-Za-z_-]{1,80}")
# What a merchant may send (docs/architecture.md): ids up to 64 characters without control characters, merchant
# names of [A-Za-z0-9_-]; the alphabet leans on the characters that sanitise alike.
ids = st.text(
    alphabet=st.one_of(st.sampled_from(" /.:-_#Rr1退款"), st.characters(exclude_categories=("Cc", "Cs"))),
    min_size=1,
    max_size=64,
)
merchants = st.text(alphabet=st.sampled_from("ab-_1Z"), min_size=1, max_size=64)
refs = st.builds(
    RefundRef,
    st.sampled_from(["antom", "alipayplus", "alphapay"]),
    merchants,
    st.sampled_from([REQUEST_ID, REFUND_ID]),
    ids,
)
windows = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


@settings(max_examples=400)
@given(refs, refs, st.integers(1, 999), windows, windows)
def test_distinct_refunds_or_windows_never_share_a_name_or_a_key(
    a: RefundRef, b: RefundRef, generation: int, window_a: str, window_b: str
) -> None:
    name_a, name_b = execution_name(a, generation, window_a), execution_name(b, generation, window_b)
    assert NAME.fullmatch(name_a) and NAME.fullmatch(name_b)
    if (a, window_a) != (b, window_b):
        assert name_a != name_b
    if a != b:
        assert a.item_key != b.item_key and a.alias_key != b.alias_key
    assert RefundRef.from_item_key(a.item_key) == a


@given(refs, st.integers(1, 999))
def test_a_name_starts_with_the_provider_and_the_sanitised_head_of_the_id(ref: RefundRef, generation: int) -> None:
    name = execution_name(ref, generation, new_window_id())
    head = ref.provider + "-" + re.sub(r"[^0-9A-Za-z_-]+", "_", ref.value)
    assert name.startswith(head[: min(len(head), 40)])


def test_ids_that_sanitise_alike_get_different_names() -> None:
    window = new_window_id()
    look_alike = [RefundRef("antom", "default", REQUEST_ID, value) for value in ("R 1", "R/1", "R.1", "R:1")]
    look_alike += [RefundRef("antom", "a-b", REQUEST_ID, "x"), RefundRef("antom", "a", REQUEST_ID, "b-x")]
    look_alike += [RefundRef("antom", "default", kind, "X") for kind in (REQUEST_ID, REFUND_ID)]
    look_alike += [RefundRef("antom", "default", REQUEST_ID, value) for value in ("退款一号", "退款二号")]
    names = [execution_name(ref, 1, window) for ref in look_alike]
    assert len(set(names)) == len(names)
    assert names[0].startswith("antom-R_1-")


def test_a_window_after_the_item_was_deleted_gets_a_new_name() -> None:
    ref = RefundRef("alipayplus", "shop-1", REQUEST_ID, "rr-1")
    assert execution_name(ref, 1, new_window_id()) != execution_name(ref, 1, new_window_id())


def test_a_refund_id_and_a_request_id_with_the_same_text_are_different_keys() -> None:
    assert item_key("antom", "default", refund_id="X") == "antom#default#r:X"
    assert item_key("antom", "default", refund_request_id="X") == "antom#default#rr:X"
    both = InquiryMessage(provider="antom", refund_id="Y", refund_request_id="X")
    assert [ref.form for ref in both.refs] == ["r:Y", "rr:X"]  # the refund id's alias is contended first
    assert both.key == "antom#default#rr:X"
