"""The account-level risk guard: refuses or trims entries, watches each account's day, locks.

Where it sits:

* **Order path** (:meth:`RiskGuard.planner`): wraps the order planner.  It decides from state it
  already holds (the broker state fed by the sync stream, its own locks, the clock): no broker round
  trip is ever added to an order.  Entries are refused (``locked``, ``outside_trading_hours``,
  ``rate_limited``) or reduced to the room left (``RISK_MAX_POSITION``); exits and cancels always pass.
* **Watcher** (a named thread, ``risk-guard``): woken by every quote of the market-data socket and
  every cash-balance/position change, and at least every ``RISK_CHECK_INTERVAL_S``.  Daily P&L =
  realized (the account's ``cashBalance``, trading day from 17:00 America/Chicago) + open (net
  position x (live price - net price) x ``valuePerPoint``).  A breach of the loss limit, the profit
  target or the trailing drawdown journals a lock, then cancels working orders and flattens.  It also
  flattens at the end of a trading window (``FLATTEN_AT_CLOSE``; at start when the window ended while
  the process was down), clears locks at the next session start, and flattens again an account that
  is locked-and-flattening but still holds a position (every ``flatten_retry_s``; a liquidation can
  only reduce a position, so a repeat is never an added risk).
* **Operator**: :meth:`kill` / :meth:`unlock` (``/api/kill-switch``).

The guard acts through two injected interfaces (the composition root wires them), so it never
imports the pool: ``broker`` (positions, working orders, cash balance: BrokerState) and ``actions``
(flatten one contract, cancel one order, value per point, cash-balance snapshot).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Set, Tuple

from phantom_scraper import events
from phantom_scraper.execution import executors
from phantom_scraper.signals import PlanError

from phantom_scraper.risk import barrier, rules
from phantom_scraper.hours import next_session_start, trading_day
from phantom_scraper.risk.limits import check_names, load_limits
from phantom_scraper.risk.closing import CloseFlattener, flatten_once
from phantom_scraper.risk.pnl import account_pnl
from phantom_scraper.risk.status import guard_status, iso
from phantom_scraper.risk.unlocks import UnknownReports, UnlockBases
from phantom_scraper.risk.rules import Refusal, RiskLimits
from phantom_scraper.risk.store import RiskStore

log = logging.getLogger(__name__)

_MAX_NOTES = 2000  # signals whose per-account risk notes are kept until the service collects them


class BrokerView(Protocol):
    def positions(self, account_id: int) -> Dict[int, Tuple[int, Optional[float]]]:
        """contract id -> (net position, net price)."""

    def working_orders(self, account_id: int) -> List[dict]:
        """Live orders (``id``, ``contractId``)."""

    def cash_balance(self, account_id: int) -> Optional[dict]:
        """The account's ``cashBalance`` entity, or None before the first one arrived."""


class RiskActions(Protocol):
    def flatten(self, account_id: int, contract_id: int, reason: str) -> str:
        """Cancel the contract's working orders and close the position (``order/liquidateposition``)."""

    def cancel(self, account_id: int, order_id: int) -> None:
        """``order/cancelorder``."""

    def value_per_point(self, contract_id: int) -> Optional[float]:
        """USD per point of the contract (``product/find``'s ``valuePerPoint``)."""

    def cash_snapshot(self, account_id: int) -> dict:
        """``cashBalance/getcashbalancesnapshot``."""


