"""The console's pages: a Flask application over one stack (refund_poller.cli.target.Target).

Safety: Jinja2 autoescapes every template, and the SVG drawings escape their text, so ids and messages (chosen by
merchants and providers) stay text; the Content-Security-Policy allows no script at all and styles from this server
only; the Host header must name the loopback address the server is bound to (a page on another site cannot reach
it through DNS rebinding); the one state-changing request (DLQ redrive) is a POST with a per-server CSRF token,
confirmed on a page that shows what it would move and skip. Nothing from Secrets Manager is ever read.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import typer
from flask import Flask, abort, render_template, request
from werkzeug.wrappers import Response

from refund_poller.cli.dlq_messages import DlqMessage, max_receive_count, peek, redrive, with_dlq
from refund_poller.cli.refunds import PROVIDERS
from refund_poller.cli.target import Target
from refund_poller.console import chart, graph
from refund_poller.console.readers import (
    Execution,
    Filters,
    ReadError,
    console_links,
    executions,
    get_refund,
    list_refunds,
    reading,
    state_machine_log_group,
)

ASL_FILE = Path(__file__).resolve().parents[3] / "statemachine" / "refund_inquiry.asl.json"
REFRESH_SECONDS = 5
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATUS_CHOICES = ("SUCCESS", "FAIL", "PROCESSING", "NOT_FOUND", "UNKNOWN", "UNRESOLVED", "ERROR")
FLAG_CHOICES = ("polling", "conflict", "gave-up")
MEANINGS = {
    "SUCCESS": "Final: the provider confirmed the refund. It never changes.",
    "FAIL": "Final: the provider says the refund failed (see the fail reason). It never changes.",
    "PROCESSING": "The provider is still processing the refund; polling goes on until its window closes.",
    "NOT_FOUND": "The provider does not know this refund (asked again the allowed number of times): check the ids.",
    "UNKNOWN": "No answer could be trusted yet (see the last answer's reason); polling goes on.",
    "UNRESOLVED": "The polling window closed without a final status: send the message again later.",
    "ERROR": "The provider refused the inquiry (e.g. signature or credentials), or polling kept failing: see the "
    "reason, fix the cause, send the message again.",
}


@dataclass
class ConsoleSettings:
    target: Target
    asl_file: Path = ASL_FILE
    allow_redrive: bool = True
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    allowed_hosts: set[str] = field(default_factory=set)  # Host headers accepted; set once the port is known


def create_app(settings: ConsoleSettings) -> Flask:
    app = Flask(__name__)
    app.config["CONSOLE"] = settings
    app.jinja_env.globals.update(meanings=MEANINGS, where=_where(settings.target))
    app.jinja_env.filters["merge_query"] = _merge_query

    @app.before_request
    def only_this_host() -> None:
        if settings.allowed_hosts and request.host not in settings.allowed_hosts:
            abort(421)  # Misdirected Request: a name other than the bound loopback address

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(ReadError)
    def read_failed(error: ReadError) -> tuple[str, int]:
        return render_template("error.html", message=str(error)), 502

    @app.errorhandler(typer.Exit)
    def refused(_: typer.Exit) -> tuple[str, int]:
        # The CLI's own checks (e.g. a stack output missing) print their error line on the server's terminal.
        return render_template("error.html", message="the stack refused: see the console's terminal"), 502

    @app.get("/")
    def refunds() -> str:
        filters = Filters(
            search=request.args.get("q", "").strip(),
            provider=request.args.get("provider", ""),
            merchant=request.args.get("merchant", "").strip(),
            status=request.args.get("status", ""),
        )
        found, truncated = list_refunds(settings.target, filters)
        return render_template(
            "refunds.html",
            refunds=found,
            filters=filters,
            truncated=truncated,
            providers=PROVIDERS,
            statuses=STATUS_CHOICES,
            flags=FLAG_CHOICES,
            refresh=_refresh(any(refund.polling for refund in found)),
        )

    @app.get("/refund")
    def refund() -> str:
        key = request.args.get("key", "")
        found = get_refund(settings.target, key) if key else None
        if found is None:
            abort(404)
        windows = executions(settings.target, found)
        definition = graph.read_definition(settings.asl_file)
        latest = windows[-1] if windows else None
        log_group = _log_group(settings.target, latest)
        return render_template(
            "refund.html",
            refund=found,
            windows=[_window(w, found.item, definition, w is latest) for w in reversed(windows)],
            answer=(latest.last_observation if latest and latest.last_observation else None)
            or _stored_answer(found.item),
            events=_events(found.item),
            links=console_links(settings.target, key, latest.arn if latest else None, log_group),
            item_json=json.dumps(found.item, indent=2, ensure_ascii=False, sort_keys=True, default=str),
            refresh=_refresh(found.polling),
        )

    @app.get("/dlq")
    def dlq() -> str:
        return render_template(
            "dlq.html", messages=_peek(settings.target), csrf=settings.csrf_token, allow=settings.allow_redrive
        )

    @app.post("/dlq/redrive")
    def dlq_redrive() -> str:
        if not hmac.compare_digest(request.form.get("csrf", ""), settings.csrf_token):
            abort(403)
        if not settings.allow_redrive:
            abort(403)
        wanted = set(request.form.getlist("message"))
        include_rejected = request.form.get("include_rejected") == "1"
        confirmed = request.form.get("confirm") == "1"
        moved, skipped = _redrive(settings.target, wanted, include_rejected, dry_run=not confirmed)
        return render_template(
            "redrive.html",
            moved=moved,
            skipped=skipped,
            confirmed=confirmed,
            wanted=sorted(wanted),
            include_rejected=include_rejected,
            csrf=settings.csrf_token,
        )

    return app


def _merge_query(args: Any, **changes: str) -> str:
    """The query string of ``args`` with ``changes`` (an empty value removes the parameter)."""
    merged = {key: value for key, value in args.items() if key not in changes}
    merged.update({key: value for key, value in changes.items() if value})
    return urlencode(merged)


def _refresh(polling: bool) -> int | None:
    """Seconds between reloads while something is polling (a meta refresh: the page has no script); ``live=0`` in
    the query pauses it, e.g. while typing a search."""
    return REFRESH_SECONDS if polling and request.args.get("live") != "0" else None


def _where(target: Target) -> str:
    return "local stack " + target.where if not target.on_aws else f"deployed stack, {target.where}"


@dataclass(frozen=True)
class Window:
    execution: Execution
    chart: Any
    graph: Any
    latest: bool


def _window(execution: Execution, item: dict[str, Any], definition: dict[str, Any], latest: bool) -> Window:
    notified = None
    if latest and (item.get("notifiedAt") or item.get("source") == "notification"):
        notified = str(item.get("notifiedAt") or item.get("resolvedAt") or "")
    closed_with = str(item.get("status")) if latest and item.get("pollingState") != "POLLING" else None
    marks = chart.marks(execution.steps, notified, closed_with)
    outcome = closed_with or ("POLLING" if latest else "CLOSED")
    return Window(execution, chart.draw(marks), graph.draw(definition, execution.path, outcome), latest)


def _log_group(target: Target, latest: Execution | None) -> str | None:
    if not target.on_aws:
        return None
    if latest is not None and latest.log_group:
        return latest.log_group
    try:
        return state_machine_log_group(target)
    except ReadError:
        return None


def _events(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The result events of the item's outbox: the window's, and a final-status conflict's when there is one."""
    found = []
    for detail_type, id_field, pending_field in (
        ("Refund Inquiry Finished", "eventId", "eventPending"),
        ("Refund Final Status Conflict", "conflictEventId", "conflictEventPending"),
    ):
        if item.get(id_field):
            pending = bool(item.get(pending_field))
            found.append(
                {
                    "detailType": detail_type,
                    "eventId": item[id_field],
                    "state": "pending: not published yet (the next touch or the outbox sweep publishes it)"
                    if pending
                    else "published",
                }
            )
    return found


