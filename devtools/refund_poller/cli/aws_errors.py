"""AWS and connection failures as one ``error:`` line (and a ``hint:``), never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from refund_poller.cli.errors import fail

EXIT_FAILURE = 1  # the command ran but AWS (or the local stack) refused or could not be reached


@contextmanager
def aws_errors(where: str = "") -> Iterator[None]:
    """Turn botocore's exceptions raised inside the block into one ``error:`` line and exit 1."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = f"{exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        fail(message, hint=_client_hint(str(error.get("Code", ""))), exit_code=EXIT_FAILURE)
    except (EndpointConnectionError, BotoConnectionError) as exc:
        place = f" at {where}" if where else ""
        fail(
            f"cannot reach the stack{place}: {exc}",
            hint="is `refund-poller local up` still running? start it again, or pass --stack-name for a deployed stack",
            exit_code=EXIT_FAILURE,
        )
    except NoCredentialsError:
        fail("no AWS credentials found", hint="pass --profile NAME or run `aws configure`", exit_code=EXIT_FAILURE)
    except NoRegionError:
        fail("no AWS region configured", hint="pass --region, e.g. --region us-east-1", exit_code=EXIT_FAILURE)
    except ProfileNotFound as exc:
        fail(str(exc), hint="`aws configure list-profiles` shows the profiles", exit_code=EXIT_FAILURE)
    except BotoCoreError as exc:
        fail(str(exc), exit_code=EXIT_FAILURE)


def _client_hint(code: str) -> str | None:
    if code in {"ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId"}:
        return "refresh your AWS credentials (e.g. `aws sso login --profile NAME`)"
    if code in {"AccessDenied", "AccessDeniedException"}:
        return "your AWS identity lacks a permission this command needs"
    if code in {"ResourceNotFoundException", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}:
        return "check --stack-name and --region (the stack's outputs name its resources)"
    return None
