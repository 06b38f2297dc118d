"""EventBridge PutEvents failures, on demand: per-entry ``InternalFailure`` with the call succeeding, a whole
call failing with HTTP 500, or an answer too late for the caller's timeout.

On AWS a PutEvents call can succeed (HTTP 200) with ``FailedEntryCount`` > 0: the failed entries carry an
``ErrorCode`` and were not delivered, and nothing is raised; a caller that does not read the count loses the
event. moto delivers every valid entry, so no test could see that loss. The faults are off by default and
read from :class:`~refund_poller.local.strict.StrictSettings` at each call, so a test turns them on while
the stack runs.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moto.core.exceptions import JsonRESTError
from moto.events.models import EventsBackend

if TYPE_CHECKING:
    from refund_poller.local.strict import StrictSettings

INTERNAL_FAILURE = {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal Failure"}

_settings: StrictSettings | None = None
_draw = random.Random()  # noqa: S311  # fault injection, not cryptography
_lock = threading.Lock()
_installed = False


class InternalException(JsonRESTError):  # noqa: N818  # the name EventBridge gives it
    """EventBridge's ``InternalException``: HTTP 500, the whole request failed."""

    code = 500

    def __init__(self) -> None:
        super().__init__("InternalException", "An internal error occurred (local stack fault injection)")


def install(settings: StrictSettings) -> None:
    global _settings, _installed
    with _lock:
        _settings = settings
        _draw.seed(settings.put_events_seed)
        if not _installed:
            EventsBackend.put_events = _faulty(EventsBackend.put_events)  # type: ignore[method-assign]
            _installed = True


def uninstall() -> None:
    global _settings
    with _lock:
        _settings = None


def _fails(settings: StrictSettings) -> bool:
    """Whether the next entry fails (called under the lock)."""
    if settings.put_events_failed_entries > 0:
        settings.put_events_failed_entries -= 1
        return True
    return settings.put_events_failure_rate > 0 and _draw.random() < settings.put_events_failure_rate


def _faulty(put_events: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
    @functools.wraps(put_events)
    def put(backend: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        settings = _settings
        if settings is None or not settings.put_events_faults or len(events) > 10:  # moto answers >10 itself
            return put_events(backend, events)
        with _lock:
            if settings.put_events_errors > 0:
                settings.put_events_errors -= 1
                raise InternalException()
            failing = [_fails(settings) for _ in events]
        delivered = iter(
            put_events(backend, [event for event, fails in zip(events, failing, strict=True) if not fails])
        )
        entries = [dict(INTERNAL_FAILURE) if fails else next(delivered) for fails in failing]
        if settings.put_events_delay_seconds > 0:  # delivered already: a timed-out caller cannot know that
            time.sleep(settings.put_events_delay_seconds)
        return entries

    return put
