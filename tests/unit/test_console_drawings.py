"""The console's SVG drawings and AWS console links: the state machine graph comes from the ASL file as it is on
disk (other changes to it show up), the path taken is highlighted, and every text in a drawing is escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3

from refund_poller.cli.target import Target
from refund_poller.cli.timeline import Step
from refund_poller.console import chart, graph
from refund_poller.console.app import ASL_FILE
from refund_poller.console.readers import ConsoleLinks, Filters, Refund, console_links

POLL_LOOP = ["Wait for next poll", "Ask provider", "Refund resolved?"]


def test_the_graph_draws_every_state_of_the_asl_file_and_each_transition() -> None:
    definition = graph.read_definition(ASL_FILE)

    svg = graph.draw(definition)

    drawn = re.findall(r'data-state="([^"]*)"', svg)
    assert sorted(drawn) == sorted(definition["States"])
    assert svg.count('<path class="edge"') == len({(e.source, e.target) for e in graph.edges(definition)})


def test_the_path_taken_is_highlighted_with_visit_counts_and_the_end_coloured_by_the_outcome() -> None:
    definition = graph.read_definition(ASL_FILE)
    path = [*POLL_LOOP, *POLL_LOOP, "Outcome recorded"]

    svg = graph.draw(definition, path, outcome="UNRESOLVED")

    visited = re.findall(r'<g class="state [^"]*visited[^"]*" data-state="([^"]*)"', svg)
    assert sorted(visited) == sorted({*POLL_LOOP, "Outcome recorded"})
    assert re.search(r'class="state state-succeed visited last outcome-UNRESOLVED" data-state="Outcome recorded"', svg)
    assert svg.count('class="edge taken"') == 4  # wait→ask, ask→resolved?, resolved?→wait, resolved?→outcome
    assert re.findall(r'class="badge-text"[^>]*>(\d+)<', svg).count("2") == 3


def test_a_state_added_to_the_asl_file_appears_and_names_are_escaped(tmp_path: Path) -> None:
    definition = json.loads(ASL_FILE.read_text(encoding="utf-8"))
    hostile = "Notify <script>alert(1)</script> & co"
    definition["States"]["Outcome recorded"] = {"Type": "Pass", "Next": hostile}
    definition["States"][hostile] = {"Type": "Succeed", "Comment": '"><img src=x onerror=alert(1)>'}
    changed = tmp_path / "asl.json"
    changed.write_text(json.dumps(definition), encoding="utf-8")

    svg = graph.draw(graph.read_definition(changed), ["Outcome recorded", hostile])

    assert "<script>" not in svg and "<img" not in svg
    assert 'data-state="Notify &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"' in svg
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in svg


def test_the_chart_has_a_mark_per_poll_coloured_by_answer_failed_attempts_the_close_and_a_notification() -> None:
    steps = [
        Step("2026-12-01T10:00:00.000Z", 1, "PROCESSING", "wait 5 s"),
        Step("2026-12-01T10:00:05.000Z", None, "-", "retry or give up", "Lambda.ServiceException: <b>x</b>"),
        Step("2026-12-01T10:00:06.000Z", 2, "UNKNOWN", "wait 5 s", "bad-signature"),
        Step("2026-12-01T10:00:11.000Z", 3, "SUCCESS", "done"),
        Step("2026-12-01T10:00:11.200Z", None, "-", "succeeded"),
    ]

    svg = chart.draw(chart.marks(steps, "2026-12-01T10:00:09.000Z", "SUCCESS"))

    assert re.findall(r'<circle class="poll status-(\w+)"', svg) == ["PROCESSING", "UNKNOWN", "SUCCESS"]
    assert svg.count('class="attempt"') == 1 and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert '<g class="close status-SUCCESS">' in svg and '<g class="notification">' in svg
    xs = [float(x) for x in re.findall(r'<circle class="poll [^"]*" cx="([\d.]+)"', svg)]
    assert abs((xs[1] - xs[0]) / (xs[2] - xs[1]) - 6 / 5) < 0.01  # time on the x axis: gaps are the waits


def test_a_deployed_stack_gets_aws_console_links_with_the_key_and_names_encoded() -> None:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1")
    target = Target(session, {"ResultsTableName": "rp-RefundResultsTable-1"}, "eu-west-1")
    arn = "arn:aws:states:eu-west-1:123456789012:execution:rp-refund-inquiry:antom-x-ab12-g1-w1"

    links = console_links(target, "antom#default#rr:a/b <c>", arn, "/aws/vendedlogs/states/rp-refund-inquiry")

    assert (
        links.execution
        == f"https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{arn}"
    )
    assert links.item is not None and "table=rp-RefundResultsTable-1" in links.item
    assert "pk=antom%23default%23rr%3Aa%2Fb%20%3Cc%3E" in links.item
    assert links.log_group is not None
    assert links.log_group.endswith(
        "#logsV2:log-groups/log-group/$252Faws$252Fvendedlogs$252Fstates$252Frp-refund-inquiry"
    )
    local = Target(session, {}, "us-east-1", "http://127.0.0.1:4566")
    assert console_links(local, "k", arn, "g") == ConsoleLinks()


def test_the_status_filter_matches_conflicts_gave_up_and_error_and_the_search_either_id_or_correlation() -> None:
    refunds = [
        Refund("a", {"status": "SUCCESS", "finalConflictCount": 1, "refundId": "R-1", "correlationId": "Order-7"}),
        Refund("b", {"status": "UNRESOLVED", "gaveUp": True, "refundRequestId": "rr/退款 1"}),
        Refund("c", {"status": "ERROR", "pollingState": "IDLE", "refundId": "R-2"}),
        Refund("d", {"status": "PROCESSING", "pollingState": "POLLING", "refundRequestId": "order-7b"}),
    ]

    def keys(**filters: str) -> list[str]:
        return [refund.key for refund in refunds if Filters(**filters).keep(refund)]

    assert keys(status="conflict") == ["a"]
    assert keys(status="gave-up") == ["b"]
    assert keys(status="ERROR") == ["c"]
    assert keys(status="polling") == ["d"]
    assert keys(search="order-7") == ["a", "d"]  # correlation id or either id, any case
    assert keys(search="退款") == ["b"]
    assert keys(search="r-2") == ["c"]
