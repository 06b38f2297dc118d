"""DynamoDB writes to one item are atomic on AWS: a conditional UpdateItem checks and writes as one step.

moto's server handles requests on many threads and its DynamoDB backend checks a condition and then applies
the update without a lock, so two concurrent conditional writes can both pass their checks (seen here: a
PROCESSING write landing over a SUCCESS that its condition should have refused). Serialising the backend's
write operations restores AWS's per-item guarantee; the project's own conditions still decide every write.
Reads take the same lock: moto applies an update to the live item one action at a time, so a concurrent
GetItem could return a new item with only its key (seen: an alias item without ``target``) and a Scan could fail
copying an item being changed ("dictionary changed size during iteration"); on AWS a read sees a write whole
or not at all.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_READS = ("get_item", "query", "scan", "batch_get_item", "transact_get_items")
WRITE_LOCK = threading.RLock()  # held by every write; the TTL sweeper and the index journal take it too
_installed = False


def serialise_dynamodb_writes() -> None:
    """Make moto's DynamoDB write operations atomic with respect to each other (idempotent)."""
    global _installed
    with WRITE_LOCK:
        if _installed:
            return
        for name in (*_WRITES, *_READS):
            original = getattr(DynamoDBBackend, name, None)
            if original is not None:
                setattr(DynamoDBBackend, name, _serialised(original))
        _installed = True


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with WRITE_LOCK:
            return method(*args, **kwargs)

    return locked
