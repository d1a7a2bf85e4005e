"""The keep-alive daemon: one thread that, every ``interval_s``, renews tokens that are due, checks
each login's socket with a cheap request, and starts reconnects for the dropped ones (bounded and
staggered by the pool, backed off); woken early when a socket closes.  It never waits for a connect.

The pool (``recorder_service``) owns the one daemon and hands it its connections.  A connection here
is a ``phantom_scraper.tradovate.pool_api.Connection`` with ``closed``, ``connecting``,
``live_client()``, ``token_is_stale()``, ``check(timeout_s)``, ``backoff_remaining_s()``,
``ensure_connecting(...)`` and ``integration.ensure_token()``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, List, Optional

from phantom_scraper.errors import TradovateError, describe

logger = logging.getLogger(__name__)


class KeepAliveDaemon:
    """Every ``interval_s``: renew tokens that are due, check each socket with a cheap request,
    and start reconnects for the dropped ones (bounded and staggered by the pool, backed off).
    Woken early when a socket closes.  It never waits for a connect."""

    THREAD_NAME = "ws-keepalive"

    def __init__(self, interval_s: float = 30.0, check_timeout_s: float = 5.0, *,
                 connections: Callable[[], Iterable] = tuple, log: logging.Logger = logger):
        self.connections = connections  # -> the pool's connections (one per login), read each cycle
        self.log = log  # the owner's logger (the pool's lines keep their logger name)
        self.interval_s = interval_s
        self.check_timeout_s = check_timeout_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()  # serialises start() so one thread is ever started
        self._thread: Optional[threading.Thread] = None
        self.cycle_hooks: List[Callable[[], None]] = []  # run after each cycle, in the daemon thread
        self.cycles = 0
        self.last_cycle_at: Optional[float] = None
        self.last_error: Optional[str] = None

    def start(self) -> bool:
        """Start the thread (idempotent); True if this call started it."""
        with self._start_lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
            self._thread.start()
        self.log.info("WebSocket keep-alive daemon started (every %.1fs)", self.interval_s)
        return True

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop and join (idempotent).  A cycle in progress finishes its current connection."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                self.log.error("WebSocket keep-alive daemon did not stop within %.1fs", timeout_s)

    def status(self) -> dict:
        return {"running": self.alive, "interval_s": self.interval_s, "cycles": self.cycles,
                "last_cycle_at": self.last_cycle_at, "last_error": self.last_error}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a wake during the cycle triggers one more cycle at once
            try:
                self.run_cycle()
                self.last_error = None
            except Exception as exc:  # the safety net: one bad cycle never kills the daemon
                self.last_error = describe(exc)
                self.log.exception("WebSocket keep-alive cycle failed")
            self._wake.wait(self.interval_s)
        self.log.info("WebSocket keep-alive daemon stopped")

    def run_cycle(self) -> None:
        self.cycles += 1
        self.last_cycle_at = time.time()
        for conn in self.connections():
            if self._stop.is_set():
                return
            try:
                self._tend(conn)
            except Exception:  # one login's problem never starves the others
                self.log.exception("WebSocket keep-alive failed for %s", conn.login_key)
        for hook in list(self.cycle_hooks):  # e.g. settling 'unknown' order intents
            try:
                hook()
            except Exception:
                self.log.exception("keep-alive cycle hook failed")

    def _tend(self, conn) -> None:
        if conn.closed:
            return
        try:
            conn.integration.ensure_token()  # renews ahead of expiry; the listener swaps the socket
        except TradovateError as exc:
            self.log.warning("Token renewal failed for %s: %s", conn.login_key, describe(exc))
            return
        if conn.connecting:
            return
        if conn.live_client() is not None:
            if conn.token_is_stale():
                conn.ensure_connecting(ignore_backoff=True, reason="token")
                return
            if conn.check(self.check_timeout_s):
                return
        if conn.backoff_remaining_s() > 0:
            return
        conn.ensure_connecting(reason="reconnect")  # runs in its own thread; not waited for
