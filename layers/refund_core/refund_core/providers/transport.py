"""One bounded HTTP exchange with a provider: resolved host checked, body capped, whole call under one deadline.

A provider answer is read as raw bytes in small pieces, so a hostile or broken endpoint cannot make a poll
hold memory or time: the body (compressed or not) is capped, a gzip body is inflated only up to the same cap,
and the call ends at its deadline however slowly the bytes arrive (docs/trust.md, "Bounds").
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.response

from refund_core.domain.addresses import unsafe_address_reason

DEFAULT_MAX_BODY_BYTES = 64 * 1024
_CHUNK = 16 * 1024
_IDENTITY = frozenset({"", "identity"})


class UnansweredError(Exception):
    """The exchange produced no answer worth reading; ``reason`` says why in words.

    ``distrust`` tags a bound the answer broke ("oversize", "deadline", "malformed"); ``refused`` marks a
    configuration error (the host resolves to an address a provider never has): nothing was sent.
    """

    def __init__(self, reason: str, *, distrust: str | None = None, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.distrust = distrust
        self.refused = refused


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """What came back: status, headers (case-insensitive), every ``Signature`` header as received, body bytes."""

    status_code: int
    headers: Mapping[str, str]
    signatures: tuple[str, ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits of one call: per-phase socket timeouts, the total deadline and the body cap."""

    connect_seconds: float
    read_seconds: float
    total_seconds: float
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def check_host(url: str) -> str | None:
    """Refuse a URL whose host resolves to an address no provider has (metadata, link-local, unspecified…).

    Returns the first address the name resolved to: the call connects to that very address (``_new_conn`` below),
    so a name that resolves differently a moment later (DNS rebinding) cannot redirect the call past this check.
    Loopback stays allowed here: whether plain http:// to loopback is acceptable is the profile's rule.
    A name that does not resolve is left to the connection attempt (a transport error, polling goes on).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        reason = unsafe_address_reason(ipaddress.ip_address(address))
        if reason is not None:
            raise UnansweredError(
                f"baseUrl host {host!r} resolves to {address}, which {reason}; not contacted", refused=True
            )
    return str(infos[0][4][0]) if infos else None


def post(session: requests.Session, url: str, headers: Mapping[str, str], body: bytes, bounds: Bounds) -> RawAnswer:
    """POST ``body`` and read the whole answer within ``bounds``; raises :class:`UnansweredError` otherwise."""
    deadline = time.monotonic() + bounds.total_seconds
    address = check_host(url)
    watch = _Watch(max(deadline - time.monotonic(), 0.0))
    _calls.watch = watch
    _calls.pinned = None if address is None else ((urlsplit(url).hostname or "").rstrip("."), address)
    try:
        answer = _exchange(session, url, headers, body, bounds, deadline)
    except UnansweredError as exc:
        if watch.fired and exc.distrust != "oversize":  # the watch cut the socket: that is the deadline
            raise _over_deadline(bounds) from None
        raise
    finally:
        watch.cancel()
        _calls.watch = None
        _calls.pinned = None
    return answer


def _exchange(
    session: requests.Session, url: str, headers: Mapping[str, str], body: bytes, bounds: Bounds, deadline: float
) -> RawAnswer:
    read_timeout = _remaining(deadline, bounds.read_seconds)
    try:
        response = session.post(
            url,
            data=body,
            headers={**headers, "Accept-Encoding": "identity"},
            timeout=(_remaining(deadline, bounds.connect_seconds), read_timeout),
            verify=True,
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        raise UnansweredError(
            f"transport: no answer within {read_timeout:g} s", distrust=_deadline_tag(deadline)
        ) from None
    except requests.RequestException as exc:
        raise UnansweredError(f"transport: {type(exc).__name__}") from None
    try:
        raw_body = _read_capped(response, deadline, bounds)
        return RawAnswer(
            status_code=response.status_code,
            headers=response.headers,
            signatures=_all_values(response, "Signature"),
            body=_decoded(response.headers.get("Content-Encoding"), raw_body, bounds.max_body_bytes),
        )
    finally:
        response.close()  # a refused or half-read answer never goes back to the connection pool


def _read_capped(response: requests.Response, deadline: float, bounds: Bounds) -> bytes:
    cap = bounds.max_body_bytes
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > cap:
        raise UnansweredError(
            f"oversize: Content-Length {int(declared)} exceeds the {cap}-byte body cap", distrust="oversize"
        )
    raw: Any = response.raw
    pieces: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _over_deadline(bounds)
        _set_socket_timeout(raw, min(remaining, bounds.read_seconds))
        try:
            # read1 returns what has arrived (at most one socket read); read() would wait to fill the piece.
            piece = raw.read1(_CHUNK, decode_content=False)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if time.monotonic() >= deadline - 0.001:
                raise _over_deadline(bounds) from None
            raise UnansweredError(
                f"transport: body stalled for {bounds.read_seconds:g} s", distrust="deadline"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UnansweredError(f"transport: body cut short ({type(exc).__name__})") from None
        if not piece:
            if _watch_fired():  # the watch shut the socket: an end of body by cutting, not a complete body
                raise _over_deadline(bounds)
            return b"".join(pieces)
        size += len(piece)
        if size > cap:
            raise UnansweredError(f"oversize: body exceeds the {cap}-byte body cap", distrust="oversize")
        pieces.append(piece)


class _Watch:
    """Shuts the call's socket down at its deadline, whatever the exchange is waiting for (headers included).

    A socket timeout bounds one read only: a peer sending a byte just before each timeout keeps the status line and
    headers coming for as long as it likes. This timer ends that; the body loop checks the deadline itself too.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# The running call's watch and pinned (host, address), for the connection classes below (same thread).
