"""Work moto repeats on every request or execution that gives the same answer each time, done once.

Profiling a local stack under load (bench/README.md, "Local stack profile") showed the moto process, which
runs every emulated service on one interpreter lock, spending most of its time on three things that change
nothing a caller can observe:

- **Parsing the state machine's definition for every execution.** moto's ``ExecutionWorker`` runs the ASL
  through its ANTLR parser (pure Python: about 90 ms of CPU for RefundInquiry) each time an execution starts.
  The parsed program is kept per definition text and each execution gets its own copy (about 1.6 ms), so
  no evaluation state is shared between executions; a definition that fails to parse still fails the same way.
- **Listing moto's package folder for every request.** The request dispatcher asks
  ``moto.backends.list_of_moto_modules()`` (a directory listing plus an ``isdir`` per entry) while holding
  the lock every request takes. The folder does not change while the process runs.
- **A new boto3 client (and connection) for every Task state.** The interpreter's Lambda and service
  integrations build a client per call; one client per region and service does the same calls (botocore
  clients are thread-safe), with a connection pool large enough for many executions at once.
- **Parsing the same JSONPath and UpdateExpression texts for every request.** moto's Step Functions interpreter
  (every ``InputPath``, ``ResultPath``, ``Choice`` variable) and EventBridge (every input path of every target)
  call ``jsonpath_ng``'s ``parse``, which builds a new PLY parser (its tables included) per call: about 1 ms
  each. DynamoDB's UpdateItem tokenises and parses its UpdateExpression twice per request (responses, then the
  backend). Both parses are pure functions of the text and their results are only read afterwards (jsonpath
  ``find``/``update_or_create`` change the data, not the path; moto's update validator deep-copies the AST
  before it resolves values into it), so one parse per text is kept (bounded caches). A text that fails to
  parse is not cached and fails the same way every time.
- **Serialising DynamoDB items attribute by attribute through the service model.** moto's response serializer
  looks each of an AttributeValue's ten members up by reflection (aliases, name forms) for every attribute of
  every returned item: about 2 ms per item of this service. An AttributeValue moto holds as the wire form
  itself (one of ``S``/``N``/``BOOL``/``NULL``/``SS``/``NS``/``M``/``L`` with plain str/bool/list/dict values,
  nested the same way) serialises to exactly that form, so it is written as it is; anything else (binary
  values, objects, several members) goes through moto's serializer as before.
- **Rebuilding a traverser's processing map at every AST node.** moto's update-expression validators ask
  ``nodes_to_be_processed()`` for every node they visit, and it builds the processor's ``_processing_map()``
  dict each time; the map's keys are fixed per processor (classes in every processor moto has), so the tuple
  is kept on the processor instance.
- **Walking every message of a queue several times per message sent or received.** moto's SQS computes all of a
  queue's attributes (three of them count the queue's messages, each walking all of them) to read one:
  ``ContentBasedDeduplication`` at every SendMessage, ``MessageRetentionPeriod`` three times for every message
  a ReceiveMessage returns. With a thousand messages queued, sending and receiving them was quadratic (81 s to
  send 1,000 messages in ``bench.scale``). The retention check reads the queue's retention period itself (the
  value that attribute is made from), and the attributes count the messages in one walk instead of three.
- **Taking a process-wide lock to find an account's backends on every request.** Each request looks up the
  account's backends of its service and of IAM (to mark the access key used) through
  ``BackendDict.__getitem__``, which takes moto's global ``backend_lock`` (an RLock every request thread shares)
  to create them if missing: 12-15 % of the stack process at N = 5,000 refunds, with two thousand threads
  contending. An account's backends, once there, are returned without the lock; a missing account still goes
  through moto's own path, and ``BackendDict.reset`` still finds and clears every one (it empties the dict, so
  the next request creates and registers it again).
``tests/integration/test_moto_speedups.py`` replays the
  service's own requests on patched and unpatched moto and compares every answer.

The patches are process-wide, like moto's own state, and idempotent; ``uninstall()`` restores moto.
"""

from __future__ import annotations

import copy
import functools
import pickle  # nosec B403  # only to copy objects this process made
import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import jsonpath_ng
import jsonpath_ng.ext
from botocore.config import Config
from moto import backends
from moto.core.base_backend import BackendDict
from moto.core.serialize import BaseJSONSerializer
from moto.core.utils import unix_time
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.sqs.models import Queue, SQSBackend
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import boto_client, json_path
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

# Enough connections for every execution's Task in flight at once to keep its own (urllib3 would otherwise open
# and discard extra ones, warning each time).
INTERPRETER_POOL_CONNECTIONS = 200

