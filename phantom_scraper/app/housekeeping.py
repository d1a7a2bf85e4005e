"""Housekeeping, off the hot path: one ``housekeeping`` thread that every ``HOUSEKEEPING_INTERVAL_S``

* drops finished orders from each login's broker state (``BrokerState.prune_finished``): only
  ``BROKER_STATE_KEEP_S`` after they finished, once the fill ledger has journaled their fills and no
  working order refers to them -- memory stays flat over a trading day;
* runs the journal's retention (``journal.retention.prune``, ``JOURNAL_RETENTION_DAYS``) in small
  batches (a backlog is spread over several passes);
* then gives the memory malloc holds free back to the system (``malloc_arenas.trim``: a resync's
  decoded snapshots and the orders just dropped leave free pages behind).

Nothing here is on a webhook's path; a failing pass is logged and the next one tries again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional

from phantom_scraper.app import malloc_arenas
from phantom_scraper.journal import retention

logger = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, settings: Any, journal: Any, fill_ledger: Any, states: Callable[[], Iterable[Any]]):
        self.settings = settings
        self.journal = journal
        self.fill_ledger = fill_ledger
        self._states = states
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.passes = 0
        self.orders_pruned = 0
        self.memory_trims = 0  # passes after which malloc gave memory back
        self.retention: Dict[str, int] = {}
        self.last_error: Optional[str] = None
        self.last_pass_s: Optional[float] = None

    def start(self) -> "Housekeeping":
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def may_drop(self, order: dict) -> bool:
        """An order may leave the broker state once its fills are in the journal."""
        return self.fill_ledger is None or self.fill_ledger.journaled(order.get("id"))

    def run_once(self, now: Optional[float] = None) -> Dict[str, int]:
        started = time.monotonic()
        s = self.settings
        pruned = 0
        for state in list(self._states()):
            pruned += state.prune_finished(s.broker_state_keep_s, self.may_drop)
        self.orders_pruned += pruned
        deleted: Dict[str, int] = {}
        if s.journal_retention_days and s.journal_retention_days > 0 and self.journal is not None:
            deleted = retention.prune(self.journal, s.journal_retention_days, now=now, stop=self._stop.is_set)
            for key, n in deleted.items():
                self.retention[key] = self.retention.get(key, 0) + n
        if malloc_arenas.trim():
            self.memory_trims += 1
        self.passes += 1
        self.last_pass_s = time.monotonic() - started
        return {"orders_pruned": pruned, **deleted}

    def _run(self) -> None:
        while not self._stop.wait(self.settings.housekeeping_interval_s):
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                if self.last_error is None:
                    logger.exception("housekeeping pass failed")
                self.last_error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict:
        return {"passes": self.passes, "orders_pruned": self.orders_pruned, "memory_trims": self.memory_trims,
                "retention_deleted": dict(self.retention),
                "last_pass_ms": None if self.last_pass_s is None else round(self.last_pass_s * 1000, 1),
                "fills_pending": self.fill_ledger.pending() if self.fill_ledger is not None else None,
                "last_error": self.last_error}


# -- the service's hooks (a few lines each in app/service.py) ------------------------------------
def start_ledger(service: Any) -> None:
    """After the journal opens, before any login: every fill the sockets report is journaled."""
    from phantom_scraper.journal.fills import FillLedger
    if getattr(service, "fill_ledger", None) is None and service.journal is not None:
        service.fill_ledger = FillLedger(service.journal).start()


def start_for(service: Any) -> None:
    """After the logins opened: the housekeeping thread over their broker states."""
    if getattr(service, "housekeeping", None) is not None:
        service.housekeeping.stop()

    def states():
        for login in list(service.logins.values()):
            state = getattr(login.connection, "broker_state", None)
            if state is not None and hasattr(state, "prune_finished"):
                yield state
    service.housekeeping = Housekeeping(service.settings, service.journal, getattr(service, "fill_ledger", None),
                                        states).start()


def stop_for(service: Any) -> None:
    """At shutdown, before the journal closes: the thread stops, queued fills land."""
    keeper = getattr(service, "housekeeping", None)
    if keeper is not None:
        keeper.stop()
    ledger = getattr(service, "fill_ledger", None)
    if ledger is not None:
        ledger.stop()
        service.fill_ledger = None


def status(service: Any) -> dict:
    from phantom_scraper.tradovate import budget
    keeper = getattr(service, "housekeeping", None)
    return {"request_budget": budget.all_status(), "housekeeping": keeper.status() if keeper is not None else None}
