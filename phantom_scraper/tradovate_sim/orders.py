"""Order engine (mixin of :class:`.exchange.Exchange`): place, OSO, cancel, modify, liquidate, fills.

Every ``*_locked`` method runs with ``self._lock`` held and appends the resulting events to ``ev``;
the public methods publish ``ev`` after releasing the lock.  Responses follow docs/TRADOVATE.md "Orders":
``{orderId}`` / ``{commandId}`` on success, ``{failureReason, failureText}`` or ``{violations}`` otherwise.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .catalog import round_to_tick
from .daybook import DATED, wire
from .timefmt import iso_z as _iso, trade_date as _trade_date, trade_day as _trade_day

ORDER_TYPES = frozenset({"Limit", "LimitIfTouched", "MIT", "Market", "QTS", "Stop", "StopLimit",
                         "TrailingStop", "TrailingStopLimit"})
NEEDS_PRICE = frozenset({"Limit", "StopLimit", "TrailingStopLimit", "MIT", "LimitIfTouched"})
NEEDS_STOP = frozenset({"Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"})
LIVE = frozenset({"PendingNew", "Working", "Suspended"})
ACCESS_DENIED = ("UnknownReason", "Access is denied")
MAX_QTY_TEXT = "Your maximum order quantity has been met."


CUSTOM_TAG50_TEXT = "customTag50 is not enabled"  # as integrations report it (docs/TRADOVATE.md)


def failure(reason: str, text: str) -> dict:
    return {"failureReason": reason, "failureText": text}


def violation(field_name: str, description: str, value: Any = None) -> dict:
    return {"violations": [{"constraint": field_name, "value": value, "description": description}]}


def _qty(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _num(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class OrderInfo:
    """What the engine needs about an order beyond its public ``Order`` entity."""

    order_id: int
    command_id: int
    account_id: int
    contract_id: int
    action: str
    qty: int
    order_type: str
    price: Optional[float]
    stop_price: Optional[float]
    triggered: bool = False  # stop part of a StopLimit has fired
    children: List[int] = field(default_factory=list)  # OSO brackets (Suspended until fill)
    oco_id: Optional[int] = None  # the other leg of an OCO pair


class OrderMixin:
    # ---- validation (no lock: accounts and catalog are immutable) -----------------------------
    def _account_for(self, user_id: int, body: dict) -> Tuple[Optional[int], Optional[dict]]:
        raw_id, spec = body.get("accountId"), body.get("accountSpec")
        if raw_id in (None, "") and not spec:
            return None, violation("accountId", "accountId or accountSpec is required")
        if raw_id not in (None, ""):
            try:
                acct_id = int(raw_id)
            except (TypeError, ValueError):
                return None, failure(*ACCESS_DENIED)
        else:
            acct_id = self._accounts_by_name.get(str(spec).upper())
        acct = self._accounts.get(acct_id) if acct_id is not None else None
        if acct is None or acct["userId"] != user_id:
            return None, failure(*ACCESS_DENIED)
        if spec and str(spec).upper() != acct["name"].upper():
            return None, failure(*ACCESS_DENIED)
        return acct_id, None

    def _leg_error(self, leg: dict) -> Optional[dict]:
        """Validate action/orderType/prices of an order or bracket; returns an error payload."""
        if leg.get("action") not in ("Buy", "Sell"):
            return violation("action", "action must be Buy or Sell", leg.get("action"))
        otype = leg.get("orderType")
        if otype not in ORDER_TYPES:
            return violation("orderType", "unknown orderType", otype)
        if otype in NEEDS_PRICE and _num(leg.get("price")) is None:
            return failure("InvalidPrice", f"{otype} order requires price")
        if otype in NEEDS_STOP and _num(leg.get("stopPrice")) is None:
            return failure("InvalidPrice", f"{otype} order requires stopPrice")
        return None

    def _validate(self, user_id: int, body: dict) -> Tuple[Optional[dict], dict]:
        """(error payload or None, normalised order spec)."""
        acct_id, err = self._account_for(user_id, body)
        spec = {"account_id": acct_id, "contract": None, "qty": _qty(body.get("orderQty"))}
        if err:
            return err, spec
        err = self._leg_error(body)
        if err:
            return err, spec
        if self.config.refuse_custom_tag50 and body.get("customTag50"):
            return failure("UnknownReason", CUSTOM_TAG50_TEXT), spec
        contract = self.catalog.find(str(body.get("symbol") or ""))
        if contract is None or contract.expired or contract.name in self.catalog.delisted:
            text = f"Unknown or untradable contract {body.get('symbol')!r}"
            reason = self.config.unknown_symbol_reason
            return failure(reason, "Access is denied" if reason == "UnknownReason" else text), spec
        spec["contract"] = contract
        if spec["qty"] is None or spec["qty"] <= 0:
            return violation("orderQty", "orderQty must be a positive integer", body.get("orderQty")), spec
        return None, spec

    def _ok(self, payload: dict) -> dict:
        if self.config.include_success_reason:
            payload["failureReason"] = "Success"
        return payload

    # ---- public order API ---------------------------------------------------------------------
    def place_order(self, user_id: int, body: dict, transport: str,
                    endpoint: str = "placeorder") -> dict:
        err, spec = self._validate(user_id, body)
        ev: List[tuple] = []
        with self._lock:
            if err is None and not self.config.risk_reject_async and self._over_max(spec):
                err = failure("MaxOrderQtyLimitReached", MAX_QTY_TEXT)
            if err is not None:
                self._record_locked(body, None, spec, transport, endpoint, err)
                return err
            info = self._create_locked(ev, user_id, body, spec, transport, endpoint)
            if self._entities["order"][info.order_id]["ordStatus"] == "Working":
                self._try_fill_locked(ev, info)
        self._publish(ev)
        return self._ok({"orderId": info.order_id})

    def place_oso(self, user_id: int, body: dict, transport: str) -> dict:
        err, spec = self._validate(user_id, body)
        legs = [b for b in (body.get("bracket1"), body.get("bracket2")) if b is not None]
        if err is None and not isinstance(body.get("bracket1"), dict):
            err = violation("bracket1", "bracket1 is required")
        for leg in legs:
            if err is None:
                err = self._leg_error(leg) if isinstance(leg, dict) else violation("bracket", "not an object")
        ev: List[tuple] = []
        with self._lock:
            if err is None and not self.config.risk_reject_async and self._over_max(spec):
                err = failure("MaxOrderQtyLimitReached", MAX_QTY_TEXT)
            if err is not None:
                self._record_locked(body, None, spec, transport, "placeoso", err)
                return err
            entry = self._create_locked(ev, user_id, body, spec, transport, "placeoso")
            result = {"orderId": entry.order_id}
            if self._entities["order"][entry.order_id]["ordStatus"] == "Working":
                children = [self._create_locked(ev, user_id, leg, spec, transport, "bracket",
                                                parent=entry.order_id) for leg in legs]
                entry.children = [c.order_id for c in children]
                if len(children) == 2:
                    self._link_oco_locked(ev, children[0], children[1])
                for key, child in zip(("oso1Id", "oso2Id"), children):
                    result[key] = child.order_id
                self._try_fill_locked(ev, entry)
        self._publish(ev)
        return self._ok(result)

    def place_oco(self, user_id: int, body: dict, transport: str) -> dict:
        err, spec = self._validate(user_id, body)
        other = body.get("other")
        if err is None:
            err = self._leg_error(other) if isinstance(other, dict) else violation("other", "other is required")
        ev: List[tuple] = []
        with self._lock:
            if err is not None:
                self._record_locked(body, None, spec, transport, "placeoco", err)
                return err
            first = self._create_locked(ev, user_id, body, spec, transport, "placeoco")
            second = self._create_locked(ev, user_id, other, spec, transport, "placeoco")
            self._link_oco_locked(ev, first, second)
            for info in (first, second):
                self._try_fill_locked(ev, info)
        self._publish(ev)
        return self._ok({"orderId": first.order_id, "ocoId": second.order_id})

    def cancel_order(self, user_id: int, body: dict) -> dict:
        order_id = _qty(body.get("orderId"))
        if order_id is None:
            return violation("orderId", "orderId is required", body.get("orderId"))
        ev: List[tuple] = []
        with self._lock:
            order = self._entities["order"].get(order_id)
            if order is None or not self._visible(user_id, "order", order):
                return failure(*ACCESS_DENIED)
            if order["ordStatus"] not in LIVE:
                return failure("TooLate", f"Order is {order['ordStatus']}")
            cmd_id = self._command_locked(ev, user_id, order_id, "Cancel", body)
            self._cancel_locked(ev, self._info[order_id], cmd_id)
        self._publish(ev)
        return self._ok({"commandId": cmd_id})

    def modify_order(self, user_id: int, body: dict) -> dict:
        order_id, qty = _qty(body.get("orderId")), _qty(body.get("orderQty"))
        if order_id is None or qty is None or qty <= 0 or "orderType" not in body:
            return violation("orderId/orderQty/orderType", "orderId, orderQty (>0) and orderType are required")
        ev: List[tuple] = []
        with self._lock:
            order = self._entities["order"].get(order_id)
            if order is None or not self._visible(user_id, "order", order):
                return failure(*ACCESS_DENIED)
            info = self._info[order_id]
            if info.order_type in ("TrailingStop", "TrailingStopLimit") and (
                    body["orderType"] != info.order_type
                    or any(body.get(k) is not None for k in ("price", "stopPrice", "pegDifference"))):
                # Tradovate's failureReason of that name: a trailing stop's quantity only may change
                return failure("TrailingStopNonOrderQtyModify", "Only the quantity of a trailing stop can be modified")
            trailing = info.order_type in ("TrailingStop", "TrailingStopLimit")
            err = self._leg_error({"action": info.action, **body, **({"stopPrice": info.stop_price} if trailing else {})})
            if err:
                return err
            if order["ordStatus"] not in LIVE:
                return failure("TooLate", f"Order is {order['ordStatus']}")
            max_qty = self._max_qty.get(info.account_id)
            if max_qty is not None and qty > max_qty:
                return failure("MaxOrderQtyLimitReached", MAX_QTY_TEXT)
            cmd_id = self._command_locked(ev, user_id, order_id, "Modify", body)
            if trailing:  # its quantity only: it keeps trailing
                prev = self._latest_version.get(order_id, {})
                body = dict(body, pegDifference=prev.get("pegDifference"))
            else:
                info.price, info.stop_price = _num(body.get("price")), _num(body.get("stopPrice"))
                info.triggered = False
            info.qty, info.order_type = qty, body["orderType"]
            self._version_locked(ev, cmd_id, info, body)
            self._report_locked(ev, info, cmd_id, "Replaced", order["ordStatus"])
            if order["ordStatus"] == "Working":
                self._try_fill_locked(ev, info)
        self._publish(ev)
        return self._ok({"commandId": cmd_id})

    def liquidate(self, user_id: int, body: dict, transport: str) -> dict:
        """Cancel the account's live orders in the contract, then flatten with a Market order.

        Already flat: the orders are still cancelled and the answer is
        ``{"failureReason": "UnknownReason", "failureText": "Position is already flat"}``.
        """
        acct_id, err = self._account_for(user_id, {"accountId": body.get("accountId")})
        if err:
            return err
        if self.config.refuse_custom_tag50 and body.get("customTag50"):
            return failure("UnknownReason", CUSTOM_TAG50_TEXT)
        contract = self.contract_by_id(body.get("contractId"))
        if contract is None:
            return failure(self.config.unknown_symbol_reason, "Unknown contractId")
        ev: List[tuple] = []
        with self._lock:
            for oid in sorted(self._live.get((acct_id, contract.id), ())):  # (an index: never the whole day)
                if self._entities["order"][oid]["ordStatus"] in LIVE:  # OCO/OSO cascades
                    cmd_id = self._command_locked(ev, user_id, oid, "Cancel", {"isAutomated": True})
                    self._cancel_locked(ev, self._info[oid], cmd_id)
            pid = self._positions.get((acct_id, contract.id))
            net = self._entities["position"][pid]["netPos"] if pid else 0
            if net == 0:
                result = failure("UnknownReason", "Position is already flat")
            else:
                order_body = {"accountId": acct_id, "action": "Sell" if net > 0 else "Buy",
                              "symbol": contract.name, "orderQty": abs(net), "orderType": "Market",
                              "customTag50": body.get("customTag50"),
                              "isAutomated": body.get("isAutomated", False)}
                spec = {"account_id": acct_id, "contract": contract, "qty": abs(net)}
                info = self._create_locked(ev, user_id, order_body, spec, transport,
                                           "liquidateposition", risk_check=False)
                self._try_fill_locked(ev, info)
                result = self._ok({"orderId": info.order_id})
        self._publish(ev)
        return result

    def set_price(self, contract_id: int, price: float) -> float:
        """Move a contract's price; Working orders it crosses fill at the new price."""
        contract = self.catalog.contracts[contract_id]
        price = round_to_tick(price, contract.product.tick_size)
        ev: List[tuple] = []
        with self._lock:
            old = self._prices[contract_id]
            self._prices[contract_id] = price
            self._trail_locked(ev, contract_id, price)  # strategies.py: trailing stops first
            for oid in sorted(self._working.get(contract_id, ())):
                if oid in self._working.get(contract_id, ()):
                    self._try_fill_locked(ev, self._info[oid])
        self._publish(ev)
        self.market.trade(contract_id, old, price, self.clock())  # before the quote listeners read it
        self._publish_quote(contract_id, price)
        return price

    # ---- internals (lock held) ----------------------------------------------------------------
    def _over_max(self, spec: dict) -> bool:
        max_qty = self._max_qty.get(spec["account_id"])
        return max_qty is not None and spec["qty"] > max_qty

    def _emit(self, ev: list, etype: str, event_type: str, entity: dict) -> None:
        ev.append((self._owner[entity["id"]] if etype != "orderVersion" else self._owner[entity["orderId"]],
                   etype, event_type, wire(entity) if etype in DATED else dict(entity)))

    def _add(self, etype: str, entity: dict, account_id: int) -> dict:
        self._entities[etype][entity["id"]] = entity
        self._owner[entity["id"]] = account_id
        return entity

    def _record_locked(self, body: dict, order_id: Optional[int], spec: dict, transport: str,
                       endpoint: str, err: Optional[dict] = None, status: str = "PendingNew") -> None:
        acct = self._accounts.get(spec.get("account_id")) if spec.get("account_id") else None
        contract = spec.get("contract")
        entry = {"orderId": order_id, "accountId": acct["id"] if acct else body.get("accountId"),
                 "accountSpec": acct["name"] if acct else body.get("accountSpec"),
                 "symbol": contract.name if contract else body.get("symbol"),
                 "contractId": contract.id if contract else None, "action": body.get("action"),
                 "orderQty": spec.get("qty"), "orderType": body.get("orderType"),
                 "price": _num(body.get("price")), "stopPrice": _num(body.get("stopPrice")),
                 "clOrdId": body.get("clOrdId"), "customTag50": body.get("customTag50"),
                 "isAutomated": bool(body.get("isAutomated", False)), "transport": transport,
                 "endpoint": endpoint, "time": self.clock(), "ordStatus": status}
        if err is not None:
            entry["ordStatus"] = "Rejected"
            entry["failureReason"] = err.get("failureReason", "Violation")
        self._book.append(entry)

    def _set_status(self, ev: list, info: OrderInfo, status: str) -> None:
        order = self._entities["order"][info.order_id]
        order["ordStatus"] = status
        order["timestamp"] = _iso()
        working = self._working.setdefault(info.contract_id, set())
        if status == "Working":
            working.add(info.order_id)
        else:
            working.discard(info.order_id)
        live = self._live.setdefault((info.account_id, info.contract_id), set())
        if status in LIVE:
            live.add(info.order_id)
        else:
            live.discard(info.order_id)
            self._info.retire(info.order_id)  # finished: folded out of the collector's walk (daybook.py)
        self._emit(ev, "order", "Updated", order)

    def _command_locked(self, ev: list, user_id: int, order_id: int, ctype: str, body: dict,
                        rejected: bool = False) -> int:
        cmd_id = next(self._ids)
        status = "RiskRejected" if rejected else "RiskPassed"
        cmd = {"id": cmd_id, "orderId": order_id, "timestamp": _iso(), "commandType": ctype,
               "commandStatus": status, "senderId": user_id, "userSessionId": user_id,
               "isAutomated": bool(body.get("isAutomated", False))}
        for key in ("clOrdId", "customTag50", "activationTime"):
            if body.get(key) is not None:
                cmd[key] = body[key]
        self._add("command", cmd, self._owner[order_id])
        self._emit(ev, "command", "Created", cmd)
        report = {"id": next(self._ids), "commandId": cmd_id, "timestamp": _iso(),
                  "commandStatus": status, "ordStatus": self._entities["order"][order_id]["ordStatus"]}
        if rejected:
            report.update(rejectReason="MaxOrderQtyLimitReached", text=MAX_QTY_TEXT, ordStatus="Rejected")
        self._add("commandReport", report, self._owner[order_id])
        self._emit(ev, "commandReport", "Created", report)
        return cmd_id

    def _version_locked(self, ev: list, cmd_id: int, info: OrderInfo, body: dict) -> None:
        version = {"id": cmd_id, "orderId": info.order_id, "orderQty": info.qty,
                   "orderType": info.order_type, "timeInForce": body.get("timeInForce") or "Day"}
        for key, value in (("price", info.price), ("stopPrice", info.stop_price),
                           ("pegDifference", _num(body.get("pegDifference"))), ("text", body.get("text"))):
            if value is not None:
                version[key] = value
        self._entities["orderVersion"][cmd_id] = version
        self._latest_version[info.order_id] = version  # (command ids grow: a modify's version is newer)
        self._emit(ev, "orderVersion", "Created", version)

    def _report_locked(self, ev: list, info: OrderInfo, cmd_id: int, exec_type: str, ord_status: str,
                       **extra: Any) -> dict:
        now = time.time()
        report = {"id": next(self._ids), "commandId": cmd_id,
                  "name": str(random.randrange(10**11, 10**12)), "accountId": info.account_id,
                  "contractId": info.contract_id, "timestamp": _iso(now), "tradeDate": _trade_day(now),
                  "orderId": info.order_id, "execType": exec_type, "ordStatus": ord_status,
                  "action": info.action, **extra}
        self._add("executionReport", report, info.account_id)
        self._emit(ev, "executionReport", "Created", report)
        return report

    def _create_locked(self, ev: list, user_id: int, body: dict, spec: dict, transport: str,
                       endpoint: str, parent: Optional[int] = None, risk_check: bool = True) -> OrderInfo:
        contract, acct_id = spec["contract"], spec["account_id"]
        order_id = next(self._ids)
        order = {"id": order_id, "accountId": acct_id, "contractId": contract.id,
                 "timestamp": _iso(), "action": body["action"], "ordStatus": "PendingNew",
                 "executionProviderId": 1, "admin": False, "archived": False, "external": False}
        if parent is not None:
            order["parentId"] = parent
        self._add("order", order, acct_id)
        self._emit(ev, "order", "Created", order)
        rejected = risk_check and self._over_max(spec)
        cmd_id = self._command_locked(ev, user_id, order_id, "New", body, rejected)
        info = OrderInfo(order_id, cmd_id, acct_id, contract.id, body["action"], spec["qty"],
                         body["orderType"], _num(body.get("price")), _num(body.get("stopPrice")))
        self._info[order_id] = info
        self._live.setdefault((acct_id, contract.id), set()).add(order_id)  # PendingNew
        self._version_locked(ev, cmd_id, info, body)
        self._record_locked(body, order_id, spec, transport, endpoint)
        if rejected:
            self._report_locked(ev, info, cmd_id, "Rejected", "Rejected",
                                rejectReason="MaxOrderQtyLimitReached", text=MAX_QTY_TEXT)
            self._set_status(ev, info, "Rejected")
            return info
        status = "Suspended" if parent is not None else "Working"
        self._report_locked(ev, info, cmd_id, "New", status)
        self._set_status(ev, info, status)
        return info

    def _link_oco_locked(self, ev: list, first: OrderInfo, second: OrderInfo) -> None:
        first.oco_id, second.oco_id = second.order_id, first.order_id
        for info in (first, second):
            self._entities["order"][info.order_id]["ocoId"] = info.oco_id

    def _crosses(self, info: OrderInfo, market: float) -> bool:
        buy, otype = info.action == "Buy", info.order_type
        if otype in ("Market", "QTS"):
            return True
        if otype in NEEDS_STOP and not info.triggered:
            if not (market >= info.stop_price if buy else market <= info.stop_price):
                return False
            info.triggered = True
            if otype not in NEEDS_PRICE:
                return True
        return market <= info.price if buy else market >= info.price

    def _try_fill_locked(self, ev: list, info: OrderInfo) -> None:
        if self._entities["order"][info.order_id]["ordStatus"] != "Working":
            return
        market = self._prices[info.contract_id]
        if self._crosses(info, market):
            self._fill_locked(ev, info, market)

    def _fill_locked(self, ev: list, info: OrderInfo, price: float) -> None:
        now = time.time()
        self._report_locked(ev, info, info.command_id, "Trade", "Filled", cumQty=info.qty, avgPx=price,
                            lastQty=info.qty, lastPx=price)
        fill = self._add("fill", {"id": next(self._ids), "orderId": info.order_id,
                                  "contractId": info.contract_id, "timestamp": _iso(now),
                                  "tradeDate": _trade_day(now), "action": info.action, "qty": info.qty,
                                  "price": price, "active": True, "finallyPaired": 0, "external": False},
                         info.account_id)
        self._emit(ev, "fill", "Created", fill)
        self._set_status(ev, info, "Filled")
        self._update_position_locked(ev, info, price)
        for child_id in info.children:
            child = self._info[child_id]
            if self._entities["order"][child_id]["ordStatus"] == "Suspended":
                self._report_locked(ev, child, child.command_id, "New", "Working")
                self._set_status(ev, child, "Working")
        for child_id in info.children:
            self._try_fill_locked(ev, self._info[child_id])
        if info.oco_id is not None and self._entities["order"][info.oco_id]["ordStatus"] in LIVE:
            faults = getattr(self, "faults", None)  # (set by the Simulator)
            delay_ms = float(getattr(faults, "oco_cancel_delay_ms", 0.0) or 0.0)
            if delay_ms > 0:  # a broker that reports the position before the OCO sibling's cancel
                threading.Timer(delay_ms / 1000.0, self._cancel_sibling_later, args=(info.oco_id,)).start()
            else:
                self._cancel_locked(ev, self._info[info.oco_id], self._info[info.oco_id].command_id)
        self._after_fill_locked(ev, info, price)  # strategies.py

    def _update_position_locked(self, ev: list, info: OrderInfo, price: float) -> None:
        key = (info.account_id, info.contract_id)
        pid = self._positions.get(key)
        event_type = "Updated"
        if pid is None:
            pid = next(self._ids)
            self._positions[key] = pid
            self._add("position", {"id": pid, "accountId": info.account_id, "contractId": info.contract_id,
                                   "timestamp": _iso(), "tradeDate": _trade_date(time.time()),
                                   "netPos": 0, "netPrice": None, "bought": 0, "boughtValue": 0.0,
                                   "sold": 0, "soldValue": 0.0, "prevPos": 0, "prevPrice": None},
                      info.account_id)
            event_type = "Created"
        pos = self._entities["position"][pid]
        self._realize_locked(ev, info.account_id, info.contract_id, pos["netPos"], pos["netPrice"],
                             info.action, info.qty, price)  # pnl.py: cash balance, before the position moves
        side = "bought" if info.action == "Buy" else "sold"
        pos[side] += info.qty
        pos[side + "Value"] += info.qty * price
        old = pos["netPos"]
        new = old + (info.qty if info.action == "Buy" else -info.qty)
        if new == 0:
            pos["netPrice"] = None
        elif old == 0 or (old > 0) != (new > 0):
            pos["netPrice"] = price
        elif abs(new) > abs(old):
            pos["netPrice"] = (abs(old) * pos["netPrice"] + info.qty * price) / abs(new)
        pos["netPos"], pos["timestamp"] = new, _iso()
        self._emit(ev, "position", event_type, pos)

    def _cancel_sibling_later(self, order_id: int) -> None:
        ev: List[tuple] = []
        with self._lock:
            if self._entities["order"][order_id]["ordStatus"] in LIVE:
                self._cancel_locked(ev, self._info[order_id], self._info[order_id].command_id)
        self._publish(ev)

    def _cancel_locked(self, ev: list, info: OrderInfo, cmd_id: int) -> None:
        self._report_locked(ev, info, cmd_id, "Canceled", "Canceled")
        self._set_status(ev, info, "Canceled")
        for child_id in info.children:
            if self._entities["order"][child_id]["ordStatus"] in LIVE:
                self._cancel_locked(ev, self._info[child_id], self._info[child_id].command_id)
        self._after_cancel_locked(ev, info)  # strategies.py

