"""Breakeven for order strategies: this server's job, because Tradovate refuses breakeven inside a
multi-bracket strategy ("Stop and Stop/Limit breakeven supported only", docs/TRADOVATE.md "Order strategies").

For every open strategy with a breakeven (``StrategyStore``: ``be_state`` ``armed``/``moving``),
once a price at or beyond ``entry fill ± trigger`` is seen, each of the strategy's working stop legs
is modified to ``entry fill ± offset`` -- only when that is tighter (a stop never loosens) -- and
the move is journaled: ``moving`` before the first modify, ``done`` after.  ``done`` is final, so
the move happens once.  Legs are found by what they are (``strategies.legs``: the entry by its
side, stops by ``orderType``), never by link labels.  Trailing legs are never modified (Tradovate
refuses: ``TrailingStopNonOrderQtyModify``).  Final states that need the trader are journaled,
logged at ERROR and notified once (``strategy_alert``): ``no_stop`` (the trigger traded, the
strategy still runs, and no working stop leg exists), ``skipped`` (its only stop trails),
``refused`` (the broker refused a modify with a reason a retry cannot change; not retried).  If the process was down when
the trigger traded, nothing moved (the stop stayed where it was); when it is back, the first price
that still holds the trigger moves it.  A ``moving`` left by a crash is finished the same way: legs
already at the new stop are left alone.

The same thread reads back each strategy's legs once its entry has filled (``readback.ReadBack``:
bracket units checked against the plan, fixed or replaced, reported).

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

from phantom_scraper import events
from phantom_scraper.errors import OrderRejectedError, TradovateError
from phantom_scraper.strategies.legs import Leg, entry_fill_price, strategy_legs
from phantom_scraper.strategies.readback import ReadBack

log = logging.getLogger(__name__)

# failureReasons a later retry can change; any other refusal of a modify is final
TRANSIENT_REFUSALS = frozenset({"AnotherCommandPending", "RiskCheckTimeout", "ExecutionProviderUnavailable",
                                "NoQuote", "SessionClosed"})


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
        self._unsubscribe: Optional[Callable[[], None]] = None
        # the legs of every strategy read back once its entry fills (bracket units, strategies/readback.py)
        self.readback = ReadBack(store, integration_for_account)
        self.moves = 0
        self.alerts: List[tuple] = []  # (intent id, state, text): final states that need the trader
        self.last_error: Optional[str] = None

    # -- feeding -----------------------------------------------------------------------------------
    def on_quote(self, contract_id: int, price: float, timestamp: Optional[float] = None) -> None:
        with self._lock:
            self._latest[int(contract_id)] = float(price)
        self._wake.set()

    def _on_event(self, event: events.Event) -> None:
        """Subscriber (a socket thread): a fill makes its account's strategies due for read-back.
        A fill on an account with no open strategy (most of them) wakes nothing: a burst of plain
        orders would otherwise cost two journal reads a fill, beside the lanes' own writes."""
        if event.kind == "fill" and self.readback.wants(event.fields.get("account_id")):
            self.readback.poke(event.fields.get("account_id"))
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            try:
                self.readback.units.seed(self.store)  # the units earlier read-backs learned
            except Exception as exc:  # the journal unreadable now: units are learned again
                log.warning("order strategy bracket units from earlier read-backs unreadable: %s", exc)
            self._unsubscribe = events.subscribe(self._on_event)
            if self.feed is not None:
                self.feed.start()
            self._thread = threading.Thread(target=self._run, name="breakeven", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
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
            try:
                self.readback.run_once()  # each strategy on its own back-off; reads only until a fix is due
            except Exception as exc:  # the journal may be closing; the next round tries again
                self.last_error = f"read-back: {type(exc).__name__}: {exc}"
                log.warning("order strategy read-back failed: %s", exc)
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
        if entry is None:
            entry_leg, _ = strategy_legs(ti, rec["strategy_id"], direction)
            entry = entry_fill_price(ti, entry_leg.order_id) if entry_leg is not None else None
            if entry is None:
                return False  # the entry has not filled: nothing to protect yet
            self.store.set_legs(rec["intent_id"], [{"orderId": entry_leg.order_id, "role": "entry"}],
                                entry_price=entry)
        trigger = entry + direction * be["trigger"]
        if (price - trigger) * direction < 0:
            return False
        new_stop = _round(entry + direction * be["offset"], tick)
        if rec["be_state"] != "moving":
            self.store.breakeven(rec["intent_id"], "moving", stop=new_stop)  # journaled before acting
        _, exits = strategy_legs(ti, rec["strategy_id"], direction)
        stops = [l for l in exits if l.live and l.role == "stop"]
        trailing = [l for l in exits if l.live and l.role == "trailing"]
        changed, refused = 0, []
        for leg in stops:
            try:
                changed += self._move_leg(ti, leg, new_stop, direction)
            except OrderRejectedError as exc:
                if exc.failure_reason in TRANSIENT_REFUSALS:
                    raise  # a retry can change it: the next price tries again
                refused.append(f"order {leg.order_id}: {exc}")
        self.moves += changed
        if refused:
            return self._final(rec, "refused", new_stop, f"breakeven to {new_stop}: the broker refused "
                               f"{'; '.join(refused)} ({changed} stop(s) moved); not retried")
        if not stops and not trailing:
            if self._strategy_ended(ti, rec["strategy_id"]):
                self.store.breakeven(rec["intent_id"], "done", stop=new_stop)
                return True
            return self._final(rec, "no_stop", new_stop, f"price {price} passed the breakeven trigger {trigger} "
                               "but the strategy has no working stop leg: nothing was moved")
        if trailing and not stops:
            # Tradovate lets no one reprice a trailing stop (TrailingStopNonOrderQtyModify): it trails.
            return self._final(rec, "skipped", new_stop, f"breakeven not applied: the stop is a trailing stop "
                               f"(order {', '.join(str(l.order_id) for l in trailing)}), which the broker does "
                               "not let anyone reprice; it keeps trailing")
        self.store.breakeven(rec["intent_id"], "done", stop=new_stop)
        log.info("breakeven %s account %s: price %s passed %s; %d stop leg(s) moved to %s%s",
                 rec["intent_id"], rec["account_name"], price, trigger, changed, new_stop,
                 f" ({len(trailing)} trailing leg(s) left trailing)" if trailing else "")
        return True

    def _final(self, rec: Dict[str, Any], state: str, stop: float, text: str) -> bool:
        """A final breakeven state that needs the trader: journaled, logged and notified once."""
        self.store.breakeven(rec["intent_id"], state, stop=stop)
        log.error("breakeven %s account %s: %s", rec["intent_id"], rec["account_name"], text)
        events.emit("strategy_alert", intent_id=rec["intent_id"], account=rec["account_name"], text=text)
        self.alerts.append((rec["intent_id"], state, text))
        return True

    @staticmethod
    def _strategy_ended(ti, strategy_id: int) -> bool:
        try:
            entity = ti.get_order_strategy(strategy_id)
        except TradovateError:
            return False
        return isinstance(entity, dict) and entity.get("status") not in (None, "ActiveStrategy")

    @staticmethod
    def _move_leg(ti, leg: Leg, new_stop: float, direction: int) -> int:
        current = leg.version.get("stopPrice")
        if current is not None and (new_stop - float(current)) * direction <= 0:
            return 0  # already at or beyond breakeven (e.g. a crash after the modify): never loosen
        ti.modify_order_rest({"orderId": leg.order_id, "orderQty": leg.qty, "orderType": leg.order_type,
                              "stopPrice": new_stop, "isAutomated": True})
        return 1
