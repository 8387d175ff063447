"""Issue 11, item 2, measured as the issue measured it: the production `api` process (uvicorn,
PostgreSQL, Redis) is sent 200 MB bodies, without a token to `/v1/alerts/1/ack` and
`/v1/admin/webhooks` (declared length), and chunked with a token to `/v1/events`; its resident
memory (VmRSS) grows by less than 60 MB for each, and each gets its 401 or 413 before the body
is through.

The client is a raw socket: it sends the body a megabyte at a time and stops as soon as the
answer comes (or the server stops reading), as a real client would be stopped.
"""

from __future__ import annotations

import pathlib
import select
import socket
import time
from dataclasses import dataclass

import pytest

from tests.integration.conftest import Stack, StackFactory

MB = 1024 * 1024
BODY = 200 * MB
LIMIT_GROWTH = 60 * MB


def rss(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@dataclass
class Outcome:
    status: int
    sent: int
    seconds: float


def send_big(port: int, path: str, token: str | None, *, chunked: bool) -> Outcome:
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    piece = b"[" + b" " * (MB - 1)
    sent = 0
    answer = b""
    sock.settimeout(2)
    try:
        while sent < BODY:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered: stop sending, as a client would
            frame = (b"%x\r\n" % len(piece)) + piece + b"\r\n" if chunked else piece
            sock.sendall(frame)
            sent += len(piece)
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading (or hung up): the answer is what counts
    try:
        sock.settimeout(10)
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    return Outcome(status, sent, time.monotonic() - started)


@pytest.fixture(scope="module")
def api_only(make_stack: StackFactory) -> Stack:
    stack = make_stack("memory")
    stack.start(workers=0, webhook_workers=0)
    return stack


@pytest.mark.parametrize(
    ("path", "authorised", "chunked", "status"),
    [
        ("/v1/alerts/1/ack", False, False, 401),
        ("/v1/admin/webhooks", False, False, 401),
        ("/v1/events", False, True, 401),
        ("/v1/events", True, True, 413),
        ("/v1/admin/webhooks", True, True, 413),
        ("/v1/events", True, False, 413),
    ],
    ids=[
        "ack-no-token",
        "webhooks-no-token",
        "events-chunked-no-token",
        "events-chunked-token",
        "webhooks-chunked-token",
        "events-declared-token",
    ],
)
def test_a_200_mb_body_costs_the_api_less_than_60_mb(
    api_only: Stack, path: str, authorised: bool, chunked: bool, status: int
) -> None:
    port = int(api_only.api_url.rsplit(":", 1)[1])
    pid = api_only.api.popen.pid
    before = rss(pid)
    outcome = send_big(port, path, api_only.token if authorised else None, chunked=chunked)
    time.sleep(0.5)  # whatever the server still holds of it
    grown = rss(pid) - before
    print(
        f"{path} token={authorised} chunked={chunked}: {outcome.status} after "
        f"{outcome.sent / MB:.0f} MB sent in {outcome.seconds:.2f} s; RSS +{grown / MB:.1f} MB"
    )
    assert outcome.status == status
    assert grown < LIMIT_GROWTH, f"RSS grew by {grown / MB:.1f} MB"
    assert outcome.sent < BODY  # answered before the body was through
    # and the api still serves
    assert api_only.client().get("/healthz").status_code == 200