_ORIGINAL_ENTRYPOINT = ExecutionWorker._get_evaluation_entrypoint
_ORIGINAL_LIST_MODULES = backends.list_of_moto_modules
_ORIGINAL_UPDATE_PARSE = UpdateExpressionParser.__dict__["make"]  # the classmethod object itself
_ORIGINAL_JSONPATH_PARSE = vars(jsonpath_ng)["parse"]
_ORIGINAL_JSONPATH_EXT_PARSE = vars(jsonpath_ng.ext)["parse"]
_ORIGINAL_JSON_STRUCTURE = BaseJSONSerializer._serialize_type_structure
_ORIGINAL_NODES_TO_PROCESS = DepthFirstTraverser.nodes_to_be_processed
_ORIGINAL_RETENTION_CHECK = SQSBackend.is_message_valid_based_on_retention_period
_QUEUE_COUNTS: tuple[str, ...] = ("approximate_number_of_messages", "approximate_number_of_messages_delayed")
_QUEUE_COUNTS += ("approximate_number_of_messages_not_visible",)
_ORIGINAL_QUEUE_PROPERTIES = {name: Queue.__dict__[name] for name in (*_QUEUE_COUNTS, "attributes")}
_ORIGINAL_BACKEND_LOOKUP = BackendDict.__getitem__
# Distinct texts seen: a handful per state machine, rule and service write; the bound only guards memory.
PARSE_CACHE_SIZE = 4096
_lock = threading.Lock()
_installed = False


class ParsedDefinitions:
    """Parsed ASL programs by definition text; each caller gets a private copy.

    The copy is made by unpickling the program pickled once (1.6 ms for RefundInquiry, against 9.5 ms for
    ``copy.deepcopy``, which walks the same ``__reduce_ex__`` state object by object; moto's components define
    no copy or pickle hooks of their own). A program that cannot be pickled is deep-copied instead.
    """

    def __init__(self, parse: Callable[[str], Any]) -> None:
        self._parse = parse
        self._programs: dict[str, tuple[bytes | None, Any]] = {}
        self._lock = threading.Lock()

    def program(self, definition: str) -> Any:
        with self._lock:
            kept = self._programs.get(definition)
        if kept is None:
            parsed = self._parse(definition)  # raises for an invalid definition, every time, as moto does
            try:
                kept = (pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL), None)
            except (pickle.PicklingError, TypeError, AttributeError):
                kept = (None, parsed)
            with self._lock:
                kept = self._programs.setdefault(definition, kept)
        pickled, parsed = kept
        if pickled is not None:
            return pickle.loads(pickled)  # noqa: S301  # bytes this process pickled itself  # nosec B301
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


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _cached_update_expression(expression: str) -> Any:
    return _ORIGINAL_UPDATE_PARSE.__func__(UpdateExpressionParser, expression)


def _cached_make(cls: type, expression: str) -> Any:
    if cls is not UpdateExpressionParser:  # a subclass keeps its own parse
        return _ORIGINAL_UPDATE_PARSE.__func__(cls, expression)
    return _cached_update_expression(expression)


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _cached_jsonpath(path: str) -> Any:
    return _ORIGINAL_JSONPATH_PARSE(path)


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _cached_jsonpath_ext_text(path: str) -> Any:
    return _ORIGINAL_JSONPATH_EXT_PARSE(path)


def _cached_jsonpath_ext(path: str, debug: bool = False) -> Any:
    if debug or not isinstance(path, str):
        return _ORIGINAL_JSONPATH_EXT_PARSE(path, debug=debug)
    return _cached_jsonpath_ext_text(path)


_PLAIN_STRING_MEMBERS = frozenset({"S", "N"})
_PLAIN_BOOL_MEMBERS = frozenset({"BOOL", "NULL"})
_PLAIN_SET_MEMBERS = frozenset({"SS", "NS"})