def _peek(target: Target) -> list[DlqMessage]:
    sqs = target.client("sqs")
    with reading("reading the DLQ"):
        deliveries = max_receive_count(sqs, target.output("InquiryQueueUrl"))
        return peek(sqs, target.output("InquiryDLQUrl"), deliveries)


def _redrive(
    target: Target, wanted: Iterable[str], include_rejected: bool, *, dry_run: bool
) -> tuple[list[DlqMessage], list[DlqMessage]]:
    """The CLI's rules (``dlq redrive``): the named messages move back to the inquiry queue, except those the
    starter rejected as invalid unless ``include_rejected``; ``dry_run`` moves nothing."""
    names = set(wanted)
    sqs, dlq_url, queue_url = target.client("sqs"), target.output("InquiryDLQUrl"), target.output("InquiryQueueUrl")
    moved: list[DlqMessage] = []
    skipped: list[DlqMessage] = []

    def move(messages: list[DlqMessage]) -> set[str]:
        named = [m for m in messages if m.message_id in names]
        skipped.extend(m for m in named if m.rejected_as_invalid and not include_rejected)
        moved.extend(m for m in named if m not in skipped)
        return set() if dry_run else redrive(sqs, dlq_url, queue_url, moved)

    with reading("redriving the DLQ"):
        with_dlq(sqs, dlq_url, None, move)
    return moved, skipped


def _stored_answer(item: dict[str, Any]) -> dict[str, Any]:
    """The item's last answer; its result code and status are in ``result`` when the same write stored it (the
    item keeps them once: docs/internals.md, "Item size and write units")."""
    observation = item.get("lastObservation") or {}
    if not observation:
        return {}
    result = item.get("result") or {}
    stored = {"resultCode": result.get("code"), "resultStatus": result.get("status")}
    return {**{k: v for k, v in stored.items() if v}, **observation}
