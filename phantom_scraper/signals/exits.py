"""Take-profits, stop-losses, trailing stops and breakeven of an entry (used by ``parse.py``).

``read_exits(f)`` returns ``(take_profit, stop_loss, stop_limit, exits)``: a plain entry keeps the one-target,
one-stop form (``take_profit``/``stop_loss`` as :class:`Bracket`, sent as an OSO bracket); anything
more -- several targets, sized targets, a trailing stop, breakeven -- comes back as :class:`Exits`
and becomes a Tradovate order strategy.  What Tradovate cannot express is refused with
``unsupported`` naming the field; nothing is silently dropped.

Shapes (field names as everywhere: case, ``_`` and ``-`` ignored):

* ``takeProfit``: a number (price), an object, or a list of objects (targets).  Object keys:
  ``limitPrice``/``price`` | ``ticks`` | ``points``/``amount`` | ``percent`` (of the entry price) |
  ``dollars`` (profit of the account's whole position, converted with the point value);
  size: ``quantity`` (contracts per signal unit) or ``quantityPercent`` (of the position).
* ``stopLoss``: a number (price) or an object: ``stopPrice``/``price`` | ``ticks`` |
  ``points``/``amount`` | ``percent``; ``type`` ``stop`` (default) or ``trailing``/``trailing_stop``
  with ``trailAmount`` (points) | ``trailTicks`` | ``trailPercent`` (default: the stop distance),
  ``trigger`` (ticks in profit before trailing starts; ``triggerPoints``), ``step`` (ticks;
  ``stepPoints``); ``breakeven`` as below.
* ``breakeven`` (top level or inside ``stopLoss``): ``{"trigger": ticks, "offset": ticks}``
  (``triggerPoints``/``offsetPoints`` in points); offset defaults to 0.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

from phantom_scraper.signals.fields import Fields, as_number, as_positive, as_quantity, as_whole, as_whole_positive, norm
from phantom_scraper.signals.model import Bracket, Breakeven, Exits, SignalError, StopPlan, Target

_PRICE_KEYS = ("limitprice", "stopprice", "price")
_TRAILING_TYPES = ("trailing", "trailingstop", "trail", "trailstop")
_PLAIN_STOP_TYPES = ("stop", "stopmarket", "market")
_STOP_LIMIT_TYPES = ("stoplimit", "stplmt")
_PLAIN_TP_TYPES = ("limit", "market")


def read_exits(f: Fields) -> Tuple[Optional[Bracket], Optional[Bracket], Optional[float], Optional[Exits]]:
    targets = _targets(f)
    stop = _stop(f)
    breakeven = _breakeven_top(f, stop)
    plan = stop[1] if stop else None
    if stop is not None and stop[2] is not None:
        if breakeven is not None:
            raise SignalError("invalid_field", "breakeven", '"breakeven" is set twice (top level and in "stopLoss")')
        breakeven = stop[2]
    if breakeven is not None and plan is None and not any(t.stop is not None for t in targets):
        raise SignalError("missing_field", "stopLoss", '"breakeven" needs a "stopLoss" to move')
    strategy = (len(targets) > 1
                or any(t.quantity is not None or t.percent is not None or t.stop is not None for t in targets)
                or (plan is not None and plan.trailing) or breakeven is not None)
    limited = [p for p in [plan] + [t.stop for t in targets] if p is not None and p.limit is not None]
    if not strategy:
        return (targets[0].distance if targets else None, plan.distance if plan else None,
                plan.limit if plan else None, None)
    if limited:
        raise SignalError("unsupported", "stopLoss.type",
                          '"stopLoss.type": a stop-limit stop loss cannot be part of an order strategy (several '
                          "targets, trailing, breakeven): Tradovate's strategy stops are stop orders")
    _check_sizes(targets)
    return None, None, None, Exits(tuple(targets), plan, breakeven)


# ---- take profit ------------------------------------------------------------------------------
def _targets(f: Fields) -> List[Target]:
    found: List[Tuple[str, List[Target]]] = []
    got = f.get("take_profit")
    if got is not None:
        key, value = got
        if isinstance(value, list):
            if not value:
                raise SignalError("empty_field", key, f'"{key}" is an empty list')
            if len(value) > 10:
                raise SignalError("invalid_field", key, f'"{key}" has more than 10 targets')
            found.append((key, [_target(f"{key}[{i}]", v, f) for i, v in enumerate(value)]))
        else:
            found.append((key, [_target(key, value, f)]))
    for name, kind in (("tp_ticks", "ticks"), ("tp_points", "points"), ("tp_price", "price")):
        key, value = f.read(name, as_whole_positive if kind == "ticks" else as_positive)
        if key is not None:
            found.append((key, [Target(Bracket(kind, float(value)))]))
    if len(found) > 1:
        raise SignalError("invalid_field", found[1][0], f'"{found[0][0]}" and "{found[1][0]}" both set the take profit')
    return found[0][1] if found else []


def _target(key: str, value: Any, f: Fields) -> Target:
    if not isinstance(value, dict):
        return Target(Bracket("price", as_positive(key, value, f)))
    where: List[Bracket] = []
    quantity, percent, stop = None, None, None
    for n, name, sub_value in _sub_keys(key, value):
        if n in _PRICE_KEYS:
            where.append(Bracket("price", as_positive(name, sub_value, f)))
        elif n in _DISTANCE_KEYS:
            where.append(_distance(n, name, sub_value, f))
        elif n in ("dollars", "pnlamount"):
            where.append(Bracket("dollars", as_positive(name, sub_value, f)))
        elif n in ("quantity", "qty", "contracts"):
            quantity = as_quantity(name, sub_value, f)
            if quantity <= 0:
                raise SignalError("invalid_field", name, f'"{name}" must be greater than 0')
        elif n in ("quantitypercent", "sizepercent", "positionpercent"):
            percent = _percent(name, sub_value, f)
        elif n == "stoploss" and isinstance(sub_value, dict):
            stop, be = _stop_object(name, sub_value, f)
            if be is not None:
                raise SignalError("unsupported", f"{name}.breakeven", '"breakeven" is one per position, not per target')
        elif n == "type":
            if not isinstance(sub_value, str) or norm(sub_value) not in _PLAIN_TP_TYPES:
                raise SignalError("unsupported", name, f'"{name}": a take profit is a limit order')
    if len(where) != 1:
        raise SignalError("invalid_field", key, f'"{key}" needs exactly one of: limitPrice, ticks, points, percent')
    if quantity is not None and percent is not None:
        raise SignalError("invalid_field", key, f'"{key}" sets both quantity and quantityPercent')
    return Target(where[0], quantity, percent, stop)


def _sub_keys(key: str, value: Dict[str, Any]) -> Iterator[Tuple[str, str, Any]]:
    """An object's set sub-keys: (normalised sub-key, ``key.sub`` for messages, value); nulls skipped."""
    for sub, sub_value in value.items():
        if sub_value is not None:
            yield (norm(sub) if isinstance(sub, str) else ""), f"{key}.{sub}", sub_value


