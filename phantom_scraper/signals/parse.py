"""Raw TradingView webhook body -> ``Signal``.

``parse_signal(raw)`` reads the body whatever the Content-Type said (JSON, JSON with a trailing
newline, ``text/plain`` holding JSON, a UTF-8 BOM) and raises only ``SignalError``.

Field names are matched case-insensitively with ``_``/``-``/spaces ignored (``limitPrice`` =
``limit_price``).  Aliases, first wins; two aliases with different values are an error:

=================  ==========================================================================
action             ``action``; ``order`` (strategy-position templates) only when ``action`` is absent
symbol             ``ticker``, ``symbol``
quantity           ``quantity``, ``qty``, ``contracts`` -- a whole number (``3``, ``"3"``, ``3.0``)
order type         ``orderType``: market/limit/stop/stop_limit (+ ``mkt``, ``lmt``, ``stp``,
                   ``StopLimit``...); trailing stops (pointed at ``stopLoss.type: trailing``),
                   MIT, QTS -> ``unsupported``
prices             ``limitPrice``, ``stopPrice``, ``price``/``signalPrice`` (the signal price)
brackets           ``takeProfit``/``stopLoss``: see ``exits.py`` (one or several targets, percent,
                   trailing stops, breakeven); flat forms ``take_profit_ticks``,
                   ``take_profit_points``, ``take_profit_price``, ``tp``, ``tp_ticks``...
                   (``stop_loss_*``/``sl*`` likewise)
exits              ``percent``/``quantityType: percent_of_position``: part of the position
formats            PickMyTrade bodies (``data``, no ``action``) are rewritten by ``pickmytrade.py``;
                   CrossTrade's ``key=value;`` text by ``crosstrade.py``
adding             ``allowAdd`` (true/false): in ``side`` mode a same-side signal adds (the
                   ``add`` action and PickMyTrade's ``duplicate_position_allow`` set it)
sentiment          ``sentiment``, ``position``, ``market_position``: long/bullish,
                   short/bearish, flat
position size      ``position_size``, ``market_position_size``
other              ``timeInForce``/``tif`` (day/gtc/ioc/fok), ``time``, ``id``/``signal_id``,
                   ``test`` (true/false, "true", 1/0), ``secret``/``passphrase``
=================  ==========================================================================

Unknown fields are ignored; ``null`` counts as absent; ``""`` in a known field is
``empty_field``.

What the actions mean (the planner turns them into orders)
-----------------------------------------------------------
* ``buy``/``long``, ``sell``/``short``: enter or add.  Without a sentiment this is a plain order
  and needs no position read.  With a sentiment the sentiment is the position the sender expects
  *after* the order (TradersPost convention):

  - same side (``buy`` + long): enter/add; if the account is on the other side it is reversed
    (flatten, wait until flat, then enter) -- "buy while short when the signal says so";
  - ``flat`` (``sell`` + flat): exit the long only (``close_long``), whole position;
  - opposite side (``sell`` + long): reduce the long by the quantity (``close_long`` with a
    quantity), never crossing to short.
* ``add`` (TradersPost) = buy/sell in the sentiment's direction (sentiment required); in ``side``
  mode it adds to a same-side position.
* What plain buy/sell mean depends on the recorder's signal mode (``Signal.mode``, set after
  parsing by ``plan.with_mode``): ``orders`` as above, ``side`` = be long/short (see plan.py).
* ``close``/``exit``/``flatten``/``flat``: flatten the contract (cancels its working orders too).
  ``closelong``/``exit_long``/``close_long`` and the ``short`` forms act only on that side.  With a
  positive quantity they reduce by that many contracts (flatten if it covers the position).
* ``reverse``: flip the current position (same size unless a quantity is sent).  With a sentiment
  (long/short) it means "end on that side": it enters from flat and does nothing if already there.
* ``cancel``: cancel the working orders of that contract.
* Strategy-position mode (action ``target``): ``position_size`` together with a sentiment and an
  action that is absent or buy/sell/add.  The target is ``sign(sentiment) * position_size``
  (``flat`` -> 0 whatever the size); each account is brought there (entry, add, partial exit,
  exit or reversal).  ``position_size`` without a sentiment is an error (TradingView's
  ``market_position_size`` is unsigned, so the side would be a guess).  With an explicit
  close/reverse/cancel action ``position_size`` is ignored.

Exits and cancel read only the fields they use (``quantity`` for exits), so a stray or empty
strategy field never blocks an exit.

Entries (buy/sell/reverse/target) default to quantity 1 when none is sent.  ``orderType`` absent:
Limit if ``limitPrice`` is sent, Stop if ``stopPrice``, StopLimit if both, else Market.  ``price``
alone never makes a market order a limit; it is used as the limit price only for an explicit
limit/stop_limit without ``limitPrice``.  Distance brackets (ticks/points) need a reference price:
the limit price, the stop price of a stop order, or ``price`` for a market order.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Optional, Tuple, Union

from phantom_scraper.signals.exits import read_exits
from phantom_scraper.signals.fields import (Fields, as_bool, as_positive, as_quantity, as_text, as_whole, as_whole_positive, as_word,
                     decode_body, norm, sanitize)
from phantom_scraper.signals.model import Bracket, Signal, SignalError
from phantom_scraper.signals.crosstrade import from_crosstrade, is_crosstrade
from phantom_scraper.signals.pickmytrade import from_pickmytrade, is_pickmytrade

log = logging.getLogger(__name__)

_ACTION_WORDS = {
    "buy": "buy", "long": "buy",
    "sell": "sell", "short": "sell",
    "close": "close", "exit": "close", "flatten": "close", "flat": "close", "closeall": "close",
    "exitall": "close", "flattenall": "close",
    "closelong": "close_long", "exitlong": "close_long",
    "closeshort": "close_short", "exitshort": "close_short",
    "reverse": "reverse",
    "cancel": "cancel", "cancelall": "cancel",
    "add": "add",
}
_ACTIONS_HELP = "buy, sell, long, short, close, exit, flatten, close_long, close_short, reverse, cancel, add"
_SENTIMENT_WORDS = {"long": "long", "bullish": "long", "short": "short", "bearish": "short",
                    "flat": "flat"}
_ORDER_TYPE_WORDS = {
    "market": "Market", "mkt": "Market",
    "limit": "Limit", "lmt": "Limit",
    "stop": "Stop", "stp": "Stop", "stopmarket": "Stop",
    "stoplimit": "StopLimit", "stplmt": "StopLimit",
}
_UNSUPPORTED_ORDER_TYPES = ("trailingstop", "trailingstoplimit", "mit", "limitiftouched", "qts",
                            "marketiftouched")
_TIF_WORDS = {"day": "Day", "gtc": "GTC", "ioc": "IOC", "fok": "FOK"}
_ENTRY_ACTIONS = ("buy", "sell", "reverse", "target")
_EXIT_ACTIONS = ("close", "close_long", "close_short")


def parse_signal(raw: Union[bytes, str]) -> Signal:
    """Parse one webhook body.  Raises only ``SignalError``; see the module docstring."""
    fields: Optional[Fields] = None
    try:
        warnings: list = []
        if is_crosstrade(raw):
            data, warnings = from_crosstrade(raw)
        else:
            data = decode_body(raw)
            if is_pickmytrade(data):
                data, warnings = from_pickmytrade(data)
        fields = Fields(data)
        signal = _build(data, fields)
        return dataclasses.replace(signal, warnings=tuple(warnings)) if warnings else signal
    except SignalError as exc:
        secret = fields.secret if fields is not None else None
        if secret and secret in exc.message:  # belt and braces: never echo the secret
            exc.message = exc.message.replace(secret, "<redacted>")
            exc.args = (exc.message,)
        raise
    except Exception as exc:  # safety net: a parser bug must not become a 5xx (TradingView retries those)
        log.exception("parse_signal: unexpected %s", type(exc).__name__)
        raise SignalError("invalid_json", None, "the body could not be read") from None


def _build(data: Dict[str, Any], f: Fields) -> Signal:
    got = f.get("secret")
    if got is not None:
        if not isinstance(got[1], str):
            raise SignalError("invalid_field", got[0], f'"{got[0]}" must be text')
        f.secret = got[1]
    symbol = _symbol(f)
    action, sentiment, quantity, target = _intent(f)
    price, order = None, {}
    if action in _ENTRY_ACTIONS:
        _, price = f.read("price", as_positive)
        order = _order(f, price)
        _, flatten_first = f.read("flatten_first", as_bool)
        order["flatten_first"] = bool(flatten_first)
        _, flatten_opposite = f.read("flatten_opposite", as_bool)
        order["flatten_opposite"] = bool(flatten_opposite)
        _close_percent(f, action)  # a percent of the position on an entry: unsupported
    elif action in _EXIT_ACTIONS:
        order = {"close_percent": _close_percent(f, action)}
        if order["close_percent"] is not None:
            quantity = None
    _, signal_id = f.read("id", as_text)
    _, time_value = f.read("time", as_text)
    _, test = f.read("test", as_bool)
    _, allow_add = f.read("allow_add", as_bool)
    add = bool(allow_add) or _is_add(f)
    return Signal(action=action, symbol=symbol, quantity=quantity, price=price, sentiment=sentiment,
                  target_position=target, signal_id=signal_id, time=time_value, test=bool(test), add=add,
                  secret=f.secret, payload=sanitize(data), **order)


def _is_add(f: Fields) -> bool:
    got = f.get("action")
    return got is not None and isinstance(got[1], str) and norm(got[1]) == "add"


def _symbol(f: Fields) -> str:
    got = f.get("symbol")
    if got is None:
        raise SignalError("missing_field", "ticker", '"ticker" is required (e.g. "{{ticker}}" or "NQZ6")')
    key, symbol = got
    if not isinstance(symbol, str):
        raise SignalError("invalid_field", key, f'"{key}" must be text')
    symbol = symbol.strip()
    if len(symbol) > 64 or not all(c.isascii() and (c.isalnum() or c in "_:!.@/ -") for c in symbol):
        raise SignalError("invalid_field", key, f'"{key}" {f.show(symbol)} is not a futures symbol')
    return symbol


def _intent(f: Fields) -> Tuple[str, Optional[str], Optional[int], Optional[int]]:
    """(action, sentiment, quantity, target_position) after the rules in the module docstring."""
    _, action = f.read("action", as_word, _ACTION_WORDS, _ACTIONS_HELP)
    if action is None:
        _, action = f.read("order_action", as_word, _ACTION_WORDS, _ACTIONS_HELP)
    if action == "cancel":  # exits read only the fields they use: a stray field never blocks them
        return action, None, None, None
    qty_key, quantity = _quantity(f)
    if action in _EXIT_ACTIONS:
        return action, None, quantity if quantity and quantity > 0 else None, None

    sent_key, sentiment = f.read("sentiment", as_word, _SENTIMENT_WORDS, "long, short, flat, bullish, bearish")
    size_key, size = (None, None) if action == "reverse" else f.read("position_size", as_quantity)
    if size is not None:
        if sentiment is None:
            raise SignalError("missing_field", "position",
                              f'"{size_key}" needs "position" (long/short/flat, e.g. "{{{{strategy.market_position}}}}")')
        if size < 0 and sentiment == "long":  # a signed size must agree with the side
            raise SignalError("invalid_field", size_key, f'"{size_key}" is negative but "{sent_key}" is long')
        target = {"flat": 0, "long": abs(size), "short": -abs(size)}[sentiment]
        return "target", sentiment, None, target
    if action is None:
        raise SignalError("missing_field", "action", f'"action" is required ({_ACTIONS_HELP})')

    if action == "add":
        if sentiment not in ("long", "short"):
            raise SignalError("missing_field", "sentiment", '"add" needs "sentiment" long or short')
        action = "buy" if sentiment == "long" else "sell"
    if action == "reverse" and sentiment == "flat":
        raise SignalError("invalid_field", sent_key, f'"reverse" with "{sent_key}" flat makes no sense; use "close"')
    if action in ("buy", "sell") and sentiment not in (None, "long" if action == "buy" else "short"):
        # flat: exit that side entirely; opposite side: reduce it by the quantity
        exit_action = "close_short" if action == "buy" else "close_long"
        return exit_action, None, quantity if quantity and quantity > 0 and sentiment != "flat" else None, None
    if quantity is not None and quantity <= 0:
        raise SignalError("invalid_field", qty_key, f'"{qty_key}" must be at least 1')
    return action, sentiment, quantity, None


_QUANTITY_TYPES = {"fixedquantity": "fixed", "fixed": "fixed", "contracts": "fixed",
                   "percentofposition": "percent_of_position"}


def _quantity(f: Fields) -> Tuple[Optional[str], Optional[int]]:
    """``quantity`` as a whole number; with TradersPost's ``quantityType`` only ``fixed_quantity``
    (and ``percent_of_position`` on exits, read by ``_close_percent``) are expressible."""
    type_key, qtype = f.read("quantity_type", as_text)
    if qtype is not None:
        kind = _QUANTITY_TYPES.get(norm(qtype))
        if kind is None:
            raise SignalError("unsupported", type_key,
                              f'"{type_key}" {f.show(qtype)} is not supported; use fixed_quantity, or '
                              "percent_of_position on exits")
        if kind == "percent_of_position":
            return None, None
    return f.read("quantity", as_quantity)


def _close_percent(f: Fields, action: str) -> Optional[float]:
    """Percent of the position to exit: ``percent``, or ``quantity`` with ``quantityType``
    ``percent_of_position``.  Only exits can use it."""
    found = []
    type_key, qtype = f.read("quantity_type", as_text)
    if qtype is not None and _QUANTITY_TYPES.get(norm(qtype)) == "percent_of_position":
        key, value = f.read("quantity", as_positive)
        if key is None:
            raise SignalError("missing_field", "quantity", f'"{type_key}" percent_of_position needs "quantity"')
        found.append((key, value))
    key, value = f.read("close_percent", as_positive)
    if key is not None:
        found.append((key, value))
    if not found:
        return None
    key, value = found[0]
    if action not in _EXIT_ACTIONS:
        raise SignalError("unsupported", key, f'"{key}": a percent of the position is supported on exits only')
    if len(found) > 1 and found[1][1] != value:
        raise SignalError("invalid_field", found[1][0], f'"{found[0][0]}" and "{found[1][0]}" say different things')
    if value > 100:
        raise SignalError("invalid_field", key, f'"{key}" must be at most 100 (percent of the position)')
    return value


def _order(f: Fields, price: Optional[float]) -> Dict[str, Any]:
    """order_type, prices, brackets and time in force of an entry, checked for coherence."""
    _, explicit = _order_type(f)
    _, limit_price = f.read("limit_price", as_positive)
    _, stop_price = f.read("stop_price", as_positive)
    if explicit is None:
        order_type = {(True, True): "StopLimit", (True, False): "Limit",
                      (False, True): "Stop"}.get((limit_price is not None, stop_price is not None), "Market")
    else:
        order_type = explicit
        if order_type in ("Limit", "StopLimit") and limit_price is None:
            limit_price = price
    if order_type in ("Limit", "StopLimit") and limit_price is None:
        raise SignalError("missing_field", "limitPrice", f'a {order_type} order needs "limitPrice"')
    if order_type in ("Stop", "StopLimit") and stop_price is None:
        raise SignalError("missing_field", "stopPrice", f'a {order_type} order needs "stopPrice"')
    if order_type in ("Market", "Stop"):
        limit_price = None
    if order_type in ("Market", "Limit"):
        stop_price = None

    take_profit, stop_loss, stop_loss_limit, exits = read_exits(f)
    reference = {"Market": price, "Limit": limit_price, "StopLimit": limit_price, "Stop": stop_price}[order_type]
    if reference is None and any(b is not None and b.kind != "price" for b in (take_profit, stop_loss)):
        raise SignalError("missing_field", "price",
                          'brackets in ticks/points/percent on a market order need "price" (e.g. "{{close}}") '
                          "or absolute take-profit/stop-loss prices")
    if reference is None and exits is not None and any(b.kind in ("price", "percent") for b in _distances(exits)):
        raise SignalError("missing_field", "price",
                          'targets or stops given as a price or a percent need "price" (e.g. "{{close}}") '
                          "on a market order; or use ticks/points")

    tif = None
    got = f.get("time_in_force")
    if got is not None:
        if isinstance(got[1], str) and norm(got[1]) == "gtd":
            raise SignalError("unsupported", got[0], f'"{got[0]}" GTD is not supported')
        tif = as_word(got[0], got[1], f, _TIF_WORDS, "day, gtc, ioc, fok")
    return dict(order_type=order_type, limit_price=limit_price, stop_price=stop_price,
                take_profit=take_profit, stop_loss=stop_loss, stop_loss_limit=stop_loss_limit, exits=exits,
                time_in_force=tif)


def _distances(exits) -> list:
    out = [t.distance for t in exits.targets]
    if exits.stop is not None:
        out += [b for b in (exits.stop.distance, exits.stop.trail) if b is not None]
    return out


def _order_type(f: Fields) -> Tuple[Optional[str], Optional[str]]:
    got = f.get("order_type")
    if got is None:
        return None, None
    key, value = got
    if isinstance(value, str) and norm(value) in ("trailingstop", "trailingstoplimit"):
        raise SignalError("unsupported", key,
                          f'"{key}" {f.show(value)}: a trailing-stop entry order is not supported; for a trailing '
                          'stop loss send "stopLoss": {"type": "trailing", "trailAmount": points} with a market, '
                          'limit or stop entry')
    if isinstance(value, str) and norm(value) in _UNSUPPORTED_ORDER_TYPES:
        raise SignalError("unsupported", key,
                          f'"{key}" {f.show(value)} is not supported; use market, limit, stop or stop_limit')
    return key, as_word(key, value, f, _ORDER_TYPE_WORDS, "market, limit, stop, stop_limit")
