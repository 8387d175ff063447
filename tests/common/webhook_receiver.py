"""A webhook receiver for tests: a real HTTP server on a free loopback port, in a thread.

It records every request and answers from a script, per delivery (the `webhook-id`
header): `script([500, 500, 200])` makes each delivery see 500, 500, then 200, and the default
status after the script runs out. An entry is a status or `(status, headers)`, e.g.
`(429, {"Retry-After": "1"})`.

Signatures are checked here as an integrator's receiver does (the README), with the Standard
Webhooks library, not with the service's code: `Webhook(secret).verify(body, headers)` accepts
the request when one of the `webhook-signature` values matches the secret and the
`webhook-timestamp` is within 5 minutes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

Answer = int | tuple[int, dict[str, str]]


def signature_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks library accepts the request with this secret."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int
    signature_ok: bool | None  # None: no secret known for this path

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers.get("webhook-id", "")


class Receiver:
    """Start with `with Receiver() as receiver:`; `url(path)` is where to register."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._seen: dict[tuple[str, str], int] = {}
        self._script: list[Answer] = []
        self._default: Answer = 200
        self._delay_s = 0.0
        self.secrets: dict[str, str] = {}  # path -> secret, for the signature check
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver._answer(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(
        self, answers: Sequence[Answer] = (), default: Answer = 200, delay_s: float = 0.0
    ) -> None:
        """What each delivery gets: `answers` in turn, then `default`; counts start again."""
        with self._lock:
            self._script = list(answers)
            self._default = default
            self._delay_s = delay_s
            self._seen.clear()

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0
    ) -> list[Received]:
        """Poll until `predicate(received)` holds; the requests then, or AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.received
            if predicate(seen):
                return seen
            time.sleep(0.01)
        raise AssertionError(f"the receiver's requests did not satisfy the test: {seen}")

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived = time.monotonic()
        headers = {name.lower(): value for name, value in handler.headers.items()}
        path = handler.path
        secret = self.secrets.get(path)
        signature_ok = None if secret is None else signature_valid(secret, headers, body)
        with self._lock:
            key = (path, headers.get("webhook-id", ""))
            index = self._seen.get(key, 0)
            self._seen[key] = index + 1
            answer = self._script[index] if index < len(self._script) else self._default
            delay_s = self._delay_s
        status, extra = (answer, {}) if isinstance(answer, int) else answer
        if delay_s:
            time.sleep(delay_s)  # a slow endpoint
        with self._lock:
            self._received.append(Received(path, headers, body, arrived, status, signature_ok))
        reply = json.dumps({"status": status}).encode()
        handler.send_response(status)
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)


def requests_by_delivery(
    received: Iterable[Received],
) -> dict[str, list[Received]]:
    grouped: dict[str, list[Received]] = {}
    for request in received:
        grouped.setdefault(request.delivery, []).append(request)
    return grouped
