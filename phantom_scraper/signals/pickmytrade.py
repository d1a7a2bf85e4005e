"""PickMyTrade's Tradovate alert format -> this project's own field names (used by ``parse.py``).

A body is PickMyTrade's when it has ``data`` (the side) and no ``action``/``order``.  Its fields
are checked here, with their own names in every error, and rewritten into the fields the rest of
the parser reads; the mapping table is in docs/PAYLOAD.md.  Values of ``0``/``"0"`` mean "not set"
(PickMyTrade's templates send every field).  What Tradovate or this server cannot do is refused with
``unsupported`` naming the field.  Its published template is accepted as it is: ``multiple_accounts``
(PickMyTrade's own account ids and tokens) is ignored with a warning -- here the webhook URL's
recorder chooses the accounts and multipliers; ``token`` is PickMyTrade's account token, never
checked (the URL carries this server's secret); ``duplicate_position_allow`` lets a ``side``-mode
recorder add to a same-side position (``allowAdd``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from phantom_scraper.signals.fields import Fields, as_bool, as_number, as_text, check_quantity_text, norm
from phantom_scraper.signals.model import SignalError

_SIDES = {"buy": "buy", "long": "buy", "sell": "sell", "short": "sell", "close": "close", "flat": "close"}
_ORDER_TYPES = {"mkt": "market", "market": "market", "lmt": "limit", "limit": "limit", "stp": "stop",
                "stop": "stop", "stplmt": "stop_limit", "stoplimit": "stop_limit"}
# PickMyTrade's documented priority when several are sent: price > dollars > percent.
_TP_KEYS = (("tp", "price"), ("dollar_tp", "dollars"), ("percentage_tp", "percent"))
_SL_KEYS = (("sl", "price"), ("dollar_sl", "dollars"), ("percentage_sl", "percent"))


def is_pickmytrade(data: Dict[str, Any]) -> bool:
    keys = {norm(k) for k in data if isinstance(k, str)}
    return "data" in keys and "action" not in keys and "order" not in keys


def from_pickmytrade(data: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """-> (the body in this project's field names, warnings for the answer)."""
    f = Fields({})
    warnings: List[str] = []
    raw = {k.strip().lower(): v for k, v in data.items() if isinstance(k, str)}
    token = raw.get("token")
    if isinstance(token, str):
        f.secret = token
    out: Dict[str, Any] = {}
    if token is not None:
        out["secret"] = token
    for src, dst in (("symbol", "ticker"), ("date", "time"), ("id", "id"), ("test", "test")):
        if raw.get(src) is not None:
            out[dst] = raw[src]
    side = _word(raw, "data", _SIDES, f, "buy, sell, long, short, close, flat")
    out["action"] = side
    _refuse(raw, f)
    check_quantity_text("quantity", raw.get("quantity"), f)
    if raw.get("multiple_accounts") not in (None, "", []):
        warnings.append('"multiple_accounts" ignored: PickMyTrade\'s account list means nothing here; the '
                        "recorder of the webhook URL chooses the accounts and their multipliers")
    if _flag(raw, "duplicate_position_allow", f):
        out["allowAdd"] = True
    qty = _num(raw, "quantity", f)
    if qty:
        out["quantity"] = qty
    if side == "close":
        return out, warnings
    price = _num(raw, "price", f)
    if price:
        out["price"] = price
    otype = _word(raw, "order_type", _ORDER_TYPES, f, "MKT, LMT, STP, STPLMT") if raw.get("order_type") else None
    if otype:
        out["orderType"] = otype
        if otype in ("limit", "stop_limit"):
            out["limitPrice"] = _need_price(price, "order_type")
        if otype in ("stop", "stop_limit"):
            out["stopPrice"] = _need_price(price, "order_type")
    reverse = _flag(raw, "reverse_order_close", f)
    pyramid = _flag(raw, "pyramid", f)
    if reverse and not pyramid:
        out["flattenFirst"] = True
    elif reverse:
        out["flattenOpposite"] = True
    targets = raw.get("advance_tp_sl")
    if targets not in (None, "", []):
        _advanced(raw, targets, f, out)
    else:
        tp = _first(raw, _TP_KEYS, f)
        if tp is not None:
            out["takeProfit"] = _distance(tp)
        stop = _stop(raw, "", f)
        if stop is not None:
            out["stopLoss"] = stop
        be = _num(raw, "breakeven", f)
        if be:
            out["breakeven"] = {"triggerPoints": be}
    return out, warnings


def _refuse(raw: Dict[str, Any], f: Fields) -> None:
    if _num(raw, "risk_percentage", f):
        raise SignalError("unsupported", "risk_percentage",
                          '"risk_percentage": sizing by account risk is not supported; send "quantity"')
    for key in ("update_tp", "update_sl"):
        if _flag(raw, key, f):
            raise SignalError("unsupported", key, f'"{key}": changing the brackets of an open position is not supported')
    if _num(raw, "lmt_to_market_wait", f):
        raise SignalError("unsupported", "lmt_to_market_wait", '"lmt_to_market_wait" is not supported')
    platform = raw.get("platform")
    if platform not in (None, "") and (not isinstance(platform, str) or norm(platform) != "tradovate"):
        raise SignalError("unsupported", "platform", '"platform": this server trades Tradovate only')
    inst = raw.get("inst_type")
    if inst not in (None, "") and (not isinstance(inst, str) or norm(inst) != "fut"):
        raise SignalError("unsupported", "inst_type", '"inst_type": only futures (FUT) are supported')


def _advanced(raw: Dict[str, Any], targets: Any, f: Fields, out: Dict[str, Any]) -> None:
    if not isinstance(targets, list):
        raise SignalError("invalid_field", "advance_tp_sl", '"advance_tp_sl" must be a list of targets')
    tps: List[Dict[str, Any]] = []
    breakevens = set()
    for i, t in enumerate(targets):
        name = f"advance_tp_sl[{i}]"
        if not isinstance(t, dict):
            raise SignalError("invalid_field", name, f'"{name}" must be an object')
        t = {k.strip().lower(): v for k, v in t.items() if isinstance(k, str)}
        item: Dict[str, Any] = {}
        tp = _first(t, _TP_KEYS, f, name)
        if tp is None:
            raise SignalError("missing_field", f"{name}.tp", f'"{name}" needs a take profit (tp, dollar_tp or percentage_tp)')
        item.update(_distance(tp))
        check_quantity_text(f"{name}.quantity", t.get("quantity"), f)
        qty = _num(t, "quantity", f, name)
        if qty:
            item["quantity"] = qty
        stop = _stop(t, name + ".", f)
        if stop is not None:
            item["stopLoss"] = stop
        breakevens.add(_num(t, "breakeven", f, name) or 0)
        tps.append(item)
    if len(breakevens) > 1:
        raise SignalError("unsupported", "advance_tp_sl.breakeven",
                          '"advance_tp_sl.breakeven" must be the same for every target (one stop move per position)')
    be = breakevens.pop() if breakevens else 0
    if be:
        out["breakeven"] = {"triggerPoints": be}
    out["takeProfit"] = tps


def _stop(raw: Dict[str, Any], prefix: str, f: Fields) -> Optional[Dict[str, Any]]:
    sl = _first(raw, _SL_KEYS, f, prefix.rstrip("."))
    trail = _num(raw, "trail", f, prefix.rstrip("."))
    if trail not in (None, 0, 1):
        raise SignalError("invalid_field", f"{prefix}trail", f'"{prefix}trail" must be 0 or 1')
    trail_stop = _num(raw, "trail_stop", f, prefix.rstrip("."))
    trigger = _num(raw, "trail_trigger", f, prefix.rstrip("."))
    freq = _num(raw, "trail_freq", f, prefix.rstrip("."))
    if not trail:
        for key, value in (("trail_stop", trail_stop), ("trail_trigger", trigger), ("trail_freq", freq)):
            if value:
                raise SignalError("invalid_field", f"{prefix}{key}", f'"{prefix}{key}" needs "trail": 1')
        return _distance(sl, stop=True) if sl is not None else None
    stop: Dict[str, Any] = {"type": "trailing"}
    if sl is not None:
        stop.update(_distance(sl, stop=True))
    if trail_stop:
        stop["trailAmount"] = trail_stop
    if sl is None and not trail_stop:
        raise SignalError("missing_field", f"{prefix}trail_stop",
                          f'"{prefix}trail": 1 needs "{prefix}trail_stop" (points) or "{prefix}sl"')
    if trigger:
        stop["triggerPoints"] = trigger
    if freq:
        stop["stepPoints"] = freq
    return stop


def _distance(found, stop: bool = False) -> Dict[str, Any]:
    kind, value = found
    if kind == "price":
        return {"stopPrice" if stop else "limitPrice": value}
    if kind == "percent":
        return {"percent": value}
    return {"dollars": value}


def _first(raw: Dict[str, Any], keys, f: Fields, where: str = ""):
    for key, kind in keys:
        value = _num(raw, key, f, where)
        if value:
            return kind, value
    return None


def _num(raw: Dict[str, Any], key: str, f: Fields, where: str = "") -> Optional[float]:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = f"{where}.{key}" if where else key
    result = as_number(name, value, f)
    if result < 0:
        raise SignalError("invalid_field", name, f'"{name}" must not be negative')
    return result


def _flag(raw: Dict[str, Any], key: str, f: Fields) -> bool:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    return as_bool(key, value, f)


def _word(raw: Dict[str, Any], key: str, table: Dict[str, str], f: Fields, what: str) -> str:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SignalError("missing_field", key, f'"{key}" is required ({what})')
    text = as_text(key, value, f)
    result = table.get(norm(text))
    if result is None:
        raise SignalError("invalid_field", key, f'"{key}" {f.show(text)} is not one of: {what}')
    return result


def _need_price(price: Optional[float], key: str) -> float:
    if not price:
        raise SignalError("missing_field", "price", f'"{key}" LMT/STP needs "price"')
    return price
