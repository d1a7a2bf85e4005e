"""Breakeven for order strategies: this server's job, because Tradovate refuses breakeven inside a
multi-bracket strategy ("Stop and Stop/Limit breakeven supported only", docs/TRADOVATE.md "Order strategies").

For every open strategy with a breakeven (``StrategyStore``: ``be_state`` ``armed``/``moving``),
once a price at or beyond ``entry fill ± trigger`` is seen, each of the strategy's working stop legs
is modified to ``entry fill ± offset`` -- only when that is tighter (a stop never loosens; a
trailing stop already past it stays) -- and the move is journaled: ``moving`` before the first
modify, ``done`` after.  ``done`` is final, so the move happens once.  If the process was down when
the trigger traded, nothing moved (the stop stayed where it was); when it is back, the first price
that still holds the trigger moves it.  A ``moving`` left by a crash is finished the same way: legs
already at the new stop are left alone.

Prices arrive with :meth:`on_quote` (``QuoteFeed``'s callback signature) from any thread; the
broker calls run in the manager's own thread (:meth:`start`), never in the caller's and never
under a lock.  :meth:`check` does one pass synchronously (tests, start-up).
"""
from __future__ import annotations

import logging
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Dict, List, Optional

from phantom_scraper.errors import TradovateError
from phantom_scraper.tradovate.broker_state import MODIFIABLE_STATES

log = logging.getLogger(__name__)

LIVE = MODIFIABLE_STATES


def _round(price: float, tick: float) -> float:
    step = Decimal(str(tick))
    return float((Decimal(str(price)) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step)


class BreakevenManager:
    """``feed``: an optional quote feed (``QuoteFeed``: ``start``/``want``/``stop``) whose wanted
    contracts the manager keeps equal to those of the strategies waiting for breakeven (re-read
    every ``refresh_s``); its quotes must reach :meth:`on_quote`."""

    def __init__(self, store, integration_for_account: Callable[[int], Any], *, feed=None,
                 refresh_s: float = 1.0, housekeeping: Optional[Callable[[], Any]] = None,
                 housekeeping_s: float = 30.0):
        self.store = store
        self._integration = integration_for_account
        self.feed = feed
        self.refresh_s = refresh_s
        # e.g. strategy_exec.refresh: close the records of strategies the broker has finished
        self._housekeeping = housekeeping
        self._housekeeping_s = housekeeping_s
        self._lock = threading.Lock()  # guards _latest only
        self._latest: Dict[int, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.moves = 0
        self.last_error: Optional[str] = None

    # -- feeding -----------------------------------------------------------------------------------
    def on_quote(self, contract_id: int, price: float, timestamp: Optional[float] = None) -> None:
        with self._lock:
            self._latest[int(contract_id)] = float(price)
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            if self.feed is not None:
                self.feed.start()
            self._thread = threading.Thread(target=self._run, name="breakeven", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.feed is not None:
            self.feed.stop()

    def _want_quotes(self) -> None:
        if self.feed is None:
            return
        try:
            self.feed.want({int(r["contract_id"]) for r in self.store.breakeven_pending()})
        except Exception as exc:  # the journal may be closing; the next round tries again
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.debug("breakeven: pending strategies unreadable: %s", exc)

    def _run(self) -> None:
        next_housekeeping = time.monotonic() + self._housekeeping_s
        while not self._stop.is_set():
            if self._housekeeping is not None and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + self._housekeeping_s
                try:
                    self._housekeeping()
                except Exception as exc:  # the next round tries again
                    log.warning("order strategy housekeeping failed: %s", exc)
            self._want_quotes()
            self._wake.wait(self.refresh_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                latest, self._latest = self._latest, {}
            for contract_id, price in latest.items():
                try:
                    self.check(contract_id, price)
                except Exception as exc:  # keep the thread alive; the next quote retries
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("breakeven check for contract %s failed", contract_id)

    # -- one pass ----------------------------------------------------------------------------------
    def check(self, contract_id: int, price: float) -> List[str]:
        """Move the stops of every strategy on ``contract_id`` whose trigger ``price`` holds.
        Returns the intent ids moved (or finished) in this pass."""
        moved = []
        for rec in self.store.breakeven_pending(contract_id):
            try:
                if self._check_one(rec, float(price)):
                    moved.append(rec["intent_id"])
            except TradovateError as exc:  # the stop stays; the next price tries again
                self.last_error = f"{rec['intent_id']}: {exc}"
                log.warning("breakeven %s (account %s): broker call failed, stop unchanged: %s",
                            rec["intent_id"], rec["account_name"], exc)
        return moved

    def _check_one(self, rec: Dict[str, Any], price: float) -> bool:
        ti = self._integration(rec["account_id"])
        direction, meta = rec["direction"], rec["meta"]
        be, tick = meta["breakeven"], float(meta.get("tick") or 0.25)
        entry = rec["entry_price"]
        links = ti.list_deps("orderStrategyLink", rec["strategy_id"]) or []
        if entry is None:
            entry = self._entry_price(ti, links)
            if entry is None:
                return False  # the entry has not filled: nothing to protect yet
            self.store.set_legs(rec["intent_id"], [{"orderId": l.get("orderId"), "label": l.get("label")}
                                                   for l in links], entry_price=entry)
        trigger = entry + direction * be["trigger"]
        if (price - trigger) * direction < 0:
            return False
        new_stop = _round(entry + direction * be["offset"], tick)
        if rec["be_state"] != "moving":
            self.store.breakeven(rec["intent_id"], "moving", stop=new_stop)  # journaled before acting
        changed = 0
        for link in links:
            if not str(link.get("label", "")).startswith("sl"):
                continue
            changed += self._move_leg(ti, int(link["orderId"]), new_stop, direction)
        self.store.breakeven(rec["intent_id"], "done", stop=new_stop)
        self.moves += changed
        log.info("breakeven %s account %s: price %s passed %s; %d stop leg(s) moved to %s",
                 rec["intent_id"], rec["account_name"], price, trigger, changed, new_stop)
        return True

    @staticmethod
    def _entry_price(ti, links) -> Optional[float]:
        entry_ids = [int(l["orderId"]) for l in links if l.get("label") == "entry" and l.get("orderId")]
        if not entry_ids:
            return None
        fills = ti.list_deps("fill", entry_ids[0]) or []
        qty = sum(f.get("qty") or 0 for f in fills)
        if not qty:
            return None
        return sum((f.get("qty") or 0) * float(f.get("price")) for f in fills) / qty

    @staticmethod
    def _move_leg(ti, order_id: int, new_stop: float, direction: int) -> int:
        order = ti.get_order(order_id)
        if not isinstance(order, dict) or order.get("ordStatus") not in LIVE:
            return 0
        versions = [v for v in (ti.list_deps("orderVersion", order_id) or []) if isinstance(v, dict)]
        if not versions:
            return 0
        version = max(versions, key=lambda v: v.get("id") or 0)
        current = version.get("stopPrice")
        if current is not None and (new_stop - float(current)) * direction <= 0:
            return 0  # already at or beyond breakeven (e.g. trailed there): never loosen
        ti.modify_order_rest({"orderId": order_id, "orderQty": version.get("orderQty"),
                              "orderType": version.get("orderType") or "Stop", "stopPrice": new_stop,
                              "isAutomated": True})
        return 1
