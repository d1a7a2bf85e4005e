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
                   ``StopLimit``...); trailing stops, MIT, QTS -> ``unsupported``
prices             ``limitPrice``, ``stopPrice``, ``price``/``signalPrice`` (the signal price)
brackets           ``takeProfit``/``stopLoss`` as a number (absolute price) or an object
                   ``{limitPrice|stopPrice|price}``, ``{ticks}``, ``{points}`` or ``{amount}``
                   (= points, a price distance); flat forms ``take_profit_ticks``,
                   ``take_profit_points``, ``take_profit_price``, ``tp``, ``tp_ticks``...
                   (``stop_loss_*``/``sl*`` likewise).  ``percent`` -> ``unsupported``.
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
* ``add`` (TradersPost) = buy/sell in the sentiment's direction (sentiment required).
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

import logging
from typing import Any, Dict, Optional, Tuple, Union

from .fields import (Fields, as_bool, as_positive, as_text, as_whole, as_whole_positive, as_word,
                     decode_body, norm, sanitize)
from .model import Bracket, Signal, SignalError

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
        data = decode_body(raw)
        fields = Fields(data)
        return _build(data, fields)
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
    _, signal_id = f.read("id", as_text)
    _, time_value = f.read("time", as_text)
    _, test = f.read("test", as_bool)
    return Signal(action=action, symbol=symbol, quantity=quantity, price=price, sentiment=sentiment,
                  target_position=target, signal_id=signal_id, time=time_value, test=bool(test),
                  secret=f.secret, payload=sanitize(data), **order)


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
    qty_key, quantity = f.read("quantity", as_whole)
    if action in _EXIT_ACTIONS:
        return action, None, quantity if quantity and quantity > 0 else None, None

    sent_key, sentiment = f.read("sentiment", as_word, _SENTIMENT_WORDS, "long, short, flat, bullish, bearish")
    size_key, size = (None, None) if action == "reverse" else f.read("position_size", as_whole)
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

    take_profit = _bracket(f, "take_profit", ("tp_ticks", "tp_points", "tp_price"), is_stop=False)
    stop_loss = _bracket(f, "stop_loss", ("sl_ticks", "sl_points", "sl_price"), is_stop=True)
    reference = {"Market": price, "Limit": limit_price, "StopLimit": limit_price, "Stop": stop_price}[order_type]
    if reference is None and any(b is not None and b.kind != "price" for b in (take_profit, stop_loss)):
        raise SignalError("missing_field", "price",
                          'brackets in ticks/points on a market order need "price" (e.g. "{{close}}") '
                          "or absolute take-profit/stop-loss prices")

    tif = None
    got = f.get("time_in_force")
    if got is not None:
        if isinstance(got[1], str) and norm(got[1]) == "gtd":
            raise SignalError("unsupported", got[0], f'"{got[0]}" GTD is not supported')
        tif = as_word(got[0], got[1], f, _TIF_WORDS, "day, gtc, ioc, fok")
    return dict(order_type=order_type, limit_price=limit_price, stop_price=stop_price,
                take_profit=take_profit, stop_loss=stop_loss, time_in_force=tif)


def _order_type(f: Fields) -> Tuple[Optional[str], Optional[str]]:
    got = f.get("order_type")
    if got is None:
        return None, None
    key, value = got
    if isinstance(value, str) and norm(value) in _UNSUPPORTED_ORDER_TYPES:
        raise SignalError("unsupported", key,
                          f'"{key}" {f.show(value)} is not supported; use market, limit, stop or stop_limit')
    return key, as_word(key, value, f, _ORDER_TYPE_WORDS, "market, limit, stop, stop_limit")


def _bracket(f: Fields, main: str, flat: Tuple[str, str, str], is_stop: bool) -> Optional[Bracket]:
    """One take profit (or stop loss) from the object/number field or one of the flat fields."""
    sources = []
    got = f.get(main)
    if got is not None:
        key, value = got
        if isinstance(value, dict):
            sources.append((key, _bracket_object(key, value, is_stop, f)))
        else:
            sources.append((key, Bracket("price", as_positive(key, value, f))))
    for name, kind in zip(flat, ("ticks", "points", "price")):
        key, value = f.read(name, as_whole_positive if kind == "ticks" else as_positive)
        if key is not None:
            sources.append((key, Bracket(kind, float(value))))
    if len(sources) > 1:
        what = "stop loss" if is_stop else "take profit"
        raise SignalError("invalid_field", sources[1][0], f'"{sources[0][0]}" and "{sources[1][0]}" both set the {what}')
    return sources[0][1] if sources else None


def _bracket_object(key: str, value: Dict[str, Any], is_stop: bool, f: Fields) -> Bracket:
    found = []
    for sub, sub_value in value.items():
        n = norm(sub) if isinstance(sub, str) else ""
        name = f"{key}.{sub}"
        if sub_value is None:
            continue
        if n in ("limitprice", "stopprice", "price"):
            found.append(Bracket("price", as_positive(name, sub_value, f)))
        elif n == "ticks":
            found.append(Bracket("ticks", float(as_whole_positive(name, sub_value, f))))
        elif n in ("points", "amount"):
            found.append(Bracket("points", as_positive(name, sub_value, f)))
        elif n == "percent":
            raise SignalError("unsupported", name,
                              f'"{name}": percent brackets are not supported; use ticks, points or a price')
        elif n == "type":
            kind = norm(sub_value) if isinstance(sub_value, str) else None
            if kind not in ("stop", "stopmarket", "market", "limit"):
                raise SignalError("unsupported", name, f'"{name}": only plain stop-loss / take-profit orders are supported')
    if len(found) != 1:
        price_key = "stopPrice" if is_stop else "limitPrice"
        raise SignalError("invalid_field", key, f'"{key}" needs exactly one of: {price_key}, ticks, points')
    return found[0]
