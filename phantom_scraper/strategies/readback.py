"""Read back an order strategy's legs once its entry has filled, and reconcile them with the plan.

No Tradovate text says in which unit ``startorderstrategy`` reads a bracket's ``profitTarget``,
``stopLoss`` and ``autoTrail`` (points or ticks; the official samples' 75/-33 on MNQ and -30/15 on
MES fit either).  This project sends points (a production integration's notes), and does not
trust it: once the entry of a strategy has filled, :class:`ReadBack` reads the legs' latest
``orderVersion`` prices (legs identified by what they are, ``strategies.legs``) and compares each
offset from the entry fill with the plan (``meta["brackets"]``, in points):

* every offset as planned -> ``ok``; the unit the broker applied is learned for the product;
* offsets a factor off that the unit explains (we sent points, the broker read ticks: offset x tick
  size; we sent ticks, it read points: offset / tick size) -> each ``Stop``/``Limit`` leg is moved to
  the planned price with ``order/modifyorder`` (``fixed``).  A trailing or auto-trailing leg, whose
  trail distance a modify cannot change, or a modify the broker refuses -> the strategy is
  interrupted (its legs cancelled, the position kept) and replaced by plain exits: per bracket an
  OCO pair (``order/placeoco``: the Limit target and a Stop, or a TrailingStop whose distance is the
  planned initial stop distance) for the contracts still held (``replaced``);
* anything else (an offset no unit explains, a planned stop with no stop leg while the strategy
  runs) -> ``alert``: nothing is changed.

Every outcome that changed or could not change the legs is logged at WARNING/ERROR and notified
once (``strategy_alert``).  The state lives in the strategy record's ``meta["readback"]``,
journaled *before* any broker call (``fixing``/``replacing``): a restart finds it and alerts
instead of acting twice.

The unit learned per product (:data:`UNITS`, this process's memory) is used for the next
strategy of that product (:func:`params_for_broker`): offsets are sent in the unit the broker
applies, and the read-back then finds them as planned.  Reads back off from 2 s to 30 s per
strategy while its entry has not filled (a resting limit entry costs at most ~2 calls a minute).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from phantom_scraper import events
from phantom_scraper.errors import OrderRejectedError, TradovateError
from phantom_scraper.strategies.legs import Leg, entry_fill, strategy_legs

log = logging.getLogger(__name__)

FINAL = ("ok", "fixed", "replaced", "alert", "fixing", "replacing")
FIRST_DELAY_S, MAX_DELAY_S = 2.0, 30.0


class UnitMemory:
    """Which unit the broker applied to strategy offsets, per product root (learned by reading back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _units only
        self._units: Dict[str, str] = {}

    def get(self, root: str) -> Optional[str]:
        with self._lock:
            return self._units.get(root)

    def learn(self, root: str, unit: str) -> bool:
        """Remember ``unit`` for ``root``; True when it is new or changed (logged once)."""
        with self._lock:
            before = self._units.get(root)
            self._units[root] = unit
        if before != unit:
            (log.warning if unit == "ticks" else log.info)(
                "order strategies on %s: the broker applied bracket offsets in %s%s", root, unit.upper(),
                " (the plan's points are converted from now on)" if unit == "ticks" else "")
            return True
        return False

    def clear(self) -> None:
        with self._lock:
            self._units.clear()

    def seed(self, store) -> int:
        """After a restart: each product's unit as its latest read-back found it (the journal keeps
        it in ``meta.readback.unit``).  Returns how many read-backs were read."""
        seeded = 0
        for row in reversed(store.learned_units()):  # oldest first: the newest read-back wins
            root = root_of(row["symbol"])
            with self._lock:
                self._units[root] = row["unit"]
            seeded += 1
        if seeded:
            with self._lock:
                known = dict(self._units)
            log.info("order strategy bracket units from earlier read-backs: %s",
                     ", ".join(f"{r}={u}" for r, u in sorted(known.items())))
        return seeded


UNITS = UnitMemory()


def root_of(symbol: str) -> str:
    """``NQZ6`` -> ``NQ`` (a dated contract is root + month letter + one-digit year)."""
    return symbol[:-2] if len(symbol) > 2 and symbol[-1].isdigit() else symbol


def params_for_broker(params: str, symbol: str, tick: float, units: UnitMemory = UNITS) -> Tuple[str, str]:
    """(params to send, the unit they are in): points, unless this product's broker was seen to
    read ticks -- then every offset is divided by the tick size."""
    if units.get(root_of(symbol)) != "ticks" or not tick:
        return params, "points"
    doc = json.loads(params)
    for b in doc.get("brackets") or []:
        for key in ("profitTarget", "stopLoss"):
            if b.get(key) is not None:
                b[key] = round(b[key] / tick)
        if isinstance(b.get("autoTrail"), dict):
            b["autoTrail"] = {k: round(v / tick) for k, v in b["autoTrail"].items()}
    return json.dumps(doc, separators=(",", ":")), "ticks"


def _near(a: float, b: float, tick: float) -> bool:
    return abs(a - b) < tick / 2.0


def _round(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 10)


class ReadBack:
    def __init__(self, store, integration_for_account: Callable[[int], Any], units: UnitMemory = UNITS,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self._integration = integration_for_account
        self.units = units
        self._clock = clock
        self._next: Dict[str, Tuple[float, float]] = {}  # intent -> (next check, delay); one thread
        self.results: List[Tuple[str, str, str]] = []  # (intent id, state, text)
        self._alerted: set = set()
        self._poke_lock = threading.Lock()  # guards _poked only (poke runs on a socket thread)
        self._poked: set = set()  # accounts with a fill since the last turn: their strategies are due now
        # accounts with an open strategy at the last turn, and the store's version before it read them
        self._open_accounts: Optional[frozenset] = None
        self._open_version: Any = None

    def wants(self, account_id: Any) -> bool:
        """Whether a fill on ``account_id`` may concern a strategy to read back: the account had an
        open one at the last turn, or the store changed since (a strategy started or acked).  Cheap
        (no journal read): the socket thread asks before waking the manager for a fill."""
        version = getattr(self.store, "version", None)
        return (self._open_accounts is None or version is None or version != self._open_version
                or account_id in self._open_accounts)

    def poke(self, account_id: Any) -> None:
        """A fill on ``account_id`` (a socket's ``fill`` event): its strategies are read back on the
        next turn instead of after their back-off, so an entry's legs are checked as soon as it fills.
        Cheap: called on the socket thread."""
        if account_id is not None:
            with self._poke_lock:
                self._poked.add(account_id)

    # -- driving -----------------------------------------------------------------------------------
    def run_once(self, force: bool = False) -> List[str]:
        """Check every open strategy not read back yet whose turn it is; returns the intents settled."""
        done = []
        now = self._clock()
        with self._poke_lock:
            poked, self._poked = self._poked, set()
        version = getattr(self.store, "version", None)
        records = self.store.open()
        self._open_accounts, self._open_version = frozenset(r["account_id"] for r in records), version
        for rec in records:
            state = (rec["meta"].get("readback") or {}).get("state")
            if state in ("fixing", "replacing") and rec["intent_id"] not in self._alerted:
                self._alerted.add(rec["intent_id"])  # left by a process that stopped mid-way
                self._settle(rec, "alert", f"a restart interrupted the read-back while {state} the legs; "
                                           "nothing was repeated -- check the position's exits")
                continue
            if rec["strategy_id"] is None or state in FINAL:
                continue
            due, delay = self._next.get(rec["intent_id"], (0.0, FIRST_DELAY_S))
            if rec["account_id"] in poked:
                due, delay = 0.0, FIRST_DELAY_S
            if not force and now < due:
                continue
            try:
                settled = self.check(rec)
            except TradovateError as exc:  # unreadable now: the next turn tries again
                log.warning("read-back of order strategy %s: %s", rec["strategy_id"], exc)
                settled = False
            if settled:
                self._next.pop(rec["intent_id"], None)
                done.append(rec["intent_id"])
            else:
                self._next[rec["intent_id"]] = (now + delay, min(MAX_DELAY_S, delay * 1.5))
        return done

    # -- one strategy ------------------------------------------------------------------------------
    def check(self, rec: Dict[str, Any]) -> bool:
        """Read back one strategy.  False while its entry has not filled (try again later)."""
        ti = self._integration(rec["account_id"])
        meta, direction = rec["meta"], rec["direction"]
        tick = float(meta.get("tick") or 0.25)
        entry, exits = strategy_legs(ti, rec["strategy_id"], direction)
        got = entry_fill(ti, entry.order_id) if entry is not None else None
        if got is None:
            return False
        fill, filled = got
        if entry.live and entry.qty and filled < entry.qty:
            return False  # still filling: the legs follow the fills
        sent = meta.get("sent_unit", "points")
        planned = meta.get("brackets") or []
        notes: List[str] = []
        # read after the legs: a position reduced since (an opposite order; the server then shrinks
        # the legs itself, execution/exit legs) shows here too, so legs are never resized above it
        resize, problems = quantities(entry, exits, planned, filled, self._held(ti, rec))
        if problems and self._strategy_running(ti, rec["strategy_id"]):
            return self._settle(rec, "alert", "quantities not as planned: " + "; ".join(problems)
                                + "; nothing changed -- check the position's exits")
        if resize and not problems:
            self._mark(rec, "fixing")
            for leg, qty in resize:
                body = {"orderId": leg.order_id, "orderQty": qty, "orderType": leg.order_type, "isAutomated": True}
                if leg.role != "trailing":  # a trailing stop's quantity only (TrailingStopNonOrderQtyModify)
                    body["price" if leg.role == "target" else "stopPrice"] = leg.price_of()
                try:
                    ti.modify_order_rest(body)
                except OrderRejectedError as exc:
                    return self._settle(rec, "alert", f"{leg.role} leg {leg.order_id} is for {leg.qty} contract(s), "
                                                      f"{qty} are held; the resize was refused ({exc}) -- check "
                                                      "the position's exits")
                notes.append(f"{leg.role} leg {leg.order_id} resized from {leg.qty} to {qty} contract(s)")
                leg.version["orderQty"] = qty
        # breakeven (this server's own stop move) may have moved the stop before this read: its
        # price is no longer the plan's, so only the targets tell the unit then
        verdict, factor = self._measure(exits, planned, fill, tick,
                                        stop_moved=rec.get("be_state") in ("moving", "done"))
        root = root_of(rec["symbol"] or "")
        if verdict == "as_sent":
            self.units.learn(root, sent)
            return self._settle(rec, "fixed" if notes else "ok", "; ".join(notes) or None, unit=sent)
        if verdict == "wrong_unit":
            broker_unit = "ticks" if sent == "points" else "points"
            self.units.learn(root, broker_unit)
            return self._fix(ti, rec, exits, planned, fill, tick, factor, broker_unit, notes)
        if verdict == "missing_stop" and not self._strategy_running(ti, rec["strategy_id"]):
            return self._settle(rec, "ok", None)  # the legs already did their job
        return self._settle(rec, "alert", "; ".join(notes + [f"legs do not match the plan ({verdict}); nothing "
                                                             "changed -- check the position's exits"]))

    def _measure(self, exits: List[Leg], planned: List[dict], fill: float, tick: float,
                 stop_moved: bool = False) -> Tuple[str, float]:
        """``as_sent`` | ``wrong_unit`` (with the factor actual/planned) | ``missing_stop`` | ``unexplained``.
        ``stop_moved``: breakeven moved the stop already; its price is not compared."""
        wanted_stops = [b["stopLoss"] for b in planned if b.get("stopLoss") is not None]
        live = [l for l in exits if l.live and l.role in ("stop", "trailing", "target")]
        if wanted_stops and not any(l.role in ("stop", "trailing") for l in live):
            return "missing_stop", 1.0
        factors = []
        for leg in live:
            if leg.role == "trailing" or (leg.role == "stop" and stop_moved):
                continue  # its stop may have trailed (or been moved) already; its unit shows in its siblings
            key = "profitTarget" if leg.role == "target" else "stopLoss"
            offsets = [b[key] for b in planned if b.get(key) is not None]
            price = leg.price_of()
            if price is None or not offsets:
                return "unexplained", 1.0
            actual = price - fill
            for wanted in offsets:
                if _near(actual, wanted, tick):
                    factors.append(1.0)
                    break
            else:
                for wanted in offsets:
                    for f in (tick, 1.0 / tick):
                        if _near(actual, wanted * f, tick):
                            factors.append(f)
                            break
                    else:
                        continue
                    break
                else:
                    return "unexplained", 1.0
        if not factors:
            return "as_sent", 1.0  # only trailing legs: nothing to compare (they trail from the fill)
        if all(f == 1.0 for f in factors):
            return "as_sent", 1.0
        if len(set(factors)) == 1:
            return "wrong_unit", factors[0]
        return "unexplained", 1.0

    def _fix(self, ti, rec, exits: List[Leg], planned: List[dict], fill: float, tick: float, factor: float,
             broker_unit: str, notes: List[str]) -> bool:
        trailing = any(b.get("trailingStop") or b.get("autoTrail") for b in planned)
        if not trailing:
            self._mark(rec, "fixing")
            moved, refused = 0, []
            for leg in exits:
                if not leg.live or leg.role not in ("stop", "target"):
                    continue
                if leg.role == "stop" and rec.get("be_state") in ("moving", "done"):
                    continue  # breakeven placed it from the fill, not from the offsets the broker misread
                price = leg.price_of()
                wanted = _round(fill + (price - fill) / factor, tick)
                key = "price" if leg.role == "target" else "stopPrice"
                try:
                    ti.modify_order_rest({"orderId": leg.order_id, "orderQty": leg.qty, "orderType": leg.order_type,
                                          key: wanted, "isAutomated": True})
                    moved += 1
                except OrderRejectedError as exc:
                    refused.append(f"order {leg.order_id}: {exc}")
            if not refused:
                return self._settle(rec, "fixed", "; ".join(notes + [
                    f"the broker read the bracket offsets in {broker_unit}: {moved} leg(s) moved to the planned "
                    "prices"]), unit=broker_unit)
            log.error("read-back %s: modify refused (%s); replacing the strategy's exits", rec["intent_id"],
                      "; ".join(refused))
        return self._replace(ti, rec, planned, fill, tick, broker_unit, notes)

    def _replace(self, ti, rec, planned: List[dict], fill: float, tick: float, broker_unit: str,
                 notes: List[str]) -> bool:
        self._mark(rec, "replacing")
        direction = rec["direction"]
        answer = ti.interrupt_order_strategy(rec["strategy_id"])
        _, exits = strategy_legs(ti, rec["strategy_id"], direction)
        if isinstance(answer, dict) and answer.get("errorText") or any(l.live for l in exits):
            return self._settle(rec, "alert", "; ".join(notes + [
                f"the broker read the bracket offsets in {broker_unit}; the strategy could not be interrupted, its "
                "legs stay as they are"]), unit=broker_unit)
        held = self._held(ti, rec)
        exit_action = "Sell" if direction > 0 else "Buy"
        placed, failed = [], []
        for i, b in enumerate(planned, start=1):
            qty = min(int(b["qty"]), held)
            if qty <= 0:
                continue
            held -= qty
            body, endpoint = self._exit_body(rec, b, qty, exit_action, fill, tick)
            result = ti.place_order_smart(body, ws=None, endpoint=endpoint, cl_ord_id=f"{rec['intent_id']}-x{i}")
            (placed if result.status == "acked" else failed).append(f"bracket {i}: {result.status}"
                                                                     + (f" {result.failure_text or result.error or ''}"
                                                                        if result.status != "acked" else ""))
        state = "replaced" if not failed else "alert"
        return self._settle(rec, state, "; ".join(notes + [
            f"the broker read the bracket offsets in {broker_unit}; the strategy was interrupted and replaced by "
            f"plain exits ({'; '.join(placed + failed)})"]), unit=broker_unit)

    @staticmethod
    def _exit_body(rec, b: dict, qty: int, action: str, fill: float, tick: float) -> Tuple[dict, str]:
        base = {"accountId": rec["account_id"], "accountSpec": rec["account_name"], "symbol": rec["symbol"],
                "action": action, "orderQty": qty, "timeInForce": "GTC", "isAutomated": True}
        stop = None
        if b.get("stopLoss") is not None:
            stop = {"action": action, "orderType": "Stop", "stopPrice": _round(fill + b["stopLoss"], tick)}
            if rec.get("be_state") == "done" and rec.get("be_stop") is not None:
                stop["stopPrice"] = float(rec["be_stop"])  # breakeven moved it already: keep that level
            if b.get("trailingStop") or b.get("autoTrail"):
                stop.update(orderType="TrailingStop", pegDifference=abs(b["stopLoss"]))
        if b.get("profitTarget") is None:
            return dict(base, **stop), "order/placeorder"
        target = dict(base, orderType="Limit", price=_round(fill + b["profitTarget"], tick))
        if stop is None:
            return target, "order/placeorder"
        return dict(target, other=stop), "order/placeoco"

    @staticmethod
    def _held(ti, rec) -> int:
        for p in ti.list_positions(rec["account_id"]) or []:
            if isinstance(p, dict) and p.get("contractId") == rec["contract_id"]:
                return max(0, int(p.get("netPos") or 0) * rec["direction"])
        return 0

    @staticmethod
    def _strategy_running(ti, strategy_id: int) -> bool:
        entity = ti.get_order_strategy(strategy_id)
        return isinstance(entity, dict) and entity.get("status") == "ActiveStrategy"

    # -- journal ---------------------------------------------------------------------------------------
    def _mark(self, rec, state: str, unit: Optional[str] = None) -> None:
        readback: Dict[str, Any] = {"state": state, "at": time.time()}
        if unit:
            readback["unit"] = unit  # the unit the broker applied: seeds UNITS after a restart
        meta = dict(rec["meta"], readback=readback)
        self.store.set_meta(rec["intent_id"], meta)  # before the broker call: a restart never repeats it
        rec["meta"] = meta

    def _settle(self, rec, state: str, text: Optional[str], unit: Optional[str] = None) -> bool:
        self._mark(rec, state, unit)
        if text:
            self.results.append((rec["intent_id"], state, text))
            (log.error if state == "alert" else log.warning)("read-back %s (account %s): %s", rec["intent_id"],
                                                              rec["account_name"], text)
            events.emit("strategy_alert", intent_id=rec["intent_id"], account=rec["account_name"], text=text)
        return True


def quantities(entry: Leg, exits: List[Leg], planned: List[dict], filled: int,
               position: Optional[int] = None) -> Tuple[List[Tuple[Leg, int]], List[str]]:
    """Compare the legs' quantities with the plan and the contracts the strategy holds: (legs to
    resize, problems no resize fixes).  Held = the entry's fills less the exits that filled, and
    never more than the account's ``position`` in the strategy's direction (read after the legs: an
    opposite order may have reduced it, and the server shrinks the legs to match).  While
    every bracket has a stop, the live stop legs together must cover exactly what is held (fewer
    leaves contracts unprotected, more would reverse the position when they trigger); likewise the
    targets when every bracket has one, and never more than held.  A mismatch on a single live leg
    of its kind is resized to what is held (``order/modifyorder`` with ``orderQty``, which Tradovate
    allows even for trailing stops); anything else is a problem for the trader."""
    resize: List[Tuple[Leg, int]] = []
    problems: List[str] = []
    planned_total = sum(int(b.get("qty") or 0) for b in planned)
    if entry.qty is not None and planned_total and int(entry.qty) != planned_total:
        problems.append(f"the entry is for {entry.qty} contract(s), the plan for {planned_total}")
    held = filled - sum(int(l.qty or 0) for l in exits if l.status == "Filled")
    if position is not None:
        held = min(held, int(position))
    live = [l for l in exits if l.live]
    for kind, roles, key in (("stop", ("stop", "trailing"), "stopLoss"), ("target", ("target",), "profitTarget")):
        legs = [l for l in live if l.role in roles]
        total = sum(int(l.qty or 0) for l in legs)
        every = bool(planned) and all(b.get(key) is not None for b in planned)
        if total == held or (not every and total <= held) or (every and not legs):
            continue  # as planned (a missing leg is the price check's business: missing_stop)
        if len(legs) == 1 and held > 0:
            resize.append((legs[0], held))
        else:
            problems.append(f"{kind} legs for {total} contract(s), {held} held")
    return resize, problems
