"""``refund-poller inquire``: one signed inquiryRefund call, printed as a JSON observation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from refund_core.domain import ProfileError, parse_profile
from refund_core.providers import DEFAULT_TIMEOUT, Provider, QueryError, RefundQuery, provider_for
from refund_poller.cli.errors import fail

# The answer could not be trusted: no answer (unreachable, timed out), an error answer, or one whose signature,
# freshness or refund did not check out. Distinct from 1 (a failure of the command) and 2 (refused arguments).
EXIT_UNTRUSTED = 3
_IDS_HINT = "give --refund-id and/or --refund-request-id (at most 64 characters each; AlphaPay needs --refund-id)"


def inquire(
    profile: Annotated[Path, typer.Option("--profile", help="Merchant profile JSON file.", show_default=False)],
    refund_id: Annotated[str | None, typer.Option("--refund-id", help="The provider's refund id.")] = None,
    refund_request_id: Annotated[
        str | None, typer.Option("--refund-request-id", help="The merchant's refund request id.")
    ] = None,
    connect_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for a connection.")] = (
        DEFAULT_TIMEOUT[0]
    ),
    read_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for the answer.")] = (
        DEFAULT_TIMEOUT[1]
    ),
) -> None:
    """Ask the provider once about one refund and print the observation as one JSON object.

    The observation says what came back: status (SUCCESS, FAIL, PROCESSING, NOT_FOUND, UNKNOWN or
    ERROR), whether it is final, whether the answer's signature verified, both ids, the provider's
    result code and the reason in words.

    Exit status: 0 the provider answered and the answer is trusted (signature verified, about this
    refund), whatever the refund's status; 3 no trusted answer: the provider could not be reached or
    timed out, or its answer was an error or not trusted (the observation's reason and distrust say
    why); 2 the arguments, the profile or the ids were refused and nothing was sent.

    This is development tooling: a profile whose baseUrl is plain http:// to a loopback host (the
    sandbox's) is accepted here; a deployed stack refuses it.

    Examples:

        refund-poller inquire --profile .refund-poller/sandbox/antom.json --refund-request-id processing2-success--r1

        refund-poller inquire --profile .refund-poller/sandbox/alphapay.json --refund-id fail--r2 | jq .status

        refund-poller inquire --profile merchant.json --refund-id 2024010112345 --read-timeout 5
    """
    adapter = _adapter(profile, (connect_timeout, read_timeout))
    try:
        observation = adapter.inquire(RefundQuery(refund_id=refund_id, refund_request_id=refund_request_id))
    except QueryError as exc:
        fail(str(exc), hint=_IDS_HINT)
    typer.echo(json.dumps(observation.to_dict(), indent=2))
    if not observation.verified:
        raise typer.Exit(EXIT_UNTRUSTED)


def _adapter(path: Path, timeout: tuple[float, float]) -> Provider:
    """The provider adapter for a profile file; every refusal is one line naming the file and the field."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read profile {path}: {exc.strerror or exc}", hint="--profile takes a merchant profile JSON file")
    try:
        # Development tooling: plain http to loopback is allowed (the sandbox); deployed functions never allow it.
        return provider_for(parse_profile(text, allow_plain_http=True), timeout=timeout)
    except ProfileError as exc:
        fail(
            f"profile {path}: {exc}", hint="docs/sandbox.md shows working profiles (refund-poller sandbox writes them)"
        )
