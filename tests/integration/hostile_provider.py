"""A provider endpoint on 127.0.0.1 that answers the way a hostile or broken provider (or proxy) could.

It holds the provider's real signing key (the fixed test pair), so its lies are signed like genuine answers
where that is the attack: a replay of another refund's answer, a stale answer, two Signature headers. The
refund id asked about picks the behaviour: ``<scenario>--<anything>``, e.g. ``unsignedF.ACCESS_DENIED--r1``.
Huge bodies and bombs are generated on the fly, never held whole in memory.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from refund_core.providers import signing
from refund_core.providers.alphapay import nonce_content
from refund_core.providers.antom import client_id_content
from tests.unit.keys import PKCS8_B64, profile_data

PROVIDER_KEY = signing.load_private_key(PKCS8_B64)  # the profile's providerPublicKey is its public half
FORGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALGORITHM = {"antom": "RSA256", "alipayplus": "RSA256", "alphapay": "RS256"}
STATUS_WORD = {"antom": "SUCCESS", "alipayplus": "SUCCESS", "alphapay": "SUCCESS"}
HUGE_BYTES = 300 * 1024 * 1024
DRIP_INTERVAL = 0.5
DRIP_MAX_BYTES = 40  # the old client waited for each byte: 40 bytes held it 20 s
_PIECE = b" " * (64 * 1024)


@cache
def gzip_bomb(inflated_mib: int) -> bytes:
    """A valid gzip member inflating to ``inflated_mib`` MiB of zeros (about 1 KiB compressed per MiB).

    Each MiB is deflated after a full flush, so every block is the same bytes: built in well under a second.
    """
    zeros = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return header + block * inflated_mib + deflater.flush(zlib.Z_FINISH) + trailer


class HostileProvider:
    """``with HostileProvider() as hostile:`` serves until the block ends; ``requests`` records what was asked."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.hostile = self  # type: ignore[attr-defined]
        self.requests: list[dict[str, Any]] = []
        self.answered: set[tuple[str, str]] = set()  # (provider, refund id) already answered by "flip"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def profile(self, provider: str, **overrides: object) -> dict[str, object]:
        return profile_data(
            provider, baseUrl=self.base_url, inquiryPath=f"/hostile/{provider}/inquiryRefund", **overrides
        )

    def write_profile(self, directory: Path, provider: str) -> Path:
        path = directory / f"hostile-{provider}.json"
        path.write_text(json.dumps(self.profile(provider)))
        return path

    def __enter__(self) -> HostileProvider:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one answer per connection; a body without Content-Length ends at close

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- request ------------------------------------------------------------------------
    def do_POST(self) -> None:
        hostile: HostileProvider = self.server.hostile  # type: ignore[attr-defined]
        self.provider = self.path.split("/")[2]
        asked = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.asked: dict[str, str] = asked
        scenario = (asked.get("refundId") or asked.get("refundRequestId")).split("--", 1)[0]
        hostile.requests.append({"path": self.path, "headers": dict(self.headers), "scenario": scenario})
        name, _, argument = scenario.partition(".")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: often the point
            getattr(self, f"answer_{name}")(argument)

    # ---- scenarios ----------------------------------------------------------------------
    def answer_success(self, _: str) -> None:
        self.send_signed(self.found())

    def answer_replay(self, _: str) -> None:
        """A genuine, correctly signed SUCCESS about another refund (a misrouting cache, a replay)."""
        self.send_signed(self.found(refundId="someone-else-4711", refundRequestId="someone-else-rr", value="999999"))

    def answer_flip(self, _: str) -> None:
        """A genuine SUCCESS the first time a refund is asked about, a genuine FAIL ever after (a provider that
        reverses a refund: a stored final status must not flip silently on a ``force`` re-poll)."""
        hostile: HostileProvider = self.server.hostile  # type: ignore[attr-defined]
        asked = (self.provider, str(self.asked.get("refundId") or self.asked.get("refundRequestId")))
        with hostile._lock:
            first = asked not in hostile.answered
            hostile.answered.add(asked)
        self.send_signed(self.found() if first else self.found(refundStatus="FAIL"))

    def answer_replaycaller(self, _: str) -> None:
        """A genuine answer to another merchant (one provider key signs everyone's answers)."""
        self.send_signed(self.found(), client_id="OTHER_CLIENT_0001")

    def answer_stale(self, _: str) -> None:
        self.send_signed(self.found(), at=datetime.now(UTC) - timedelta(hours=1))

    def answer_future(self, _: str) -> None:
        self.send_signed(self.found(), at=datetime.now(UTC) + timedelta(hours=1))

    def answer_badsigF(self, code: str) -> None:  # noqa: N802 - scenario names are the refund id tokens
        self.send_signed(self.failure(code), key=FORGER_KEY)

    def answer_unsignedF(self, code: str) -> None:  # noqa: N802
        self.send_signed(self.failure(code), key=None)

    def answer_dupkeys(self, _: str) -> None:
        body = self.body(self.found(refundStatus="FAIL"))
        self.send_signed(body.replace(b'"refundStatus":"FAIL"', b'"refundStatus":"FAIL","refundStatus":"SUCCESS"'))

    def answer_utf16(self, _: str) -> None:
        self.send_signed(json.dumps(self.found()).encode("utf-16"))

    def answer_twosig(self, _: str) -> None:
        """A forged Signature header first, the genuine one second: a client that merges them lets the last win."""
        body = self.body(self.found())
        headers = self.signed_headers(body)
        forged = signing.format_signature_header(ALGORITHM[self.provider], "1", signing.sign(FORGER_KEY, b"x"))
        self.send(200, [("Signature", forged), *headers], body)

    def answer_mergedsig(self, _: str) -> None:
        body = self.body(self.found())
        headers = self.signed_headers(body)
        forged = signing.format_signature_header(ALGORITHM[self.provider], "1", signing.sign(FORGER_KEY, b"x"))
        merged = [(name, f"{forged}, {value}" if name == "Signature" else value) for name, value in headers]
        self.send(200, merged, body)

    def answer_wrongalg(self, _: str) -> None:
        other = "RS256" if ALGORITHM[self.provider] == "RSA256" else "RSA256"
        self.send_signed(self.found(), algorithm=other)

    def answer_numeric(self, _: str) -> None:
        self.send_signed(self.found(value=100))

    def answer_boolean(self, _: str) -> None:
        self.send_signed(self.found(value=True))

    def answer_nonisotime(self, _: str) -> None:
        self.send_signed(self.found(refundTime="2020/01/02 12:01:01"))

    def answer_gzipok(self, _: str) -> None:
        """A small, honest gzip answer: inflated within the cap and then verified like any other."""
        body = self.body(self.found())
        headers = self.signed_headers(body)
        self.send(200, [*headers, ("Content-Encoding", "gzip")], zlib.compress(body, wbits=31))

    def answer_bomb(self, argument: str) -> None:
        """1.1 MB of gzip inflating to 1.1 GB (``bomb.nolength``: without Content-Length)."""
        self.send_bomb(gzip_bomb(1100), with_length=argument != "nolength")

    def answer_smallbomb(self, _: str) -> None:
        """Under the body cap compressed (50 KiB), 50 MiB inflated: only a decompression cap stops it."""
        self.send_bomb(gzip_bomb(50), with_length=True)

    def answer_huge(self, argument: str) -> None:
        """A 300 MB body (``huge.nolength``: without Content-Length), written piece by piece as it is read."""
        prefix = b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"ok"},"pad":"'
        headers = [("Content-Type", "application/json")]
        if argument != "nolength":
            headers.append(("Content-Length", str(HUGE_BYTES)))
        self.send_head(200, headers)
        self.wfile.write(prefix)
        for _ in range((HUGE_BYTES - len(prefix)) // len(_PIECE)):
            self.wfile.write(_PIECE)

    def answer_drip(self, _: str) -> None:
        """A genuine answer, one byte every half second (each read gets its byte long before any read timeout)."""
        body = self.body(self.found())
        self.send_head(200, [*self.signed_headers(body), ("Content-Length", str(len(body)))])
        for byte in body[:DRIP_MAX_BYTES]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(DRIP_INTERVAL)

    def answer_headerdrip(self, _: str) -> None:
        """The status line and headers one byte every half second: no read ever times out, the call must end."""
        head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 200 + b"\r\n\r\n"
        for byte in head[:DRIP_MAX_BYTES]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(DRIP_INTERVAL)

    # ---- answers ------------------------------------------------------------------------
    def found(self, *, value: object = "1000", **fields: object) -> dict[str, Any]:
        amount = {"value": value, "currency": "USD"}
        payload: dict[str, Any] = {
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
            "refundId": self.asked.get("refundId"),
            "refundRequestId": self.asked.get("refundRequestId") or "rr-from-provider",
            "refundStatus": STATUS_WORD[self.provider],
            "refundTime": "2026-01-02T12:01:01+08:00",
        }
        if self.provider == "alphapay":
            payload["refund"] = {"refundAmount": amount, "description": "merchant remark"}
        else:
            payload["refundAmount"] = amount
        payload.update(fields)
        return payload

    def failure(self, code: str) -> dict[str, Any]:
        return {"result": {"resultCode": code, "resultStatus": "F", "resultMessage": code.lower()}}

    def body(self, payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def signed_headers(
        self,
        body: bytes,
        *,
        key: rsa.RSAPrivateKey | None = PROVIDER_KEY,
        at: datetime | None = None,
        algorithm: str | None = None,
        client_id: str | None = None,
    ) -> list[tuple[str, str]]:
        """The provider's response headers for ``body``, signed with ``key`` (None: unsigned)."""
        moment = at or datetime.now(UTC)
        path = self.path
        if self.provider == "alphapay":
            answered_at, nonce = moment.isoformat(timespec="seconds"), "n" * 32
            headers = [("Response-Time", answered_at), ("Nonce", nonce)]
            content = nonce_content(path, self.headers["Merchant-Code"], answered_at, nonce, body)
        else:
            # Antom's current documents show epoch milliseconds, the wallets ISO-8601: send one of each.
            epoch = self.provider == "antom"
            answered_at = str(int(moment.timestamp() * 1000)) if epoch else moment.isoformat(timespec="milliseconds")
            caller = client_id or self.headers["Client-Id"]
            headers = [("Client-Id", caller), ("Response-Time", answered_at)]
            content = client_id_content(path, caller, answered_at, body)
        if key is not None:
            signature = signing.sign(key, content)
            headers.append(
                ("Signature", signing.format_signature_header(algorithm or ALGORITHM[self.provider], "1", signature))
            )
        return [("Content-Type", "application/json; charset=UTF-8"), *headers]

    def send_signed(self, payload: dict[str, Any] | bytes, **signing_options: Any) -> None:
        body = payload if isinstance(payload, bytes) else self.body(payload)
        self.send(200, self.signed_headers(body, **signing_options), body)

    def send_bomb(self, bomb: bytes, *, with_length: bool) -> None:
        headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
        if with_length:
            headers.append(("Content-Length", str(len(bomb))))
        self.send_head(200, headers)
        for start in range(0, len(bomb), len(_PIECE)):
            self.wfile.write(bomb[start : start + len(_PIECE)])

    def send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_head(status, [*headers, ("Content-Length", str(len(body)))])
        self.wfile.write(body)

    def send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()


def refund_id(scenario: str) -> str:
    """A fresh refund id that picks ``scenario``, with characters merchants really send (CJK, spaces, / . :)."""
    return f"{scenario}--退款 {uuid.uuid4().hex[:8]}/a.b:c"
