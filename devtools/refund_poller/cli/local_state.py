"""The state file of a running ``refund-poller local up``: how other commands in this directory find the stack.

``.refund-poller/local-stack.json`` in the directory where ``local up`` runs holds the emulated AWS endpoint, the
stack's outputs, the sandbox URL, the notification endpoint and the merchant profiles; ``local up`` writes it once
the stack is ready and removes it when it stops. Other commands look for it in the working directory and then in
each parent, as git looks for ``.git``, so they work from any subfolder of the project.
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
    notify_base_url: str = ""
    """Where the local stack takes provider notifications: ``<notify_base_url>/notify/<provider>/<merchant>``."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_state(state: LocalStackState, path: Path = STATE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state.to_json(), indent=2), encoding="utf-8")
    temporary.replace(path)  # readers never see half a file


@dataclass(frozen=True)
class FoundState:
    """A state file found from the working directory, and what it records."""

    path: Path
    state: LocalStackState

    @property
    def running(self) -> bool:
        return process_alive(self.state.pid)


def find_state(start: Path | None = None) -> FoundState | None:
    """The nearest state file of a running stack in ``start`` (default: the working directory) or a parent;
    failing that the nearest one left by a stack that has stopped; None when there is none at all."""
    here = (start or Path.cwd()).resolve()
    stopped: FoundState | None = None
    for directory in (here, *here.parents):
        path = directory / STATE_FILE
        state = read_state(path)
        if state is None:
            continue
        found = FoundState(path, state)
        if found.running:
            return found
        stopped = stopped or found
    return stopped


def read_state(path: Path | None = None) -> LocalStackState | None:
    """The stack recorded in ``path`` (default: the nearest, see :func:`find_state`), or None when there is
    no (readable) state file."""
    if path is None:
        found = find_state()
        return found.state if found else None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        # Keys this version does not know (written by a newer `local up`) are skipped, not a reason to fail.
        known = {name: value for name, value in data.items() if name in LocalStackState.__dataclass_fields__}
        return LocalStackState(**known)
    except (OSError, ValueError, TypeError, AttributeError):
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
