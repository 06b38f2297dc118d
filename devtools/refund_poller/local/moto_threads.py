"""Let the threads of finished Step Functions executions go, so a long-running local stack keeps its memory.

moto's Step Functions interpreter runs each execution on threads of its own (the execution's logic, its program,
and one more for every Task state, to enforce the Task's timeout) and appends every thread it starts to
``moto.stepfunctions.parser.utils.TMP_THREADS``, a module-level list that nothing reads and nothing empties.
On Python 3.13 (the Lambda runtime, and the local stack's interpreter) a ``Thread`` object that is still
referenced keeps its OS thread joinable, and glibc keeps a finished joinable thread's stack mapped until it is
joined or detached: 8 MB of address space and two memory maps per thread, for the life of the process. Every
execution therefore left three or more stacks behind for good; at N = 5,000 refunds (``bench.scale 5000``) the
process reached Linux's per-process map limit (``vm.max_map_count``, 65,530) after about 32,000 threads, could
no longer start one, and deadlocked. Python 3.11 detaches its threads, so the leak did not show there.

The list is replaced, in every moto module that imported it, by one that drops finished threads as it grows
(amortised: a sweep when it has doubled since the last one). A dropped ``Thread`` object is freed with its
handle, which detaches the OS thread and unmaps its stack. Threads still running stay referenced by
``threading`` itself; moto only ever appends to the list, so nothing it does changes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from moto.stepfunctions.parser import utils as parser_utils

_ORIGINAL: list[threading.Thread] = parser_utils.TMP_THREADS
# The first sweep once this many threads are listed; after that, when the list has doubled since the last one.
_FIRST_SWEEP_AT = 64


class LiveThreads(list[threading.Thread]):
    """A list of threads that forgets the finished ones whenever it has doubled in length since it last did."""

    def __init__(self, threads: Iterable[threading.Thread] = ()) -> None:
        super().__init__(threads)
        self._lock = threading.Lock()
        self._sweep_at = _FIRST_SWEEP_AT
        self.sweep()

    def append(self, thread: threading.Thread) -> None:
        super().append(thread)
        if len(self) >= self._sweep_at:
            self.sweep()

    def sweep(self) -> None:
        with self._lock:
            # Not started yet (moto appends before it starts) counts as live: its starter still holds it anyway.
            self[:] = [thread for thread in self if thread.is_alive() or thread.ident is None]
            self._sweep_at = max(_FIRST_SWEEP_AT, 2 * len(self))


def _importers() -> list[object]:
    return [module for module in list(sys.modules.values()) if getattr(module, "TMP_THREADS", None) is not None]


def install() -> None:
    """Replace moto's thread list everywhere it was imported (idempotent)."""
    if isinstance(parser_utils.TMP_THREADS, LiveThreads):
        return
    live = LiveThreads(_ORIGINAL)
    _ORIGINAL.clear()
    # Modules imported later take the name from parser_utils, so that one first.
    parser_utils.TMP_THREADS = live
    for module in _importers():
        if getattr(module, "TMP_THREADS") is _ORIGINAL:  # noqa: B009  # a module attribute by name
            setattr(module, "TMP_THREADS", live)  # noqa: B010


def uninstall() -> None:
    """moto's own list again (what the replacement holds moves back)."""
    current = parser_utils.TMP_THREADS
    if not isinstance(current, LiveThreads):
        return
    _ORIGINAL.extend(current)
    for module in _importers():
        if getattr(module, "TMP_THREADS") is current:  # noqa: B009
            setattr(module, "TMP_THREADS", _ORIGINAL)  # noqa: B010
