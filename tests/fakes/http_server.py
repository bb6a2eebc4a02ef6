"""A small real HTTP/1.1 server on loopback for tests: scripted replies, recorded requests.

    with LoopbackHTTPServer() as server:
        server.route("GET", "/img.png", Reply(503), Reply.ok(png_bytes, "image/png"))
        server.route("GET", "/old", Reply.redirect("/img.png"))
        server.route("PUT", "/out/*", Reply(200))        # trailing * = path prefix
        fetch(server.url("/img.png"))
        assert server.requests_for("GET", "/img.png")[0].headers["host"] == ...

Each route plays its replies in order and repeats the last one. Unrouted requests get 404.
Replies can be delayed (read timeouts), sent chunked without Content-Length, or dripped.
Pass `tls=` a server SSLContext to serve HTTPS.
A reply may also be a callable taking the RecordedRequest and returning a Reply.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before the status line: exercises read timeouts
    chunked: bool = False  # no Content-Length; Transfer-Encoding: chunked
    chunk_size: int = 16 * 1024
    chunk_delay_s: float = 0.0  # wait between chunks (chunked replies only)

    @classmethod
    def ok(cls, body: bytes, content_type: str = "application/octet-stream") -> Reply:
        return cls(200, body, {"Content-Type": content_type})

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, b"", {"Location": location})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Responder = Reply | Callable[[RecordedRequest], Reply]


class _Route:
    def __init__(self, replies: tuple[Responder, ...]) -> None:
        self._replies = list(replies)
        self._served = 0

    def next(self, request: RecordedRequest) -> Reply:
        responder = self._replies[min(self._served, len(self._replies) - 1)]
        self._served += 1
        return responder(request) if callable(responder) else responder


class LoopbackHTTPServer:
    """Threaded HTTP server on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None) -> None:
        """`tls`: a server-side SSLContext to serve https:// instead of http://."""
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], _Route] = {}
        self.requests: list[RecordedRequest] = []
        self._server = _Server((host, 0), _handler_for(self))
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> LoopbackHTTPServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- configuration and inspection -------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def route(self, method: str, path: str, *replies: Responder) -> None:
        """Script replies for METHOD path (a trailing * matches any path with that prefix)."""
        if not replies:
            raise ValueError("give at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(replies)

    def requests_for(
        self, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or r.path == path)
            ]

    def _reply_for(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = self._routes.get((request.method, request.path))
            if route is None:
                prefixes = [
                    (p, r)
                    for (m, p), r in self._routes.items()
                    if m == request.method and p.endswith("*") and request.path.startswith(p[:-1])
                ]
                if prefixes:
                    route = max(prefixes, key=lambda item: len(item[0]))[1]
            if route is None:
                return Reply(404, b"not found")
            return route.next(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not wait for handlers still sleeping in a delayed reply

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are expected in these tests


def _handler_for(owner: LoopbackHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parts.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            reply = owner._reply_for(request)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(reply.body), reply.chunk_size):
                    chunk = reply.body[start : start + reply.chunk_size]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                    if reply.chunk_delay_s:
                        time.sleep(reply.chunk_delay_s)
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
            self.wfile.flush()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler
