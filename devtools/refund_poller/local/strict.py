"""What AWS does that moto forgives, for data, events and concurrency: the knobs, in one place.

A green test on a local stack that forgives more than AWS proves nothing about a deployment, so every
behaviour here is on by default; ``StrictSettings.forgiving()`` turns them all off (moto as it is), which is
how a test shows that it depends on the emulation. The settings object is read live: a test may change a
knob (a PutEvents fault rate, the index lag) while the stack runs. The table "Strict local stack: data,
events and concurrency" in docs/internals.md names the AWS source of each behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from refund_poller.local import concurrency, event_faults, index_lag, sqs_limits
from refund_poller.local.concurrency import ConcurrencyLimits, poller_concurrency
from refund_poller.local.ttl import TtlSweeper, expire_items

# Lambda's default quota per account and Region (Lambda quotas page): tests set a smaller one.
DEFAULT_ACCOUNT_CONCURRENCY = 1000
# SQS's default MaximumMessageSize for a queue created without one (SQS CreateQueue reference).
DEFAULT_SQS_MAXIMUM_MESSAGE_SIZE = 262_144
# Lambda's SQS event source starts with five concurrent batches and scales up from there (Lambda with SQS).
DEFAULT_SQS_POLLER_CONCURRENCY = 5


@dataclass
class StrictSettings:
    """The AWS behaviours the local stack emulates on top of moto, each with its knob.

    Time-based ones accept small numbers so a test can see them in seconds: AWS deletes expired items
    within days, here within one ``ttl_sweep_seconds``.
    """

    ttl_sweep_seconds: float = 1.0
    """How often expired items are deleted (DynamoDB TTL); 0 turns the sweeper off."""
    ttl_clock: Callable[[], float] = field(default=time.time, compare=False)
    """The epoch time TTL values are compared with; a test may run it fast or ahead."""
    index_lag_seconds: float = 0.5
    """How long a write takes to reach a global secondary index; 0 makes indexes immediately consistent."""
    sqs_size_limits: bool = True
    """Refuse messages over the queue's MaximumMessageSize, counting attributes as SQS does."""
    sqs_default_maximum_message_size: int = DEFAULT_SQS_MAXIMUM_MESSAGE_SIZE
    """MaximumMessageSize of a queue created without one."""
    put_events_faults: bool = True
    """Honour the PutEvents fault knobs below (all of which are 0, no fault, by default)."""
    put_events_failure_rate: float = 0.0
    """Share of PutEvents entries answered with ErrorCode InternalFailure (the call itself succeeds)."""
    put_events_failed_entries: int = 0
    """The next this many PutEvents entries fail with InternalFailure (counted down as they do)."""
    put_events_errors: int = 0
    """The next this many PutEvents calls fail as a whole with HTTP 500 InternalException."""
    put_events_delay_seconds: float = 0.0
    """Each PutEvents answers this late (after delivering): a caller's read timeout makes it a timeout."""
    put_events_seed: int | None = None
    """Seed of the draw behind ``put_events_failure_rate``."""
    lambda_concurrency: bool = True
    """Throttle invocations over reserved or account concurrency; SQS pollers run concurrent batches."""
    account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY
    """The account's concurrent executions limit."""
    sqs_poller_concurrency: int = DEFAULT_SQS_POLLER_CONCURRENCY
    """Concurrent batches per SQS event source (before MaximumConcurrency and reserved concurrency)."""
    vcpus_from_memory: bool = True
    """Workers report ``os.cpu_count()`` as Lambda's vCPU count for the function's MemorySize."""

    @classmethod
    def forgiving(cls) -> StrictSettings:
        """moto as it is: no deletion, no lag, no size limit, no throttling, the host's CPU count."""
        return cls(
            ttl_sweep_seconds=0.0,
            index_lag_seconds=0.0,
            sqs_size_limits=False,
            put_events_faults=False,
            lambda_concurrency=False,
            vcpus_from_memory=False,
        )


class StrictEmulation:
    """The emulations of :class:`StrictSettings` installed into this process's moto, and the TTL sweeper.

    moto's state is process-wide, and so are these patches: one LocalCloud at a time (as moto requires).
    """

    def __init__(self, settings: StrictSettings, account_id: str, region: str) -> None:
        self.settings = settings
        self._account_id = account_id
        self._region = region
        self._sweeper: TtlSweeper | None = None

    def start(self) -> None:
        """Install before deploying: queues created by the deployment get SQS's default size."""
        settings = self.settings
        index_lag.install(lambda: settings.index_lag_seconds)
        sqs_limits.install(lambda: settings.sqs_default_maximum_message_size if settings.sqs_size_limits else None)
        event_faults.install(settings)
        limits = ConcurrencyLimits(lambda: settings.account_concurrency) if settings.lambda_concurrency else None
        concurrency.install(limits, vcpus_from_memory=settings.vcpus_from_memory)
        self._sweeper = TtlSweeper(
            self._account_id, self._region, lambda: settings.ttl_sweep_seconds, lambda: settings.ttl_clock()
        )
        self._sweeper.start()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        index_lag.uninstall()
        sqs_limits.uninstall()
        event_faults.uninstall()
        concurrency.install(None, vcpus_from_memory=False)

    def expire_items(self, now: float | None = None) -> int:
        """Delete the items expired at ``now`` (default: the TTL clock) at once; returns how many."""
        return expire_items(self._account_id, self._region, self.settings.ttl_clock() if now is None else now)

    def poller_concurrency(self, maximum_concurrency: int | None, reserved: int | None) -> int:
        """Concurrent batches for an SQS event source (1, one after another, when concurrency is forgiven)."""
        if not self.settings.lambda_concurrency:
            return 1
        return poller_concurrency(self.settings.sqs_poller_concurrency, maximum_concurrency, reserved)
