"""gunicorn's gthread worker with a front door: slow clients cost a socket, never a thread.

gthread hands a connection to a worker thread as soon as its first byte is readable, and the
thread then blocks reading the rest: a few dozen clients trickling their headers hold every
thread and the webhook waits.  Here the poller (the worker's main thread) reads each request
non-blockingly into a buffer and submits it to the thread pool only once its head and body are
complete; the thread's gunicorn parser reads the buffered bytes, never the socket.

Deadlines (``HTTP_HEADER_TIMEOUT_S`` from the first byte of a request, ``HTTP_BODY_TIMEOUT_S``
after its head, ``HTTP_KEEPALIVE_IDLE_S`` between requests) close connections in the poller; caps
(``HTTP_MAX_CONNECTIONS``, ``HTTP_MAX_CONNECTIONS_PER_SOURCE``) are checked at accept before a
byte is read; the webhook allow-list is checked as soon as a request's head is in, before its body
is read and before any thread.  Refusals are answered with a short canned response (or, at accept,
a plain close).  Use: ``--worker-class phantom_scraper.door.worker.DoorWorker`` (the Procfile).

Answers never block a thread either: the thread's gunicorn code writes the response into a
buffer (``_OutBuffer``); ``finish_request`` sends what the socket takes at once (non-blocking)
and leaves the rest to the poller, which closes a client that has not taken it within
``HTTP_WRITE_TIMEOUT_S``.  The next request on a connection is read only after the previous answer
has left (one answer per connection in memory); more than ``HTTP_MAX_PIPELINED`` requests sent
ahead of their answers close the connection; and one address has at most
``HTTP_MAX_THREADS_PER_SOURCE`` requests in threads at once (the others wait in the poller), so
no single source can take every thread.

Threads: the poller owns every connection in ``_waiting`` (registered for reads or writes); a
pool thread owns a connection it is serving; ``finish_request`` (in the pool thread) hands it
back.  ``_lock`` guards the poller registration, ``_waiting``, ``_ready``, the parked requests and
the caps - bookkeeping only, no socket I/O under it.
"""
from __future__ import annotations

import errno
import json
import logging
import selectors
import socket
import time
from collections import deque
from concurrent import futures
from functools import partial
from typing import Optional

from gunicorn import http, util
from gunicorn.workers.gthread import TConn, ThreadWorker

from phantom_scraper.config import Settings
from phantom_scraper.door import framing
from phantom_scraper.door.answers import OutBuffer as _OutBuffer, ThreadConn as _ThreadConn
from phantom_scraper.door.policy import ConnectionCaps, SourcePolicy

logger = logging.getLogger(__name__)

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 413: "Payload Too Large",
            431: "Request Header Fields Too Large"}
_ACCEPT_BATCH = 64  # connections accepted per readiness event
_SUMMARY_INTERVAL_S = 60.0
_NOTIFY_EVERY_S = 1.0  # how often the worker touches its liveness file (gunicorn timeout: 30 s)


def canned_response(status: int, code: str, message: str) -> bytes:
    """A complete JSON error response in the app's shape, with ``Connection: close``."""
    body = (json.dumps({"success": False, "error": {"code": code, "message": message}}) + "\n").encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1")
    return head + body


class _OneRequest:
    """What the thread's gunicorn code sees as ``conn.parser``: one buffered request."""

    def __init__(self, cfg, data: bytes, client):
        self._parser = http.RequestParser(cfg, iter([data]), client)

    def __iter__(self):
        return self

    def __next__(self):
        req = next(self._parser)
        # The body is already here: gunicorn must not send a (second) "100 Continue".
        req.headers = [(name, value) for name, value in req.headers if name != "EXPECT"]
        return req


