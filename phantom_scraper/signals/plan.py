"""``Signal`` + ``Contract`` + one account (+ its position) -> the Tradovate requests to send.

``plan_orders`` is pure: it returns a non-empty list of ``OrderStep`` or raises ``PlanError``.
``PlanError("nothing_to_do")`` means the account is already where the signal wants it (flat on
a close, no long on a close_long, ...): report it as skipped, not failed.

Rules
-----
* Size: ``quantity`` (1 when an entry sends none) x ``account.multiplier`` (``scaled``: a
  fractional multiplier rounds to the nearest contract, half up, at least 1).  An order above
  ``account.max_qty`` is cut to it (``max_qty_mode`` ``clip``, the default, with a note in the
  answer) or refused (``reject``: checked before any step is returned, so a reversal is rejected
  whole, never half-done).  ``liquidateposition`` is not size-checked (it only closes what is held).
* Signal mode ``side`` (``signal.mode``; TradersPost's and PickMyTrade's meaning, see ``_side``):
  buy = be long.  Short -> ``[liquidateposition, wait_flat, entry]`` (the quantity is the entry
  size); flat -> the entry, after ``cancel_working`` when orders are working; long -> nothing
  (``nothing_to_do``; the position's exit legs are left working), or the entry when
  ``signal.add``.  sell mirrors it.  ``flattenFirst``/``flattenOpposite`` work as in ``orders``.
* buy/sell: one ``placeorder``, or one ``placeoso`` when a take-profit / stop-loss is set
  (``bracket1`` = take profit, a Limit at ``price``; ``bracket2`` = stop loss, a Stop at
  ``stopPrice``; a lone stop loss goes in ``bracket1``).  With a same-side sentiment while the
  account holds the other side: ``[liquidateposition, wait_flat, entry]``, the entry sized by
  "subtract exit quantity" (TradingView's ``{{strategy.order.contracts}}`` on a reversal is
  close + open): signal quantity minus the position closed, in signal units (position /
  multiplier), then x multiplier; nothing left to open -> just the flatten.  An account with
  ``subtract_exit_qty=False`` enters with the full signal quantity.
* Reductions (target, close with a quantity, sentiment-aware partial exits) are
  ``[trim_legs, placeorder Market]``: the working exit legs are cut to the position that will
  remain *before* the reducing order is sent, so a bracket leg can never flip the position.
* Bracket distances are measured from the entry's reference price (limit price; stop price of a
  Stop; the signal ``price`` of a Market order).  All prices -- entry and brackets -- are rounded
  to the *nearest* tick (half a tick rounds away from zero), so any price moves by at most half a
  tick.  A take profit or stop loss on the wrong side of the reference, or at it after rounding,
  is ``invalid_bracket``.
* close: ``liquidateposition`` (also when flat but orders are working, to cancel them).  With a
  quantity smaller than the position: a Market order reducing it by that much.
  close_long / close_short: the same, only when the account holds that side.
* reverse: ``[liquidateposition, wait_flat, entry]``; the entry is the other side, sized by the
  quantity (x multiplier) or, without one, the size of the position being reversed.  The executor
  must not send the entry before the position is flat.
* cancel: ``[cancel_working]`` always; the executor lists and cancels the working orders of the
  contract (a no-op when there are none).
* target: bring ``net_pos`` to ``target_position x multiplier``: add or enter with the signal's
  order type (brackets attached); reduce with a Market order; 0 -> ``liquidateposition``;
  other side -> ``[liquidateposition, wait_flat, entry of the full target]``.
"""
from __future__ import annotations

import logging
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
import dataclasses
from typing import Any, Dict, List, Optional, Union

from phantom_scraper.signals.model import (MAX_QTY_MODES, SIGNAL_MODES, AccountTarget, Bracket, Contract, OrderStep,
                                           PlanError, Signal)
from phantom_scraper.signals.strategy_plan import distance_points, strategy_step

