"""Shared helpers of the reliability tests: the DLQ, executions, table snapshots, a status watcher, key scans."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from refund_core.store import is_refund_item, load_item
from refund_poller.devstack import DevStack
from tests.integration.stack_support import executions

FINAL = frozenset({"SUCCESS", "FAIL"})
CURRENCIES = {"antom": "USD", "alipayplus": "PHP", "alphapay": "CAD"}
# Windows of Base64 text this long can only match the key itself (a 2048-bit PKCS#8 key is ~1,600 characters).
FRAGMENT = 24


def wait_executions_done(stack: DevStack, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until no execution is RUNNING; returns them all."""
    deadline = time.monotonic() + timeout
    while True:
        found = executions(stack)
        if all(e["status"] != "RUNNING" for e in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def items(stack: DevStack) -> dict[str, dict[str, Any]]:
    """Every stored refund item by key: one consistent scan, decoded as the store decodes items."""
    dynamodb = stack.client("dynamodb")
    table = str(stack.outputs["ResultsTableName"])
    found: dict[str, dict[str, Any]] = {}
    start: dict[str, Any] | None = None
    while True:
        page = dynamodb.scan(TableName=table, ConsistentRead=True, **({"ExclusiveStartKey": start} if start else {}))
        for raw in page["Items"]:
            item = load_item(raw)
            if is_refund_item(item):  # alias items share the table (docs/internals.md, "Identity")
                found[str(item["pk"])] = item
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def sandbox_amount(provider: str, refund_id: str) -> dict[str, str]:
    """The amount the sandbox really answers for a refund (derived from its id, see sandbox/inquiry.py)."""
    digest = int(hashlib.sha256(f"{provider}|{refund_id}".encode()).hexdigest()[:8], 16)
    return {"value": str(100 + digest % 99_900), "currency": CURRENCIES[provider]}


def scripted_final(refund_id: str) -> str | None:
    """The final status a sandbox script ends in (``processing2-fail--x`` → FAIL); None if it never ends final."""
    script = refund_id.split("--", 1)[0] if "--" in refund_id else ""
    last = script.split("-")[-1] if script else "success"
    return {"success": "SUCCESS", "fail": "FAIL"}.get(last)


class StatusWatcher:
    """Samples the table while a run goes on and records every status change per key (to catch regressions)."""

    def __init__(self, stack: DevStack, interval: float = 0.5) -> None:
        self._stack = stack
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watcher", daemon=True)
        self.seen: dict[str, list[str]] = {}
        self.samples = 0
        self.error: Exception | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"the watcher stopped sampling: {self.error!r}") from self.error
        self._sample()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self._sample()
        except Exception as exc:  # raised again on exit: a watcher that stopped looking must not pass a run
            self.error = exc

    def _sample(self) -> None:
        self._record_statuses(items(self._stack))
        self.samples += 1

    def _record_statuses(self, table: Mapping[str, Mapping[str, Any]]) -> None:
        for key, item in table.items():
            history = self.seen.setdefault(key, [])
            status = str(item.get("status"))
            if not history or history[-1] != status:
                history.append(status)

    def regressions(self) -> dict[str, list[str]]:
        """Keys whose status changed after a final status was seen."""
        bad = {}
        for key, statuses in self.seen.items():
            finals = [n for n, status in enumerate(statuses) if status in FINAL]
            if finals and len(set(statuses[finals[0] :])) > 1:
                bad[key] = statuses
        return bad


def key_needles(profiles_dir: Path) -> list[str]:
    """What must never appear outside the profiles: overlapping windows of every merchant private key's Base64."""
    needles = {"PRIVATE KEY"}
    for path in sorted(profiles_dir.glob("*.json")):
        private = str(json.loads(path.read_text(encoding="utf-8"))["privateKey"])
        body = "".join(line for line in private.splitlines() if not line.startswith("-----"))
        body = "".join(body.split())
        base64.b64decode(body, validate=True)  # really Base64: the windows below are meaningful
        needles.update(body[start : start + FRAGMENT] for start in range(0, len(body) - FRAGMENT, FRAGMENT // 2))
    return sorted(needles)


def stack_texts(stack: DevStack, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Everything the stack wrote where a leak could hide, by source: log files, function logs, executions
    (input, output, history), stored items, plus whatever the caller captured (result events, DLQ messages)."""
    texts: dict[str, str] = {}
    profiles = (stack.state_dir / "profiles").resolve()
    for path in sorted(stack.state_dir.rglob("*")):
        if path.is_file() and profiles not in path.resolve().parents:
            texts[f"file {path.relative_to(stack.state_dir)}"] = path.read_text(encoding="utf-8", errors="replace")
    for function in ("StartInquiryFunction", "InquireFunction"):
        texts[f"logs {function}"] = stack.cloud.function_logs(function)
    sfn = stack.client("stepfunctions")
    for execution in executions(stack):
        arn = execution["executionArn"]
        described = sfn.describe_execution(executionArn=arn)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        texts[f"execution {execution['name']}"] = json.dumps([described, events], default=str)
    texts["table"] = json.dumps(items(stack), default=str)
    for name, value in (extra or {}).items():
        texts[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return texts


def leaks(texts: Mapping[str, str], needles: Iterable[str]) -> dict[str, list[str]]:
    """Source → the needles found in it (empty when nothing leaked)."""
    needles = list(needles)
    found: dict[str, list[str]] = {}
    for source, text in texts.items():
        hits = [needle for needle in needles if needle in text]
        # Escaped forms too: JSON-in-JSON turns "/" into "\/" and "+" stays; newlines become "\n".
        unescaped = re.sub(r"\\+/", "/", text)
        hits += [needle for needle in needles if needle not in hits and needle in unescaped]
        if hits:
            found[source] = hits[:3]
    return found
