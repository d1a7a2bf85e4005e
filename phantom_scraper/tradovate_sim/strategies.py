"""Order strategies and trailing stops (mixin of :class:`.exchange.Exchange`).

Models Tradovate's multi-bracket order strategy (docs/TRADOVATE.md, "Order strategies"):

* ``orderStrategy/startorderstrategy`` ``{accountId|accountSpec, symbol, orderStrategyTypeId: 2,
  action, params: "<JSON string>", uuid?, customTag50?, isAutomated?}`` answers
  ``{"orderStrategy": {...}}`` or ``{"errorText": ...}`` (HTTP 200 either way).  ``params`` is
  ``{"entryVersion": {orderQty, orderType, price?, stopPrice?, timeInForce?, orderId?},
  "brackets": [{qty, profitTarget?, stopLoss?, trailingStop?, autoTrail?}]}``; offsets are signed
  points from the entry fill (long: target > 0, stop < 0), multiples of the tick size.  Any other
  key, a wrong sign, legs not summing to the entry, or a breakeven field is refused
  (breakeven: "Stop and Stop/Limit breakeven supported only", as Tradovate answers it).
* The entry is an ordinary order; each bracket's target (Limit) and stop (Stop, or TrailingStop
  when ``trailingStop`` is true) are created ``Suspended`` with the entry as ``parentId`` and
  linked OCO; when the entry fills they are re-priced from the fill price and go ``Working``.
* ``orderStrategyLink`` entities tie the orders to the strategy (labels ``entry``, ``tp<n>``,
  ``sl<n>``, or with ``strategy_link_labels="opaque"`` labels that say nothing, since Tradovate
  documents ``label`` as a free string); ``orderStrategy`` and its links are pushed as ``props``.
* ``strategy_bracket_unit="ticks"`` reads the offsets as ticks (Tradovate does not say which unit
  it applies), so a client's read-back of the legs can be tested both ways.
* Trailing: a ``trailingStop`` leg, an ``autoTrail`` leg once the price has gone ``trigger``
  points in profit (then in steps of ``freq``), and a standalone ``TrailingStop`` order
  (``pegDifference`` = distance) follow the price set with :meth:`set_price`; they never loosen.
* ``orderStrategy/interruptorderstrategy`` ``{orderStrategyId}`` cancels the strategy's live
  orders (entry and legs) and leaves the position alone; status ``ExecutionInterrupted``.
  ``orderStrategy/modifyorderstrategy`` ``{orderStrategyId, command}``: the command is not
  documented by Tradovate; the simulator checks the strategy and the fields and changes nothing
  (clients resize legs with ``order/modifyorder``/``order/cancelorder``).
* Status ``ActiveStrategy`` until the entry has filled and no leg is live
  (``ExecutionFinished``), or the entry died unfilled (``ExecutionFailed``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .catalog import round_to_tick
from .orders import LIVE, MAX_QTY_TEXT, failure, _num, _qty
from .timefmt import iso_z as _iso

MULTI_BRACKET = 2
INVALID_PARAMS = "Invalid or missed parameters"
BREAKEVEN_TEXT = "Stop and Stop/Limit breakeven supported only"
ENTRY_KEYS = frozenset({"orderId", "orderQty", "orderType", "price", "stopPrice", "timeInForce",
                        "expireTime", "text"})
ENTRY_TYPES = frozenset({"Market", "Limit", "Stop", "StopLimit"})
BRACKET_KEYS = frozenset({"qty", "profitTarget", "stopLoss", "trailingStop", "autoTrail"})
AUTOTRAIL_KEYS = frozenset({"stopLoss", "trigger", "freq"})
TRAILING_TYPES = frozenset({"TrailingStop", "TrailingStopLimit"})


class _Refused(Exception):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass
class _Leg:
    index: int
    qty: int
    profit_target: Optional[float]
    stop_loss: Optional[float]
    trailing: bool
    auto_trail: Optional[Tuple[float, float, float]]  # (distance, trigger, freq) in points
    target_id: Optional[int] = None
    stop_id: Optional[int] = None


@dataclass
class _Strategy:
    id: int
    account_id: int
    contract_id: int
    direction: int  # +1 long entry, -1 short
    entry_id: int
    legs: List[_Leg]
    entry_filled: bool = False
    interrupted: bool = False
    finished: bool = False
    order_ids: List[int] = field(default_factory=list)


@dataclass
class _Trail:
    """A stop that follows the price.  ``side`` +1: a Sell stop under a long (moves up)."""

    side: int
    distance: float
    freq: float
    trigger: Optional[float] = None  # price that starts trailing (None: trailing already)


def _is_multiple(value: float, tick: float) -> bool:
    ratio = value / tick
    return abs(ratio - round(ratio)) < 1e-6


def _has_breakeven(obj: Any) -> bool:
    if isinstance(obj, dict):
        return any(("breakeven" in str(k).lower().replace("_", "").replace("-", "")) or _has_breakeven(v)
                   for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_breakeven(v) for v in obj)
    return False


class StrategyMixin:
    # ---- public API ---------------------------------------------------------------------------
    def start_order_strategy(self, user_id: int, body: dict, transport: str) -> dict:
        acct_id, err = self._account_for(user_id, body)
        if err:
            return err
        try:
            contract, action, entry, legs = self._parse_strategy(body)
        except _Refused as exc:
            return {"errorText": exc.text}
        spec = {"account_id": acct_id, "contract": contract, "qty": entry["orderQty"]}
        ev: List[tuple] = []
        with self._lock:
            if self._over_max(spec) or any(self._over_max({"account_id": acct_id, "qty": leg.qty})
                                           for leg in legs):
                return {"errorText": MAX_QTY_TEXT, "failureReason": "MaxOrderQtyLimitReached"}
            strat = self._create_strategy_locked(ev, user_id, body, spec, action, entry, legs, transport)
            self._try_fill_locked(ev, self._info[strat.entry_id])
            result = {"orderStrategy": dict(self._entities["orderStrategy"][strat.id])}
        self._publish(ev)
        return result

    def interrupt_order_strategy(self, user_id: int, body: dict) -> dict:
        ev: List[tuple] = []
        with self._lock:
            strat, err = self._own_strategy_locked(user_id, body)
            if err:
                return err
            strat.interrupted = True
            for oid in strat.order_ids:
                if self._entities["order"][oid]["ordStatus"] in LIVE:
                    cmd_id = self._command_locked(ev, user_id, oid, "Cancel", {"isAutomated": True})
                    self._cancel_locked(ev, self._info[oid], cmd_id)
            self._strategy_status_locked(ev, strat, "ExecutionInterrupted")
            result = {"orderStrategy": dict(self._entities["orderStrategy"][strat.id])}
        self._publish(ev)
        return result

    def modify_order_strategy(self, user_id: int, body: dict) -> dict:
        with self._lock:
            strat, err = self._own_strategy_locked(user_id, body)
            if err:
                return err
            if not isinstance(body.get("command"), str) or not body["command"].strip():
                return {"errorText": INVALID_PARAMS}
            return {"orderStrategy": dict(self._entities["orderStrategy"][strat.id])}

    # ---- parsing (no lock: catalog is immutable) ------------------------------------------------
    def _parse_strategy(self, body: dict):
        if _qty(body.get("orderStrategyTypeId")) != MULTI_BRACKET:
            raise _Refused(INVALID_PARAMS)
        action = body.get("action")
        if action not in ("Buy", "Sell"):
            raise _Refused(INVALID_PARAMS)
        contract = self.catalog.find(str(body.get("symbol") or ""))
        if contract is None or contract.expired:
            raise _Refused(f"Unknown or untradable contract {body.get('symbol')!r}")
        raw = body.get("params")
        if not isinstance(raw, str):
            raise _Refused(INVALID_PARAMS)
        try:
            params = json.loads(raw)
        except ValueError:
            raise _Refused(INVALID_PARAMS) from None
        if not isinstance(params, dict):
            raise _Refused(INVALID_PARAMS)
        if _has_breakeven(params):
            raise _Refused(BREAKEVEN_TEXT)
        if set(params) - {"entryVersion", "brackets"}:
            raise _Refused(INVALID_PARAMS)
        entry, brackets = params.get("entryVersion"), params.get("brackets")
        if not isinstance(entry, dict) or set(entry) - ENTRY_KEYS:
            raise _Refused(INVALID_PARAMS)
        qty = _qty(entry.get("orderQty"))
        if qty is None or qty <= 0 or entry.get("orderType") not in ENTRY_TYPES:
            raise _Refused(INVALID_PARAMS)
        if entry["orderType"] in ("Limit", "StopLimit") and _num(entry.get("price")) is None:
            raise _Refused(INVALID_PARAMS)
        if entry["orderType"] in ("Stop", "StopLimit") and _num(entry.get("stopPrice")) is None:
            raise _Refused(INVALID_PARAMS)
        if not isinstance(brackets, list) or not brackets:
            raise _Refused(INVALID_PARAMS)
        direction = 1 if action == "Buy" else -1
        tick = contract.product.tick_size
        legs = [self._parse_bracket(i, b, direction, tick) for i, b in enumerate(brackets, start=1)]
        if self.config.strategy_bracket_unit == "ticks":  # the other reading: offsets counted in ticks
            for leg in legs:
                leg.profit_target = None if leg.profit_target is None else leg.profit_target * tick
                leg.stop_loss = None if leg.stop_loss is None else leg.stop_loss * tick
                if leg.auto_trail is not None:
                    leg.auto_trail = tuple(v * tick for v in leg.auto_trail)
        if sum(leg.qty for leg in legs) != qty:
            raise _Refused(INVALID_PARAMS)
        return contract, action, dict(entry, orderQty=qty), legs

    @staticmethod
    def _parse_bracket(index: int, b: Any, direction: int, tick: float) -> _Leg:
        if not isinstance(b, dict) or set(b) - BRACKET_KEYS:
            raise _Refused(INVALID_PARAMS)
        qty = _qty(b.get("qty"))
        target, stop = _num(b.get("profitTarget")), _num(b.get("stopLoss"))
        trailing = b.get("trailingStop", False)
        if qty is None or qty <= 0 or not isinstance(trailing, bool):
            raise _Refused(INVALID_PARAMS)
        if target is None and stop is None:
            raise _Refused(INVALID_PARAMS)
        if target is not None and (target * direction <= 0 or not _is_multiple(target, tick)):
            raise _Refused(INVALID_PARAMS)
        if stop is not None and (stop * direction >= 0 or not _is_multiple(stop, tick)):
            raise _Refused(INVALID_PARAMS)
        auto = None
        if b.get("autoTrail") is not None:
            at = b["autoTrail"]
            if trailing or stop is None or not isinstance(at, dict) or set(at) - AUTOTRAIL_KEYS:
                raise _Refused(INVALID_PARAMS)
            values = [_num(at.get(k)) for k in ("stopLoss", "trigger", "freq")]
            if any(v is None or v < 0 or not _is_multiple(v, tick) for v in values) or values[0] <= 0:
                raise _Refused(INVALID_PARAMS)
            auto = (values[0], values[1], values[2] or tick)
        if trailing and stop is None:
            raise _Refused(INVALID_PARAMS)
        return _Leg(index, qty, target, stop, trailing, auto)

    # ---- internals (lock held) ------------------------------------------------------------------
    def _own_strategy_locked(self, user_id: int, body: dict):
        sid = _qty(body.get("orderStrategyId"))
        entity = self._entities["orderStrategy"].get(sid) if sid is not None else None
        if entity is None or not self._visible(user_id, "orderStrategy", entity):
            return None, failure("UnknownReason", "Access is denied")
        strat = self._strategies[sid]
        if entity["status"] != "ActiveStrategy":
            return None, {"errorText": f"Order strategy is {entity['status']}"}
        return strat, None

    def _create_strategy_locked(self, ev: list, user_id: int, body: dict, spec: dict, action: str,
                                entry: dict, legs: List[_Leg], transport: str) -> _Strategy:
        contract, acct_id = spec["contract"], spec["account_id"]
        sid = next(self._ids)
        entity = {"id": sid, "accountId": acct_id, "timestamp": _iso(), "contractId": contract.id,
                  "orderStrategyTypeId": MULTI_BRACKET, "initiatorId": user_id, "action": action,
                  "params": body["params"], "status": "ActiveStrategy", "senderId": user_id}
        for key in ("uuid", "customTag50"):
            if body.get(key) is not None:
                entity[key] = body[key]
        self._add("orderStrategy", entity, acct_id)
        self._emit(ev, "orderStrategy", "Created", entity)
        entry_body = {k: v for k, v in entry.items() if k != "orderId"}
        entry_body.update(accountId=acct_id, action=action, symbol=contract.name,
                          isAutomated=bool(body.get("isAutomated", False)))
        for key in ("customTag50", "uuid"):
            if body.get(key) is not None:
                entry_body["clOrdId" if key == "uuid" else key] = body[key]
        entry_info = self._create_locked(ev, user_id, entry_body, spec, transport, "startorderstrategy")
        strat = _Strategy(sid, acct_id, contract.id, 1 if action == "Buy" else -1, entry_info.order_id, legs)
        self._strategies[sid] = strat
        self._link_locked(ev, strat, entry_info.order_id, "entry")
        ref = self._reference_price(entry, contract.id)
        exit_action = "Sell" if action == "Buy" else "Buy"
        tick = contract.product.tick_size
        for leg in legs:
            leg_spec = {"account_id": acct_id, "contract": contract, "qty": leg.qty}
            made = []
            if leg.profit_target is not None:
                tp = {"accountId": acct_id, "action": exit_action, "orderType": "Limit",
                      "price": round_to_tick(ref + leg.profit_target, tick), "isAutomated": True}
                info = self._create_locked(ev, user_id, tp, leg_spec, transport, "strategy",
                                           parent=entry_info.order_id)
                leg.target_id = info.order_id
                self._link_locked(ev, strat, info.order_id, f"tp{leg.index}")
                made.append(info)
            if leg.stop_loss is not None:
                otype = "TrailingStop" if leg.trailing else "Stop"
                sl = {"accountId": acct_id, "action": exit_action, "orderType": otype,
                      "stopPrice": round_to_tick(ref + leg.stop_loss, tick), "isAutomated": True}
                if leg.trailing:
                    sl["pegDifference"] = abs(leg.stop_loss)
                info = self._create_locked(ev, user_id, sl, leg_spec, transport, "strategy",
                                           parent=entry_info.order_id)
                leg.stop_id = info.order_id
                self._link_locked(ev, strat, info.order_id, f"sl{leg.index}")
                made.append(info)
            if len(made) == 2:
                self._link_oco_locked(ev, made[0], made[1])
        return strat

    def _reference_price(self, entry: dict, contract_id: int) -> float:
        for key in ("price", "stopPrice"):
            if _num(entry.get(key)) is not None:
                return float(entry[key])
        return self._prices[contract_id]

    def _link_locked(self, ev: list, strat: _Strategy, order_id: int, label: str) -> None:
        if self.config.strategy_link_labels == "opaque":  # Tradovate documents label as a free string
            label = f"order{len(strat.order_ids) + 1}"
        link = {"id": next(self._ids), "orderStrategyId": strat.id, "orderId": order_id, "label": label}
        self._add("orderStrategyLink", link, strat.account_id)
        self._emit(ev, "orderStrategyLink", "Created", link)
        strat.order_ids.append(order_id)
        self._strategy_of[order_id] = strat.id

    def _strategy_status_locked(self, ev: list, strat: _Strategy, status: str) -> None:
        entity = self._entities["orderStrategy"][strat.id]
        if entity["status"] == status:
            return
        strat.finished = status != "ActiveStrategy"
        entity["status"], entity["timestamp"] = status, _iso()
        self._emit(ev, "orderStrategy", "Updated", entity)

    def _leg_ids(self, strat: _Strategy) -> List[int]:
        return [oid for oid in strat.order_ids if oid != strat.entry_id]

    # hooks called by orders.py (lock held)
    def _after_fill_locked(self, ev: list, info, price: float) -> None:
        sid = self._strategy_of.get(info.order_id)
        if sid is None:
            return
        strat = self._strategies[sid]
        if info.order_id == strat.entry_id:
            strat.entry_filled = True
            self._activate_legs_locked(ev, strat, price)
        self._check_done_locked(ev, strat)

    def _after_cancel_locked(self, ev: list, info) -> None:
        sid = self._strategy_of.get(info.order_id)
        if sid is None:
            return
        strat = self._strategies[sid]
        if info.order_id == strat.entry_id and not strat.entry_filled:
            for oid in self._leg_ids(strat):
                if self._entities["order"][oid]["ordStatus"] in LIVE:
                    self._cancel_locked(ev, self._info[oid], self._info[oid].command_id)
        self._trails.pop(info.order_id, None)
        self._check_done_locked(ev, strat)

    def _check_done_locked(self, ev: list, strat: _Strategy) -> None:
        if strat.finished:
            return
        live = [oid for oid in strat.order_ids if self._entities["order"][oid]["ordStatus"] in LIVE]
        if live:
            return
        if strat.interrupted:
            status = "ExecutionInterrupted"
        else:
            status = "ExecutionFinished" if strat.entry_filled else "ExecutionFailed"
        self._strategy_status_locked(ev, strat, status)

    def _activate_legs_locked(self, ev: list, strat: _Strategy, fill_price: float) -> None:
        tick = self.catalog.contracts[strat.contract_id].product.tick_size
        side = strat.direction
        for leg in strat.legs:
            if leg.target_id is not None:
                self._reprice_locked(ev, self._info[leg.target_id], "price",
                                     round_to_tick(fill_price + leg.profit_target, tick))
            if leg.stop_id is not None:
                stop = round_to_tick(fill_price + leg.stop_loss, tick)
                self._reprice_locked(ev, self._info[leg.stop_id], "stopPrice", stop)
                if leg.trailing:
                    self._trails[leg.stop_id] = _Trail(side, abs(leg.stop_loss), tick)
                elif leg.auto_trail is not None:
                    distance, trigger, freq = leg.auto_trail
                    self._trails[leg.stop_id] = _Trail(side, distance, freq,
                                                       round_to_tick(fill_price + side * trigger, tick))
        for oid in self._leg_ids(strat):
            info = self._info[oid]
            if self._entities["order"][oid]["ordStatus"] == "Suspended":
                self._report_locked(ev, info, info.command_id, "New", "Working")
                self._set_status(ev, info, "Working")
        for oid in self._leg_ids(strat):
            self._try_fill_locked(ev, self._info[oid])

    def _reprice_locked(self, ev: list, info, key: str, value: float) -> None:
        if key == "price":
            info.price = value
        else:
            info.stop_price = value
        version = self._latest_version.get(info.order_id)  # the latest (modify adds one)
        if version is not None and version.get(key) != value:
            version[key] = value
            self._emit(ev, "orderVersion", "Updated", version)

    def _trail_locked(self, ev: list, contract_id: int, market: float) -> None:
        """Move trailing stops of ``contract_id`` toward ``market``; called before fills are tried."""
        tick = self.catalog.contracts[contract_id].product.tick_size
        for oid in sorted(self._working.get(contract_id, ())):
            info = self._info[oid]
            trail = self._trails.get(oid)
            if trail is None and info.order_type in TRAILING_TYPES:
                trail = self._standalone_trail(info, tick)
            if trail is None or info.stop_price is None:
                continue
            if trail.trigger is not None:
                if (market - trail.trigger) * trail.side < 0:
                    continue
                trail.trigger = None
            wanted = market - trail.side * trail.distance
            gain = (wanted - info.stop_price) * trail.side
            steps = math.floor(gain / trail.freq + 1e-9)
            if steps > 0:
                new_stop = round_to_tick(info.stop_price + trail.side * steps * trail.freq, tick)
                self._reprice_locked(ev, info, "stopPrice", new_stop)

    def _standalone_trail(self, info, tick: float) -> Optional[_Trail]:
        version = self._entities["orderVersion"].get(info.command_id) or {}
        peg = _num(version.get("pegDifference"))
        if peg is None or peg <= 0:
            return None
        trail = _Trail(1 if info.action == "Sell" else -1, abs(peg), tick)
        self._trails[info.order_id] = trail
        return trail