class RiskGuard:
    def __init__(self, settings, *, clock: Callable[[], float] = time.time, workers=None):
        self.settings = settings
        # whose "barrier" executor runs lock barriers (the service's; else the bare functions' set)
        self._workers = workers if workers is not None else executors.shared()
        self.risk = settings.risk
        self.clock = clock
        self.defaults, self._by_name, self._rates = load_limits(settings)
        self.limiter = rules.SignalRateLimiter()
        self.store: Optional[RiskStore] = None
        self.broker: Optional[BrokerView] = None
        self.actions: Optional[RiskActions] = None
        self.feed = None  # marketdata.QuoteFeed, optional
        self._accounts: Dict[int, str] = {}  # id -> name (set once at start)
        # Guards every dict/set below (bookkeeping only: no I/O, no SQLite, no waits under it).
        self._lock = threading.Lock()
        self._locks: Dict[int, dict] = {}  # account -> active lock (mirror of the store)
        self._prices: Dict[int, Tuple[float, Optional[float]]] = {}  # contract -> (price, quote time)
        self._vpp: Dict[int, float] = {}
        self._peaks: Dict[int, Tuple[str, float, float]] = {}  # account -> (trading day, peak, saved peak)
        self._notes: "OrderedDict[str, Dict[int, List[dict]]]" = OrderedDict()
        self._dirty: Set[int] = set()
        self._barriers: Dict[int, Tuple[threading.Event, dict]] = {}  # account -> its running lock barrier
        self._last_flatten: Dict[int, float] = {}
        self._snapshots: Dict[int, Tuple[float, int, dict]] = {}  # account -> (taken at, seq requested, body)
        self._pos_marks: Dict[int, Dict[int, tuple]] = {}  # account -> contract -> ((net, price), seq seen)
        self._seq = itertools.count(1)  # orders position changes and snapshot requests (under _lock)
        self.relock_notes: Dict[int, Optional[str]] = {}  # account -> what its last unlock means (answer, log)
        self.unlocks = UnlockBases(lambda: self.store)
        self.unknown = UnknownReports(self.account_name, self._event)
        self.closer = CloseFlattener(self)
        self._peak_saved_at: Dict[int, float] = {}  # watcher thread only
        self._last_values: Dict[int, dict] = {}
        self._force_tick = False
        self.broker_reads = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._cycles = 0  # completed watcher cycles (wait_idle)
        self._cycle_done = threading.Condition(self._lock)

    # -- wiring -------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        limits = [self.defaults, *self._by_name.values()]
        return any(l != RiskLimits() for l in limits) or any(v is not None for v in self._rates.values()) \
            or self.risk.max_signals_per_minute is not None

    def attach(self, *, store: RiskStore, accounts: Dict[int, str], broker: Optional[BrokerView],
               actions: Optional[RiskActions], feed=None, complete: bool = True) -> None:
        """Called once by the service at start-up (after the logins); loads the journaled locks.
        Raises ConfigError when a per-account override names an account none of ``accounts`` is
        (only warns when not ``complete``: a login is down, its accounts are not known)."""
        check_names(self._by_name, accounts.values(), complete=complete)
        self.store, self.broker, self.actions, self.feed = store, broker, actions, feed
        self._accounts = dict(accounts)
        locks = store.active_locks(self.clock())
        with self._lock:
            self._locks = {a: row for a, row in locks.items() if a in self._accounts}
        for account_id, row in self._locks.items():
            self._announce(row, locked=True, restored=True)  # the page and metrics; not re-notified
            log.warning("Risk lock on %s kept from before the restart: %s (%s), until %s", row["account_name"],
                        row["reason"], row["message"], iso(row["until"]) or "unlocked by an operator")

    def start(self) -> None:
        if self._thread is None:
            if self.feed is not None:
                self.feed.start()
            self._thread = threading.Thread(target=self._run, name="risk-guard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.feed is not None:
            self.feed.stop()
        if self.store is not None:
            self._save_peaks()

    def is_locked(self, account_id: int) -> bool:
        with self._lock:
            return int(account_id) in self._locks

    def account_name(self, account_id: int) -> Optional[str]:
        return self._accounts.get(account_id)

    def limits_for(self, account_id: int) -> RiskLimits:
        return self._by_name.get(self._accounts.get(account_id, ""), self.defaults)

    def rate_for(self, recorder: str) -> Optional[int]:
        return self._rates.get(recorder, self.risk.max_signals_per_minute)

    # -- events from the broker state and the market-data socket (any thread, no I/O) -----------------
    def on_quote(self, contract_id: int, price: float, at: Optional[float] = None) -> None:
        with self._lock:
            self._prices[contract_id] = (price, at)
            # only the accounts holding it (a new position wakes its account through the broker state)
            self._dirty |= {a for a, v in self._last_values.items() if contract_id in v.get("contracts", ())}
        self._wake.set()

    def last_price(self, contract_id: int) -> Optional[float]:
        """The market-data socket's last price of a contract (None before its first quote)."""
        with self._lock:
            entry = self._prices.get(int(contract_id))
        return entry[0] if entry else None

    def on_account_change(self, account_id: int) -> None:
        with self._lock:
            self._dirty.add(int(account_id))
        if not self._wake.is_set():  # (a burst of events: one wake-up, not one Event.set each)
            self._wake.set()

    # -- the order path ---------------------------------------------------------------------------------
    def planner(self, recorder: str, signal_id: str, base: Callable, *, rate_limited: bool = True) -> Callable:
        """The order planner with the entry rules applied (same signature as ``plan_orders``)."""
        def plan(signal, contract, target, net_pos, has_working=False, broker=None, **kwargs):
            steps = base(signal, contract, target, net_pos, has_working, **kwargs)
            return self.check_steps(recorder, signal_id, contract, target, steps, net_pos,
                                    rate_limited=rate_limited and not getattr(signal, "test", False), broker=broker)
        plan.takes_broker = True  # execution passes broker=(position, working orders) read when its state is stale
        return plan

    def check_steps(self, recorder: str, signal_id: str, contract, target, steps, net_pos: int, *,
                    rate_limited: bool = True, broker=None) -> list:
        """``broker``: (position, working orders) read from the broker by execution when the
        socket-fed state could not be trusted; else the guard's broker view is used."""
        now = self.clock()
        limits = self.limits_for(target.id)
        position = int(broker[0]) if broker is not None else self._net_pos(target.id, contract.id, net_pos)
        with self._lock:
            lock = self._locks.get(target.id)
        refusal = None
        if lock is not None:
            until = iso(lock["until"]) or "an operator unlocks it"
            refusal = Refusal(rules.LOCKED, f"account locked ({lock['reason']}: {lock['message']}); "
                                            f"entries refused until {until}; exits pass")
        elif limits.trading_hours is not None and not limits.trading_hours.is_open(now):
            refusal = Refusal(rules.OUTSIDE_HOURS, f"outside trading hours ({limits.trading_hours.describe()}); "
                                                   "entries refused, exits pass")
        pending = self._pending(target.id, contract.id, None if broker is None else broker[1]) \
            if limits.max_position is not None else (0, 0)
        kept, notes = rules.apply_entry_rules(steps, position, refuse=refusal, max_position=limits.max_position,
                                              pending=pending)
        if refusal is None and rate_limited and rules.has_entry(kept, position) and \
                not self.limiter.acquire(recorder, signal_id, self.rate_for(recorder), now):
            refusal = Refusal(rules.RATE_LIMITED, f"more than {self.rate_for(recorder)} entry signals in a minute "
                                                   f"from recorder {recorder}; entries refused, exits pass")
            kept, notes = rules.apply_entry_rules(steps, position, refuse=refusal, max_position=limits.max_position,
                                                  pending=pending)
        if notes:
            self._note(signal_id, target, notes)
        if not kept:
            raise PlanError(notes[0].code if notes else "nothing_to_do",
                            notes[0].message if notes else "nothing left to do")
        return kept

    def _net_pos(self, account_id: int, contract_id: int, fallback: int) -> int:
        if self.broker is None:
            return fallback
        try:
            return int((self.broker.positions(account_id).get(contract_id) or (fallback, None))[0] or 0)
        except Exception:  # the guard never breaks an order on a bug of its own
            log.exception("risk: broker state unreadable; using the planner's position")
            return fallback

    def _pending(self, account_id: int, contract_id: int, working=None) -> Tuple[int, int]:
        """(long, short) exposure beyond the position: working entry orders at the broker and
        orders still in doubt (``sending``/``unknown``) -- both may still fill.  ``working``: the
        contract's live orders as read from the broker (else the broker view's)."""
        long, short = self._workers.book.doubt(account_id, contract_id)
        entries = getattr(self.broker, "entry_orders", None)
        if working is not None:
            entries = lambda _a, _c: [o for o in working if o.get("parentId") is None and o.get("ocoId") is None]  # noqa: E731
        if entries is not None:
            try:
                for order in entries(account_id, contract_id):
                    qty = int(order.get("orderQty") or 0) - int(order.get("cumQty") or 0)
                    if order.get("action") == "Buy":
                        long += max(0, qty)
                    elif order.get("action") == "Sell":
                        short += max(0, qty)
            except Exception:  # the guard never breaks an order on a bug of its own
                log.exception("risk: working orders unreadable; counting the position only")
        return long, short

    def _note(self, signal_id: str, target, notes: Iterable[Refusal]) -> None:
        items = [{"code": n.code, "message": n.message} for n in notes]
        with self._lock:
            known = self._notes.setdefault(signal_id, {})
            repeated = known.get(target.id) == items  # planned twice (fan-out fallback): report once
            known[target.id] = items
            while len(self._notes) > _MAX_NOTES:
                self._notes.popitem(last=False)
        if repeated:
            return
        for item in items:
            kind = "clipped" if item["code"] == rules.CLIPPED else "refused"
            log.warning("Risk %s: signal %s account %s: %s: %s", kind, signal_id, target.name, item["code"], item["message"])
            self._event(kind, target.id, item["code"], item["message"], signal_id=signal_id)

    def take_notes(self, signal_id: str) -> Dict[int, List[dict]]:
        """Per-account refusals/clips of a signal (collected once, for its answer and journal entry)."""
        with self._lock:
            return self._notes.pop(signal_id, {})

    def _event(self, kind: str, account_id: Optional[int], code: Optional[str], message: str, **kw) -> None:
        if self.store is None:
            return
        try:
            self.store.record_event(kind, account_id=account_id, account_name=self._accounts.get(account_id),
                                    code=code, message=message, **kw)
        except Exception:
            log.exception("risk: could not journal a %s event", kind)

    # -- P&L ---------------------------------------------------------------------------------------------
    def pnl(self, account_id: int, now: float) -> dict:
        """The day's realized, open and total P&L with sources and ages (:func:`.pnl.account_pnl`)."""
        broker = self.broker
        fresh_of = getattr(broker, "fresh", None)
        fresh = None if broker is None or fresh_of is None else bool(fresh_of(account_id))
        positions = broker.positions(account_id) if broker is not None and fresh is not False else {}
        cash = broker.cash_balance(account_id) if broker is not None and fresh is not False else None
        live = self.feed.live() if self.feed is not None and hasattr(self.feed, "live") else None
        with self._lock:
            marks = self._pos_marks.setdefault(account_id, {})
            for contract_id, seen in positions.items():
                if marks.get(contract_id, (None, 0))[0] != seen:
                    marks[contract_id] = (seen, next(self._seq))
            changed = max((seq for _seen, seq in marks.values()), default=0)
            quotes = dict(self._prices)
            vpp = dict(self._vpp)
            snapshot = self._snapshots.get(account_id)
        return account_pnl(day=trading_day(now), now=now, fresh=fresh, cash=cash, snapshot=snapshot,
                           positions=positions, quotes=quotes, live=quotes.keys() if live is None else live,
                           vpp=vpp, changed_seq=changed, max_snapshot_age_s=2 * self.risk.snapshot_poll_s)

    def _peak(self, account_id: int, day: str, total: Optional[float], now: float) -> float:
        with self._lock:
            entry = self._peaks.get(account_id)
        if entry is None or entry[0] != day:
            stored = self.store.peak(account_id, day) if self.store is not None else None
            entry = (day, max(0.0, stored or 0.0), stored if stored is not None else 0.0)
        peak, saved = entry[1], entry[2]
        if total is not None and total > peak:
            peak = total
        # Only a new high is written, at most once a second per account (a rally quotes many times
        # a second); stop() writes the last one.
        if self.store is not None and peak > saved and time.monotonic() - self._peak_saved_at.get(account_id, 0.0) >= 1.0:
            self.store.save_day(account_id, day, peak, total if total is not None else peak)
            saved = peak
            self._peak_saved_at[account_id] = time.monotonic()
        with self._lock:
            self._peaks[account_id] = (day, peak, saved)
        return peak

    def _save_peaks(self) -> None:
        with self._lock:
            unsaved = [(a, day, peak) for a, (day, peak, saved) in self._peaks.items() if peak > saved]
        for account_id, day, peak in unsaved:
            try:
                self.store.save_day(account_id, day, peak, peak)
            except Exception:
                log.exception("risk: could not journal the day's peak of %s", self._accounts.get(account_id))

    def _evaluate(self, account_id: int, now: float) -> None:
        values = self.pnl(account_id, now)
        values["peak_pnl"] = self._peak(account_id, values["trading_day"], values["total_pnl"], now)
        with self._lock:
            self._last_values[account_id] = values
            locked = account_id in self._locks
        limits = self.limits_for(account_id)
        if not limits.watches_pnl:
            return
        self.unknown.report(account_id, values.get("unknown"))
        if locked or not values["complete"]:
            return  # a rule never acts on a figure it cannot vouch for
        breach = self.unlocks.breach(account_id, limits, values, rules.pnl_breach(limits, values["total_pnl"],
                                                                                  values["peak_pnl"]))
        if breach is not None:
            self.lock(account_id, breach[0], breach[1], until=next_session_start(now), flatten=True)

    # -- locks and flattening ---------------------------------------------------------------------------
    def lock(self, account_id: int, reason: str, message: str, *, until: Optional[float], flatten: bool,
             by: str = "risk guard") -> dict:
        """Journal a lock (before anything is sent), then flatten in the watcher thread."""
        now = self.clock()
        name = self._accounts.get(account_id, str(account_id))
        row = {"account_id": account_id, "account_name": name, "reason": reason, "message": message,
               "locked_at": now, "until": until, "flatten": flatten}
        row["id"] = self.store.add_lock(account_id, name, reason, message, now, until, flatten)
        with self._lock:
            self._locks[account_id] = row
            self._last_flatten.pop(account_id, None)
        self._announce(row, locked=True)
        log.warning("Risk LOCK %s (%s by %s): %s; entries refused until %s%s", name, reason, by, message,
                    iso(until) or "an operator unlocks it", "; cancelling working orders and flattening" if flatten else "")
        self._event("lock", account_id, reason, message)
        if flatten:
            row["flatten_wait"] = self.request_flatten(account_id, f"{reason}: {message}")
        return row

    @staticmethod
    def _announce(row: dict, *, locked: bool, restored: bool = False) -> None:
        """Tell the event bus (metrics, notifications, the status page's lock list); ``restored``:
        a lock kept from before a restart (the notifier announced it when it was taken)."""
        kind = "kill_switch" if row.get("reason") == rules.KILL_SWITCH else "risk"
        events.emit(kind, account=row.get("account_name"), locked=locked, restored=restored,
                    reason=f"{row.get('reason')}: {row.get('message')}" if locked else row.get("reason"))

    def request_flatten(self, account_id: int, why: str) -> Tuple[threading.Event, dict]:
        """Run the lock barrier for the account on a worker (``barrier.run_barrier``): drain its
        lanes, then flatten until the broker shows it flat with nothing working.  One barrier per
        account at a time: a request while one runs gets that one's (done, result)."""
        with self._lock:
            running = self._barriers.get(account_id)
            if running is not None and not running[0].is_set():
                return running
            done, result = threading.Event(), {}
            self._barriers[account_id] = (done, result)

        def job():
            try:
                barrier.run_barrier(self, account_id, why, result)
            except Exception as exc:  # noqa: BLE001 - logged; the retry flatten tries again
                log.exception("Lock barrier of %s failed", self._accounts.get(account_id))
                result.setdefault("errors", []).append(str(exc))
            finally:
                done.set()

        try:
            self._workers.executor("barrier").submit(job)  # (it waits on lane jobs, which run on "order")
        except RuntimeError:  # shutting down: nothing more is sent
            result["error"] = "shutting down"
            done.set()
        return done, result

    def _flatten(self, account_id: int, why: str, retry_in_s: Optional[float] = None) -> dict:
        """Cancel working orders and close every position of the account, once (``closing.flatten_once``)."""
        return flatten_once(self, account_id, why, retry_in_s)

    def unlock(self, account_ids: Iterable[int], by: str = "operator") -> Dict[int, bool]:
        now = self.clock()
        out = {}
        for account_id in account_ids:
            note = self._unlock_base(account_id, now)  # before the lock goes: the watcher never
            changed = self.store.unlock(account_id, by, now)  # sees it unlocked and not re-armed
            with self._lock:
                was = self._locks.pop(account_id, None)
                self._last_flatten.pop(account_id, None)
            out[account_id] = bool(changed or was)
            if was is not None:
                self._announce(was, locked=False)
            if out[account_id]:
                self.relock_notes[account_id] = note
                log.warning("Risk UNLOCK %s by %s%s", self._accounts.get(account_id), by, f"; {note}" if note else "")
                self._event("unlock", account_id, by, f"unlocked by {by}" + (f"; {note}" if note else ""))
        return out

    def _unlock_base(self, account_id: int, now: float) -> Optional[str]:
        limits = self.limits_for(account_id)
        if not limits.watches_pnl:
            return None
        values = self.pnl(account_id, now)
        peak = self._peak(account_id, values["trading_day"], values["total_pnl"], now) if values["complete"] else None
        return self.unlocks.on_unlock(account_id, limits, values, peak)

    def kill(self, account_ids: Iterable[int], *, flatten: bool, wait_s: float = 10.0, by: str = "kill switch") -> dict:
        """Lock the accounts until an operator unlocks them and (optionally) flatten them now."""
        waits = []
        out = {}
        for account_id in account_ids:
            what = "kill switch" if by == "kill switch" else f"kill switch by {by}"
            row = self.lock(account_id, rules.KILL_SWITCH, what, until=None, flatten=flatten, by=by)
            out[account_id] = {"locked": True}
            if flatten:
                waits.append((account_id, *row["flatten_wait"]))
        deadline = time.monotonic() + wait_s
        for account_id, done, result in waits:
            finished = done.wait(max(0.0, deadline - time.monotonic()))
            out[account_id]["flatten"] = result if finished else {"pending": True}
        return out

    # -- the watcher ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                with self._lock:
                    dirty, self._dirty = self._dirty, set()
                now = self.clock()
                for account_id in sorted(dirty):
                    if account_id in self._accounts:
                        self._evaluate(account_id, now)
                with self._lock:
                    forced, self._force_tick = getattr(self, "_force_tick", False), False
                if forced or time.monotonic() >= next_tick:
                    self._tick(now)
                    next_tick = time.monotonic() + self.risk.check_interval_s
            except Exception:  # one logged safety net: the watcher must never die silently
                log.exception("risk guard cycle failed")
            with self._lock:
                self._cycles += 1
                self._cycle_done.notify_all()
            self._wake.wait(max(0.01, min(self.risk.check_interval_s, next_tick - time.monotonic())))
            self._wake.clear()

    def _tick(self, now: float) -> None:
        self._expire_locks(now)
        wanted: Set[int] = set()
        for account_id in sorted(self._accounts):
            positions = self.broker.positions(account_id) if self.broker is not None else {}
            open_contracts = {c for c, (n, _p) in positions.items() if n}
            # Every open position is priced (the console's open P&L), not only those under a P&L limit;
            # the value per point is read once per contract.
            wanted |= open_contracts
            self._value_points(open_contracts)
            self._poll_snapshot(account_id, now)
            if self._fresh(account_id):  # decisions about positions wait for the sync snapshot
                self.closer.check(account_id, now, open_contracts)
                self._retry_flatten(account_id, now, open_contracts)
            self._evaluate(account_id, now)
        if self.feed is not None:
            self.feed.want(wanted)

    def _fresh(self, account_id: int) -> bool:
        fresh = getattr(self.broker, "fresh", None)
        return True if fresh is None else bool(fresh(account_id))

    def _expire_locks(self, now: float) -> None:
        with self._lock:
            expired = [row for row in self._locks.values() if row["until"] is not None and row["until"] <= now]
            for row in expired:
                self._locks.pop(row["account_id"], None)
        for row in expired:
            self._announce(row, locked=False)
            log.warning("Risk lock on %s cleared at the session start (%s)", row["account_name"], iso(row["until"]))
            self._event("unlock", row["account_id"], "session_start", f"{row['reason']} lock cleared at the session start")

    def _value_points(self, contracts: Set[int]) -> None:
        for contract_id in contracts:
            if contract_id in self._vpp or self.actions is None:
                continue
            try:
                self.broker_reads += 2
                vpp = self.actions.value_per_point(contract_id)
            except Exception as exc:
                log.warning("risk: valuePerPoint of contract %s unknown yet: %s", contract_id, exc)
                continue
            if vpp:
                with self._lock:
                    self._vpp[contract_id] = float(vpp)

    def _poll_snapshot(self, account_id: int, now: float) -> None:
        """``getcashbalancesnapshot`` only for an account the sync stream has no cash balance for,
        at most once per ``RISK_SNAPSHOT_POLL_S`` (Tradovate calls polling it an anti-pattern)."""
        if self.actions is None or not self.limits_for(account_id).watches_pnl:
            return
        if self.broker is not None and self.broker.cash_balance(account_id):
            return
        last = self._snapshots.get(account_id)
        if last is not None and now - last[0] < self.risk.snapshot_poll_s:
            return
        self.pnl(account_id, now)  # positions seen so far are marked before the request goes out
        with self._lock:
            seq = next(self._seq)  # covers only position changes seen before it was requested
        try:
            self.broker_reads += 1
            snap = self.actions.cash_snapshot(account_id)
        except Exception as exc:
            log.warning("risk: cash-balance snapshot of %s failed: %s", self._accounts.get(account_id), exc)
            snap = None
        with self._lock:
            self._snapshots[account_id] = (now, seq, snap or {})

    def _retry_flatten(self, account_id: int, now: float, open_contracts: Set[int]) -> None:
        with self._lock:
            lock = self._locks.get(account_id)
            last = self._last_flatten.get(account_id)
        if lock is None or not lock.get("flatten"):
            return
        if not open_contracts:
            return
        if last is not None and now - last < self.risk.flatten_retry_s:
            return
        self.request_flatten(account_id, f"account locked ({lock['reason']}) still holds a position")

    def wait_idle(self, timeout_s: float = 10.0, *, tick: bool = False) -> bool:
        """Wait until the watcher has run a full cycle with nothing queued (``tick``: including
        its periodic checks).  For tests and the kill switch; never called on the order path."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            target = self._cycles + 2
            if tick:
                self._force_tick = True
        self._wake.set()
        with self._lock:
            while True:
                barriers = any(not done.is_set() for done, _r in self._barriers.values())
                if self._cycles >= target and not self._dirty and not barriers \
                        and not getattr(self, "_force_tick", False):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cycle_done.wait(min(remaining, 0.05))
                self._wake.set()

    # -- status ----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """Per account: the day's figures with their freshness, limits, lock (``risk`` in the status)."""
        return guard_status(self)

    def accounts_by_name(self, names) -> Tuple[List[int], List[str]]:
        """(ids, unknown names) for a kill-switch selector: ``"all"`` or a list of account names."""
        if names == "all":
            return sorted(self._accounts), []
        by_name = {n: a for a, n in self._accounts.items()}
        ids = [by_name[n] for n in names if n in by_name]
        return ids, [n for n in names if n not in by_name]
