"""Logins that could not be opened at start, opened again on their own.

One thread per login that is down and not final (``LoginBook.down``): it tries ``LoginBook.open_one``
with back-off (``RECONNECT_BACKOFF_INITIAL_S`` doubling to ``RECONNECT_BACKOFF_MAX_S``, jittered;
at least what a captcha penalty asks).  When the login opens, ``on_opened(name)`` wires it into the
running service (its socket connecting, the risk guard over its accounts).  A final error (wrong
password, a recorder link to an account it does not have) ends the retries: the login stays
``failed`` with its reason.  The other logins are never touched.
"""
from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Dict

logger = logging.getLogger(__name__)


class LoginRetrier:
    def __init__(self, ctx, on_opened: Callable[[str], None]):
        self.ctx = ctx
        self.on_opened = on_opened
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _threads
        self._threads: Dict[str, threading.Thread] = {}

    def start(self) -> None:
        """A thread for each login that is down and worth retrying (idempotent)."""
        book = self.ctx.logins
        with book.lock:
            names = [name for name, down in book.down.items() if not down.final]
        with self._lock:
            for name in names:
                if name not in self._threads and not self._stop.is_set():
                    thread = threading.Thread(target=self._run, args=(name,), name=f"login-retry-{name}", daemon=True)
                    self._threads[name] = thread
                    thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """No attempt starts after this; waits (bounded) for one in progress (its REST calls are bounded)."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    def _run(self, name: str) -> None:
        s = self.ctx.settings
        delay_s = s.reconnect_backoff_initial_s
        book = self.ctx.logins
        while True:
            down = book.down.get(name)
            if down is None or down.final:
                return
            wait_s = max(min(s.reconnect_backoff_max_s, delay_s) * random.uniform(0.8, 1.2), down.wait_s or 0.0)
            if self._stop.wait(wait_s) or self.ctx.gate.stop_requested.is_set():
                return
            delay_s = min(s.reconnect_backoff_max_s, delay_s * 2)
            try:
                book.open_one(name, self.ctx.pool, s)
            except Exception as exc:  # noqa: BLE001 - recorded; retried unless final
                if book.mark_down(name, exc).final:
                    return
                continue
            try:
                self.on_opened(name)
            except Exception:  # noqa: BLE001 - the login is open; what failed to follow is logged
                logger.exception("Login %s opened, but wiring it into the service failed", name)
            return
