"""``refund-poller console`` in a real headless Chromium (Debian's chromium and chromedriver, driven by selenium)
against ``local up --fast`` and its sandbox: the list and its search, refunds that succeeded after polls, stayed
UNRESOLVED or took 12 polls, a DLQ entry and its redrive, and ids and bodies carrying ``<script>``.

Screenshots go to build/console/ (for the issue note and the README); the page load of the 12-poll refund is
measured (build/console/page-load.json), not asserted. `make browser` installs the browser; without it (not root)
these tests skip and say so.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from refund_core.domain.inquiry import item_key
from tests.e2e.conftest import CLI, ENV, REPO, LocalStack, eventually, interruptible, run_cli_concurrently

pytestmark = pytest.mark.slow

SHOTS = REPO / "build" / "console"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCRIPT_FLAG = "pwned"
UNIQUE = uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Refunds:
    """The refunds this module sends at once (their windows run side by side), by what each test needs."""

    succeeded: str = f"processing2-success--{UNIQUE}"
    correlation: str = f"order-{UNIQUE}"
    unresolved: str = f"processing--u{UNIQUE}"
    twelve_polls: str = f"processing11-success--{UNIQUE}"
    polling: str = f"processing--live{UNIQUE}"  # polls every 10 s for 2 min: still polling while these tests run
    # 63 characters; the sandbox plays the part before "--" (one PROCESSING, then SUCCESS).
    hostile: str = f"processing1-success--<script>window.{SCRIPT_FLAG}=1</script>{UNIQUE}"
    invalid_body: str = json.dumps({"provider": "antom", "refundRequestId": f"<b>bold</b>{UNIQUE}", "colour": "red"})

    def key(self, refund_request_id: str) -> str:
        return item_key("antom", "default", refund_request_id=refund_request_id)


@pytest.fixture(scope="module")
def refunds(local_stack: LocalStack) -> Refunds:
    sent = Refunds()
    send = ["send", "--provider", "antom", "--refund-request-id"]
    # Windows of 60 s for the scripted successes: five cold starts side by side on a loaded machine can outlast the
    # fast policy's 12 s window (the refund would close UNRESOLVED before its final answer).
    roomy = ["--interval", "1", "--window", "60"]
    # Long enough for the starter to start an execution even on a loaded machine (a window that closes before the
    # first inquiry returns is closed by the starter itself, with no execution to draw), short enough to wait for.
    short = ["--interval", "1", "--window", "15"]
    done = run_cli_concurrently(
        local_stack.cwd,
        [
            [*send, sent.succeeded, "--correlation-id", sent.correlation, *roomy],
            [*send, sent.unresolved, *short],
            [*send, sent.twelve_polls, "--interval", "1", "--window", "300"],  # 12 polls, however slow each
            [*send, sent.hostile, *roomy],
            [*send, sent.polling, "--interval", "10", "--window", "120"],
            ["send", "--no-validate", "--raw", sent.invalid_body],
        ],
    )
    for result in done:
        assert result.returncode == 0, result.stderr
    return sent


@dataclass(frozen=True)
class Console:
    url: str
    process: subprocess.Popen[str]

    def page(self, path: str, **query: str) -> str:
        return self.url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def refund(self, key: str) -> str:
        return self.page("/refund", key=key)


@pytest.fixture(scope="module")
def console(local_stack: LocalStack) -> Iterator[Console]:
    process = subprocess.Popen(
        [*CLI, "console", "--port", "0"], cwd=local_stack.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV, preexec_fn=interruptible,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert found, f"no URL in {line!r}; exit {process.poll()}"
    try:
        yield Console(found.group(0), process)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)  # drains its request log (stderr), so a full pipe cannot hold it up


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed: `make browser` installs them as root")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1700")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: selenium never looks for (or downloads) another one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def closed(stack: LocalStack, key: str, timeout: float = 60) -> dict[str, Any]:
    return stack.closed_item(key, timeout=timeout)


def click_and_load(browser: Chrome, by: str, value: str) -> None:
    """Click what loads a new page, and wait for it (a click returns before the navigation it starts)."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(by, value).click()
    WebDriverWait(browser, 15).until(lambda _: gone(page))
    WebDriverWait(browser, 15).until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def gone(element: WebElement) -> bool:
    """The element's page was replaced. Chromium says so with a stale-element error or, when asked mid-navigation,
    with an inspector error ("Node with given id does not belong to the document"): both mean the old page is gone
    (selenium's staleness_of knows only the first, and failed a CI run on the second)."""
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException is one
        return True
    return False


