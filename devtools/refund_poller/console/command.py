"""``refund-poller console``: serve the refund console on a loopback port until Ctrl-C."""

from __future__ import annotations

import socket
import webbrowser
from typing import Annotated

import typer

from refund_poller.cli import options
from refund_poller.cli.errors import fail
from refund_poller.cli.render import stdout
from refund_poller.cli.target import resolve_target

LOOPBACK = "127.0.0.1"


def console(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).", min=0, max=65535)] = 0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    allow_redrive: Annotated[
        bool,
        typer.Option(
            "--allow-redrive",
            help="Offer DLQ redrive against a deployed stack (always offered on the local stack).",
        ),
    ] = False,
    stack_name: options.StackName = None,
    profile: options.AwsProfile = None,
    region: options.Region = None,
    endpoint_url: options.EndpointUrl = None,
) -> None:
    """Serve a web page with each refund's whole story: the list, a refund's graph, polls and events, the DLQ.

    Listens on 127.0.0.1 only and prints the URL. Against the local stack by default, or a deployed stack with
    --stack-name (your AWS credentials; read calls only, except a DLQ redrive you confirm, which needs
    --allow-redrive there). Ctrl-C stops it.

    Examples:

        refund-poller console --open

        refund-poller console --port 8080 --stack-name refund-poller --region eu-west-1
    """
    # Flask loads only for this command: the other commands start without it.
    from werkzeug.serving import make_server

    from refund_poller.console.app import ConsoleSettings, create_app
    from refund_poller.console.readers import SharedClients

    target = resolve_target(stack_name, profile, region, endpoint_url)
    settings = ConsoleSettings(SharedClients.of(target), allow_redrive=allow_redrive or not target.on_aws)
    # Bound here, not by werkzeug, whose own refusal of a port in use is a multi-line message and exit status 1.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, port))
    except OSError as exc:
        listener.close()
        fail(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}", hint="choose another --port, or 0 for any")
    listener.listen()
    bound = listener.getsockname()[1]
    server = make_server(LOOPBACK, bound, create_app(settings), threaded=True, fd=listener.fileno())
    listener.close()  # the server works on its own duplicate of the socket
    settings.allowed_hosts = {f"{LOOPBACK}:{bound}", f"localhost:{bound}"}
    url = f"http://{LOOPBACK}:{bound}/"
    stdout.print(f"refund console on {url} ({target.where}); Ctrl-C stops it", markup=False)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
