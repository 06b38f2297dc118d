"""The state file of a running ``refund-poller local up``: how other commands in this directory find the stack.

``.refund-poller/local-stack.json`` (relative to the working directory) holds the emulated AWS endpoint, the
stack's outputs, the sandbox URL and the merchant profiles; ``local up`` writes it once the stack is ready and
removes it when it stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = Path(".refund-poller")
STATE_FILE = STATE_DIR / "local-stack.json"


@dataclass(frozen=True)
class LocalStackState:
    endpoint_url: str
    region: str
    outputs: dict[str, str]
    sandbox_url: str
    pid: int
    fast: bool = False
    profiles: dict[str, str] = field(default_factory=dict)
    """Sandbox profile name → the profile file."""
    secret_names: dict[str, str] = field(default_factory=dict)
    """Sandbox profile name → the Secrets Manager secret the functions read it from."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_state(state: LocalStackState, path: Path = STATE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state.to_json(), indent=2), encoding="utf-8")
    temporary.replace(path)  # readers never see half a file


def read_state(path: Path = STATE_FILE) -> LocalStackState | None:
    """The recorded stack, or None when there is no (readable) state file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LocalStackState(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(path: Path = STATE_FILE, pid: int | None = None) -> None:
    """Remove the state file (only if it is ours, when ``pid`` is given)."""
    current = read_state(path)
    if pid is None or current is None or current.pid == pid:
        path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
