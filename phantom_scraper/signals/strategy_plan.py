"""An entry with :class:`Exits` -> one ``orderStrategy/startorderstrategy`` step (pure, used by plan.py).

Tradovate's multi-bracket strategy (docs/TRADOVATE.md, "Order strategies") takes each bracket's ``profitTarget`` and
``stopLoss`` as signed offsets in points from the entry fill, multiples of the tick size.  Here:

* Distances: ticks x tick size; points; percent of the reference price; a price minus the
  reference price; dollars / (point value x the account's quantity).  Each is rounded to the
  nearest tick (half a tick away from zero) and must be at least one tick -- except dollars: a
  dollar distance below one tick is raised to one tick, with a note (PickMyTrade's template sends
  ``"dollar_tp": "2"``, under a tick on NQ; one tick is the nearest distance the exchange can take).
* Sizes (the legs always sum to the account's quantity ``Q``):
  - no sizes: ``Q // n`` per target, the leftover one each to the earliest targets -- a 1-lot
    with three targets gets only the FIRST target; targets left with 0 contracts are dropped;
  - ``quantity``: contracts per signal unit x the account multiplier (a fractional multiplier:
    rounded down per target, the rest rides with the runner);
  - ``percent``: ``Q x percent / 100`` rounded down, then the contracts the percents add up to
    (rounded half up) handed one each to the earliest targets.
  Contracts the targets do not cover ride as a "runner" bracket holding only the stop; without a
  stop the last target takes them.  Targets asking for more than ``Q`` are ``invalid_quantity``.
* Stop: a plain stop -> ``stopLoss``; a trailing stop trailing at its own distance from the
  start -> ``trailingStop: true``; otherwise ``autoTrail {stopLoss: trail, trigger, freq}``.
* Breakeven is not sent (Tradovate refuses it inside a strategy); it goes to ``step.meta`` for
  this server's breakeven manager: ``{"trigger": points, "offset": points}``.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Dict, List, Optional

from phantom_scraper.signals.model import AccountTarget, Bracket, Contract, Exits, OrderStep, PlanError, StopPlan, Target


def ticks_round(points: float, tick: float) -> float:
    step = Decimal(str(tick))
    n = (Decimal(str(points)) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(n * step)


def distance_points(b: Bracket, ref: Optional[float], away: int, tick: float, point_value: Optional[float],
                    qty: int, what: str, notes: Optional[List[str]] = None) -> float:
    """The positive distance in points (a multiple of ``tick``) that ``b`` means.  A dollar
    distance below one tick becomes one tick, noted in ``notes``."""
    if b.kind == "ticks":
        raw = b.value * tick
    elif b.kind == "points":
        raw = b.value
    elif b.kind in ("percent", "price"):
        if ref is None:
            raise PlanError("missing_reference_price", f"{what} as a {b.kind} needs a reference price (send \"price\")")
        raw = ref * b.value / 100.0 if b.kind == "percent" else (b.value - ref) * away
    elif b.kind == "dollars":
        if not point_value:
            raise PlanError("invalid_bracket", f"{what} in dollars needs the contract's point value (unknown)")
        raw = b.value / (point_value * qty)
    else:
        raise PlanError("invalid_bracket", f"{what}: unknown distance kind {b.kind!r}")
    points = ticks_round(raw, tick)
    if points < tick / 2 and b.kind == "dollars" and raw > 0:
        points = ticks_round(tick, tick)
        if notes is not None:
            notes.append(f"{what}: ${b.value:g} over {qty} contract(s) is less than one tick "
                         f"(${tick * point_value * qty:g}); set to one tick ({points:g} points)")
    if points < tick / 2:
        if b.kind == "price":
            raise PlanError("invalid_bracket", f"{what} {b.value} is on the wrong side of the entry price {ref}")
        raise PlanError("invalid_bracket", f"{what} is less than one tick")
    return points


def allocate(total: int, targets: List[Target], multiplier) -> List[int]:
    n = len(targets)
    if targets[0].quantity is not None:
        sizes = [int(Decimal(t.quantity) * Decimal(str(multiplier))) for t in targets]  # (fractions: down)
        if sum(sizes) > total:
            raise PlanError("invalid_quantity", f"targets ask for {sum(sizes)} contracts but the entry is {total}")
        return sizes
    if targets[0].percent is not None:
        sizes = [int(Decimal(total) * Decimal(str(t.percent)) // 100) for t in targets]
        covered = Decimal(total) * Decimal(str(sum(t.percent for t in targets))) / 100
        want = min(total, int(covered.quantize(Decimal(1), rounding=ROUND_HALF_UP)))
        i = 0
        while sum(sizes) < want:
            sizes[i % n] += 1
            i += 1
        return sizes
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def strategy_step(exits: Exits, contract: Contract, account: AccountTarget, direction: int, qty: int,
                  entry: Dict[str, Any], ref: Optional[float], signal_multiplier,
                  notes: Optional[List[str]] = None) -> OrderStep:
    """``entry``: the placeorder body the entry would have had (prices already rounded)."""
    tick, pv = contract.tick_size, contract.point_value
    targets = list(exits.targets)
    sizes = allocate(qty, targets, signal_multiplier) if targets else []
    brackets: List[Dict[str, Any]] = []
    dropped = []
    for i, (target, size) in enumerate(zip(targets, sizes), start=1):
        if size == 0:
            dropped.append(i)
            continue
        leg: Dict[str, Any] = {"qty": size}
        tp = distance_points(target.distance, ref, direction, tick, pv, qty, f"take profit {i}", notes)
        leg["profitTarget"] = direction * tp
        stop = target.stop or exits.stop
        if stop is not None:
            leg.update(_stop_fields(stop, ref, direction, tick, pv, qty, notes))
        brackets.append(leg)
    rest = qty - sum(sizes)
    if rest:
        if exits.stop is not None:
            brackets.append({"qty": rest, **_stop_fields(exits.stop, ref, direction, tick, pv, qty, notes)})
        elif brackets:
            brackets[-1]["qty"] += rest
        else:
            raise PlanError("invalid_bracket", "no target and no stop to protect the position")
    if not brackets:
        raise PlanError("invalid_bracket", "no exit leg left after sizing")
    version: Dict[str, Any] = {"orderQty": qty, "orderType": entry["orderType"],
                               "timeInForce": entry.get("timeInForce", "Day")}
    for key in ("price", "stopPrice"):
        if key in entry:
            version[key] = entry[key]
    body = {"accountId": entry["accountId"], "accountSpec": entry["accountSpec"], "symbol": entry["symbol"],
            "action": entry["action"], "orderStrategyTypeId": 2,
            "params": json.dumps({"entryVersion": version, "brackets": brackets}, separators=(",", ":")),
            "isAutomated": True}
    meta: Dict[str, Any] = {"direction": direction, "brackets": brackets, "tick": tick}
    if exits.breakeven is not None:
        be = exits.breakeven
        trigger = distance_points(be.trigger, ref, direction, tick, pv, qty, "breakeven trigger", notes)
        offset = ticks_round(be.offset.value * (tick if be.offset.kind == "ticks" else 1.0), tick)
        if offset >= trigger:
            raise PlanError("invalid_bracket", "breakeven offset must be smaller than its trigger")
        meta["breakeven"] = {"trigger": trigger, "offset": offset}
    reason = f"{entry['action'].lower()} {qty} {entry['orderType']} strategy, {len(brackets)} bracket(s)"
    if dropped:
        reason += f"; target(s) {', '.join(map(str, dropped))} get no contracts"
    return OrderStep("startorderstrategy", body, reason, meta)


def _stop_fields(stop: StopPlan, ref: Optional[float], direction: int, tick: float, pv: Optional[float],
                 qty: int, notes: Optional[List[str]] = None) -> Dict[str, Any]:
    dist = distance_points(stop.distance, ref, -direction, tick, pv, qty, "stop loss", notes)
    out: Dict[str, Any] = {"stopLoss": -direction * dist}
    if not stop.trailing:
        out["trailingStop"] = False
        return out
    trail = distance_points(stop.trail, ref, -direction, tick, pv, qty, "trail distance", notes) if stop.trail else dist
    trigger = distance_points(stop.trigger, ref, direction, tick, pv, qty, "trail trigger") \
        if stop.trigger is not None and stop.trigger.value > 0 else 0.0
    freq = distance_points(stop.step, ref, direction, tick, pv, qty, "trail step") if stop.step else tick
    if trail == dist and trigger == 0.0 and abs(freq - tick) < 1e-9:
        out["trailingStop"] = True
    else:
        out["trailingStop"] = False
        out["autoTrail"] = {"stopLoss": trail, "trigger": trigger, "freq": freq}
    return out