_DISTANCE_KEYS = ("ticks", "points", "amount", "percent")


def _distance(n: str, name: str, value: Any, f: Fields) -> Bracket:
    """A distance sub-key (one of ``_DISTANCE_KEYS``, normalised) as a bracket."""
    if n == "ticks":
        return Bracket("ticks", float(as_whole_positive(name, value, f)))
    if n == "percent":
        return Bracket("percent", _percent(name, value, f))
    return Bracket("points", as_positive(name, value, f))  # points, amount


def _percent(key: str, value: Any, f: Fields) -> float:
    result = as_positive(key, value, f)
    if result > 100:
        raise SignalError("invalid_field", key, f'"{key}" must be at most 100')
    return result


def _check_sizes(targets: List[Target]) -> None:
    sized_qty = [t for t in targets if t.quantity is not None]
    sized_pct = [t for t in targets if t.percent is not None]
    if sized_qty and sized_pct:
        raise SignalError("invalid_field", "takeProfit", '"takeProfit": targets mix "quantity" and "quantityPercent"; use one')
    if (sized_qty and len(sized_qty) != len(targets)) or (sized_pct and len(sized_pct) != len(targets)):
        raise SignalError("invalid_field", "takeProfit", '"takeProfit": size every target or none of them')
    if sized_pct and sum(t.percent for t in sized_pct) > 100 + 1e-9:
        raise SignalError("invalid_field", "takeProfit", '"takeProfit": target percents add up to more than 100')


# ---- stop loss ---------------------------------------------------------------------------------
def _stop(f: Fields) -> Optional[Tuple[str, StopPlan, Optional[Breakeven]]]:
    found: List[Tuple[str, StopPlan, Optional[Breakeven]]] = []
    got = f.get("stop_loss")
    if got is not None:
        key, value = got
        if isinstance(value, dict):
            found.append((key, *_stop_object(key, value, f)))
        else:
            found.append((key, StopPlan(Bracket("price", as_positive(key, value, f))), None))
    for name, kind in (("sl_ticks", "ticks"), ("sl_points", "points"), ("sl_price", "price")):
        key, value = f.read(name, as_whole_positive if kind == "ticks" else as_positive)
        if key is not None:
            found.append((key, StopPlan(Bracket(kind, float(value))), None))
    if len(found) > 1:
        raise SignalError("invalid_field", found[1][0], f'"{found[0][0]}" and "{found[1][0]}" both set the stop loss')
    return found[0] if found else None


