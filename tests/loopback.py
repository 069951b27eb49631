"""A loopback HTTP server with the hostile answers downloads must survive, and a fake kNN backend.

Paths (any query string is ignored, so one path can be asked for many times as distinct URLs):
- ``/img``: a small JPEG; ``/trickle`` and every path in ``trickle`` (GET or POST): announce 10 000 bytes,
  then send one every 0.5 s, for at most ``TRICKLE_LIMIT`` seconds (the server stops by itself);
- ``/to-ftp``: redirects to ftp://; ``/to/<port>``: redirects to ``/img`` on 127.0.0.1:<port>;
- ``/big``: BIG bytes with their Content-Length; ``/big-stream``: the same, no Content-Length (read to close);
- ``/indices-list``: ``["idx"]``; ``/knn-service`` (POST): rows pointing at ``KNN_TARGET`` (a path of this
  server, or a whole URL), or no answer at all when ``KNN_TARGET`` is ``"hang"``.
``sent`` counts body bytes written per path, ``hits`` requests per path.
``Proxy`` is a forward proxy (plain HTTP and CONNECT) to such servers.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from collections import Counter

import numpy as np

BIG = 8 * 1024 * 1024
TRICKLE_LIMIT = 30.0


def jpeg(seed: int = 0) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args) -> None:
        pass

    def _head(self, code: int, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _body(self, data: bytes) -> None:
        self.wfile.write(data)
        with self.server.lock:
            self.server.sent[self.path.split("?")[0]] += len(data)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.hits[path] += 1
        try:
            self._answer(path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, path: str) -> None:
        srv = self.server
        if path == "/img":
            self._head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(srv.image))})
            self._body(srv.image)
        elif path == "/trickle" or path in srv.trickle:
            self._trickle()
        elif path == "/to-ftp":
            self._head(302, {"Location": "ftp://127.0.0.1/img", "Content-Length": "0"})
        elif path.startswith("/to/"):
            self._head(302, {"Location": f"http://127.0.0.1:{path.split('/')[2]}/img", "Content-Length": "0"})
        elif path in ("/big", "/big-stream"):
            headers = {"Content-Type": "image/jpeg", "Connection": "close"}
            if path == "/big":
                headers["Content-Length"] = str(BIG)
            self._head(200, headers)
            block = b"\xff" * 65536
            for _ in range(BIG // len(block)):
                self._body(block)
        elif path == "/indices-list":
            self._json(["idx"])
        else:
            self._head(404, {"Content-Length": "0"})

    def _trickle(self) -> None:
        self._head(200, {"Content-Type": "application/json", "Content-Length": "10000"})
        end = time.monotonic() + TRICKLE_LIMIT
        while time.monotonic() < end and not self.server.stop.wait(0.5):
            self._body(b" ")
            self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.server.lock:
            self.server.hits[self.path] += 1
        if self.path in self.server.trickle:
            try:
                return self._trickle()
            except (BrokenPipeError, ConnectionResetError):
                return
        if self.server.knn_target == "hang":
            self.server.stop.wait(3600)
            return
        n = int(request.get("num_images", 1))
        target = self.server.knn_target
        base = target if "://" in target else f"http://127.0.0.1:{self.server.server_port}{target}"
        query = urllib.parse.quote(str(request.get("text", "")))
        rows = [
            {"url": f"{base}?q={query}&i={i}", "caption": "c", "similarity": 1 - i / 100, "id": i}
            for i in range(n)
        ]
        try:
            self._json(rows)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _json(self, value) -> None:
        data = json.dumps(value).encode()
        self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
        self.wfile.write(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        knn_target: str = "/img",
        trickle: frozenset[str] = frozenset(),
        tls: ssl.SSLContext | None = None,
    ):
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "https" if tls else "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.knn_target = knn_target
        self.trickle = trickle
        self.image = jpeg()
        self.hits: Counter = Counter()
        self.sent: Counter = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set on close: trickles and hung answers end
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_port}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


def elapsed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return time.monotonic() - start, result


class Proxy(socketserver.ThreadingTCPServer):
    """A tiny forward proxy on 127.0.0.1: absolute-form plain-HTTP requests and CONNECT tunnels, to
    127.0.0.1 targets only (anything else gets 403). ``seen`` holds each request line, ``auth`` each
    Proxy-Authorization header."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.auth: list[str | None] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: Proxy

    def handle(self) -> None:
        line = self.rfile.readline(65536).decode("latin-1").strip()
        headers = []
        while (header := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
            headers.append(header)
        auth = next(
            (
                h.split(b":", 1)[1].strip().decode()
                for h in headers
                if h.lower().startswith(b"proxy-authorization:")
            ),
            None,
        )
        self.server.seen.append(line)
        self.server.auth.append(auth)
        method, target, _ = line.split(" ", 2)
        parts = urllib.parse.urlsplit(target if method != "CONNECT" else f"//{target}")
        if parts.hostname != "127.0.0.1":
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", parts.port), timeout=30) as upstream:
            if method == "CONNECT":
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in headers if not h.lower().startswith(b"proxy-")]
                length = next(
                    (int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length:")), 0
                )
                upstream.sendall(
                    f"{method} {path} HTTP/1.1\r\n".encode()
                    + b"".join(kept)
                    + b"\r\n"
                    + self.rfile.read(length)
                )
            _relay(self.connection, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    back = threading.Thread(target=pump, args=(b, a), daemon=True)
    back.start()
    pump(a, b)
    back.join(timeout=60)
