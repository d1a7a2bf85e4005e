"""After an operator's unlock, and while a P&L is unknown: what the guard remembers per account.

:class:`UnlockBases`: lifting a daily lock while the day's figures still breach a rule would relock
at once (with a flatten) on the same figures.  The P&L at the unlock becomes the account's base for
that trading day (journaled as the mark ``unlock_base:<day>``, so a restart keeps it), and only a
new breach measured from it counts (:func:`.rules.breach_since_unlock`).  Unknown at the unlock:
the first known figure that still breaches becomes the base.

:class:`UnknownReports`: ``pnl_unknown`` is logged, journaled and put on the event bus (metric,
notification) once an account with P&L rules has been in it ``report_after_s`` (a start-up's sync
does not alarm anyone), and again when it is known; the status shows it at once.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from phantom_scraper import events
from phantom_scraper.risk import rules
from phantom_scraper.risk.rules import RiskLimits

log = logging.getLogger(__name__)


class UnlockBases:
    def __init__(self, store: Callable[[], object]):
        self._store = store
        self._lock = threading.Lock()  # guards _bases (no I/O under it)
        self._bases: Dict[int, dict] = {}  # account -> {"day", "base", "peak", "pending"}

    def base_of(self, account_id: int, day: Optional[str]) -> Optional[float]:
        with self._lock:
            entry = self._bases.get(account_id)
        return entry["base"] if entry is not None and entry["day"] == day else None

    def _of(self, account_id: int, day: str) -> Optional[dict]:
        """The account's entry for ``day`` when one applies (the journal is read once a day)."""
        with self._lock:
            entry = self._bases.get(account_id)
        if entry is None or entry["day"] != day:
            store = self._store()
            base = store.mark(account_id, f"unlock_base:{day}") if store is not None else None
            fresh = {"day": day, "base": base, "peak": base, "pending": False}
            with self._lock:
                entry = self._bases.get(account_id)
                if entry is None or entry["day"] != day:  # an unlock in between wins
                    entry = self._bases[account_id] = fresh
        return entry if entry["pending"] or entry["base"] is not None else None

    def _set(self, account_id: int, day: str, base: Optional[float], pending: bool = False) -> None:
        with self._lock:
            self._bases[account_id] = {"day": day, "base": base, "peak": base, "pending": pending}
        store = self._store()
        if base is not None and store is not None:
            store.set_mark(account_id, f"unlock_base:{day}", base)

    def breach(self, account_id: int, limits: RiskLimits, values: dict, breach):
        """The breach to act on (``breach``: the plain rules' verdict on ``values``), after an unlock."""
        entry = self._of(account_id, values["trading_day"])
        if entry is None:
            return breach
        total = values["total_pnl"]
        if entry["pending"]:  # unknown at the unlock: the first known figure still breaching is the base
            self._set(account_id, values["trading_day"], total if breach is not None else None)
            return None
        with self._lock:
            entry["peak"] = max(entry["peak"], total)
            peak = entry["peak"]
        return rules.breach_since_unlock(limits, total, peak, entry["base"])

    def on_unlock(self, account_id: int, limits: RiskLimits, values: dict, peak: Optional[float]) -> Optional[str]:
        """Called before the lock is lifted; returns what the unlock means (None: nothing special)."""
        day = values["trading_day"]
        if not values["complete"]:
            self._set(account_id, day, None, pending=True)
            return rules.relock_note(limits, None)
        total = values["total_pnl"]
        with self._lock:
            entry = self._bases.get(account_id)
            entry = dict(entry) if entry is not None and entry["day"] == day and entry["base"] is not None else None
        if entry is not None:
            breach = rules.breach_since_unlock(limits, total, max(entry["peak"], total), entry["base"])
        else:
            breach = rules.pnl_breach(limits, total, peak if peak is not None else total)
        if breach is None:
            return None
        self._set(account_id, day, total)
        return rules.relock_note(limits, total)


class UnknownReports:
    def __init__(self, account_name: Callable[[int], Optional[str]], journal_event: Callable[..., None],
                 report_after_s: float = 10.0):
        self._name = account_name
        self._journal = journal_event
        self.report_after_s = report_after_s  # monotonic seconds of unknown P&L before it is reported
        self._unknown: Dict[int, Tuple[float, bool]] = {}  # account -> (unknown since, reported); watcher thread

    def report(self, account_id: int, why: Optional[str]) -> None:
        since, reported = self._unknown.get(account_id, (None, False))
        name = self._name(account_id)
        if why is None:
            self._unknown.pop(account_id, None)
            if reported:
                log.warning("Risk %s: P&L known again", name)
                self._journal("pnl_known", account_id, rules.PNL_UNKNOWN, "P&L known again")
                events.emit("risk_pnl", account=name, unknown=False, reason=None)
            return
        if since is None:
            since = time.monotonic()
        if not reported and time.monotonic() - since >= self.report_after_s:
            reported = True
            log.warning("Risk %s: %s (%s): its P&L rules cannot act until it is known again",
                        name, rules.PNL_UNKNOWN, why)
            self._journal("pnl_unknown", account_id, rules.PNL_UNKNOWN, why)
            events.emit("risk_pnl", account=name, unknown=True, reason=why)
        self._unknown[account_id] = (since, reported)
