"""Work moto repeats on every request or execution that gives the same answer each time, done once.

Profiling a local stack under load (bench/README.md, "Local stack profile") showed the moto process, which
runs every emulated service on one interpreter lock, spending most of its time on three things that change
nothing a caller can observe:

- **Parsing the state machine's definition for every execution.** moto's ``ExecutionWorker`` runs the ASL
  through its ANTLR parser (pure Python: about 90 ms of CPU for RefundInquiry) each time an execution starts.
  The parsed program is kept per definition text and each execution gets its own deep copy (about 6 ms), so
  no evaluation state is shared between executions; a definition that fails to parse still fails the same way.
- **Listing moto's package folder for every request.** The request dispatcher asks
  ``moto.backends.list_of_moto_modules()`` (a directory listing plus an ``isdir`` per entry) while holding
  the lock every request takes. The folder does not change while the process runs.
- **A new boto3 client (and connection) for every Task state.** The interpreter's Lambda and service
  integrations build a client per call; one client per region and service does the same calls (botocore
  clients are thread-safe), with a connection pool large enough for many executions at once.

The patches are process-wide, like moto's own state, and idempotent; ``uninstall()`` restores moto.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from botocore.config import Config
from moto import backends
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

# Enough connections for every execution's Task in flight at once to keep its own (urllib3 would otherwise open
# and discard extra ones, warning each time).
INTERPRETER_POOL_CONNECTIONS = 200

_ORIGINAL_ENTRYPOINT = ExecutionWorker._get_evaluation_entrypoint
_ORIGINAL_LIST_MODULES = backends.list_of_moto_modules
_lock = threading.Lock()
_installed = False


class ParsedDefinitions:
    """Parsed ASL programs by definition text; each caller gets a private deep copy."""

    def __init__(self, parse: Callable[[str], Any]) -> None:
        self._parse = parse
        self._programs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def program(self, definition: str) -> Any:
        with self._lock:
            parsed = self._programs.get(definition)
        if parsed is None:
            parsed = self._parse(definition)  # raises for an invalid definition, every time, as moto does
            with self._lock:
                self._programs.setdefault(definition, parsed)
        return copy.deepcopy(parsed)


class SharedClients:
    """Stands in for the ``boto3`` module inside moto's interpreter: ``client()`` reuses one per endpoint."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def client(self, **kwargs: Any) -> Any:
        key = tuple(sorted((name, value) for name, value in kwargs.items() if name != "config"))
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                config = kwargs.get("config") or Config()
                kwargs["config"] = config.merge(Config(max_pool_connections=INTERPRETER_POOL_CONNECTIONS))
                found = self._clients[key] = boto3.client(**kwargs)
            return found


_definitions = ParsedDefinitions(lambda definition: AmazonStateLanguageParser.parse(definition)[0])


def _cached_entrypoint(worker: ExecutionWorker) -> Any:
    return _definitions.program(worker._evaluation_details.state_machine_details.definition)


_module_names: tuple[str, ...] | None = None


def _cached_module_names() -> Iterable[str]:
    global _module_names
    if _module_names is None:
        _module_names = tuple(_ORIGINAL_LIST_MODULES())
    return _module_names


def install() -> None:
    """Patch moto (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        ExecutionWorker._get_evaluation_entrypoint = _cached_entrypoint  # type: ignore[method-assign,assignment]
        backends.list_of_moto_modules = _cached_module_names
        setattr(boto_client, "boto3", SharedClients())  # noqa: B010  # only .client() is used there
        _installed = True


def uninstall() -> None:
    global _installed
    with _lock:
        ExecutionWorker._get_evaluation_entrypoint = _ORIGINAL_ENTRYPOINT  # type: ignore[method-assign]
        backends.list_of_moto_modules = _ORIGINAL_LIST_MODULES
        setattr(boto_client, "boto3", boto3)  # noqa: B010  # moto's own import
        _installed = False