def _is_wire_attribute_value(value: Any) -> bool:
    """True when moto's serializer would write this AttributeValue back unchanged (see the module docstring)."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((member, inner),) = value.items()
    if member in _PLAIN_STRING_MEMBERS:
        return type(inner) is str
    if member in _PLAIN_BOOL_MEMBERS:
        return type(inner) is bool
    if member in _PLAIN_SET_MEMBERS:
        return type(inner) is list and all(type(entry) is str for entry in inner)
    if member == "M":
        return type(inner) is dict and all(
            type(name) is str and _is_wire_attribute_value(entry) for name, entry in inner.items()
        )
    if member == "L":
        return type(inner) is list and all(_is_wire_attribute_value(entry) for entry in inner)
    return False


def _serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    if (
        key
        and shape.name == "AttributeValue"
        and self.operation_model.service_model.service_name == "dynamodb"
        and not getattr(self._value_picker, "response_transformers", None)
        and _is_wire_attribute_value(value)
    ):
        self._default_serialize(serialized, value, shape, key)
        return
    _ORIGINAL_JSON_STRUCTURE(self, serialized, value, shape, key)


def _kept_nodes_to_be_processed(self: Any) -> Any:
    kept = self.__dict__.get("_speedups_node_types")
    if kept is None:
        kept = self.__dict__["_speedups_node_types"] = _ORIGINAL_NODES_TO_PROCESS(self)
    return kept


def _retention_check(self: SQSBackend, queue_name: str, message: Any) -> bool:
    # get_queue_attributes(queue_name, ["MessageRetentionPeriod"]) is this attribute of the queue
    retention_period = self.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
    return bool(retention_period + message.sent_timestamp / 1000 > unix_time())


_counting = threading.local()


def _counts(queue: Queue) -> dict[str, int]:
    """The three message counts of moto's Queue in one walk (each message's ``visible``/``delayed`` read once)."""
    available = delayed = not_visible = 0
    for message in queue._messages:
        visible, is_delayed = message.visible, message.delayed
        available += visible and not is_delayed
        delayed += is_delayed
        not_visible += not visible
    return dict(zip(_QUEUE_COUNTS, (available, delayed, not_visible), strict=True))


def _count_property(name: str) -> property:
    original = _ORIGINAL_QUEUE_PROPERTIES[name]

    def count(queue: Queue) -> int:
        counted = getattr(_counting, "counts", None)
        if counted is not None and counted[0] is queue:
            return int(counted[1][name])
        return int(original.fget(queue))

    return property(count)


def _queue_attributes(queue: Queue) -> dict[str, Any]:
    _counting.counts = (queue, _counts(queue))
    try:
        return dict(_ORIGINAL_QUEUE_PROPERTIES["attributes"].fget(queue))
    finally:
        _counting.counts = None


def _account_backends(self: BackendDict[Any], account_id: str) -> Any:
    # Present means moto created it and registered this BackendDict for reset (reset removes both together).
    found = dict.get(self, account_id)
    return found if found is not None else _ORIGINAL_BACKEND_LOOKUP(self, account_id)


def install() -> None:
    """Patch moto (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        ExecutionWorker._get_evaluation_entrypoint = _cached_entrypoint  # type: ignore[method-assign,assignment]
        backends.list_of_moto_modules = _cached_module_names
        setattr(boto_client, "boto3", SharedClients())  # noqa: B010  # only .client() is used there
        UpdateExpressionParser.make = classmethod(_cached_make)
        # moto imported these names into its modules; EventBridge imports jsonpath_ng.ext.parse at each call.
        setattr(result_path, "parse", _cached_jsonpath)  # noqa: B010
        setattr(json_path, "parse", _cached_jsonpath_ext)  # noqa: B010
        setattr(jsonpath_ng.ext, "parse", _cached_jsonpath_ext)  # noqa: B010
        BaseJSONSerializer._serialize_type_structure = _serialize_structure  # type: ignore[method-assign]
        DepthFirstTraverser.nodes_to_be_processed = _kept_nodes_to_be_processed
        SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
        for name in _QUEUE_COUNTS:
            setattr(Queue, name, _count_property(name))
        setattr(Queue, "attributes", property(_queue_attributes))  # noqa: B010
        BackendDict.__getitem__ = _account_backends  # type: ignore[method-assign]
        _installed = True


def installed() -> bool:
    return _installed


def uninstall() -> None:
    global _installed
    with _lock:
        ExecutionWorker._get_evaluation_entrypoint = _ORIGINAL_ENTRYPOINT  # type: ignore[method-assign]
        backends.list_of_moto_modules = _ORIGINAL_LIST_MODULES
        setattr(boto_client, "boto3", boto3)  # noqa: B010  # moto's own import
        UpdateExpressionParser.make = _ORIGINAL_UPDATE_PARSE
        setattr(result_path, "parse", _ORIGINAL_JSONPATH_PARSE)  # noqa: B010
        setattr(json_path, "parse", _ORIGINAL_JSONPATH_EXT_PARSE)  # noqa: B010
        setattr(jsonpath_ng.ext, "parse", _ORIGINAL_JSONPATH_EXT_PARSE)  # noqa: B010
        BaseJSONSerializer._serialize_type_structure = _ORIGINAL_JSON_STRUCTURE  # type: ignore[method-assign]
        DepthFirstTraverser.nodes_to_be_processed = _ORIGINAL_NODES_TO_PROCESS
        SQSBackend.is_message_valid_based_on_retention_period = _ORIGINAL_RETENTION_CHECK  # type: ignore[method-assign]
        for name, original in _ORIGINAL_QUEUE_PROPERTIES.items():
            setattr(Queue, name, original)
        BackendDict.__getitem__ = _ORIGINAL_BACKEND_LOOKUP  # type: ignore[method-assign]
        _installed = False
