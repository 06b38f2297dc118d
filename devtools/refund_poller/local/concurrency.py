"""Lambda concurrency as Lambda enforces it, and the vCPUs a function's memory buys.

Synchronous invocations over a limit are refused the way the Invoke API refuses them: HTTP 429
``TooManyRequestsException`` with ``Reason`` ``ReservedFunctionConcurrentInvocationLimitExceeded`` (the
function's reserved concurrency; 0 throttles every invoke) or ``ConcurrentInvocationLimitExceeded`` (the
account's limit, less what other functions reserve, shared by the functions without a reservation). Step
Functions' ``lambda:invoke`` then fails with ``Lambda.TooManyRequestsException`` (moto's interpreter prefixes
the Invoke API's error code), which is what an ASL ``Retry`` names. Without this, moto runs any number of
invocations at once and a burst can never turn into throttling.

An SQS event source is not throttled this way: its pollers run as many concurrent batches as the mapping's
``ScalingConfig.MaximumConcurrency`` and the function's reserved concurrency allow (see
:func:`poller_concurrency`); an invoke that is throttled anyway leaves its messages on the queue.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from moto.awslambda.utils import get_backend
from moto.core.exceptions import JsonRESTError

RESERVED_LIMIT = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_LIMIT = "ConcurrentInvocationLimitExceeded"
MB_PER_VCPU = 1769  # Lambda: "At 1,769 MB, a function has the equivalent of one vCPU"
MAX_VCPUS = 6  # at 10,240 MB
MIN_VCPUS = 2  # os.cpu_count() inside Lambda reports 2 at the smallest sizes


class TooManyRequestsException(JsonRESTError):  # noqa: N818  # the name Lambda gives it
    """The Invoke API's throttling error, with the ``Reason`` and ``Type`` fields Lambda adds."""

    code = 429

    def __init__(self, reason: str) -> None:
        message = "Rate Exceeded."
        super().__init__("TooManyRequestsException", message)
        self.description = json.dumps(
            {"__type": "TooManyRequestsException", "message": message, "Reason": reason, "Type": "User"}
        )


class ConcurrencyLimits:
    """Invocations in flight per function, admitted against reserved and account concurrency."""

    def __init__(self, account_limit: Callable[[], int]) -> None:
        self._account_limit = account_limit
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admitted(self, function: Any) -> Iterator[None]:
        """Run the body as one invocation of moto's ``LambdaFunction``, or raise TooManyRequestsException."""
        name = str(function.function_name)
        reservations = _reservations(function)
        with self._lock:
            reserved = reservations.get(name)
            if reserved is not None:
                if self._in_flight.get(name, 0) >= reserved:
                    raise TooManyRequestsException(RESERVED_LIMIT)
            else:
                unreserved_pool = self._account_limit() - sum(reservations.values())
                unreserved_busy = sum(count for fn, count in self._in_flight.items() if fn not in reservations)
                if unreserved_busy >= unreserved_pool:
                    raise TooManyRequestsException(ACCOUNT_LIMIT)
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[name] -= 1

    def in_flight(self, function_name: str) -> int:
        with self._lock:
            return self._in_flight.get(function_name, 0)


def _reservations(function: Any) -> dict[str, int]:
    """Reserved concurrency of every function in the function's account and Region, by name."""
    backend = get_backend(function.account_id, function.region)
    return {
        str(fn.function_name): int(fn.reserved_concurrency)
        for fn in backend.list_functions()
        if fn.reserved_concurrency not in (None, "")
    }


def poller_concurrency(pollers: int, maximum_concurrency: int | None, reserved: int | None) -> int:
    """Concurrent batches of an SQS event source: Lambda never exceeds MaximumConcurrency, and scales its
    pollers down to the function's reserved concurrency. A function reserved at 0 still gets one poller,
    whose invokes are throttled, so its messages go back to the queue (and on to its DLQ) as on AWS."""
    limits = [pollers] + [limit for limit in (maximum_concurrency, reserved) if limit is not None]
    return max(1, min(limits))


def vcpus(memory_size: int) -> int:
    """The vCPU count a function sees for its MemorySize (proportional, 2 at least, 6 at most)."""
    return max(MIN_VCPUS, min(MAX_VCPUS, math.ceil(memory_size / MB_PER_VCPU)))


_limits: ConcurrencyLimits | None = None
_vcpus_from_memory = False


def install(limits: ConcurrencyLimits | None, *, vcpus_from_memory: bool) -> None:
    """Enforce ``limits`` on every synchronous invocation (None: moto's unlimited concurrency), and give
    new workers the vCPU count of their memory size (or the host's)."""
    global _limits, _vcpus_from_memory
    _limits = limits
    _vcpus_from_memory = vcpus_from_memory


def worker_cpu_count(memory_size: int) -> int | None:
    """What ``os.cpu_count()`` reports in a new worker of this memory size (None: the host's count)."""
    return vcpus(memory_size) if _vcpus_from_memory else None


def admitted(function: Any) -> contextlib.AbstractContextManager[None]:
    """The installed limits' admission of one invocation (nothing when none are installed)."""
    limits = _limits
    return limits.admitted(function) if limits is not None else contextlib.nullcontext()
