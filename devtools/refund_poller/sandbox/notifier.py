"""The sandbox pushing refund-result notifications, as each provider would: signed, retried, sometimes spoiled.

One scheduler thread keeps a heap of due jobs and hands them to a small thread pool (bounded: at most
:data:`WORKERS` pushes in flight and :data:`MAX_PENDING` waiting); :meth:`Notifier.stop` ends both and
waits for pushes in flight. A push goes over plain http to a loopback host only, otherwise over https
with certificate and host name verification. Retry intervals are the provider's (dialects.py) divided
by ``speedup``, so a test runs Antom's 24-hour schedule in a second.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from refund_core.domain.profile import is_loopback_host
from refund_core.providers import signing
from refund_poller.sandbox.answers import JSON_TYPE, KEY_VERSION
from refund_poller.sandbox.credentials import PROFILE_SPECS, Credentials
from refund_poller.sandbox.dialects import Dialect, RefundView
from refund_poller.sandbox.notifications import MAX_REPLY_CHARS, NotifyTarget, PushLog, check_notify_url

WORKERS = 4
MAX_PENDING = 10_000
SEND_TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 64 * 1024
REORDER_BATCH = 2  # an out-of-order push waits for one more of the same merchant, then both go last-first

Job = Callable[[], None]


class Scheduler:
    """Run jobs after a delay on a bounded pool; :meth:`cancel_all` forgets every job not yet running."""

    def __init__(self, workers: int = WORKERS, max_pending: int = MAX_PENDING) -> None:
        self._heap: list[tuple[float, int, int, Job]] = []
        self._changed = threading.Condition()
        self._order = itertools.count()
        self._max_pending = max_pending
        self._workers = workers
        self.generation = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def call_later(self, delay: float, job: Job, generation: int) -> bool:
        """Run ``job`` in ``delay`` seconds; False when stopping, cancelled since ``generation``, or full."""
        with self._changed:
            if self._stopping or generation != self.generation or len(self._heap) >= self._max_pending:
                return False
            if self._thread is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="sandbox-notify")
                self._thread = threading.Thread(target=self._run, name="sandbox-notify-scheduler", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._order), generation, job))
            self._changed.notify()
            return True

    def pending(self) -> int:
        with self._changed:
            return len(self._heap)

    def cancel_all(self) -> None:
        with self._changed:
            self.generation += 1
            self._heap.clear()

    def stop(self) -> None:
        """Forget waiting jobs, let running ones finish, end the threads."""
        with self._changed:
            self._stopping = True
            self._heap.clear()
            self._changed.notify()
            thread, pool = self._thread, self._pool
        if thread is not None:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._changed.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopping:
                    return
                _, _, generation, job = heapq.heappop(self._heap)
                assert self._pool is not None  # created with the thread
                self._pool.submit(self._guarded, generation, job)

    def _guarded(self, generation: int, job: Job) -> None:
        if generation != self.generation:  # reset while it waited in the pool's queue
            return
        try:
            job()
        except Exception as exc:  # a sandbox bug must not kill the worker silently
            print(f"sandbox notifier: {type(exc).__name__}: {exc}", file=sys.stderr)


@dataclass
class _Notification:
    """One notification and where its retry schedule stands."""

    id: str
    dialect: Dialect
    target: NotifyTarget
    caller: str
    payload: dict[str, Any]
    fault: str | None
    generation: int
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    headers: dict[str, str]
    body: bytes
    request_time: str


class Notifier:
    """Notification targets, the push log, and the sending machinery of one sandbox."""

    def __init__(self, credentials: Credentials, log: Callable[[str], None] | None = None) -> None:
        self.credentials = credentials
        self.pushes = PushLog()
        self.speedup = 1.0
        self._log = log
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], NotifyTarget] = {}
        self._randoms: dict[tuple[str, NotifyTarget], random.Random] = {}
        self._held: dict[tuple[str, str], list[_Notification]] = {}
        self._ids = itertools.count(1)
        self._scheduler = Scheduler()

    # ---- configuration -------------------------------------------------------------------------------
    def set_target(self, provider: str, target: NotifyTarget) -> None:
        with self._lock:
            self._targets[(provider, target.merchant)] = target
            self._randoms.pop((provider, target), None)  # the same seed starts the same sequence again

    def target(self, provider: str, merchant: str) -> NotifyTarget | None:
        with self._lock:
            return self._targets.get((provider, merchant))

    def target_for_caller(self, provider: str, caller: str | None) -> NotifyTarget | None:
        """The merchant target whose caller id is ``caller`` (the refund's merchant, as its polls showed)."""
        with self._lock:
            targets = [(m, t) for (p, m), t in self._targets.items() if p == provider]
        return next((t for m, t in targets if (t.client_id or default_caller(provider, m)) == caller), None)

    def settings(self) -> dict[str, Any]:
        with self._lock:
            targets = {f"{p}/{m}": t.to_dict() for (p, m), t in self._targets.items()}
        return {"speedup": self.speedup, "pending": self._scheduler.pending(), "merchants": targets}

    def reset(self) -> None:
        """Forget targets, held and scheduled pushes, the speed-up and the log (a push in flight still finishes)."""
        self._scheduler.cancel_all()
        with self._lock:
            self._targets.clear()
            self._randoms.clear()
            self._held.clear()
        self.speedup = 1.0
        self.pushes.clear()

    def stop(self) -> None:
        self._scheduler.stop()

    # ---- triggers ------------------------------------------------------------------------------------
    def push(self, dialect: Dialect, target: NotifyTarget, view: RefundView, caller: str | None = None) -> str | None:
        """Start one notification of ``view`` to ``target``; its id, or None when its state is never pushed."""
        if view.state not in dialect.notified_states:
            return None
        notification = _Notification(
            id=f"n{next(self._ids)}",
            dialect=dialect,
            target=target,
            caller=target.client_id or caller or default_caller(dialect.name, target.merchant),
            payload=dialect.notification_payload(view),
            fault=self._roll_fault(dialect.name, target),
            generation=self._scheduler.generation,
        )
        self._begin(notification)
        return notification.id

    def call_at(self, due: float, job: Job) -> None:
        """Run ``job`` at monotonic time ``due`` (a scripted refund turning final by the clock)."""
        self._scheduler.call_later(due - time.monotonic(), job, self._scheduler.generation)

    def _roll_fault(self, provider: str, target: NotifyTarget) -> str | None:
        if not target.faults:
            return None
        with self._lock:
            rng = self._randoms.setdefault((provider, target), random.Random(target.seed))  # noqa: S311 - faults
            if rng.random() >= target.rate:
                return None
            return rng.choice(target.faults)

    # ---- the schedule --------------------------------------------------------------------------------
    def _later(self, delay: float, notification: _Notification, job: Job) -> None:
        if not self._scheduler.call_later(delay, job, notification.generation):
            self._record(notification, {"outcome": "abandoned", "error": "the sandbox stopped, reset or is full"})

    def _begin(self, notification: _Notification) -> None:
        target = notification.target
        match notification.fault:
            case "dropped":
                notification.attempt = 1
                self._record(notification, {"outcome": "dropped"})
            case "forged":
                self._later(0, notification, lambda: self._forge_then_attempt(notification))
            case "outoforder":
                self._hold(notification)
            case "delayed":
                self._later(target.delay_ms / 1000, notification, lambda: self._attempt(notification))
            case _:
                self._later(0, notification, lambda: self._attempt(notification))

    def _hold(self, notification: _Notification) -> None:
        key = (notification.dialect.name, notification.target.merchant)
        with self._lock:
            held = self._held.setdefault(key, [])
            held.append(notification)
            full = len(held) >= REORDER_BATCH
        delay = 0 if full else notification.target.hold_ms / 1000
        self._later(delay, notification, lambda: self._release(key))

    def _release(self, key: tuple[str, str]) -> None:
        """Send what is held for a merchant, newest first, one after the other (so the order is the one seen)."""
        with self._lock:
            batch = self._held.pop(key, [])
        for notification in reversed(batch):
            self._attempt(notification)

    def _attempt(self, notification: _Notification) -> None:
        notification.attempt += 1
        signer = self.credentials.forger_key if notification.fault == "wrongkey" else None
        request = self._request(notification, signer)
        copies = 2 if notification.fault == "duplicated" else 1
        acknowledged = [self._send(notification, request, copy) for copy in range(1, copies + 1)]
        intervals = notification.dialect.retry_intervals
        if not any(acknowledged) and notification.attempt <= len(intervals):
            delay = intervals[notification.attempt - 1] / self.speedup
            self._later(delay, notification, lambda: self._attempt(notification))

    def _forge_then_attempt(self, notification: _Notification) -> None:
        self._forge(notification)
        self._attempt(notification)

    def _forge(self, notification: _Notification) -> None:
        """An attacker's copy: the status flipped, the genuine body's signature kept (so it cannot verify)."""
        statuses = notification.dialect.statuses
        genuine = self._request(notification, None)
        flipped = statuses["fail"] if notification.payload["refundStatus"] == statuses["success"] else "SUCCESS"
        body = _json({**notification.payload, "refundStatus": flipped})
        self._send(notification, _Request(genuine.path, genuine.headers, body, genuine.request_time), 1, forgery=True)

    # ---- the wire ------------------------------------------------------------------------------------
    def _request(self, notification: _Notification, signer: Any) -> _Request:
        """Sign one attempt anew: a fresh Request-Time (and AlphaPay Nonce) every time."""
        dialect = notification.dialect
        path = urlsplit(notification.target.url).path or "/"
        identity = dialect.notification_identity(notification.caller)
        body = _json(notification.payload)
        key = signer or self.credentials.provider_keys[dialect.name]
        signature = signing.sign(key, dialect.request_content(path, identity, body))
        headers = {
            "Content-Type": JSON_TYPE,
            **dialect.notification_headers(identity),
            "Signature": signing.format_signature_header(dialect.algorithm, KEY_VERSION, signature),
        }
        return _Request(path, headers, body, identity.request_time)

    def _send(self, notification: _Notification, request: _Request, copy: int, *, forgery: bool = False) -> bool:
        entry: dict[str, Any] = {"copy": copy, "requestTime": request.request_time, "forgery": forgery}
        if forgery:
            entry["attempt"] = 0
        try:
            status, reply = post(notification.target.url, request.headers, request.body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._record(notification, {**entry, "outcome": "unreachable", "error": f"{type(exc).__name__}: {exc}"})
            return False
        acknowledged = notification.dialect.acknowledged(status, reply)
        entry |= {
            "outcome": "acknowledged" if acknowledged else "rejected",
            "replyStatus": status,
            "replyBody": reply[:MAX_REPLY_CHARS].decode("utf-8", "replace"),
        }
        self._record(notification, entry)
        return acknowledged

    def _record(self, notification: _Notification, entry: dict[str, Any]) -> None:
        payload = notification.payload
        record = {
            "notification": notification.id,
            "provider": notification.dialect.name,
            "merchant": notification.target.merchant,
            "refundId": payload.get("refundId"),
            "refundRequestId": payload.get("refundRequestId"),
            "status": payload.get("refundStatus"),
            "url": notification.target.url,
            "fault": notification.fault,
            "attempt": notification.attempt,
            "copy": 1,
            "forgery": False,
            "requestTime": None,
            "replyStatus": None,
            "replyBody": None,
            "error": None,
            "at": time.time(),
            **entry,
        }
        self.pushes.add(record)
        if self._log is not None:
            reply = f"HTTP {record['replyStatus']} " if record["replyStatus"] is not None else ""
            self._log(
                f"{record['provider']:<10} {record['refundId']} notify {record['status']} attempt {record['attempt']}: "
                f"{reply}{record['outcome']}{' (' + record['fault'] + ')' if record['fault'] else ''}"
            )


def post(url: str, headers: dict[str, str], body: bytes, timeout: float = SEND_TIMEOUT_S) -> tuple[int, bytes]:
    """POST ``body`` to ``url``: https with verification, plain http to loopback only; no proxies, no redirects.

    Raises:
        ValueError: for a URL the sandbox must not call.
        OSError, http.client.HTTPException: when the receiver cannot be reached or answers garbage.
    """
    parts = urlsplit(check_notify_url(url))
    host, port = parts.hostname or "", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    elif is_loopback_host(host):
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    else:  # check_notify_url already refuses this; kept so the rule holds next to the socket
        raise ValueError("plain http is allowed to a loopback host only")
    try:
        connection.request("POST", parts.path or "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(MAX_REPLY_BYTES)
    finally:
        connection.close()


def default_caller(provider: str, merchant: str) -> str:
    """The caller id a merchant's pushes are signed for: profile ``<provider>-<merchant>`` if the sandbox has
    one (``antom-live`` for merchant ``live``), else the provider's first profile."""
    specs = [spec for spec in PROFILE_SPECS if spec.provider == provider]
    named = next((spec for spec in specs if spec.name == f"{provider}-{merchant}"), specs[0])
    return named.caller_id


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
