"""The one guarded HTTP(S) client: a total deadline, a body-size cap, public addresses only, proxies honoured.

Every request susx sends goes through ``request`` (``get``, ``post_json``): kNN queries and the index
list (adapters/retrieval.py), LLM chat completions (adapters/llm.py), CuPL files (net/fetch.py) and
image downloads (inside img2dataset's workers, adapters/download.py). ``net/clients.py`` lists them.
Four rules are enforced in this one place:

- the deadline covers the whole answer (name lookup, connect, proxy tunnel, TLS, sending, headers, every
  body read, every redirect): a server that trickles one byte at a time is cut when the deadline passes,
  because a watchdog shuts the socket down then (a per-read socket timeout would never fire);
- each hop's URL must be http(s), and every address its host resolves to must be public (not loopback,
  private, link-local, reserved, multicast...) unless the policy allows private addresses; a host:port the
  policy trusts (one the user typed: a local LLM or kNN server) may be private, but a name that resolves to
  both public and private addresses is refused. All addresses are checked before connecting, and without a
  proxy the connection is made to the checked addresses, not to a second lookup. Redirects are followed
  for GET only;
- the body is streamed and reading stops as soon as it passes ``max_bytes`` (a larger Content-Length
  is refused before reading anything);
- ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case) are read as urllib and
  requests read them: a plain-HTTP target is asked for through the proxy, an https target through a
  CONNECT tunnel. The address check applies to the target (resolved here, so a name that does not resolve
  here is not fetched unless trusted; a trusted one is left to the proxy), never to the proxy, which the
  user configured.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

REDIRECTS = (301, 302, 303, 307, 308)
BLOCK = 1 << 16
_LOOKUPS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="susx-dns")  # getaddrinfo has no timeout


class Refused(Exception):
    """The policy forbids this URL (scheme, address, size): retrying will not help."""


class FetchFailed(Exception):
    """The request did not complete (HTTP error, timeout, connection): ``transient`` says whether a retry may help."""

    def __init__(self, message: str, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class TimedOut(FetchFailed):
    """No complete answer within the policy's deadline."""


class Unreachable(FetchFailed):
    """No connection was made (name lookup, connect, proxy tunnel): nothing was sent."""


@dataclass(frozen=True)
class UrlPolicy:
    timeout: float  # seconds for the whole answer, redirects included
    max_bytes: int
    allow_private: bool = False
    trusted: frozenset[tuple[str, int]] = field(
        default_factory=frozenset
    )  # (host, port) exempt from the address check
    max_redirects: int = 5


@dataclass
class Response:
    url: str  # after redirects
    status: int
    headers: http.client.HTTPMessage
    body: bytes | None  # None when the blocks went to ``on_block``
    size: int

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.body or b"")


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
    *,
    any_status: bool = False,
) -> Response:
    """GET ``url`` within ``policy``; the body is returned, or handed block by block to ``on_block``.

    A status other than 200 raises FetchFailed unless ``any_status`` (then the answer is returned).
    Raises Refused or FetchFailed with a short message (no URL in it for refusals, so reasons can be counted).
    """
    return request("GET", url, policy, headers=headers, on_block=on_block, any_status=any_status)


def post_json(url: str, value: Any, policy: UrlPolicy, headers: dict[str, str] | None = None) -> Response:
    """POST ``value`` as JSON within ``policy``; the answer is returned whatever its status (no redirects)."""
    body = json.dumps(value).encode("utf-8")
    sent = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    return request("POST", url, policy, headers=sent, body=body, any_status=True)


