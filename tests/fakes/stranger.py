"""A stranger on a port: a tiny HTTP server the worker did not start that answers
GET /system_stats like ComfyUI does (as a leftover ComfyUI on 8188 would), and records
every path it is asked for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Stranger:
    port: int
    requested: list[str] = field(default_factory=list)


@contextmanager
def stranger_on(port: int = 0, argv: list[str] | None = None) -> Iterator[Stranger]:
    """Serve on 127.0.0.1:port (0: any free port) until the block ends."""
    body = json.dumps(
        {
            "system": {"comfyui_version": "0.3.64", "argv": argv or ["main.py"]},
            "devices": [],
        }
    ).encode()
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            found = self.path.split("?", 1)[0] == "/system_stats"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test asserts on `requested`

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="stranger", daemon=True)
    thread.start()
    try:
        yield Stranger(server.server_address[1], requested)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
