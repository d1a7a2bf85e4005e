"""Webhooks that arrive while the service starts: journaled, answered 202, executed once ready.

A restart or a redeploy takes a few seconds to log in to the broker (longer when the broker answers
with a penalty ticket).  A webhook that arrives meanwhile -- the journal is open and the recorders
are known, the logins are not ready yet -- is journaled at once with status ``queued`` (deduplicated
like any signal) and answered ``202`` with its id.  When the logins are ready (after the previous
run's orders are reconciled) each queued signal is executed, in arrival order, if it is still
fresh (``PENDING_SIGNAL_MAX_AGE_S``, as for a handed-off signal); an older one is journaled
``expired`` and nothing is placed.  A start that fails journals the queued ones ``failed`` (nothing
placed) and answers later webhooks ``503``.

``queued`` signals a crashed process left behind are settled ``interrupted`` at the next start
(never executed late); a retry of such an id then executes (``Journal.provably_not_sent``).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Set

logger = logging.getLogger(__name__)

QUEUED = "queued"
EXPIRED = "expired"
MAX_QUEUED = 1000  # a start-up that takes long under a flood: the rest are refused (503)


@dataclass(frozen=True)
class QueuedSignal:
    signal_id: str
    recorder: str
    payload: object  # the parsed Signal
    received_at: float  # epoch seconds


class StartupQueue:
    def __init__(self, max_age_s: float, *, limit: int = MAX_QUEUED, clock: Callable[[], float] = time.time):
        self.max_age_s = float(max_age_s)
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()  # guards _items and _open (bookkeeping only)
        self._items: List[QueuedSignal] = []
        self._open = True

    def has_room(self) -> bool:
        with self._lock:
            return self._open and len(self._items) < self.limit

    def add(self, item: QueuedSignal) -> bool:
        """False when the queue is closed (the start has just finished) or full."""
        with self._lock:
            if not self._open or len(self._items) >= self.limit:
                return False
            self._items.append(item)
            return True

    def ids(self) -> Set[str]:
        with self._lock:
            return {i.signal_id for i in self._items}

    def close(self) -> List[QueuedSignal]:
        """No more signals are queued; returns what was (arrival order)."""
        with self._lock:
            self._open = False
            items, self._items = self._items, []
        return items

    def fresh(self, item: QueuedSignal) -> bool:
        return self._clock() - item.received_at <= self.max_age_s

    def drain(self, journal, execute: Callable[[QueuedSignal], None]) -> None:
        """The service is ready: execute each fresh queued signal, expire the others."""
        for item in self.close():
            if not self.fresh(item):
                age = self._clock() - item.received_at
                logger.warning("Signal %s received while starting is %.0f s old when the broker logins are ready "
                               "(over %.0f s): not executed, journaled expired", item.signal_id, age, self.max_age_s)
                journal.set_signal_status(item.signal_id, EXPIRED, json.dumps({
                    "message": f"received while the server started; {age:.0f} s old when it was ready "
                               f"(limit {self.max_age_s:.0f} s): nothing placed"}))
                continue
            logger.info("Signal %s received while starting: executed now", item.signal_id)
            journal.set_signal_status(item.signal_id, "received")
            try:
                execute(item)
            except Exception:  # noqa: BLE001 - one signal's failure must not lose the others
                logger.exception("Signal %s received while starting could not be executed", item.signal_id)
                journal.set_signal_status(item.signal_id, "error", json.dumps(
                    {"message": "received while starting; could not be executed"}))

    def fail(self, journal, reason: str) -> None:
        """The start failed: nothing queued will be executed."""
        for item in self.close():
            logger.error("Signal %s received while starting: not executed, the start failed (%s)",
                         item.signal_id, reason)
            try:
                journal.set_signal_status(item.signal_id, "failed", json.dumps(
                    {"message": "received while the server started; the start failed: nothing placed"}))
            except Exception as exc:  # noqa: BLE001
                logger.error("Signal %s: its status could not be journaled: %s", item.signal_id, exc)


__all__ = ("EXPIRED", "QUEUED", "QueuedSignal", "StartupQueue")
