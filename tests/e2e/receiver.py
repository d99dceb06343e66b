"""A real HTTPS notification receiver for tests: TLS 1.2 CCM8 with a certificate of the dev PKI,
the server's client certificate required and verified, keep-alive, every POST recorded. It can be
told to answer 500 (`failing`) or to refuse connections (`stop()` / `start()` again on its port)."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from server.tls import CCM8


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes
    at: float
    peer_cert: dict = field(default_factory=dict)


class Receiver:
    def __init__(self, cert: Path, key: Path, trust: Path, port: int = 0):
        self.cert, self.key, self.trust = cert, key, trust
        self.port = port
        self.received: list[Received] = []
        self.connections = 0
        self.failing = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/notify") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def start(self) -> "Receiver":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with outer._lock:
                    outer.connections += 1

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.failing:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with outer._lock:
                    outer.received.append(Received(self.path, self.headers.get("Content-Type", ""), body,
                                                   time.time(), self.connection.getpeercert() or {}))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(CCM8)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.trust)
        ctx.verify_mode = ssl.CERT_REQUIRED
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, path: str | None = None) -> list[bytes]:
        with self._lock:
            return [r.body for r in self.received if path is None or r.path == path]

    def wait_for(self, n: int, path: str | None = None, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.bodies(path)
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(self.bodies(path))} of {n} notifications arrived within {timeout} s")
