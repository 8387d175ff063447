"""Outbound HTTP that cannot be turned against the hospital's own network (webhooks).

A webhook URL is given by an administrator, but it is still a way for the service to be made
to call somewhere: `http://127.0.0.1:5432/`, the cloud metadata service at 169.254.169.254, a
host on the ward's private network, or a name that resolves to one of those (and may resolve
differently a second later: DNS rebinding). So:

- the name is resolved here, and every address it resolves to is checked: loopback,
  link-local, private, shared (carrier-grade NAT), multicast, unspecified and other
  non-global addresses are refused, as are metadata hostnames, unless the address lies in a
  network the site allows (`MONITOR_WEBHOOK_ALLOW_NETWORKS`, for an on-premise receiver);
- the connection goes to the address that was checked (pinned: no second lookup), while TLS
  still verifies the certificate of the name;
- one deadline bounds the whole attempt (resolve, connect, send, read): a receiver that
  answers one byte every few seconds is cut off at the deadline, not per read;
- at most `max_response_bytes` of the answer are read; redirects are not followed.

Built on httpcore (the transport under httpx) with a network backend of its own.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names of cloud metadata services (the addresses behind them are link-local or shared, and
# refused anyway); refused whatever the allowlist says.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.tencentyun.com",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="egress-dns")


class EgressRefusedError(Exception):
    """The destination is not one this service may call (the SSRF policy): never retried."""


class DeadlineExceededError(httpcore.TimeoutException):
    """The attempt's one deadline passed (whatever phase it was in)."""


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why the service may not connect to `address`, or None when it may."""
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped, allowed)
    if any(address in network for network in allowed):
        return None
    kinds = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("shared (carrier-grade NAT)", address in ipaddress.ip_network("100.64.0.0/10")),
        ("not globally routable", not address.is_global),
    )
    for kind, applies in kinds:
        if applies:
            return f"{address} is a {kind} address"
    return None


def host_refusal(host: str, allowed: Sequence[IPNetwork]) -> str | None:
    """What can be said of a URL's host without resolving it: a metadata name, or an address
    literal that is refused (decimal, octal and hex forms of IPv4 are resolved, not parsed)."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{name} is a cloud metadata host"
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        return None
    return refusal(literal, allowed)


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address `host` resolves to (an address literal resolves to itself)."""
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(timeout, 0.001))
    except concurrent.futures.TimeoutError:
        raise DeadlineExceededError(f"resolving {host} took longer than the deadline") from None
    except OSError as exc:
        raise httpcore.ConnectError(f"{host} does not resolve ({exc.strerror or exc})") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation waits at most until the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        upgraded = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(upgraded, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, connects to a checked one; all before the deadline."""

    def __init__(self, allowed: Sequence[IPNetwork], deadline: float) -> None:
        self._allowed = allowed
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()
        self.connected_to: IPAddress | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        why = host_refusal(host, self._allowed)
        if why is not None:
            raise EgressRefusedError(why)
        addresses = resolve(host, port, left)
        refused = [r for r in (refusal(a, self._allowed) for a in addresses) if r is not None]
        if refused or not addresses:
            raise EgressRefusedError(
                f"{host} resolves to {refused[0] if refused else 'no address'}"
            )
        last_error: Exception | None = None
        for address in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError("the attempt's deadline passed while connecting")
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            self.connected_to = address
            return _DeadlineStream(stream, self._deadline)
        assert last_error is not None
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefusedError("unix sockets are not reachable from webhooks")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes  # at most the cap
    truncated: bool


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline_s: float,
    allowed: Sequence[IPNetwork],
    max_response_bytes: int,
) -> Answer:
    """POST once under the policy above. Raises EgressRefusedError (never worth retrying),
    DeadlineExceededError or another `httpcore` error (the network: worth retrying)."""
    deadline = time.monotonic() + deadline_s
    try:
        return _post(url, body, headers, deadline, deadline_s, allowed, max_response_bytes)
    except httpcore.TimeoutException as exc:
        if isinstance(exc, DeadlineExceededError) or time.monotonic() >= deadline - 0.01:
            raise DeadlineExceededError(f"no complete answer within {deadline_s:g} s") from exc
        raise


def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    deadline_s: float,
    allowed: Sequence[IPNetwork],
    max_response_bytes: int,
) -> Answer:
    backend = _PinnedBackend(allowed, deadline)
    with httpcore.ConnectionPool(
        network_backend=backend, max_connections=1, retries=0, http1=True, http2=False
    ) as pool:
        timeouts = {phase: deadline_s for phase in ("connect", "read", "write", "pool")}
        with pool.stream(
            "POST",
            url,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            content=body,
            extensions={"timeout": timeouts},
        ) as response:
            kept = bytearray()
            truncated = False
            for chunk in response.iter_stream():
                room = max_response_bytes - len(kept)
                if len(chunk) > room:
                    kept += chunk[:room]
                    truncated = True
                    break
                kept += chunk
            answer_headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
            }
            return Answer(response.status, answer_headers, bytes(kept), truncated)
