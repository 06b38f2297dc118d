"""``refund-poller invoke``: the Docker-free ``sam local invoke``."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from refund_poller.cli import options
from refund_poller.cli.aws_errors import EXIT_FAILURE, aws_errors
from refund_poller.cli.errors import fail
from refund_poller.cli.local_state import process_alive, read_state
from refund_poller.cli.target import Target, resolve_target

FUNCTIONS = ("StartInquiryFunction", "InquireFunction")


def invoke(
    function: Annotated[str, typer.Argument(help="StartInquiryFunction or InquireFunction.", show_default=False)],
    event: Annotated[Path, typer.Option("--event", "-e", help="The event: a JSON file.", show_default=False)],
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Run a function once with an event, as Lambda would: the payload on stdout, the logs on stderr.

    The function runs with the template's environment against the stack's resources: the local stack found
    in this directory or a parent (or --endpoint-url), a deployed stack (--stack-name), or, when none is
    running, a throwaway local stack started for this one call (and said so on stderr). The events/ files
    use the sandbox's refund id scripts (docs/sandbox.md) and the merchant "default". Exit status 1 when the
    function raised an error.

    Examples:

        refund-poller invoke StartInquiryFunction -e events/sqs_antom_batch.json

        refund-poller invoke InquireFunction -e events/inquire_processing.json | jq .decision

        refund-poller invoke InquireFunction -e events/inquire_success.json --stack-name refund-poller
    """
    if function not in FUNCTIONS:
        fail(
            f"unknown function {function!r}", hint=f"use one of: {', '.join(FUNCTIONS)} (logical ids in template.yaml)"
        )
    payload = _event(event)
    if stack_name or endpoint_url or _local_stack_running():
        target = resolve_target(stack_name, profile, region, endpoint_url)
        result, error, logs = _invoke_api(target, function, payload)
    else:
        result, error, logs = _invoke_in_process(function, payload)
    sys.stderr.write(logs if logs.endswith("\n") or not logs else logs + "\n")
    typer.echo(json.dumps(result, indent=2))
    if error:
        raise typer.Exit(EXIT_FAILURE)


def _event(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", hint="events/ holds sample events")
    except ValueError as exc:
        fail(f"{path} is not JSON: {exc}")


def _local_stack_running() -> bool:
    state = read_state()
    return state is not None and process_alive(state.pid)


def _invoke_api(target: Target, function: str, payload: Any) -> tuple[Any, str | None, str]:
    """Through the Lambda Invoke API: the same worker runtime on a local stack, the real function on AWS."""
    name = target.output(function + "Name")
    lambda_client = target.client("lambda", read_timeout=300)
    with aws_errors(target.where):
        answer = lambda_client.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), LogType="Tail")
        text = answer["Payload"].read().decode("utf-8")
    logs = base64.b64decode(answer.get("LogResult", "")).decode("utf-8", errors="replace")
    return (json.loads(text) if text else None), answer.get("FunctionError"), logs


def _invoke_in_process(function: str, payload: Any) -> tuple[Any, str | None, str]:
    """No stack running: start one here for this call (moto allows one per process, hence not alongside)."""
    from refund_poller.devstack import DevStack  # heavy (moto): only when needed
    from refund_poller.local import LocalCloudError

    sys.stderr.write(
        "no local stack is running (none found here or in a parent directory): starting a throwaway one for this"
        " call, stopped afterwards; `refund-poller local up` keeps one running …\n"
    )
    with tempfile.TemporaryDirectory(prefix="refund-poller-invoke-") as state_dir:
        try:
            with DevStack(Path(state_dir)) as stack:
                result = stack.cloud.invoke(function, payload)
        except LocalCloudError as exc:
            fail(f"cannot run the local stack: {exc}", exit_code=EXIT_FAILURE)
    return result.payload, result.function_error, result.logs
