"""The Lambda runtime inside a worker process: import the handler once (init), then serve invocations.

Started as ``python -P worker_main.py`` with the function's environment (``-P`` keeps this file's folder
off ``sys.path``, so it cannot shadow the function's modules). Standard library only: the function's own
``PYTHONPATH`` is all there is.

Protocol: one JSON request per line on stdin, one JSON reply per line on the original stdout. The function's
``print`` output is redirected to stderr, which the parent collects as the invocation's logs; a mark line on
stderr, written just before each reply, tells the parent where the logs of that phase end.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

LOG_MARK = "\x1e@@local-cloud-mark "  # the parent (worker_process.py) splits stderr on it

Handler = Callable[[Any, "LambdaContext"], Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """The ``context`` argument, with the attributes and method of the Python runtime's own."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.aws_request_id: str = request["requestId"]
        self.invoked_function_arn: str = request["invokedFunctionArn"]
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # The real runtime reads it from the environment and leaves it a string; so do we.
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms: int = request["deadlineMs"]

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message: str) -> None:
        sys.stderr.write(message)


class _Encoder(json.JSONEncoder):
    """The runtime's response encoder: Decimals (as DynamoDB returns numbers) become JSON numbers."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


_REQUEST_ID = _RequestIdFilter()


def main() -> None:
    requests, replies = _take_standard_streams()
    _install_root_log_handler()
    started = time.monotonic()
    handler, error = _load_handler(os.environ.get("_HANDLER", ""))
    init = {"type": "init", "error": error, "durationMs": (time.monotonic() - started) * 1000}
    _reply(replies, init, "init")
    if handler is None:
        return
    for line in requests:
        request = json.loads(line)
        _reply(replies, _invoke(handler, request), request["requestId"])


def _take_standard_streams() -> tuple[TextIO, TextIO]:
    # Keep the real stdin/stdout for the protocol; the function's stdout goes to stderr, its stdin is empty.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return requests, replies


def _install_root_log_handler() -> None:
    # The Python runtime gives the root logger a handler in this format (the level stays WARNING).
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_REQUEST_ID)
    logging.getLogger().addHandler(handler)


def _load_handler(name: str) -> tuple[Handler | None, dict[str, Any] | None]:
    """The handler function, or the error Lambda reports for it (errorType and message as the runtime's)."""
    module_name, _, function_name = name.rpartition(".")
    if not module_name:
        return None, _fault("Runtime.MalformedHandlerName", f"Bad handler '{name}': not enough values to unpack")
    if module_name.split(".")[0] in sys.builtin_module_names:
        message = f"Cannot use built-in module {module_name} as a handler module"
        return None, _fault("Runtime.BuiltInModuleConflict", message)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        return None, _fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}")
    except SyntaxError as error:
        trace = [f'  File "{error.filename}" Line {error.lineno}\n    {error.text}']
        return None, _fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}", trace)
    except Exception:
        return None, _exception_fault(_exc_info(), "")
    handler = getattr(module, function_name, None)
    if not callable(handler):
        return None, _fault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler, None


def _invoke(handler: Handler, request: dict[str, Any]) -> dict[str, Any]:
    _REQUEST_ID.request_id = request["requestId"]
    os.environ["_X_AMZN_TRACE_ID"] = request["traceId"]
    try:
        result = handler(request["event"], LambdaContext(request))
    except Exception:
        return {"type": "error", "error": _exception_fault(_exc_info(), request["requestId"]), **_usage()}
    try:
        payload = json.dumps(result, cls=_Encoder, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        fault = _fault("Runtime.MarshalError", f"Unable to marshal response: {error}", request_id=request["requestId"])
        return {"type": "error", "error": fault, **_usage()}
    return {"type": "result", "payload": payload, **_usage()}


def _fault(error_type: str, message: str, trace: list[str] | None = None, request_id: str = "") -> dict[str, Any]:
    fault = {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace or []}
    _log_fault(fault)
    return fault


def _exception_fault(exc_info: ExcInfo, request_id: str) -> dict[str, Any]:
    error_type, error, tb = exc_info
    # Like the runtime, leave out its own frames: the trace starts in the function's code.
    frames = [frame for frame in traceback.extract_tb(tb) if frame.filename != __file__]
    return _fault(error_type.__name__, str(error), traceback.format_list(frames), request_id)


def _exc_info() -> ExcInfo:
    error_type, error, tb = sys.exc_info()
    assert error_type is not None and error is not None  # only called inside an except block
    return error_type, error, tb


def _log_fault(fault: dict[str, Any]) -> None:
    lines = [f"[ERROR] {fault['errorType']}: {fault['errorMessage']}"]
    if fault["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line for element in fault["stackTrace"] for line in element.splitlines())
    sys.stderr.write("\n".join(lines) + "\n")


def _usage() -> dict[str, Any]:
    # Linux keeps ru_maxrss across exec, so it would report the parent's peak: VmHWM is this process's own.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return {"maxMemoryMB": int(line.split()[1]) // 1024}
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    return {"maxMemoryMB": peak // (1024 * 1024) if sys.platform == "darwin" else peak // 1024}


def _reply(replies: TextIO, message: dict[str, Any], mark: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{LOG_MARK}{mark}\n")
    sys.stderr.flush()
    replies.write(json.dumps(message) + "\n")
    replies.flush()


if __name__ == "__main__":
    main()
