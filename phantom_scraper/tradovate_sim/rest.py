"""REST transport: ``/v1/<endpoint>`` through the shared handler table, ``/control/...`` for tests.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (one thread per connection).
Connect latency is slept once per new TCP connection, response latency before every answer.
"""
from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Set
from urllib.parse import urlsplit

from .handlers import Api, Reply, Request, dumps, normalise_endpoint

log = logging.getLogger(__name__)


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, api: Api, control: Callable[..., Reply]):
        self.api = api
        self.control = control
        self.closing = threading.Event()  # set by stop(): held (no-answer) requests give up
        # Guards self._conns (open client sockets, closed on close_all()/stop()).
        self._conns_lock = threading.Lock()
        self._conns: Set[socket.socket] = set()
        self._thread: Optional[threading.Thread] = None
        super().__init__(address, _Handler)

    # ---- connection tracking ------------------------------------------------------------------
    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self, exclude: Optional[socket.socket] = None) -> int:
        """Drop every open client connection but ``exclude`` (models a network drop)."""
        with self._conns_lock:
            conns = [c for c in self._conns if c is not exclude]
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="tradovate-sim-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.close_all()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: RestServer

    def handle(self) -> None:
        latency_ms = self.server.api.faults.connect_latency_ms
        if latency_ms:
            self.server.closing.wait(latency_ms / 1000.0)  # TCP + TLS set-up of a new connection
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass  # client went away / close_all(): nothing to answer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/control/") or url.path == "/control":
            self._send(self.server.control(self.command, url.path[len("/control"):], url.query, raw,
                                           self.connection))
            return
        if not url.path.startswith("/v1/"):
            self._send(Reply(404, f"Not found: {url.path}"))
            return
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        api = self.server.api
        delay_ms = api.faults.order_delay(normalise_endpoint(url.path[4:]))
        if delay_ms:
            self.server.closing.wait(delay_ms / 1000.0)
        reply = api.dispatch(Request("rest", url.path[4:], url.query,
                                     raw.decode("utf-8", "replace"), token=token))
        latency_ms = api.faults.response_latency()
        if latency_ms:
            self.server.closing.wait(latency_ms / 1000.0)
        if reply.action == "drop":  # executed, never answered: hold, then drop the connection
            self.server.closing.wait(api.config.rest_no_answer_hold_s)
            self.close_connection = True
            return
        if reply.action == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.status == 429:
            body, ctype = b"", None
        elif reply.status >= 400 or isinstance(reply.body, str):
            body, ctype = str(reply.body or "").encode(), "text/plain; charset=utf-8"
        else:
            body, ctype = dumps(reply.body).encode(), "application/json; charset=utf-8"
        self.send_response(reply.status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
        self.flush_headers()
