"""The service's life-cycle state and its count of signals in flight.

States: ``new`` -> ``starting`` -> ``ready`` | ``failed``; ``stopping`` -> ``stopped``.  A signal
``enter()``s only while ready and ``leave()``s when its final writes are queued; ``stop()`` waits on
``idle`` for the ones in flight.
"""
from __future__ import annotations

import threading
from typing import Optional


class Gate:
    def __init__(self):
        self.lock = threading.Lock()  # guards state, start_error and in_flight
        self._state = "new"  # new | starting | ready | failed | stopping | stopped
        self._start_error: Optional[str] = None
        self.in_flight = 0
        self.ready = threading.Event()  # start-up finished (ready, failed or stopped early)
        self.stop_requested = threading.Event()  # ends start-up retries early
        self.idle = threading.Event()  # no signal in flight
        self.idle.set()

    @property
    def state(self) -> str:
        with self.lock:
            return self._state

    @property
    def start_error(self) -> Optional[str]:
        with self.lock:
            return self._start_error

    def set_error(self, message: Optional[str]) -> None:
        with self.lock:
            self._start_error = message

    def begin(self) -> bool:
        """``new`` -> ``starting``; False when the service was already started (or stopped)."""
        with self.lock:
            if self._state != "new":
                return False
            self._state = "starting"
            return True

    def fail(self, message: Optional[str] = None) -> None:
        with self.lock:
            self._state = "failed" if self._state == "starting" else self._state
            if message is not None:
                self._start_error = message

    def become_ready(self) -> bool:
        """``starting`` -> ``ready``; False when stop() came during the start."""
        with self.lock:
            self._start_error = None
            if self._state != "starting":
                return False
            self._state = "ready"
            return True

    def begin_stop(self):
        """-> (never_started, was_starting, in_flight), or None when already stopping/stopped."""
        with self.lock:
            if self._state in ("stopping", "stopped"):
                return None
            never_started = self._state == "new"
            was_starting = self._state == "starting"
            self._state = "stopped" if never_started else "stopping"
            return never_started, was_starting, self.in_flight

    def stopped(self) -> None:
        with self.lock:
            self._state = "stopped"

    def enter(self) -> bool:
        with self.lock:
            if self._state != "ready":
                return False
            self.in_flight += 1
            self.idle.clear()
            return True

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    def nothing_in_flight(self) -> bool:
        with self.lock:
            return self.in_flight == 0

    def unavailable_reason(self) -> str:
        with self.lock:
            state, err = self._state, self._start_error
        if state == "failed":
            return f"start-up failed: {err}"
        return f"service is {state}"