class DoorConn(TConn):
    def __init__(self, cfg, sock, client, server, peer: str, key: Optional[str]):
        super().__init__(cfg, sock, client, server)  # non-blocking
        self.peer = peer
        self.key = key  # counted per source under this address (None: not counted)
        self.busy_key: Optional[str] = None  # the source whose thread budget this request uses
        self.pipelined = 0  # requests answered in a row that were already buffered
        self.out: Optional[_OutBuffer] = None  # the answer a thread wrote
        self.pending = b""  # what the socket has not taken yet (the poller sends it)
        self.writing = False
        self.keep_after_write = False
        self.buf = bytearray()
        self.head: Optional[framing.Head] = None
        self.scan: Optional[framing.ChunkedScan] = None
        self.idle = True  # no byte of the next request yet
        self.deadline = 0.0
        self.registered = False
        self.closed = False


class DoorWorker(ThreadWorker):
    """gthread, but the poller reads whole requests under deadlines before a thread sees them."""

    def init_process(self):
        if self.cfg.is_ssl:
            raise RuntimeError("DoorWorker does not terminate TLS; let the platform's proxy do it")
        self._waiting = set()  # connections owned by the poller
        self._ready = deque()  # handed back by a thread with a complete request already buffered
        self._stats = {"deadline": 0, "caps": 0, "allowlist": 0, "malformed": 0, "slow_reader": 0, "pipelined": 0}
        self._busy = {}  # source -> its requests in threads (guarded by _lock)
        self._parked = {}  # source -> deque of connections with a complete request waiting for a thread
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.futures = set()  # requests in threads (a set: each removes itself when done)
        super().init_process()  # loads the app, runs post_worker_init, then run()

    # -- set-up ----------------------------------------------------------------------------------
    def _configure(self) -> None:
        runtime = getattr(self.wsgi, "extensions", {}).get("runtime")
        settings: Settings = runtime.settings if runtime is not None else Settings.from_env()
        self.settings = settings
        self.policy = SourcePolicy(settings)
        self.caps = ConnectionCaps(settings.http_max_connections, settings.http_max_connections_per_source)
        self.header_timeout_s = settings.http_header_timeout_s
        self.body_timeout_s = settings.http_body_timeout_s
        self.idle_timeout_s = settings.http_keepalive_idle_s
        self.max_body_bytes = settings.max_body_bytes
        self.write_timeout_s = settings.http_write_timeout_s
        self.max_pipelined = max(1, settings.http_max_pipelined)
        threads = max(1, int(self.cfg.threads or 1))
        per_source = settings.http_max_threads_per_source or threads // 4
        self.max_threads_per_source = max(1, min(per_source, threads - 1)) if threads > 1 else 1
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.idle_timeout_s, self.write_timeout_s)
        self.sweep_interval_s = max(0.01, min(0.25, shortest / 5))
        self._next_sweep = 0.0
        self._next_summary = time.monotonic() + _SUMMARY_INTERVAL_S
        logger.info("Front door: headers within %gs, body within %gs, answers taken within %gs, idle keep-alive "
                    "%gs, at most %d connections (%d per source), %d requests per source in threads, %d "
                    "pipelined; allow-list %s%s", self.header_timeout_s, self.body_timeout_s, self.write_timeout_s,
                    self.idle_timeout_s, self.caps.max_total, self.caps.max_per_source, self.max_threads_per_source,
                    self.max_pipelined,
                    "on" if self.policy.allowlist_enabled else "off",
                    ", X-Forwarded-For from trusted proxies" if self.policy.trust_proxy_headers else "")

    # -- the poller loop ---------------------------------------------------------------------------
    def run(self):
        self._configure()
        self._accepting_again_at: Optional[float] = None  # accepts paused after EMFILE until then
        for listener in self.sockets:
            listener.setblocking(False)
            self.poller.register(listener, selectors.EVENT_READ, partial(self.accept, listener.getsockname()))
        self.poller.register(self._wake_r, selectors.EVENT_READ, self._on_wake)

        notified = 0.0
        while self.alive:
            now = time.monotonic()
            if now - notified >= _NOTIFY_EVERY_S:  # the arbiter's liveness file: not once per event
                self.notify()
                notified = now
            for key, _ in self.poller.select(max(0.0, min(1.0, self._next_sweep - now))):
                key.data(key.fileobj)
            if not self.is_parent_alive():
                break
            self._sweep(time.monotonic())

        # SIGTERM: stop accepting; connections waiting for bytes are dropped; requests in threads
        # finish (up to graceful_timeout), then gunicorn's worker_exit hook drains the service.
        self.tpool.shutdown(False)
        for listener in self.sockets:
            listener.close()
        with self._lock:
            waiting = list(self._waiting)
        for conn in waiting:
            self._close(conn)
        self.poller.close()
        futures.wait(list(self.futures), timeout=self.cfg.graceful_timeout)
        for s in (self._wake_r, self._wake_w):
            s.close()

    def accept(self, server, listener):
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, client = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # The listener stays readable: stop polling it for a moment instead of spinning.
                    logger.error("Front door: out of file descriptors; accepting again in 0.5 s (raise "
                                 "the limit, `ulimit -n`, or lower HTTP_MAX_CONNECTIONS)")
                    self._pause_accepting(time.monotonic() + 0.5)
                    return
                raise
            peer = client[0] if isinstance(client, tuple) else ""
            proxied = self.policy.is_trusted_proxy(peer)
            # Behind a trusted proxy one connection carries many clients: not counted per source.
            key = None if (proxied or not peer) else peer
            privileged = not proxied and self.policy.is_privileged(peer)
            with self._lock:
                refused = self.caps.admit(key, privileged)
            if refused is not None:
                self._stats["caps"] += 1
                logger.debug("Front door: connection from %s refused (%s cap)", peer, refused)
                util.close(sock)
                continue
            conn = DoorConn(self.cfg, sock, client, server, peer, key)
            conn.deadline = time.monotonic() + self.header_timeout_s
            self._wait_for_bytes(conn)

    def on_client_socket_readable(self, conn: DoorConn, client):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.idle:
            conn.idle = False
            conn.deadline = time.monotonic() + self.header_timeout_s
        conn.buf += data
        self._advance(conn)

    def _on_wake(self, wake_sock):
        try:
            while wake_sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            with self._lock:
                if not self._ready:
                    return
                conn = self._ready.popleft()
            parked = conn.parser is not None and not conn.initialized
            if conn.closed:
                if parked:
                    self._release_thread(conn)  # hand its slot on
                continue
            if parked:  # a parked request got its thread
                self._submit(conn)
                continue
            conn.idle = False
            conn.deadline = time.monotonic() + self.header_timeout_s
            self._wait_for_bytes(conn)
            self._advance(conn)

    # -- framing and policy, in the poller --------------------------------------------------------
    def _advance(self, conn: DoorConn) -> None:
        """Decide on what is buffered: keep waiting, refuse, or hand a complete request to a thread."""
        try:
            if conn.head is None:
                head = framing.parse_head(conn.buf)
                if head is None:
                    return
                conn.head = head
                if not self._head_allowed(conn, head):
                    return
                conn.deadline = time.monotonic() + self.body_timeout_s
                if head.chunked:
                    conn.scan = framing.ChunkedScan(head.end)
            end = framing.request_end(conn.head, conn.buf, self.max_body_bytes, conn.scan)
            if end is None:
                if conn.head.expect_continue:
                    conn.head.expect_continue = False  # the client waits for this before its body
                    self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                return
        except framing.FramingError as exc:
            self._stats["malformed"] += 1
            self._refuse(conn, exc.status, exc.code, exc.message)
            return
        self._dispatch(conn, end)

    def _head_allowed(self, conn: DoorConn, head: framing.Head) -> bool:
        if not self.policy.allowlist_enabled or not head.is_webhook():
            return True
        source = self.policy.source(conn.peer, head.forwarded_for)
        if self.policy.webhook_allowed(source):
            return True
        self._stats["allowlist"] += 1
        logger.debug("Front door: webhook from %s refused (not in the allow-list)", source)
        self._refuse(conn, 403, "forbidden_source", "source address not in the allow-list; nothing was placed")
        return False

    def _dispatch(self, conn: DoorConn, end: int) -> None:
        head = conn.head
        data = bytes(conn.buf[head.start:end])
        del conn.buf[:end]
        conn.head = conn.scan = None
        source = self.policy.source(conn.peer, head.forwarded_for)
        conn.busy_key = None if self.policy.is_privileged(source) else source
        conn.parser = _OneRequest(self.cfg, data, conn.client)
        conn.initialized = False
        with self._lock:
            self._waiting.discard(conn)
            self._unregister(conn)
            if conn.busy_key is not None:
                if self._busy.get(conn.busy_key, 0) >= self.max_threads_per_source:
                    # This source already has its share of the threads: wait for one of its own.
                    self._parked.setdefault(conn.busy_key, deque()).append(conn)
                    return
                self._busy[conn.busy_key] = self._busy.get(conn.busy_key, 0) + 1
        self._submit(conn)

    def _submit(self, conn: DoorConn) -> None:
        conn.initialized = True
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def handle(self, conn: DoorConn):
        """In a pool thread: gunicorn's handling, its writes into a buffer (never the socket)."""
        out = _OutBuffer()
        keepalive, _view = super().handle(_ThreadConn(conn, out))
        conn.out = out
        return keepalive, conn

    def _release_thread(self, conn: DoorConn) -> None:
        """The request's thread is done: the source's next parked request may have one."""
        key, conn.busy_key = conn.busy_key, None
        if key is None:
            return
        woken = None
        with self._lock:
            parked = self._parked.get(key)
            while parked:
                candidate = parked.popleft()
                if not candidate.closed:
                    woken = candidate
                    break
            if parked is not None and not parked:
                self._parked.pop(key, None)
            if woken is not None:
                self._ready.append(woken)  # keeps this request's slot in _busy
            else:
                left = self._busy.get(key, 0) - 1
                if left > 0:
                    self._busy[key] = left
                else:
                    self._busy.pop(key, None)
        if woken is not None:
            self._send_wake()

    def _wrap_future(self, fs, conn):
        """As gthread's, but a finished request leaves ``futures`` by itself (gthread polls every
        future after each poller event; with many requests in threads that costs per event)."""
        fs.conn = conn
        self.futures.add(fs)
        fs.add_done_callback(self.futures.discard)
        fs.add_done_callback(self.finish_request)

    # -- back from a thread -----------------------------------------------------------------------
    def finish_request(self, fs):
        conn: DoorConn = fs.conn
        keepalive = False
        if not fs.cancelled():
            try:
                keepalive, _conn = fs.result()
            except Exception:  # handle() already logged it
                keepalive = False
        self._release_thread(conn)
        conn.parser = None
        out, conn.out = conn.out, None
        if out is not None and out.close_requested:
            keepalive = False
        data = bytes(out.data) if out is not None else b""
        if data and not self.alive:
            self._send_at_shutdown(conn, data)  # the poller is gone: a bounded blocking send
            data = b""
        if data:
            try:
                sent = self._send_some(conn, data)
            except OSError:
                self._close(conn)
                return
            if sent < len(data):  # the client is not reading (fast enough): the poller waits for it
                conn.pending = data[sent:]
                conn.keep_after_write = keepalive
                conn.writing = True
                conn.deadline = time.monotonic() + self.write_timeout_s
                self._wait_for_write(conn)
                return
        self._answered(conn, keepalive)

    def _answered(self, conn: DoorConn, keepalive: bool) -> None:
        """The answer has left: close, or wait for (or frame) the connection's next request."""
        if not (keepalive and self.alive):
            self._close(conn)
            return
        conn.idle = True
        conn.deadline = time.monotonic() + self.idle_timeout_s
        if conn.buf:  # a pipelined request: the poller frames it (it owns framing and policy)
            conn.pipelined += 1
            if conn.pipelined > self.max_pipelined:
                self._stats["pipelined"] += 1
                logger.debug("Front door: %s sent more than %d requests ahead of their answers; closed",
                             conn.peer, self.max_pipelined)
                self._close(conn)
                return
            with self._lock:
                self._ready.append(conn)
            self._send_wake()
        else:
            conn.pipelined = 0
            self._wait_for_bytes(conn)

    @staticmethod
    def _send_some(conn: DoorConn, data: bytes) -> int:
        """Non-blocking: what the socket takes now (raises OSError when the connection is gone)."""
        sent = 0
        view = memoryview(data)
        while sent < len(data):
            try:
                n = conn.sock.send(view[sent:])
            except (BlockingIOError, InterruptedError):
                break
            if not n:
                break
            sent += n
        return sent

    def _send_at_shutdown(self, conn: DoorConn, data: bytes) -> None:
        try:
            conn.sock.settimeout(self.write_timeout_s)
            conn.sock.sendall(data)
        except OSError:
            pass

    def on_client_socket_writable(self, conn: DoorConn, _sock):
        try:
            sent = self._send_some(conn, conn.pending)
        except OSError:
            self._close(conn)
            return
        conn.pending = conn.pending[sent:]
        if conn.pending:
            return
        conn.writing = False
        with self._lock:
            self._waiting.discard(conn)
            self._unregister(conn)
        self._answered(conn, conn.keep_after_write)

    def _send_wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is already pending) or closed at shutdown
            pass

    def _pause_accepting(self, until: float) -> None:
        self._accepting_again_at = until
        with self._lock:
            for listener in self.sockets:
                try:
                    self.poller.unregister(listener)
                except (KeyError, ValueError, OSError):
                    pass

    def _resume_accepting(self) -> None:
        self._accepting_again_at = None
        with self._lock:
            for listener in self.sockets:
                self.poller.register(listener, selectors.EVENT_READ, partial(self.accept, listener.getsockname()))

    # -- deadlines -----------------------------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval_s
        if self._accepting_again_at is not None and now >= self._accepting_again_at:
            self._resume_accepting()
        with self._lock:
            expired = [conn for conn in self._waiting if conn.deadline <= now]
        for conn in expired:
            if conn.writing:  # a client that does not read its answer
                self._stats["slow_reader"] += 1
                self._close(conn)
            elif conn.idle:
                self._close(conn)  # an idle keep-alive connection, or one that never sent a byte
            else:
                self._stats["deadline"] += 1
                self._refuse(conn, 408, "request_timeout", "request not received in time")
        if now >= self._next_summary:
            self._next_summary = now + _SUMMARY_INTERVAL_S
            if any(self._stats.values()):
                logger.warning("Front door, last %ds: %d connections closed at a deadline, %d refused over "
                               "the connection caps, %d webhooks refused by the allow-list, %d malformed, "
                               "%d closed for not reading their answers, %d for pipelining too far",
                               _SUMMARY_INTERVAL_S, self._stats["deadline"], self._stats["caps"],
                               self._stats["allowlist"], self._stats["malformed"], self._stats["slow_reader"],
                               self._stats["pipelined"])
                self._stats = dict.fromkeys(self._stats, 0)

    # -- connection bookkeeping ------------------------------------------------------------------------
    def _wait_for_bytes(self, conn: DoorConn) -> None:
        with self._lock:
            if conn.closed:
                return
            try:
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
            except (OSError, ValueError, KeyError):  # poller closed at shutdown, or socket gone
                failed = True
            else:
                failed = False
                conn.registered = True
                self._waiting.add(conn)
        if failed:
            self._close(conn)

    def _wait_for_write(self, conn: DoorConn) -> None:
        with self._lock:
            if conn.closed:
                return
            try:
                self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self.on_client_socket_writable, conn))
            except (OSError, ValueError, KeyError):
                failed = True
            else:
                failed = False
                conn.registered = True
                self._waiting.add(conn)
        if failed:
            self._close(conn)

    def _unregister(self, conn: DoorConn) -> None:
        """Caller holds ``_lock``."""
        if conn.registered:
            conn.registered = False
            try:
                self.poller.unregister(conn.sock)
            except (OSError, ValueError, KeyError):
                pass

    def _close(self, conn: DoorConn) -> None:
        with self._lock:
            if conn.closed:
                return
            conn.closed = True
            self._waiting.discard(conn)
            self._unregister(conn)
            self.caps.release(conn.key)
        util.close(conn.sock)

    def _send_quietly(self, conn: DoorConn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # non-blocking; a tiny response fits a fresh socket's buffer
        except OSError:
            pass

    def _refuse(self, conn: DoorConn, status: int, code: str, message: str) -> None:
        self._send_quietly(conn, canned_response(status, code, message))
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._close(conn)