def console_errors(browser: Chrome) -> list[dict[str, Any]]:
    """Errors the page logged (a script run, a CSP violation, a resource refused), since the last call."""
    logged: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in logged if entry.get("level") == "SEVERE"]


def test_the_list_shows_refunds_newest_first_and_finds_one_by_either_id_or_its_correlation_id(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    item = closed(local_stack, refunds.key(refunds.succeeded))
    closed(local_stack, refunds.key(refunds.unresolved))

    browser.get(console.page("/"))
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.refund-row")
    times = [row.find_element(By.CSS_SELECTOR, "td.time").text for row in rows]
    assert times == sorted(times, reverse=True)
    assert refunds.key(refunds.succeeded) in [row.get_attribute("data-key") for row in rows]
    browser.save_screenshot(str(SHOTS / "list.png"))

    # live=0: no reload while the test types (a refund of this module may still be polling).
    for search in (refunds.correlation, refunds.succeeded, str(item["refundId"]), refunds.correlation.upper()):
        browser.get(console.page("/", live="0"))
        browser.find_element(By.ID, "q").send_keys(search)
        click_and_load(browser, By.ID, "apply")
        keys = [row.get_attribute("data-key") for row in browser.find_elements(By.CSS_SELECTOR, "tr.refund-row")]
        assert keys == [refunds.key(refunds.succeeded)], search

    browser.get(console.page("/", q=UNIQUE, live="0"))
    Select(browser.find_element(By.ID, "status")).select_by_value("UNRESOLVED")
    click_and_load(browser, By.ID, "apply")
    keys = [row.get_attribute("data-key") for row in browser.find_elements(By.CSS_SELECTOR, "tr.refund-row")]
    assert refunds.key(refunds.unresolved) in keys  # (and the polling one once its window closed)
    assert refunds.key(refunds.succeeded) not in keys and refunds.key(refunds.twelve_polls) not in keys
    browser.get(console.page("/", q=UNIQUE, provider="alphapay"))
    assert browser.find_elements(By.CSS_SELECTOR, "tr.refund-row") == []
    assert console_errors(browser) == []


def refreshes(browser: Chrome) -> bool:
    return bool(browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]'))


def test_pages_refresh_themselves_while_a_refund_is_polling_and_stop_once_it_is_closed(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    polling = refunds.key(refunds.polling)
    eventually(lambda: local_stack.target.store().get(polling))

    browser.get(console.page("/", q=refunds.polling))
    assert refreshes(browser) and "refreshing" in browser.find_element(By.ID, "live").text
    browser.get(console.refund(polling))
    assert refreshes(browser) and "polling" in browser.find_element(By.ID, "meaning").text.casefold()
    browser.get(console.page("/", q=refunds.polling, live="0"))
    assert not refreshes(browser)

    closed(local_stack, refunds.key(refunds.succeeded))
    browser.get(console.refund(refunds.key(refunds.succeeded)))
    assert not refreshes(browser)


def test_a_refund_that_succeeded_after_polls_shows_each_poll_the_path_taken_and_its_result_event(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    key = refunds.key(refunds.succeeded)
    item = closed(local_stack, key)

    browser.get(console.page("/", q=refunds.correlation))
    click_and_load(browser, By.CSS_SELECTOR, "a.open")

    assert browser.find_element(By.ID, "status").text == "SUCCESS"
    assert "Final" in browser.find_element(By.ID, "meaning").text
    polls = browser.find_elements(By.CSS_SELECTOR, "article.latest svg.chart circle.poll")
    assert len(polls) == item["polls"] == 3
    assert [p.get_attribute("class") for p in polls] == [
        "poll status-PROCESSING",
        "poll status-PROCESSING",
        "poll status-SUCCESS",
    ]
    graph = "article.latest svg.graph"
    visited = {g.get_attribute("data-state") for g in browser.find_elements(By.CSS_SELECTOR, f"{graph} g.visited")}
    assert {"Wait for next poll", "Ask provider", "Refund resolved?", "Refund succeeded"} == visited
    last = browser.find_element(By.CSS_SELECTOR, f"{graph} g.last")
    assert last.get_attribute("data-state") == "Refund succeeded"
    assert "outcome-SUCCESS" in str(last.get_attribute("class"))
    assert browser.find_elements(By.CSS_SELECTOR, f"{graph} path.edge.taken")
    assert browser.find_element(By.ID, "verified").text.startswith("yes")
    events = browser.find_element(By.ID, "result-events").text
    assert str(item["eventId"]) in events and "published" in events
    assert refunds.correlation in browser.page_source
    assert "AWS console" not in browser.page_source  # a local stack has no console pages
    browser.save_screenshot(str(SHOTS / "refund-success.png"))
    assert console_errors(browser) == []


def test_an_unresolved_refund_says_what_it_means_and_its_graph_does_not_end_green(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    key = refunds.key(refunds.unresolved)
    closed(local_stack, key)

    browser.get(console.refund(key))
    browser.save_screenshot(str(SHOTS / "refund-unresolved.png"))

    assert browser.find_element(By.ID, "status").text == "UNRESOLVED"
    assert "send the message again later" in browser.find_element(By.ID, "meaning").text
    assert "without a final status" in browser.find_element(By.ID, "reason").text
    last = browser.find_element(By.CSS_SELECTOR, "article.latest svg.graph g.last")
    assert "outcome-UNRESOLVED" in str(last.get_attribute("class"))
    close = browser.find_element(By.CSS_SELECTOR, "article.latest svg.chart g.close")
    assert close.text == "UNRESOLVED"
    assert browser.find_elements(By.CSS_SELECTOR, "article.latest svg.chart circle.status-PROCESSING")

    # Sent again: a second window, shown above the first, each with its own chart and graph.
    first = closed(local_stack, key)["executionArn"]
    again = local_stack.cli("send", "--provider", "antom", "--refund-request-id", refunds.unresolved, "--window", "15")
    assert again.returncode == 0, again.stderr
    eventually(lambda: (item := closed(local_stack, key)) and item["executionArn"] != first, timeout=60)
    browser.get(console.refund(key))
    windows = browser.find_elements(By.CSS_SELECTOR, "article.window")
    assert len(windows) == 2 and "latest" in str(windows[0].get_attribute("class"))
    assert first.split(":")[-1] in windows[1].text
    assert len(browser.find_elements(By.CSS_SELECTOR, "article.window svg.graph")) == 2


def test_ids_and_bodies_with_script_tags_are_shown_as_text_and_never_run(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    key = refunds.key(refunds.hostile)
    closed(local_stack, key)
    eventually(lambda: any(m.body == refunds.invalid_body for m in local_stack.dlq_messages()))

    for page in (console.page("/", q=UNIQUE), console.refund(key), console.page("/dlq")):
        browser.get(page)
        assert browser.find_elements(By.TAG_NAME, "script") == []
        assert browser.execute_script(f"return typeof window.{SCRIPT_FLAG}") == "undefined"
        assert browser.find_elements(By.TAG_NAME, "b") == []
        assert console_errors(browser) == []
    browser.get(console.refund(key))
    assert browser.find_element(By.ID, "refund-ids").text == refunds.hostile
    browser.save_screenshot(str(SHOTS / "refund-script-id.png"))


def test_a_dlq_entry_shows_its_reason_and_is_redriven_only_after_confirmation_under_the_cli_rules(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    [message] = eventually(lambda: [m for m in local_stack.dlq_messages() if m.body == refunds.invalid_body])

    browser.get(console.page("/dlq"))
    row = browser.find_element(By.CSS_SELECTOR, f'tr.dlq-row[data-message-id="{message.message_id}"]')
    assert "colour" in row.find_element(By.CSS_SELECTOR, "td.reason").text
    assert "rejected as invalid" in row.text
    browser.save_screenshot(str(SHOTS / "dlq.png"))

    # Without "include rejected": skipped, as `dlq redrive` does; nothing to confirm.
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    click_and_load(browser, By.ID, "redrive")
    assert browser.find_element(By.ID, "plan").text.startswith("0 message(s) would be moved")
    assert browser.find_elements(By.ID, "confirm") == []

    browser.get(console.page("/dlq"))
    row = browser.find_element(By.CSS_SELECTOR, f'tr.dlq-row[data-message-id="{message.message_id}"]')
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    browser.find_element(By.ID, "include-rejected").click()
    click_and_load(browser, By.ID, "redrive")
    assert browser.find_element(By.ID, "plan").text.startswith("1 message(s) would be moved")
    assert any(m.message_id == message.message_id for m in local_stack.dlq_messages())  # not moved yet
    click_and_load(browser, By.ID, "confirm")

    assert browser.find_element(By.ID, "result").text.startswith("1 message(s) moved")
    assert all(m.message_id != message.message_id for m in local_stack.dlq_messages())


def test_redrive_needs_the_pages_csrf_token_and_the_server_answers_only_to_its_loopback_address(
    console: Console,
) -> None:
    refused = requests.post(
        console.page("/dlq/redrive"), data={"message": "x", "confirm": "1", "csrf": "guess"}, timeout=10
    )
    assert refused.status_code == 403

    rebound = requests.get(console.page("/"), headers={"Host": "attacker.example"}, timeout=10)
    assert rebound.status_code == 421

    policy = requests.get(console.page("/"), timeout=10).headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_the_page_load_of_a_refund_with_12_polls_is_measured(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    key = refunds.key(refunds.twelve_polls)
    item = closed(local_stack, key, timeout=300)
    assert item["polls"] == 12, item

    loads = []
    for _ in range(3):
        browser.get(console.refund(key))
        loads.append(
            browser.execute_script(
                "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"
            )
        )
    assert len(browser.find_elements(By.CSS_SELECTOR, "article.latest svg.chart circle.poll")) == 12
    browser.save_screenshot(str(SHOTS / "refund-12-polls.png"))
    # The README's picture (docs/images/console.png is a copy): the top of the page, scaled down to stay small.
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "clip": {"x": 0, "y": 0, "width": 1400, "height": 1250, "scale": 0.6}},
    )
    (SHOTS / "readme.png").write_bytes(base64.b64decode(shot["data"]))
    report = {"refund": "12 polls, local stack", "page_load_ms": [round(float(ms), 1) for ms in loads]}
    (SHOTS / "page-load.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nconsole page load, refund with 12 polls: {report['page_load_ms']} ms")


def test_a_window_whose_execution_the_item_does_not_name_is_found_by_its_execution_name(
    local_stack: LocalStack, refunds: Refunds, console: Console, browser: Chrome
) -> None:
    # A short window can close before the starter records its execution's ARN (that write is conditional on the
    # window being open): the item then has a window id but no executionArn.
    key = refunds.key(refunds.twelve_polls)
    closed(local_stack, key, timeout=300)
    dynamodb = local_stack.target.client("dynamodb")
    table = local_stack.state["outputs"]["ResultsTableName"]
    dynamodb.update_item(TableName=table, Key={"pk": {"S": key}}, UpdateExpression="REMOVE executionArn")

    browser.get(console.refund(key))

    assert len(browser.find_elements(By.CSS_SELECTOR, "article.latest svg.chart circle.poll")) == 12
    assert "found by its name" in browser.find_element(By.CSS_SELECTOR, "article.latest").text


def test_a_port_in_use_is_one_error_line(local_stack: LocalStack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = local_stack.cli("console", "--port", str(port), timeout=30)

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "hint: choose another --port" in done.stderr and "Traceback" not in done.stderr
