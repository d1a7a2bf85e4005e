"""A busy lane's hand-over, measured where it happens (issue 29).

From the moment the previous job's orders were final at the broker (the last of their final
events applied from the socket: ``BrokerState.finished_at``) to the moment the next job of that
lane starts its own work (the previous orders seen settled).  Only a job that was already queued
at that moment counts: one that arrives at an idle lane waits for no one.  What the broker takes
to answer, and the loopback, are not in it; the server's share is.

Kept: the last 2,000 (``status()``: count, p50, p99 and max in ms, the console's ``lanes``) and each
one as a ``lane_handover`` event (the ``phantom_lane_handover_seconds`` histogram on ``/metrics``).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Deque

from phantom_scraper import events

KEPT = 2000


class Handovers:
    def __init__(self, kept: int = KEPT):
        self._lock = threading.Lock()  # guards _recent and count
        self._recent: Deque[float] = deque(maxlen=kept)
        self.count = 0

    def note(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        with self._lock:
            self._recent.append(seconds)
            self.count += 1
        events.emit("lane_handover", seconds=seconds)

    def status(self) -> dict:
        with self._lock:
            recent, count = sorted(self._recent), self.count
        if not recent:
            return {"count": count}

        def ms(q: float) -> float:
            return round(recent[min(len(recent) - 1, int(q * len(recent)))] * 1000.0, 2)

        return {"count": count, "recent": len(recent), "p50_ms": ms(0.5), "p99_ms": ms(0.99),
                "max_ms": round(recent[-1] * 1000.0, 2)}
