"""One guarded HTTP(S) GET: a total deadline, http(s)-only redirects to public addresses, a body-size cap.

Every URL susx fetches goes through ``get``: the laion source's image downloads (inside img2dataset's
workers, see adapters/download.py) and the CuPL files of ``susx_cli.fetch``. Three limits are checked
in this one place:

- the deadline covers the whole fetch (name lookup, connect, TLS, headers, every body read, every
  redirect): a server that trickles one byte at a time is cut when the deadline passes, because a
  watchdog shuts the socket down then (a per-read socket timeout would never fire);
- each hop's URL must be http(s), and every address its host resolves to must be public (not loopback,
  private, link-local, reserved, multicast...) unless the policy allows private addresses or trusts that
  exact host:port; the connection is then made to the checked addresses, not to a second lookup;
- the body is streamed and reading stops as soon as it passes ``max_bytes`` (a larger Content-Length
  is refused before reading anything).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

REDIRECTS = (301, 302, 303, 307, 308)
BLOCK = 1 << 16
_LOOKUPS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="susx-dns")  # getaddrinfo has no timeout


class Refused(Exception):
    """The policy forbids this URL (scheme, address, size): retrying will not help."""


class FetchFailed(Exception):
    """The fetch did not complete (HTTP error, timeout, connection): ``transient`` says whether a retry may help."""

    def __init__(self, message: str, transient: bool = True):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class UrlPolicy:
    timeout: float  # seconds for the whole fetch, redirects included
    max_bytes: int
    allow_private: bool = False
    trusted: frozenset[tuple[str, int]] = field(
        default_factory=frozenset
    )  # (host, port) exempt from the address check
    max_redirects: int = 5


@dataclass
class Response:
    url: str  # after redirects
    headers: http.client.HTTPMessage
    body: bytes | None  # None when the blocks went to ``on_block``
    size: int


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme.lower() == "https" else 80)


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def get(
    url: str,
    policy: UrlPolicy,
    headers: dict[str, str] | None = None,
    on_block: Callable[[bytes], None] | None = None,
) -> Response:
    """GET ``url`` within ``policy``; the body is returned, or handed block by block to ``on_block``.

    Raises Refused or FetchFailed with a short message (no URL in it for refusals, so reasons can be counted).
    """
    deadline = time.monotonic() + policy.timeout
    for _ in range(policy.max_redirects + 1):
        parts = _check_scheme(url)
        host, port = host_port(url)
        addresses = _resolve(host, port, deadline, policy)
        conn_class = _PinnedHTTPS if parts.scheme.lower() == "https" else _PinnedHTTP
        conn = conn_class(host, port, timeout=_remaining(deadline))
        conn.addresses = addresses
        watchdog = threading.Timer(_remaining(deadline), _shut, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            if response.status in REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location").strip())
                continue
            if response.status != 200:
                raise FetchFailed(
                    f"HTTP {response.status}: {response.reason}", transient=response.status >= 500
                )
            return _read_body(url, response, conn, deadline, policy, on_block)
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise FetchFailed(f"timed out: no complete answer within {policy.timeout:g} s") from None
            raise FetchFailed(f"{exc.__class__.__name__}: {exc}"[:200]) from None
        finally:
            watchdog.cancel()
            conn.close()
    raise FetchFailed(f"more than {policy.max_redirects} redirects", transient=False)


def _check_scheme(url: str):
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Refused(f"refused: not an http(s) URL ({parts.scheme or 'no scheme'})")
    return parts


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed("timed out: no complete answer within the download timeout")
    return left


def _resolve(host: str, port: int, deadline: float, policy: UrlPolicy) -> list[tuple]:
    """The host's addresses (getaddrinfo tuples), each checked against the policy."""
    future = _LOOKUPS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=_remaining(deadline))
    except FutureTimeout:
        raise FetchFailed("timed out: name lookup") from None
    except OSError as exc:
        raise FetchFailed(f"name lookup failed ({exc})", transient=False) from None
    if not (policy.allow_private or (host, port) in policy.trusted):
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if not is_public(ip):
                raise Refused(f"refused: private or loopback address ({ip})")
    return infos


def _shut(conn: http.client.HTTPConnection) -> None:
    """The deadline passed: break whatever read or write the fetch is blocked in."""
    sock = conn.raw_socket  # conn.sock is None once a response that closes the connection owns the socket
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _read_body(url, response, conn, deadline, policy, on_block) -> Response:
    length = response.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > policy.max_bytes:
        raise Refused(f"refused: larger than {policy.max_bytes} bytes")
    kept, size = [], 0
    while True:
        conn.raw_socket.settimeout(_remaining(deadline))
        block = response.read1(BLOCK)
        if not block:
            break
        size += len(block)
        if size > policy.max_bytes:
            raise Refused(f"refused: larger than {policy.max_bytes} bytes")
        if on_block is None:
            kept.append(block)
        else:
            on_block(block)
    if time.monotonic() >= deadline:  # the watchdog cut the stream: what was read is incomplete
        raise FetchFailed(f"timed out: no complete answer within {policy.timeout:g} s")
    return Response(url, response.headers, b"".join(kept) if on_block is None else None, size)


def _connect_checked(addresses: list[tuple], timeout: float | None) -> socket.socket:
    """A socket connected to the first of the checked addresses that answers."""
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the addresses checked by ``_resolve`` instead of looking the host up again."""

    addresses: list[tuple] = []
    raw_socket: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.raw_socket = _connect_checked(self.addresses, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection, _PinnedHTTP):
    """TLS over ``_PinnedHTTP``'s socket; the certificate is still checked against the host name."""

    def connect(self) -> None:
        super().connect()
        self.raw_socket = self.sock  # the TLS socket: the plain one was handed over to it
