"""Refund scripts: the lifecycle the sandbox plays for one refund, read from its id.

A demo needs no set-up because the script travels in the refund id itself: the part before the
first ``--`` is the script, its tokens separated by ``-`` and consumed one poll at a time
(``processing2-success--r1``: PROCESSING, PROCESSING, then SUCCESS). docs/sandbox.md is the
reference for the grammar; this module is its only implementation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCRIPT_SEPARATOR = "--"
# Tokens that end the lifecycle: nothing may follow them.
TERMINAL = frozenset({"success", "fail", "denied"})
# Tokens that last for a number of polls (``processing3``), seconds (``processing3s``) or, bare, for ever.
STATES = frozenset({"processing", "notfound", "unknown"})
# Fault tokens: counted in polls only.
FAULTS = frozenset({"http500", "http429", "reset", "garbage", "badsig", "nosig", "ratelimit"})
MAX_COUNT = 100_000
MAX_SLOW_MS = 60_000

# A count may be written after an "x" ("resetx2" = "reset2"); after a word ending in a digit it must be.
_COUNTED = re.compile(
    rf"(?P<word>{'|'.join(sorted(TERMINAL | STATES | FAULTS))})(?:(?P<x>x)?(?P<count>[0-9]+)(?P<unit>s?))?"
)
_SLOW = re.compile(r"slow(?P<ms>[0-9]+)ms")


class ScriptError(ValueError):
    """A refund script does not parse; the message names the offending token."""

    def __init__(self, token: str, rule: str) -> None:
        super().__init__(f"refund script token '{token}': {rule}")
        self.token = token


@dataclass(frozen=True, slots=True)
class Step:
    """One token of a script: what to answer, and for how long (both limits None: for ever)."""

    kind: str
    polls: int | None = None
    seconds: float | None = None

    @property
    def unbounded(self) -> bool:
        return self.polls is None and self.seconds is None


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed script: its steps in order, plus the latency every answer gets."""

    text: str
    steps: tuple[Step, ...]
    slow_ms: int = 0


SUCCESS = Script(text="success", steps=(Step("success"),))


def script_for_id(refund_id: str) -> Script:
    """The script an id carries: the part before the first ``--``, or plain success without one.

    Raises:
        ScriptError: when the id carries a script that does not parse.
    """
    head, separator, _ = refund_id.partition(SCRIPT_SEPARATOR)
    return parse_script(head) if separator else SUCCESS


def parse_script(text: str) -> Script:
    """Parse a script such as ``processing3-http500x2-success``.

    Raises:
        ScriptError: naming the first token that is unknown, malformed or can never be reached.
    """
    if not text:
        raise ScriptError("", "the script before '--' is empty")
    steps: list[Step] = []
    slow_ms = 0
    for token in text.split("-"):
        slow = _SLOW.fullmatch(token)
        if slow:
            slow_ms = _bounded(token, int(slow["ms"]), MAX_SLOW_MS)
            continue
        if steps:
            _check_reachable(token, steps[-1])
        steps.append(_step(token))
    if not steps:  # only modifiers, e.g. "slow200ms": a successful refund answered slowly
        return Script(text=text, steps=SUCCESS.steps, slow_ms=slow_ms)
    if not (steps[-1].kind in TERMINAL or steps[-1].unbounded):
        rule = "the script must end with success, fail, denied or a token without a count"
        raise ScriptError(text.split("-")[-1], rule)
    return Script(text=text, steps=tuple(steps), slow_ms=slow_ms)


def _check_reachable(token: str, previous: Step) -> None:
    if previous.kind in TERMINAL:
        raise ScriptError(token, f"can never be reached: '{previous.kind}' before it is final")
    if previous.unbounded:
        raise ScriptError(token, f"can never be reached: '{previous.kind}' without a count before it never ends")


def _step(token: str) -> Step:
    match = _COUNTED.fullmatch(token)
    if not match:
        raise ScriptError(token, "is not a known token (see docs/sandbox.md for the grammar)")
    word = match["word"]
    if match["count"] is None:
        return Step(word)
    if word in TERMINAL:
        raise ScriptError(token, f"'{word}' is final and takes no count")
    if word[-1].isdigit() and not match["x"]:
        raise ScriptError(token, f"write the count after an 'x', e.g. {word}x{match['count']}")
    count = _bounded(token, int(match["count"]), MAX_COUNT)
    if match["unit"]:
        if word not in STATES:
            raise ScriptError(token, "only processing, notfound and unknown last for seconds")
        return Step(word, seconds=float(count))
    return Step(word, polls=count)


def _bounded(token: str, value: int, limit: int) -> int:
    if not 1 <= value <= limit:
        raise ScriptError(token, f"the number must be between 1 and {limit}")
    return value
