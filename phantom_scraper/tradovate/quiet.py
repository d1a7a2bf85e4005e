"""After an HTTP 429 a login goes quiet: no background calls until Tradovate's lock-out is over.

Tradovate's Partner docs ("Rate limits", "Error handling"): the user-level limit answers
``429 Too Many Requests`` with an empty body (``Content-Length: 0``; on the socket
``{"s": 429, "i": <id>}``), no ``Retry-After`` and no penalty ticket; the login is locked out for a
**rolling hour**, and requests during the window reset it.  So a 429 is not a "back off for a
second" signal: every further call in the hour makes it longer.

:class:`QuietGate` (one per login) remembers the last 429.  Until ``quiet_s`` (default 3600 s,
``TRADOVATE_RATE_LIMIT_QUIET_S``) has passed, :meth:`check` refuses every call that is not
*essential* with ``RateLimitedError`` without touching the network.  Essential: order endpoints
(a trader's signal still goes; if the broker refuses it, the order ends ``not_sent`` and says
why), authentication, and the reads an order is built from (accounts, contracts, products,
positions).  Everything else -- settlement's searches, strategy housekeeping, breakeven's reads,
status reads, cash snapshots -- waits.  The first 429 of a period emits ``rate_limited``
(a metric and a notification).  No lock is held across I/O (``trip``/``check`` only compare floats).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from phantom_scraper import events
from phantom_scraper.errors import RateLimitedError

logger = logging.getLogger(__name__)

# Reads an order is built from (the path's first segment, lower case), besides order endpoints and auth.
ESSENTIAL_ENTITIES = frozenset({"auth", "account", "contract", "contractmaturity", "product", "position"})


def is_essential(path: str, is_order: bool) -> bool:
    return is_order or path.strip("/").split("/", 1)[0].lower() in ESSENTIAL_ENTITIES


class QuietGate:
    def __init__(self, login: str, quiet_s: float, clock: Callable[[], float] = time.monotonic):
        self.login = login
        self.quiet_s = float(quiet_s)
        self._clock = clock
        self._lock = threading.Lock()  # guards _until (compare-and-set only)
        self._until: Optional[float] = None
        self.trips = 0

    def remaining_s(self) -> float:
        with self._lock:
            until = self._until
        return max(0.0, until - self._clock()) if until is not None else 0.0

    @property
    def quiet(self) -> bool:
        return self.remaining_s() > 0.0

    def trip(self, what: str) -> bool:
        """A 429 on ``what``: (re)start the quiet period.  True when the login was not quiet yet
        (the one notification of the period)."""
        now = self._clock()
        with self._lock:
            was_quiet = self._until is not None and self._until > now
            self._until = now + self.quiet_s  # requests in the window reset Tradovate's hour too
            self.trips += 1
        if not was_quiet:
            logger.error("%s: HTTP 429 on %s: Tradovate locks this login out for an hour; no background "
                         "calls for %.0f s (orders are still sent)", self.login, what, self.quiet_s)
            events.emit("rate_limited", login=self.login, what=what, quiet_s=self.quiet_s)
        return not was_quiet

    def check(self, path: str, is_order: bool) -> None:
        """Raise ``RateLimitedError`` (nothing sent) for a non-essential call while quiet."""
        if is_essential(path, is_order):
            return
        left = self.remaining_s()
        if left > 0:
            raise RateLimitedError(f"{path}: not sent, {self.login} is quiet for {left:.0f} s more after an "
                                   f"HTTP 429 (Tradovate's lock-out is an hour)", left)