_calls = threading.local()


def _connect_pinned(connection: urllib3.connection.HTTPConnection) -> socket.socket:
    """Open the socket to the address check_host approved; the Host header and TLS SNI still carry the name."""
    name = connection._dns_host
    pinned: tuple[str, str] | None = getattr(_calls, "pinned", None)
    if pinned is None or pinned[0] != name.rstrip("."):
        return urllib3.connection.HTTPConnection._new_conn(connection)
    connection._dns_host = pinned[1]
    try:
        return urllib3.connection.HTTPConnection._new_conn(connection)
    finally:
        connection._dns_host = name


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_pinned(self)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _watch_socket(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_pinned(self)  # the TLS handshake runs after this, with SNI = the name

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _watch_socket(self.sock)
        return super().getresponse()


def _watch_fired() -> bool:
    watch: _Watch | None = getattr(_calls, "watch", None)
    return watch is not None and watch.fired


def _watch_socket(sock: socket.socket | None) -> None:
    watch: _Watch | None = getattr(_calls, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class BoundedAdapter(requests.adapters.HTTPAdapter):
    """A requests transport adapter whose connections the call's deadline watch can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def bounded(session: requests.Session, base_url: str) -> requests.Session:
    """``session`` with calls under ``base_url`` going through :class:`BoundedAdapter` (the longest prefix wins)."""
    session.mount(base_url + "/", BoundedAdapter())
    return session


def _decoded(encoding: str | None, body: bytes, cap: int) -> bytes:
    """The body with its content coding removed; only gzip is undone, and never past ``cap`` bytes."""
    coding = (encoding or "").strip().lower()
    if coding in _IDENTITY:
        return body
    if coding not in ("gzip", "x-gzip"):
        raise UnansweredError(f"malformed: unsupported Content-Encoding {coding!r}", distrust="malformed")
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, cap + 1)
    except zlib.error:
        raise UnansweredError("malformed: gzip body does not inflate", distrust="malformed") from None
    if len(plain) > cap or inflater.unconsumed_tail:
        raise UnansweredError(f"oversize: gzip body inflates past the {cap}-byte body cap", distrust="oversize")
    if not inflater.eof or inflater.unused_data:
        raise UnansweredError("malformed: gzip body is truncated or has trailing data", distrust="malformed")
    return plain


def _all_values(response: requests.Response, name: str) -> tuple[str, ...]:
    """Every value of header ``name`` as it arrived (requests merges repeats into one ``, ``-joined value)."""
    raw_headers = getattr(response.raw, "headers", None)
    getlist = getattr(raw_headers, "getlist", None)
    if getlist is not None:
        return tuple(getlist(name))
    value = response.headers.get(name)
    return () if value is None else (value,)


def _set_socket_timeout(raw: Any, seconds: float) -> None:
    """Shrink the socket's read timeout to what is left of the deadline, so one stalled read cannot overrun it."""
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _remaining(deadline: float, phase_seconds: float) -> float:
    return max(min(phase_seconds, deadline - time.monotonic()), 0.001)


def _deadline_tag(deadline: float) -> str | None:
    """ "deadline" when the call's total budget (not the ordinary read timeout) is what ran out."""
    return "deadline" if time.monotonic() >= deadline - 0.01 else None


def _over_deadline(bounds: Bounds) -> UnansweredError:
    return UnansweredError(
        f"deadline: answer not complete within the {bounds.total_seconds:g} s call budget", distrust="deadline"
    )
