"""The one patch into moto: every Lambda invocation runs the function's own code in our workers.

moto 5.2.5 funnels every invoke path (the Invoke API, Step Functions tasks, its own event triggers) through
``LambdaFunction._invoke_lambda(self, event) -> (payload, errored, logs)``, which would start a Docker
container. Replacing that one method keeps the rest of moto's Lambda bookkeeping (configuration, versions,
CloudWatch Logs). ``LambdaFunction.invoke`` is wrapped too, for the three places where moto's answer is not
Lambda's (see ``_invoke``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moto.awslambda.models import LambdaFunction
from moto.awslambda.utils import get_backend

from refund_poller.local import concurrency
from refund_poller.local.errors import LocalCloudError
from refund_poller.local.worker_process import FunctionSpec
from refund_poller.local.workers import FunctionRunner

_ORIGINAL_INVOKE_LAMBDA = LambdaFunction._invoke_lambda
_ORIGINAL_INVOKE = LambdaFunction.invoke
_installed: LambdaBridge | None = None


class LambdaBridge:
    """Turns a moto ``LambdaFunction`` into a worker invocation.

    Code comes from the folders the template names (``code_dirs`` by function name, ``layer_dirs`` by layer
    version ARN), so edits show on the next cold start; a function created through the API instead runs from
    its uploaded zip, unpacked under ``unpack_dir``.
    """

    def __init__(
        self,
        runner: FunctionRunner,
        code_dirs: Mapping[str, Path],
        layer_dirs: Mapping[str, Path],
        unpack_dir: Path,
    ) -> None:
        self.runner = runner
        self._code_dirs = code_dirs
        self._layer_dirs = layer_dirs
        self._unpack_dir = unpack_dir
        self._unpack_lock = threading.Lock()

    def run(self, function: Any, event: Any) -> tuple[str, bool, str]:
        """``_invoke_lambda``'s contract: the payload, whether it is an error, and the logs."""
        try:
            spec = self.spec_for(function)
        except LocalCloudError as error:
            payload = {"errorType": "Runtime.Unavailable", "errorMessage": str(error)}
            return json.dumps(payload), True, str(error)
        self.runner.limit(spec.name, _int_or_none(function.reserved_concurrency))
        # moto hands over the parsed JSON body, or the string "{}" when there was none.
        invocation = self.runner.invoke(spec, {} if event in (None, "{}") else event, function.function_arn)
        function.logs_backend.ensure_log_group(function.logs_group_name)
        function.save_logs(invocation.logs)
        return invocation.payload, invocation.function_error is not None, invocation.logs

    def spec_for(self, function: Any) -> FunctionSpec:
        runtime = str(function.run_time or "")
        if not runtime.startswith("python"):
            raise LocalCloudError(f"{function.function_name}: runtime {runtime or '(image)'} cannot run locally")
        return FunctionSpec(
            name=function.function_name,
            arn=function.function_arn,
            handler=function.handler or "",
            runtime=runtime,
            timeout=int(function.timeout),
            memory_size=int(function.memory_size),
            code_dir=self._code_dir(function),
            layer_dirs=tuple(self._layer_dir(function, layer["Arn"]) for layer in function.layers),
            environment={name: str(value) for name, value in (function.environment_vars or {}).items()},
            log_group=function.logs_group_name,
        )

    def _code_dir(self, function: Any) -> Path:
        known = self._code_dirs.get(function.function_name)
        return known if known is not None else self._unpack("function", function.code_bytes)

    def _layer_dir(self, function: Any, arn: str) -> Path:
        directory = self._layer_dirs.get(arn)
        if directory is None:
            layer = get_backend(function.account_id, function.region).layers_versions_by_arn(arn)
            if layer is None:
                raise LocalCloudError(f"{function.function_name}: no layer version {arn}")
            directory = self._unpack("layer", layer.code_bytes)
        # A layer's python/ folder is what Lambda puts on the path (/opt/python); a layer built by SAM
        # (BuildMethod) is that folder already.
        python = directory / "python"
        return python if python.is_dir() else directory

    def _unpack(self, kind: str, data: bytes) -> Path:
        target = self._unpack_dir / f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}"
        with self._unpack_lock:
            if not target.is_dir():
                partial = target.with_suffix(".partial")
                shutil.rmtree(partial, ignore_errors=True)
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(partial)  # zipfile drops absolute and ".." parts of member names
                partial.rename(target)
        return target


def install(bridge: LambdaBridge) -> None:
    global _installed
    if _installed is not None and _installed is not bridge:
        raise LocalCloudError("another local runtime already handles Lambda invocations in this process")
    _installed = bridge
    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]  # the point of this module
    LambdaFunction.invoke = _invoke  # type: ignore[method-assign]  # same


def uninstall(bridge: LambdaBridge) -> None:
    global _installed
    if _installed is bridge:
        _installed = None
        LambdaFunction._invoke_lambda = _ORIGINAL_INVOKE_LAMBDA  # type: ignore[method-assign]  # restoring moto's
        LambdaFunction.invoke = _ORIGINAL_INVOKE  # type: ignore[method-assign]  # same


def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    bridge = _installed
    if bridge is None:  # a request still in flight after stop(): moto's own behaviour
        result: tuple[str, bool, str] = _ORIGINAL_INVOKE_LAMBDA(self, event)
        return result
    return bridge.run(self, event)


def _invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
    invocation_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
    if invocation_type == "DryRun":  # moto would run the function; Lambda only checks the request
        return b""
    if invocation_type == "Event":
        # moto runs an asynchronous invoke inside the request; Lambda queues it and answers 202 at once.
        headers = {"x-amz-invocation-type": "Event"}
        threading.Thread(target=_ORIGINAL_INVOKE, args=(self, body, headers, {}), daemon=True).start()
        return b""
    with concurrency.admitted(self):  # over a concurrency limit: TooManyRequestsException, as Lambda
        payload = _ORIGINAL_INVOKE(self, body, request_headers, response_headers)
    if "x-amz-function-error" in response_headers:
        # moto reports "Handled"; Lambda reports "Unhandled" for every error of the Python runtime.
        response_headers["x-amz-function-error"] = "Unhandled"
    return payload


def _int_or_none(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None
