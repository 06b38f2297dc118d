"""Chaos: faults injected into a share of the sandbox's answers, on top of the scripts.

A chaos fault stands in for the network or the provider misbehaving; it does not advance the
refund's lifecycle, except ``slow``, which delays the real answer. A seed makes a run repeatable.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHAOS_FAULTS = ("http500", "http429", "reset", "garbage", "badsig", "nosig", "unknown", "ratelimit", "slow")
DEFAULT_SLOW_MS = 1_000
MAX_SLOW_MS = 60_000


class ChaosError(ValueError):
    """A chaos configuration is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """What share of answers to spoil, with which faults (picked uniformly), from which seed."""

    rate: float = 0.0
    faults: tuple[str, ...] = CHAOS_FAULTS
    seed: int | None = None
    slow_ms: int = DEFAULT_SLOW_MS

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "faults": list(self.faults), "seed": self.seed, "slowMs": self.slow_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChaosConfig:
        """Validate an admin request body such as ``{"rate": 0.3, "faults": ["reset"], "seed": 1}``."""
        unknown = sorted(set(data) - {"rate", "faults", "seed", "slowMs"})
        if unknown:
            raise ChaosError(f"{unknown[0]}: is not a chaos field (rate, faults, seed, slowMs)")
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ChaosError("rate: must be a number from 0 to 1")
        faults = data.get("faults", list(CHAOS_FAULTS))
        if not isinstance(faults, list) or not faults or any(fault not in CHAOS_FAULTS for fault in faults):
            raise ChaosError(f"faults: must be a non-empty list drawn from {', '.join(CHAOS_FAULTS)}")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ChaosError("seed: must be a whole number or null")
        slow_ms = data.get("slowMs", DEFAULT_SLOW_MS)
        if isinstance(slow_ms, bool) or not isinstance(slow_ms, int) or not 1 <= slow_ms <= MAX_SLOW_MS:
            raise ChaosError(f"slowMs: must be a whole number from 1 to {MAX_SLOW_MS}")
        return cls(rate=float(rate), faults=tuple(faults), seed=seed, slow_ms=slow_ms)


@dataclass
class Chaos:
    """The active configuration and its random source; thread-safe."""

    config: ChaosConfig = field(default_factory=ChaosConfig)
    injected: int = 0
    _random: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, config: ChaosConfig) -> None:
        with self._lock:
            self.config = config
            self.injected = 0
            self._random = random.Random(config.seed)  # noqa: S311 - fault injection, not cryptography

    def roll(self) -> str | None:
        """The fault to inject into this answer, or None to answer normally."""
        with self._lock:
            if self.config.rate <= 0.0 or self._random.random() >= self.config.rate:
                return None
            self.injected += 1
            return self._random.choice(self.config.faults)

    def to_dict(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "injected": self.injected}
