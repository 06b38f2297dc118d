"""Global secondary indexes that lag behind their table, as on AWS.

DynamoDB propagates a write to a table's GSIs asynchronously ("typically within a fraction of a second");
a Query or Scan on a GSI is eventually consistent only (ConsistentRead is a ValidationException, which moto
already answers). moto computes an index from the table's current items at query time, so an index there
is always consistent, and code that looks an item up by index right after writing it cannot fail locally.

Here every write to a table that has a GSI records the item as it was before the write, in a journal
(under the write lock, so it is exact). A Query or Scan on a GSI then runs over the table as it was
``lag`` seconds ago: an item written within the lag shows its state from before the first of those writes
(so a new item is missing, an updated one shows its old index key, a deleted one, TTL deletion included,
is still there). Local secondary indexes and the table itself stay strongly consistent, as on AWS.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from refund_poller.local.dynamodb_atomicity import WRITE_LOCK

Key = tuple[Any, Any]  # (hash key, range key or None) as moto's DynamoType values
_WRITES = ("put_item", "update_item", "delete_item")  # transactions and batches go through these

_lag_seconds: Callable[[], float] = lambda: 0.0  # noqa: E731  # off until installed
_journal: dict[str, deque[tuple[float, Key, Any]]] = {}  # table name → (time, key, item before the write)
_reading = threading.local()  # the lagged items of the table a GSI read on this thread runs over
_installed = False


def install(lag_seconds: Callable[[], float]) -> None:
    """Serve GSI reads ``lag_seconds()`` behind the table (read at each call; 0 means consistent)."""
    global _lag_seconds, _installed
    with WRITE_LOCK:
        _lag_seconds = lag_seconds
        _journal.clear()
        if _installed:
            return
        for name in _WRITES:
            setattr(DynamoDBBackend, name, _journalled(getattr(DynamoDBBackend, name)))
        for name in ("query", "scan"):
            setattr(Table, name, _lagging_read(getattr(Table, name)))
        Table.all_items = _view_or(Table.all_items)  # type: ignore[method-assign,assignment]  # the point of this module
        Table.has_idx_items = _index_view_or(Table.has_idx_items)  # type: ignore[method-assign,assignment]  # same
        _installed = True


def uninstall() -> None:
    """Back to moto's consistent indexes (the patches stay, idle)."""
    global _lag_seconds
    with WRITE_LOCK:
        _lag_seconds = lambda: 0.0  # noqa: E731
        _journal.clear()


def _journalled(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def journalled(backend: DynamoDBBackend, table_name: str, keys: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        lag = _lag_seconds()
        with WRITE_LOCK:
            table = backend.tables.get(table_name)
            if lag <= 0 or table is None or not table.global_indexes:
                return write(backend, table_name, keys, *args, **kwargs)
            try:
                key: Key | None = backend.get_keys_value(table, keys)
            except Exception:  # a malformed key: moto's own write answers it
                key = None
            before = copy.deepcopy(table.get_item(*key)) if key is not None else None
            result = write(backend, table_name, keys, *args, **kwargs)
            if key is not None:  # the write happened (a refused one raised)
                now = time.monotonic()
                entries = _journal.setdefault(table_name, deque())
                entries.append((now, key, before))
                while entries and entries[0][0] < now - lag:
                    entries.popleft()
            return result

    return journalled


def _lagging_read(read: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(read)  # moto passes index_name and consistent_read by position

    @functools.wraps(read)
    def lagging(table: Table, *args: Any, **kwargs: Any) -> Any:
        lag = _lag_seconds()
        if lag <= 0 or not table.global_indexes:
            return read(table, *args, **kwargs)
        arguments = signature.bind(table, *args, **kwargs).arguments
        global_names = {index.name for index in table.global_indexes}
        if arguments.get("index_name") not in global_names or arguments.get("consistent_read"):
            return read(table, *args, **kwargs)  # moto refuses ConsistentRead on a GSI itself
        with WRITE_LOCK:
            view = _as_of(table, time.monotonic() - lag)
        previous = getattr(_reading, "view", None)
        _reading.view = (table.name, view)
        try:
            return read(table, *args, **kwargs)
        finally:
            _reading.view = previous

    return lagging


def _as_of(table: Table, moment: float) -> list[Any]:
    """The table's items as they were at ``moment`` (as far as the journal reaches back)."""
    earliest: dict[Key, Any] = {}
    for written, key, before in _journal.get(table.name, ()):
        if written > moment:
            earliest.setdefault(key, before)
    current: list[Any] = _ORIGINAL_ALL_ITEMS(table)
    if not earliest:
        return current
    view = [item for item in current if (item.hash_key, item.range_key) not in earliest]
    view.extend(before for before in earliest.values() if before is not None)
    return sorted(view, key=lambda item: (item.hash_key, item.range_key) if item.range_key else item.hash_key)


def _current_view(table: Table) -> list[Any] | None:
    reading = getattr(_reading, "view", None)
    if reading is None or reading[0] != table.name:
        return None
    items: list[Any] = reading[1]
    return items


def _view_or(all_items: Callable[[Table], list[Any]]) -> Callable[[Table], list[Any]]:
    @functools.wraps(all_items)
    def items(table: Table) -> list[Any]:
        view = _current_view(table)
        return all_items(table) if view is None else list(view)

    return items


def _index_view_or(has_idx_items: Callable[[Table, str], list[Any]]) -> Callable[[Table, str], list[Any]]:
    @functools.wraps(has_idx_items)
    def items(table: Table, index_name: str) -> list[Any]:
        view = _current_view(table)
        if view is None:
            return has_idx_items(table, index_name)
        needed = {key["AttributeName"] for key in table.get_index(index_name).schema}
        return [item for item in view if needed.issubset(item.attrs)]

    return items


_ORIGINAL_ALL_ITEMS: Callable[[Table], list[Any]] = Table.all_items