log = logging.getLogger(__name__)


def with_mode(signal: Signal, mode: str) -> Signal:
    """``signal`` as a recorder in ``mode`` (one of ``SIGNAL_MODES``) means it."""
    if mode not in SIGNAL_MODES:
        raise ValueError(f"signal mode must be one of {', '.join(SIGNAL_MODES)}")
    return signal if signal.mode == mode else dataclasses.replace(signal, mode=mode)


def needs_position(signal: Signal) -> bool:
    """Whether the executor must read the account's net position before ``plan_orders``.

    Plain buy/sell (no sentiment, ``orders`` mode) and cancel do not: that keeps the hot path at one frame."""
    if signal.action in ("buy", "sell"):
        return (signal.mode == "side" or signal.sentiment is not None or signal.flatten_first
                or signal.flatten_opposite)
    return signal.action in ("close", "close_long", "close_short", "reverse", "target")


def reads_working_orders(signal: Signal) -> bool:
    """Whether the executor must also tell ``plan_orders`` if orders are working on a flat account:
    a close or a target of 0 cancels leftover legs; a ``side`` entry cancels the ticker's orders first."""
    return (signal.action == "close" or (signal.action == "target" and signal.target_position == 0)
            or (signal.mode == "side" and signal.action in ("buy", "sell")))


def scaled(units: int, multiplier: Union[int, float]) -> int:
    """``units`` signal units in contracts for an account: x multiplier, rounded to the nearest
    whole contract (half up), at least 1 -- 0 stays 0; the sign is kept."""
    if units == 0:
        return 0
    qty = (Decimal(abs(units)) * Decimal(str(multiplier))).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return (1 if units > 0 else -1) * max(1, int(qty))


def in_units(contracts: int, multiplier: Union[int, float]) -> int:
    """A position of ``contracts`` in signal units (rounded up): the inverse of ``scaled``."""
    units = Decimal(abs(contracts)) / Decimal(str(multiplier))
    return int(units.to_integral_value(rounding=ROUND_CEILING))


