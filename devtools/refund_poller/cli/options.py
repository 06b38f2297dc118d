"""Options shared by the commands that work on a stack: which stack (local or deployed), and ``--json``."""

from __future__ import annotations

from typing import Annotated

import typer

StackName = Annotated[
    str | None,
    typer.Option(
        "--stack-name", help="A deployed stack (CloudFormation name); default: the local stack.", show_default=False
    ),
]
AwsProfile = Annotated[str | None, typer.Option("--profile", help="AWS profile for --stack-name.", show_default=False)]
Region = Annotated[str | None, typer.Option("--region", help="AWS region for --stack-name.", show_default=False)]
EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="A local stack's endpoint (default: found through .refund-poller/local-stack.json).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Provider = Annotated[str, typer.Option("--provider", help="antom, alipayplus or alphapay.", show_default=False)]
Merchant = Annotated[str, typer.Option("--merchant", help="Merchant profile name.")]
RefundId = Annotated[str | None, typer.Option("--refund-id", help="The provider's refund id.", show_default=False)]
RefundRequestId = Annotated[
    str | None, typer.Option("--refund-request-id", help="The merchant's refund request id.", show_default=False)
]
