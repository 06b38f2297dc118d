"""SQS message size as SQS counts it: the body's UTF-8 bytes plus every message attribute's name, type and
value, against the queue's MaximumMessageSize (262,144 bytes unless the queue sets another, up to 1 MiB).

moto compares only the body's length in characters (a CJK body of 100,000 characters is 300,000 bytes) and
gives a queue created without MaximumMessageSize 1 MiB, so a message that SQS refuses is accepted here and a
test that should lose it (a near-limit body sent on with a rejection reason) passes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from moto.sqs.exceptions import InvalidParameterValue
from moto.sqs.models import SQSBackend

_default_size: Callable[[], int | None] = lambda: None  # noqa: E731  # None: moto's own rules
_lock = threading.Lock()
_installed = False


def install(default_maximum_size: Callable[[], int | None]) -> None:
    """Enforce sizes (``default_maximum_size()`` for queues created without one; None turns it off)."""
    global _default_size, _installed
    with _lock:
        _default_size = default_maximum_size
        if _installed:
            return
        SQSBackend.create_queue = _with_default_size(SQSBackend.create_queue)  # type: ignore[method-assign]
        SQSBackend.send_message = _size_checked(SQSBackend.send_message)  # type: ignore[method-assign]
        SQSBackend.send_message_batch = _batch_size_checked(SQSBackend.send_message_batch)  # type: ignore[method-assign]
        _installed = True


def uninstall() -> None:
    global _default_size
    with _lock:
        _default_size = lambda: None  # noqa: E731


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The bytes SQS counts against MaximumMessageSize."""
    size = len(body.encode("utf-8"))
    for name, value in (attributes or {}).items():
        size += len(name.encode("utf-8")) + len(str(value.get("DataType", "")).encode("utf-8"))
        if value.get("StringValue") is not None:
            size += len(str(value["StringValue"]).encode("utf-8"))
        if value.get("BinaryValue") is not None:
            size += _binary_length(value["BinaryValue"])
    return size


def _binary_length(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(str(value), validate=True))  # the wire form is base64 text
    except (binascii.Error, ValueError):
        return len(str(value).encode("utf-8"))


def _check(backend: SQSBackend, queue_name: str, body: str, attributes: Mapping[str, Any] | None) -> None:
    if _default_size() is None:
        return
    queue: Any = backend.get_queue(queue_name)  # its attributes become attributes of the object
    limit = int(queue.maximum_message_size)
    if message_size(body, attributes) > limit:
        raise InvalidParameterValue(
            f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
        )


def _with_default_size(create_queue: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(create_queue)
    def create(backend: SQSBackend, name: str, tags: dict[str, str] | None = None, **kwargs: Any) -> Any:
        default = _default_size()
        if default is not None and "MaximumMessageSize" not in kwargs and name not in backend.queues:
            kwargs["MaximumMessageSize"] = default
        return create_queue(backend, name, tags, **kwargs)

    return create


def _size_checked(send_message: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_message)
    def send(backend: SQSBackend, queue_name: str, message_body: str, *args: Any, **kwargs: Any) -> Any:
        attributes = kwargs.get("message_attributes", args[0] if args else None)
        _check(backend, queue_name, message_body, attributes)
        return send_message(backend, queue_name, message_body, *args, **kwargs)

    return send


def _batch_size_checked(send_message_batch: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_message_batch)
    def send_batch(backend: SQSBackend, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        for entry in entries.values():  # every entry before any is sent, as moto's own checks do
            _check(backend, queue_name, str(entry.get("MessageBody", "")), entry.get("MessageAttributes"))
        return send_message_batch(backend, queue_name, entries)

    return send_batch