def request(
    method: str,
    url: str,
    policy: UrlPolicy,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    on_block: Callable[[bytes], None] | None = None,
    any_status: bool = False,
) -> Response:
    """One request within ``policy`` (see the module docstring); GET follows redirects, other methods do not."""
    deadline = time.monotonic() + policy.timeout
    for _ in range(policy.max_redirects + 1):
        parts = _check_scheme(url)
        conn, target, hop_headers = _open(parts, deadline, policy)
        watchdog = threading.Timer(_remaining(deadline, policy), _shut, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            _connect(conn, deadline, policy)
            conn.request(method, target, body=body, headers={**(headers or {}), **hop_headers})
            response = conn.getresponse()
            location = response.getheader("Location")
            if method == "GET" and response.status in REDIRECTS and location:
                url = urljoin(url, location.strip())
                continue
            if response.status != 200 and not any_status:
                raise FetchFailed(
                    f"HTTP {response.status}: {response.reason}", transient=response.status >= 500
                )
            return _read_body(url, response, conn, deadline, policy, on_block)
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise _timed_out(policy) from None
            raise FetchFailed(f"{exc.__class__.__name__}: {exc}"[:200]) from None
        finally:
            watchdog.cancel()
            conn.close()
    raise FetchFailed(f"more than {policy.max_redirects} redirects", transient=False)


def _timed_out(policy: UrlPolicy) -> TimedOut:
    return TimedOut(f"timed out: no complete answer within {policy.timeout:g} s")


def _check_scheme(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Refused(f"refused: not an http(s) URL ({parts.scheme or 'no scheme'})")
    return parts


def _remaining(deadline: float, policy: UrlPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(policy)
    return left


def _open(parts: SplitResult, deadline: float, policy: UrlPolicy) -> tuple[_PinnedHTTP, str, dict[str, str]]:
    """An unconnected connection for one hop (direct, or by way of a proxy), the request target and the
    headers the proxy needs."""
    host, port = host_port(parts.geturl())
    https = parts.scheme.lower() == "https"
    conn_class = _PinnedHTTPS if https else _PinnedHTTP
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = _proxy_for(parts.scheme.lower(), host, port)
    trusted = (host, port) in policy.trusted
    if proxy is None:
        conn = conn_class(host, port, timeout=_remaining(deadline, policy))
        conn.addresses = _lookup(host, port, deadline, policy)
        if not policy.allow_private:
            _check_addresses(conn.addresses, trusted)
        return conn, path, {}
    if not (policy.allow_private or trusted):  # the proxy looks the name up again: it must be public here
        _check_addresses(_lookup(host, port, deadline, policy), trusted=False)
    proxy_host, proxy_port = host_port(proxy.geturl())
    auth = {}
    if proxy.username is not None:
        secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        auth["Proxy-Authorization"] = "Basic " + base64.b64encode(secret).decode("ascii")
    conn = conn_class(proxy_host, proxy_port, timeout=_remaining(deadline, policy))
    conn.addresses = _lookup(proxy_host, proxy_port, deadline, policy)
    if https:
        conn.set_tunnel(host, port, headers=auth)
        return conn, path, {}
    return conn, f"http://{parts.netloc.rpartition('@')[2]}{path}", auth  # absolute form, no credentials


def _proxy_for(scheme: str, host: str, port: int) -> SplitResult | None:
    """The proxy the environment names for this target (as urllib and requests read it), or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(f"{host}:{port}" if ":" not in host else host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise Refused(f"refused: only http:// proxies are supported ({parts.scheme}:// given)")
    return parts


def _lookup(host: str, port: int, deadline: float, policy: UrlPolicy) -> list[tuple]:
    """The host's addresses (getaddrinfo tuples), within the deadline."""
    future = _LOOKUPS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=_remaining(deadline, policy))
    except FutureTimeout:
        raise TimedOut("timed out: name lookup") from None
    except OSError as exc:
        raise Unreachable(f"name lookup failed ({exc})", transient=False) from None


def _check_addresses(infos: list[tuple], trusted: bool) -> None:
    """Every address must be public; a trusted host (one the user typed) may be private, but not both:
    a name that mixes public and private addresses is refused either way (DNS rebinding)."""
    ips = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    private = [ip for ip in ips if not is_public(ip)]
    if private and not trusted:
        raise Refused(f"refused: private or loopback address ({private[0]})")
    if private and len(private) < len(ips):
        public = next(ip for ip in ips if is_public(ip))
        raise Refused(
            f"refused: the name resolves to both public and private addresses ({public}, {private[0]})"
        )


def _connect(conn: _PinnedHTTP, deadline: float, policy: UrlPolicy) -> None:
    """Connect (and tunnel, and shake hands) now, so a failure here is told apart: nothing was sent."""
    try:
        conn.connect()
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:
            raise _timed_out(policy) from None
        raise Unreachable(f"cannot connect ({exc.__class__.__name__}: {exc})"[:200]) from None


def _shut(conn: http.client.HTTPConnection) -> None:
    """The deadline passed: break whatever read or write the request is blocked in."""
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
        conn.raw_socket.settimeout(_remaining(deadline, policy))
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
        raise _timed_out(policy)
    body = b"".join(kept) if on_block is None else None
    return Response(url, response.status, response.headers, body, size)


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
    """Connects to the addresses ``_lookup`` found (and ``_check_addresses`` passed), never to a second lookup."""

    addresses: list[tuple] = []
    raw_socket: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.raw_socket = _connect_checked(self.addresses, self.timeout)
        if self._tunnel_host:
            self._tunnel()  # CONNECT through the proxy; the watchdog can already shut raw_socket


class _PinnedHTTPS(http.client.HTTPSConnection, _PinnedHTTP):
    """TLS over ``_PinnedHTTP``'s socket; the certificate is still checked against the host name."""

    def connect(self) -> None:
        super().connect()
        self.raw_socket = self.sock  # the TLS socket: the plain one was handed over to it
