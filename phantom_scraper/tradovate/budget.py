"""Each login's request budget: what it sent to Tradovate in the last minute and the last hour.

Tradovate limits each user to about 80 requests a minute and 5,000 an hour (REST and socket
requests alike; a heartbeat is not a request).  Every request a login sends (its REST client and
its order socket) is counted here; ``/metrics`` and the status page show the figures, and a login
past ``warn_fraction`` (80 %) of either limit is logged once per episode with a ``budget`` event.

Counting is O(1) and lock-light: one bucket per second (the last 60) and one per minute (the last
60), advanced lazily.  Readers sum at most 120 integers.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Optional

from phantom_scraper import events

logger = logging.getLogger(__name__)

PER_MINUTE = 80
PER_HOUR = 5000
WARN_FRACTION = 0.8


class RequestBudget:
    def __init__(self, login: str, *, per_minute: int = PER_MINUTE, per_hour: int = PER_HOUR,
                 warn_fraction: float = WARN_FRACTION, clock: Callable[[], float] = time.monotonic):
        self.login = login
        self.per_minute = int(per_minute)
        self.per_hour = int(per_hour)
        self.warn_fraction = float(warn_fraction)
        self._clock = clock
        self._lock = threading.Lock()  # guards the buckets (integer bookkeeping only)
        self._seconds = [0] * 60
        self._minutes = [0] * 60
        self._sec = int(clock())  # the current second's index
        self._min = self._sec // 60
        self.total = 0
        self.peak_minute = 0
        self.peak_hour = 0
        self._warned = False

    def _advance_locked(self, now: float) -> None:
        sec = int(now)
        if sec != self._sec:
            for s in range(self._sec + 1, min(sec, self._sec + 60) + 1):
                self._seconds[s % 60] = 0
            self._sec = sec
        minute = sec // 60
        if minute != self._min:
            for m in range(self._min + 1, min(minute, self._min + 60) + 1):
                self._minutes[m % 60] = 0
            self._min = minute

    def note(self, n: int = 1) -> None:
        """``n`` requests were sent now."""
        warn = None
        with self._lock:
            self._advance_locked(self._clock())
            self._seconds[self._sec % 60] += n
            self._minutes[self._min % 60] += n
            self.total += n
            minute, hour = sum(self._seconds), sum(self._minutes)
            self.peak_minute = max(self.peak_minute, minute)
            self.peak_hour = max(self.peak_hour, hour)
            high = minute >= self.warn_fraction * self.per_minute or hour >= self.warn_fraction * self.per_hour
            if high and not self._warned:
                self._warned, warn = True, (minute, hour)
            elif not high and self._warned and minute < 0.5 * self.per_minute and hour < 0.5 * self.per_hour:
                self._warned = False
        if warn is not None:
            logger.warning("Login %s is at %d requests in the last minute (limit ~%d) and %d in the last hour "
                           "(limit ~%d): over %d %% of Tradovate's budget", self.login, warn[0], self.per_minute,
                           warn[1], self.per_hour, round(self.warn_fraction * 100))
            events.emit("budget", login=self.login, last_minute=warn[0], last_hour=warn[1])

    def status(self) -> Dict[str, object]:
        with self._lock:
            self._advance_locked(self._clock())
            minute, hour = sum(self._seconds), sum(self._minutes)
        return {"last_minute": minute, "last_hour": hour, "per_minute_limit": self.per_minute,
                "per_hour_limit": self.per_hour, "minute_used": round(minute / self.per_minute, 3),
                "hour_used": round(hour / self.per_hour, 3), "peak_minute": self.peak_minute,
                "peak_hour": self.peak_hour, "total": self.total,
                "warning": minute >= self.warn_fraction * self.per_minute
                or hour >= self.warn_fraction * self.per_hour}


_budgets: Dict[str, RequestBudget] = {}
_registry_lock = threading.Lock()


def for_login(login: str, **limits) -> RequestBudget:
    """The one budget of ``login`` in this process (created on first use)."""
    with _registry_lock:
        budget = _budgets.get(login)
        if budget is None:
            budget = _budgets[login] = RequestBudget(login, **limits)
        return budget


def all_status() -> Dict[str, dict]:
    with _registry_lock:
        budgets = list(_budgets.values())
    return {b.login: b.status() for b in budgets}


def reset(login: Optional[str] = None) -> None:
    """Tests: forget one login's budget (or every one)."""
    with _registry_lock:
        if login is None:
            _budgets.clear()
        else:
            _budgets.pop(login, None)