def round_to_tick(price: float, tick: float) -> float:
    step = Decimal(str(tick))
    ticks = (Decimal(str(price)) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(ticks * step)


def plan_orders(signal: Signal, contract: Contract, account: AccountTarget, net_pos: int,
                has_working_orders: bool = False, open_strategies: bool = False) -> List[OrderStep]:
    """``open_strategies``: this server has order strategies running for the account and contract
    (journal); every liquidation is then preceded by an ``interrupt_strategies`` step.  (Their exit
    legs follow reductions like any bracket's: ``trim_legs``, phantom_scraper/execution/exit_legs.py.)"""
    _check_account(account)
    planner = _Planner(signal, contract, account, int(net_pos), has_working_orders)
    steps = planner.plan()
    if open_strategies:
        steps = _interrupt_before_liquidating(steps, contract, account)
    if planner.notes:  # clipped sizes, brackets rounded up to a tick: the account's "warnings" in the answer
        notes = list(dict.fromkeys(planner.notes))
        for step in steps:
            step.meta["notes"] = notes
    return steps


def _interrupt_before_liquidating(steps: List[OrderStep], contract: Contract,
                                  account: AccountTarget) -> List[OrderStep]:
    out: List[OrderStep] = []
    for step in steps:
        if step.kind == "liquidateposition":
            out.append(OrderStep("interrupt_strategies", {"accountId": account.id, "contractId": contract.id,
                                                          "symbol": contract.name},
                                 "interrupt order strategies before liquidating"))
        out.append(step)
    return out


def _check_account(account: AccountTarget) -> None:
    if not account.enabled:
        raise PlanError("account_disabled", f"account {account.name} is disabled")
    m = account.multiplier
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m < 1e6:
        raise PlanError("invalid_account", f"account {account.name}: multiplier must be a number > 0")
    mq = account.max_qty
    if mq is not None and (isinstance(mq, bool) or not isinstance(mq, int) or mq < 1):
        raise PlanError("invalid_account", f"account {account.name}: max_qty must be a whole number >= 1")
    if account.max_qty_mode not in MAX_QTY_MODES:
        raise PlanError("invalid_account", f"account {account.name}: max_qty_mode must be clip or reject")


class _Planner:
    def __init__(self, signal: Signal, contract: Contract, account: AccountTarget, net_pos: int,
                 has_working_orders: bool):
        self.s = signal
        self.c = contract
        self.a = account
        self.pos = net_pos
        self.working = has_working_orders
        self.notes: List[str] = []

    def plan(self) -> List[OrderStep]:
        action = self.s.action
        if action == "cancel":
            return [self._marker("cancel_working", "cancel working orders")]
        if action in ("close", "close_long", "close_short"):
            return self._close(action)
        if action in ("buy", "sell"):
            return self._buy_sell(1 if action == "buy" else -1)
        if action == "reverse":
            return self._reverse()
        if action == "target":
            return self._target()
        raise PlanError("unsupported_action", f"unknown action {action!r}")

    # -- actions ---------------------------------------------------------------------------

    def _close(self, action: str) -> List[OrderStep]:
        pos = self.pos
        side = {"close": 0, "close_long": 1, "close_short": -1}[action]
        if pos == 0 or (side and pos * side < 0):
            if action == "close" and pos == 0 and self.working:
                return [self._liquidate("flat; cancel working orders")]
            held = "flat" if pos == 0 else f"{'long' if pos > 0 else 'short'} {abs(pos)}"
            raise PlanError("nothing_to_do", f"{action}: account {self.a.name} is {held} in {self.c.name}")
        qty = None
        if self.s.close_percent is not None:
            qty = max(1, int((Decimal(abs(pos)) * Decimal(str(self.s.close_percent)) / 100)
                             .quantize(Decimal(1), rounding=ROUND_HALF_UP)))
        elif self.s.quantity is not None:
            qty = scaled(self.s.quantity, self.a.multiplier)
        if qty is not None and qty < abs(pos):
            return self._reduce(-1 if pos > 0 else 1, qty, f"reduce position {pos} by {qty}")
        return [self._liquidate(f"close position {pos}")]

    def _buy_sell(self, direction: int) -> List[OrderStep]:
        units = self.s.quantity if self.s.quantity is not None else 1
        m = self.a.multiplier
        if (self.s.flatten_first and self.pos != 0) or (self.s.flatten_opposite and self.pos * direction < 0):
            return self._reversal(self._entry(direction, scaled(units, m)))
        if self.s.mode == "side":
            return self._side(direction, scaled(units, m))
        if self.s.sentiment is not None and self.pos * direction < 0:
            closed_units = in_units(self.pos, m)  # position in signal units (ceil)
            if self.a.subtract_exit_qty and self.s.quantity is not None:
                units = self.s.quantity - closed_units
            if units <= 0:
                return [self._liquidate(f"reverse to flat: close {self.pos}")]
            return self._reversal(self._entry(direction, scaled(units, m)))
        return [self._entry(direction, scaled(units, m))]

    def _side(self, direction: int, qty: int) -> List[OrderStep]:
        """``side`` mode: end on the signal's side.  Opposite: flatten (which cancels the
        contract's orders), wait until flat, enter ``qty``.  Flat: cancel the working orders, then
        enter.  Same side: nothing (its exit legs stay), or add ``qty`` when ``signal.add``."""
        word = "long" if direction > 0 else "short"
        if self.pos * direction < 0:
            return self._reversal(self._entry(direction, qty))
        if self.pos * direction > 0:
            if self.s.add:
                return [self._entry(direction, qty)]
            raise PlanError("nothing_to_do", f"account {self.a.name} is already {word} {abs(self.pos)} "
                                             f"{self.c.name} (side mode; send \"add\" to add)")
        entry = self._entry(direction, qty)
        if self.working:
            return [self._marker("cancel_working", f"cancel the working orders before going {word}"), entry]
        return [entry]

    def _reverse(self) -> List[OrderStep]:
        pos = self.pos
        if self.s.sentiment in ("long", "short"):
            direction = 1 if self.s.sentiment == "long" else -1
            if pos * direction > 0:
                raise PlanError("nothing_to_do", f"reverse: account {self.a.name} is already {self.s.sentiment}")
        elif pos == 0:
            raise PlanError("nothing_to_do", f"reverse: account {self.a.name} is flat in {self.c.name}; nothing to reverse")
        else:
            direction = -1 if pos > 0 else 1
        if self.s.quantity is not None:
            qty = scaled(self.s.quantity, self.a.multiplier)
        else:
            qty = abs(pos) if pos else scaled(1, self.a.multiplier)
        entry = self._entry(direction, qty)
        return self._reversal(entry) if pos else [entry]

    def _target(self) -> List[OrderStep]:
        if self.s.target_position is None:
            raise PlanError("unsupported_action", "target signal without a target position")
        want = scaled(self.s.target_position, self.a.multiplier)
        pos = self.pos
        if want == pos:
            if want == 0 and self.working:
                return [self._liquidate("target flat; cancel working orders")]
            raise PlanError("nothing_to_do", f"account {self.a.name} already holds {pos} {self.c.name}")
        if want == 0:
            return [self._liquidate(f"target 0 from {pos}")]
        if pos * want < 0:
            return self._reversal(self._entry(1 if want > 0 else -1, abs(want)))
        diff = want - pos
        direction = 1 if diff > 0 else -1
        if abs(want) > abs(pos):
            return [self._entry(direction, abs(diff))]
        return self._reduce(direction, abs(diff), f"reduce position {pos} to {want}")

    # -- steps -----------------------------------------------------------------------------

    def _reversal(self, entry: OrderStep) -> List[OrderStep]:
        return [self._liquidate(f"reverse: flatten {self.pos} first"),
                self._marker("wait_flat", "wait until flat before the entry"), entry]

    def _reduce(self, direction: int, qty: int, reason: str) -> List[OrderStep]:
        """Cut the exit legs to what will remain, then reduce with a Market order."""
        qty = self._clip(qty)
        market = self._market(direction, qty, reason)
        trim = self._marker("trim_legs", f"exit legs to cover {abs(self.pos) - qty}")
        trim.body["cover"] = abs(self.pos) - qty
        return [trim, market]

    def _clip(self, qty: int) -> int:
        """``max_qty_mode`` clip: an order above ``max_qty`` is cut to it (noted); reject: ``_check_qty`` refuses."""
        mq = self.a.max_qty
        if mq is not None and qty > mq and self.a.max_qty_mode == "clip":
            self.notes.append(f"max_qty: order of {qty} {self.c.name} clipped to account {self.a.name}'s "
                              f"maximum of {mq}")
            return mq
        return qty

    def _check_qty(self, qty: int) -> None:
        if qty < 1:
            raise PlanError("invalid_quantity", f"order quantity {qty} is not positive")
        if self.a.max_qty is not None and qty > self.a.max_qty:
            raise PlanError("exceeds_max_qty",
                            f"order of {qty} {self.c.name} exceeds account {self.a.name}'s maximum of {self.a.max_qty}")

    def _base(self, direction: int, qty: int, order_type: str) -> Dict[str, Any]:
        self._check_qty(qty)
        return {"accountSpec": self.a.name, "accountId": self.a.id,
                "action": "Buy" if direction > 0 else "Sell", "symbol": self.c.name,
                "orderQty": qty, "orderType": order_type, "isAutomated": True}

    def _market(self, direction: int, qty: int, reason: str) -> OrderStep:
        return OrderStep("placeorder", self._base(direction, qty, "Market"), reason)

    def _entry(self, direction: int, qty: int) -> OrderStep:
        s, tick = self.s, self.c.tick_size
        qty = self._clip(qty)
        body = self._base(direction, qty, s.order_type)
        limit = round_to_tick(s.limit_price, tick) if s.limit_price is not None else None
        stop = round_to_tick(s.stop_price, tick) if s.stop_price is not None else None
        if s.order_type in ("Limit", "StopLimit"):
            if limit is None:
                raise PlanError("missing_reference_price", f"a {s.order_type} order needs a limit price")
            body["price"] = limit
        if s.order_type in ("Stop", "StopLimit"):
            if stop is None:
                raise PlanError("missing_reference_price", f"a {s.order_type} order needs a stop price")
            body["stopPrice"] = stop
        if s.time_in_force:
            body["timeInForce"] = s.time_in_force
        reason = f"{body['action'].lower()} {qty} {s.order_type}"
        ref = {"Limit": limit, "StopLimit": limit, "Stop": stop}.get(
            s.order_type, round_to_tick(s.price, tick) if s.price is not None else None)
        if s.exits is not None:
            return strategy_step(s.exits, self.c, self.a, direction, qty, body, ref, self.a.multiplier, self.notes)
        if s.take_profit is None and s.stop_loss is None:
            return OrderStep("placeorder", body, reason)
        tp = self._bracket_price(s.take_profit, ref, direction, "take profit", qty)
        sl = self._bracket_price(s.stop_loss, ref, -direction, "stop loss", qty)
        if tp is not None and sl is not None and (tp - sl) * direction <= 0:
            raise PlanError("invalid_bracket", f"take profit {tp} and stop loss {sl} are on the wrong sides")
        exit_action = "Sell" if direction > 0 else "Buy"
        legs = []
        if tp is not None:
            legs.append({"action": exit_action, "orderType": "Limit", "price": tp})
        if sl is not None and s.stop_loss_limit is not None:  # a stop-limit stop loss
            limit = round_to_tick(s.stop_loss_limit, tick)
            if (sl - limit) * direction < 0:
                raise PlanError("invalid_bracket", f"stop-limit stop loss: limit {limit} is on the wrong side "
                                                   f"of its stop {sl}")
            legs.append({"action": exit_action, "orderType": "StopLimit", "stopPrice": sl, "price": limit})
        elif sl is not None:
            legs.append({"action": exit_action, "orderType": "Stop", "stopPrice": sl})
        body["bracket1"] = legs[0]
        if len(legs) > 1:
            body["bracket2"] = legs[1]
        return OrderStep("placeoso", body, reason + " with bracket")

    def _bracket_price(self, bracket: Optional[Bracket], ref: Optional[float], away: int,
                       what: str, qty: int = 1) -> Optional[float]:
        """``away`` is +1 when the bracket must sit above the reference, -1 below."""
        if bracket is None:
            return None
        tick = self.c.tick_size
        if bracket.kind == "price":
            price = round_to_tick(bracket.value, tick)
        else:
            if ref is None:
                raise PlanError("missing_reference_price",
                                f"{what} in {bracket.kind} needs a reference price (send \"price\")")
            distance = distance_points(bracket, ref, away, tick, self.c.point_value, qty, what, self.notes)
            price = round_to_tick(ref + away * distance, tick)
        if ref is not None and (price - ref) * away <= 0:
            raise PlanError("invalid_bracket",
                            f"{what} {price} is on the wrong side of the entry price {ref}")
        return price

    def _liquidate(self, reason: str) -> OrderStep:
        return OrderStep("liquidateposition", {"accountId": self.a.id, "contractId": self.c.id,
                                               "admin": False, "isAutomated": True}, reason)

    def _marker(self, kind: str, reason: str) -> OrderStep:
        return OrderStep(kind, {"accountId": self.a.id, "contractId": self.c.id,
                                "symbol": self.c.name}, reason)