def _stop_object(key: str, value: Dict[str, Any], f: Fields) -> Tuple[StopPlan, Optional[Breakeven]]:
    where: List[Bracket] = []
    trail: List[Bracket] = []
    trigger = step = breakeven = limit = None
    stop_type: Optional[str] = None
    for n, name, sub_value in _sub_keys(key, value):
        if n in ("stopprice", "price"):
            where.append(Bracket("price", as_positive(name, sub_value, f)))
        elif n in _DISTANCE_KEYS:
            where.append(_distance(n, name, sub_value, f))
        elif n.startswith("trail") and n[5:] in _DISTANCE_KEYS:  # trailTicks, trailPoints/trailAmount, trailPercent
            trail.append(_distance(n[5:], name, sub_value, f))
        elif n in ("trigger", "triggerticks"):
            trigger = Bracket("ticks", float(_whole_non_negative(name, sub_value, f)))
        elif n == "triggerpoints":
            trigger = Bracket("points", _non_negative(name, sub_value, f))
        elif n in ("step", "stepticks"):
            step = Bracket("ticks", float(as_whole_positive(name, sub_value, f)))
        elif n == "steppoints":
            step = Bracket("points", as_positive(name, sub_value, f))
        elif n == "breakeven":
            breakeven = read_breakeven(name, sub_value, f)
        elif n == "limitprice":
            limit = as_positive(name, sub_value, f)
        elif n in ("pnlamount", "dollars"):
            where.append(Bracket("dollars", as_positive(name, sub_value, f)))
        elif n == "type":
            stop_type = norm(sub_value) if isinstance(sub_value, str) else None
            if stop_type not in _TRAILING_TYPES + _PLAIN_STOP_TYPES + _STOP_LIMIT_TYPES:
                raise SignalError("invalid_field", name, f'"{name}" must be stop, stop_limit or trailing_stop')
    if len(where) > 1 or len(trail) > 1:
        raise SignalError("invalid_field", key, f'"{key}" sets its distance more than once')
    trailing = stop_type in _TRAILING_TYPES or (stop_type is None and bool(trail))
    if stop_type in _STOP_LIMIT_TYPES:
        if limit is None:
            raise SignalError("missing_field", f"{key}.limitPrice", f'a stop_limit "{key}" needs "limitPrice"')
    elif limit is not None:
        raise SignalError("invalid_field", f"{key}.limitPrice", f'"{key}.limitPrice" needs "type": "stop_limit"')
    if not trailing:
        extra = "trailAmount" if trail else "trigger" if trigger else "step" if step else None
        if extra:
            raise SignalError("invalid_field", f"{key}.{extra}", f'"{key}.{extra}" needs "type": "trailing"')
        if not where:
            raise SignalError("invalid_field", key, f'"{key}" needs exactly one of: stopPrice, ticks, points, percent')
        return StopPlan(where[0], limit=limit), breakeven
    if not where and not trail:
        raise SignalError("missing_field", f"{key}.trailAmount",
                          f'a trailing "{key}" needs a distance: trailAmount, trailTicks, trailPercent, ticks or points')
    distance = where[0] if where else trail[0]
    return StopPlan(distance, True, trail[0] if trail else None, trigger, step), breakeven


def _breakeven_top(f: Fields, stop) -> Optional[Breakeven]:
    got = f.get("breakeven")
    if got is None:
        return None
    return read_breakeven(got[0], got[1], f)


def read_breakeven(key: str, value: Any, f: Fields) -> Breakeven:
    if not isinstance(value, dict):
        raise SignalError("invalid_field", key, f'"{key}" must be an object: {{"trigger": ticks, "offset": ticks}}')
    trigger = offset = None
    for n, name, sub_value in _sub_keys(key, value):
        if n in ("trigger", "triggerticks"):
            trigger = Bracket("ticks", float(as_whole_positive(name, sub_value, f)))
        elif n == "triggerpoints":
            trigger = Bracket("points", as_positive(name, sub_value, f))
        elif n in ("offset", "offsetticks", "plus"):
            offset = Bracket("ticks", float(as_whole(name, sub_value, f)))
        elif n == "offsetpoints":
            offset = Bracket("points", as_number(name, sub_value, f))
    if trigger is None:
        raise SignalError("missing_field", f"{key}.trigger", f'"{key}" needs "trigger" (ticks in profit)')
    offset = offset or Bracket("ticks", 0.0)
    trigger_v = trigger.value if trigger.kind == offset.kind else None
    if trigger_v is not None and offset.value >= trigger_v:
        raise SignalError("invalid_field", f"{key}.offset", f'"{key}.offset" must be smaller than the trigger')
    return Breakeven(trigger, offset)


def _non_negative(key: str, value: Any, f: Fields) -> float:
    result = as_number(key, value, f)
    if result < 0:
        raise SignalError("invalid_field", key, f'"{key}" must not be negative')
    return result


def _whole_non_negative(key: str, value: Any, f: Fields) -> int:
    result = as_whole(key, value, f)
    if result < 0:
        raise SignalError("invalid_field", key, f'"{key}" must not be negative')
    return result
