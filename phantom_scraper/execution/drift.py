"""The drift monitor: each lane's expected position against the broker's, all the time.

Every few seconds (``DRIFT_CHECK_S``) and at every position or fill event of a watched login, each
(account, contract) a signal has traded is compared with where the lane expects it
(:mod:`.expectation`: the position when the lane last planned, plus what its own orders filled since,
plus what its last job still has in doubt).  Nothing is compared while the lane has work or its last
orders are not yet settled in the socket-fed state, or while that state is not fresh.

A difference that lasts ``DRIFT_SETTLE_S`` is a **drift**: an item in ``orders_needing_attention``
(``{"kind": "drift", "account", "contract", "expected", "actual", "since"}``), a ``drift`` event (the
notifier, the metrics), a WARNING, a line on the status page.  The accounts of one recorder are also
compared with each other (position / multiplier): a follower that differs from the recorder's first
account is drift too.  It clears when the broker is back where it should be (an ``drift_cleared``
event).

What is done about it:

* an order whose outcome was unknown and that surfaced after a later job of the same lane (its fill
  is not from an order the lane knows) is **squared**: the lane re-plans toward its expectation -- a
  journaled ``target`` signal of recorder ``steering`` through the risk guard -- and says so
  (``late_execution`` event), whatever ``DRIFT_ACTION`` says;
* otherwise ``DRIFT_ACTION=alert`` (default) only reports: a trade made by hand at the broker is
  the trader's, and is reported, not undone;
* ``DRIFT_ACTION=heal`` places the orders that bring the account back to the expectation the same
  way (never while the account is locked, never over the risk limits -- the guard plans it --, at
  most once per drift, journaled like any intent).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from phantom_scraper import events
from phantom_scraper.execution import exit_legs, expectation

logger = logging.getLogger(__name__)

STEERING_RECORDER = "steering"


class DriftMonitor:
    def __init__(self, settings, *, journal, planner_for: Callable, is_locked: Callable[[int], bool] = lambda a: False,
                 workers=None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.journal = journal
        self.planner_for = planner_for  # (recorder, signal_id) -> planner with the risk guard's rules
        self.is_locked = is_locked
        self.action = (getattr(settings, "drift_action", "alert") or "alert").lower()
        self.check_s = float(getattr(settings, "drift_check_s", 2.0))
        self.settle_s = float(getattr(settings, "drift_settle_s", 3.0))
        self.clock = clock
        self._workers = workers  # executors.Workers: the lanes and the expectation book it watches
        self._lock = threading.Lock()  # guards the dicts below
        self._since: Dict[tuple, Tuple[float, int, int, str]] = {}  # key -> (since, expected, actual, why)
        self._reported: Dict[tuple, dict] = {}  # key -> the drift item reported
        self._acted: Dict[tuple, float] = {}  # key -> since of the drift already acted on
        self._watched: set = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.checks = 0
        self.corrections = 0

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        # A fan-out brings a burst of position and fill events: they wake the monitor once, and it
        # compares at most every min_gap (never in the middle of the burst, competing with the
        # socket's thread for the interpreter).
        min_gap = min(self.check_s, max(0.25, self.settle_s / 3))
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - one logged safety net: the monitor must not die
                logger.exception("drift check failed")
            if self._stop.wait(min_gap):
                return
            self._wake.wait(max(0.0, self.check_s - min_gap))
            self._wake.clear()

    def _watch(self, conn) -> None:
        state = getattr(conn, "broker_state", None)
        if state is None or id(state) in self._watched or not hasattr(state, "add_listener"):
            return
        self._watched.add(id(state))
        state.add_listener(self._on_event, entity_types=("position", "fill"))

    def _on_event(self, etype, event, entity) -> None:  # (the socket's thread: one flag, no more)
        if not self._wake.is_set():
            self._wake.set()

    # -- one pass ------------------------------------------------------------------------------------
    def check_once(self) -> List[dict]:
        """Compare every expectation with the broker now; returns the drifts reported so far."""
        self.checks += 1
        now = self.clock()
        lanes = self._workers.lanes
        busy = set(lanes.lanes.depth()) if lanes is not None else set()
        seen = set()
        actual_of: Dict[tuple, Tuple[expectation.Expectation, int]] = {}
        for exp in self._workers.book.all():
            key = (exp.account_id, exp.contract_id)
            self._watch(exp.conn)
            state = exit_legs.fresh_state(exp.conn)
            if state is None or (exp.account_id, exp.root) in busy:
                seen.add(key)  # not judged now: keep what was known
                continue
            if not all(state.order_settled(i) for i in exp.last_ids if i is not None):
                seen.add(key)
                continue
            actual = state.net_pos(exp.account_id, exp.contract_id)
            wanted = self._workers.book.expected_now(exp, state)
            actual_of[key] = (exp, actual)
            seen.add(key)
            self._judge(key, exp, wanted, actual, now, "expected position")
        self._compare_followers(actual_of, now)
        with self._lock:
            for key in [k for k in self._since if k not in seen]:
                self._since.pop(key, None)
            return list(self._reported.values())

    def _compare_followers(self, actual_of, now) -> None:
        groups: Dict[tuple, List[Tuple[expectation.Expectation, int]]] = {}
        for exp, actual in actual_of.values():
            if exp.recorder:
                groups.setdefault((exp.recorder, exp.contract_id), []).append((exp, actual))
        for (recorder, _cid), members in groups.items():
            if len(members) < 2:
                continue
            leader = next((m for m in members if m[0].account_id == m[0].leader), None)
            if leader is None:
                continue
            units = leader[1] / max(1, leader[0].multiplier)
            for exp, actual in members:
                if exp is leader[0]:
                    continue
                want = int(round(units * max(1, exp.multiplier)))
                key = ("follower", exp.account_id, exp.contract_id)
                self._judge(key, exp, want, actual, now, f"{leader[0].account_name or leader[0].account_id} "
                                                         f"(leader of recorder {recorder})")

    def _judge(self, key, exp, wanted: int, actual: int, now: float, what: str) -> None:
        if wanted == actual:
            with self._lock:
                self._since.pop(key, None)
                cleared = self._reported.pop(key, None)
                self._acted.pop(key, None)
            if cleared is not None:
                logger.warning("Drift cleared: account %s %s is at %s again", cleared["account"], cleared["contract"],
                               actual)
                events.emit("drift_cleared", account=cleared["account"], contract=cleared["contract"], actual=actual)
            return
        with self._lock:
            since, old_wanted, old_actual, _w = self._since.get(key, (now, wanted, actual, what))
            if (old_wanted, old_actual) != (wanted, actual):
                since = now  # a new difference: its own settle time
            self._since[key] = (since, wanted, actual, what)
            if now - since < self.settle_s:
                return
            item = {"kind": "drift", "account": exp.account_name or str(exp.account_id), "account_id": exp.account_id,
                    "contract": exp.contract_name or str(exp.contract_id), "expected": wanted, "actual": actual,
                    "since": _iso(since), "compared_with": what}
            new = self._reported.get(key) != item
            self._reported[key] = item
            acted = self._acted.get(key) == since
            if not acted:
                self._acted[key] = since
        if new:
            logger.warning("DRIFT: account %s %s is at %+d, expected %+d (%s) since %s", item["account"],
                           item["contract"], actual, wanted, what, item["since"])
            events.emit("drift", **{k: item[k] for k in ("account", "contract", "expected", "actual", "since")})
        if acted or key[0] == "follower":
            return
        late = self._workers.book.overtaken_doubt(exp, actual - wanted)
        if late:
            self._workers.book.squared(exp, late)
            self._correct(exp, wanted, actual, f"late execution of {', '.join(late)} after a later signal", late=late)
        elif self.action == "heal":
            if self.is_locked(exp.account_id):
                logger.warning("DRIFT on %s not healed: the account is locked", item["account"])
                return
            self._correct(exp, wanted, actual, "DRIFT_ACTION=heal")

    # -- steering --------------------------------------------------------------------------------
    def _correct(self, exp, wanted: int, actual: int, why: str, late=None) -> None:
        """A journaled ``target`` signal of recorder ``steering`` for this account only, planned by the
        risk guard: brings the account from ``actual`` to ``wanted``."""
        from phantom_scraper.execution.dispatch import execute_trade_simple
        from phantom_scraper.signals import AccountTarget, parse_signal

        sentiment = "flat" if wanted == 0 else ("long" if wanted > 0 else "short")
        payload = {"action": "buy" if wanted > actual else "sell", "ticker": exp.contract_name,
                   "sentiment": sentiment, "position_size": abs(wanted),
                   "comment": f"steering: {why}"[:300], "account": exp.account_name}
        try:
            signal = parse_signal(json.dumps(payload))
            explicit = f"steer-{exp.account_id}-{exp.contract_id}-{int(time.time() * 1000)}"
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
            signal_id, duplicate, _ = self.journal.record_signal(STEERING_RECORDER, signal.payload, explicit, digest, 0)
            if duplicate:
                return
            target = AccountTarget(id=exp.account_id, name=exp.account_name or str(exp.account_id))
            outcomes = []
            try:
                outcomes = execute_trade_simple(signal, exp.contract, [(target, exp.conn)], journal=self.journal,
                                                signal_id=signal_id, settings=self.settings,
                                                planner=self.planner_for(STEERING_RECORDER, signal_id))
            finally:
                status = outcomes[0].status if outcomes else "error"
                self.journal.set_signal_status(signal_id, status, json.dumps([o.summary() for o in outcomes],
                                                                             default=str))
            self.corrections += 1
            text = outcomes[0].status + (f" ({outcomes[0].error})" if outcomes and outcomes[0].error else "")
        except Exception as exc:  # noqa: BLE001 - reported; the drift stays reported
            logger.exception("Steering %s %s toward %+d failed", exp.account_name, exp.contract_name, wanted)
            text = f"failed: {exc}"
            signal_id = None
        logger.warning("Steered account %s %s from %+d toward %+d (%s): %s; signal %s", exp.account_name,
                       exp.contract_name, actual, wanted, why, text, signal_id)
        kind = "late_execution" if late else "drift_healed"
        events.emit(kind, account=exp.account_name, contract=exp.contract_name, expected=wanted, actual=actual,
                    result=text, signal_id=signal_id, cl_ord_ids=list(late or ()))
        if late:
            self._workers.book.note_late({"kind": "late_execution", "account": exp.account_name,
                                        "contract": exp.contract_name, "cl_ord_ids": list(late), "expected": wanted,
                                        "actual": actual, "result": text, "at": _iso(self.clock())})

    # -- status ------------------------------------------------------------------------------------
    def items(self) -> List[dict]:
        with self._lock:
            return [dict(i) for i in self._reported.values()]

    def status(self) -> dict:
        return {"action": self.action, "check_s": self.check_s, "settle_s": self.settle_s, "checks": self.checks,
                "corrections": self.corrections, "drift": self.items(), "late_executions": self._workers.book.late()}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
