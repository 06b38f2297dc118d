"""Provider notifications on the local stack: how soon a pushed result is final in the table, and the polls it saves.

One local stack with the default polling policy (every 5 s, 60 s windows). Every refund is scripted in the
sandbox with its own notification target (the stack's endpoint), except the control refunds, which get none:

- detection: ``processing<N>s-success`` refunds (N = 2…9, never a multiple of 5, so no poll lands at the flip):
  the sandbox's clock turns each final N s after its first poll and pushes the signed notification at once
  (its ``finalAt``); the table is scanned every ~30 ms; detection = first scan that sees the item final with
  ``source: notification`` - ``finalAt``. ``notification_detection_s`` is the median.
- polls saved: ``processing20s-success`` refunds, half pushed, half not (the control): the control's loop polls
  until a poll sees the final answer; the pushed one's loop ends at its next step on the stored item.
  ``polls_saved_per_refund`` = median polls of the control - median polls of the pushed ones;
  ``polls_after_notification`` counts the inquiries the sandbox received about a pushed refund once the table
  showed it final (target 0); ``pollsInFlightAtThePush`` those received between the push and then.

The Notify function is warmed first, 4 posts at once, twice (its cold start is a deployment's, once per worker, not
per notification).
Writes bench/results/notifications.json. Run alone: ``python -m bench.notifications``.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import RESULTS, log, median, write_json
from bench.stack_flows import message, scan, send
from refund_poller.devstack import DevStack
from refund_poller.sandbox.notifier import WORKERS

RUN = str(int(time.time()))[-6:]
DETECT = [f"processing{n}s-success--nd{n}-{RUN}" for n in (2, 3, 4, 6, 7, 8, 9)]
FINAL_AFTER_S = 20
PUSHED = [f"processing{FINAL_AFTER_S}s-success--np{n}-{RUN}" for n in range(3)]
CONTROL = [f"processing{FINAL_AFTER_S}s-success--nc{n}-{RUN}" for n in range(3)]
INTERVAL_S, WINDOW_S = 5, 60
TIMEOUT_S = 120


def key(refund: str) -> str:
    return f"antom#default#rr:{refund}"


def warm(stack: DevStack) -> None:
    """Unsigned posts (401, nothing recorded), as many at once as the sandbox sends (its 4 sending threads), twice:
    the Notify function's workers are up before the pushes are timed."""
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in range(2):
            answers = list(
                pool.map(lambda _: requests.post(stack.notify_url("antom"), data=b"{}", timeout=60), range(WORKERS))
            )
            assert all(answer.status_code == 401 for answer in answers), [a.text for a in answers]


def inquiries_after(stack: DevStack, refund: str, since: float) -> int:
    return sum(1 for r in stack.sandbox.requests() if r.at > since and refund.encode() in r.body)


def main() -> None:
    refunds = DETECT + PUSHED + CONTROL
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp)) as stack:
        warm(stack)
        for refund in DETECT + PUSHED:
            stack.sandbox.set_script_with_notify(
                "antom", refund, refund.split("--", 1)[0], stack.notify_target("antom")
            )
        sent_at = time.time()
        send(stack, [message(refund, INTERVAL_S, WINDOW_S) for refund in refunds])
        seen_final: dict[str, float] = {}
        items: dict[str, dict[str, Any]] = {}
        while time.time() - sent_at < TIMEOUT_S:
            items = scan(stack)
            now = time.time()
            for refund in refunds:
                item = items.get(key(refund), {})
                if refund not in seen_final and item.get("final", {}).get("BOOL"):
                    seen_final[refund] = now
            if all(items.get(key(r), {}).get("pollingState", {}).get("S") == "IDLE" for r in refunds):
                break
            time.sleep(0.03)
        log(f"notifications: all closed after {time.time() - sent_at:.1f} s")
        rows = []
        for refund in DETECT:
            sandbox = stack.sandbox.refund("antom", refund) or {}
            item = items.get(key(refund), {})
            pushed_at, seen = sandbox.get("finalAt"), seen_final.get(refund)
            rows.append(
                {
                    "refund": refund,
                    "source": item.get("source", {}).get("S"),
                    "detectionS": None if pushed_at is None or seen is None else round(seen - float(pushed_at), 3),
                }
            )
        by_notification = [
            r["detectionS"] for r in rows if r["source"] == "notification" and r["detectionS"] is not None
        ]
        polls = {r: int(items.get(key(r), {}).get("polls", {}).get("N", 0)) for r in PUSHED + CONTROL}
        pushed_at = {r: float((stack.sandbox.refund("antom", r) or {}).get("finalAt") or 0) for r in PUSHED}
        # A poll the loop made once the table said final (target 0); and those merely in flight at the push (a poll
        # due at the flip, 20 s being a multiple of the 5 s interval, may have left before the push arrived).
        after = {r: inquiries_after(stack, r, seen_final.get(r, pushed_at[r])) for r in PUSHED}
        in_flight = {r: inquiries_after(stack, r, pushed_at[r]) - after[r] for r in PUSHED}
        sources = {r: items.get(key(r), {}).get("source", {}).get("S") for r in PUSHED + CONTROL}
    saved = median(polls[r] for r in CONTROL) - median(polls[r] for r in PUSHED)
    result = {
        "notification_detection_s": round(median(by_notification), 3),
        "polls_saved_per_refund": saved,
        "polls_after_notification": max(after.values()),
        "detail": {
            "policy": {"intervalSeconds": INTERVAL_S, "maxDurationSeconds": WINDOW_S},
            "detection": {
                "medianS": round(median(by_notification), 3),
                "maxS": max(by_notification) if by_notification else None,
                "notResolvedByNotification": len(rows) - len(by_notification),
                "rows": rows,
            },
            "finalAfterFirstPollS": FINAL_AFTER_S,
            "polls": polls,
            "pollsAfterNotification": after,
            "pollsInFlightAtThePush": in_flight,
            "sources": sources,
        },
    }
    write_json(RESULTS / "notifications.json", result)
    log(
        f"notification detection median {result['notification_detection_s']} s, polls saved {saved}, "
        f"polls after notification {result['polls_after_notification']}"
    )


if __name__ == "__main__":
    main()
