"""CrossTrade's ``key=value;`` alert text -> this project's own field names (used by ``parse.py``).

CrossTrade (a TradingView -> NinjaTrader bridge) reads alert messages such as::

    key=your-secret-key; command=PLACE; account=sim101; instrument=NQ 12-24; action=BUY; qty=1;
    order_type=MARKET; tif=DAY; flatten_first=true;

Pairs are separated by semicolons (newlines between them are fine); names are case-insensitive.
The commands that have a meaning here are mapped (docs/PAYLOAD.md, "CrossTrade messages"):

==================================  ====================================================
``PLACE`` (+ ``flatten_first``)     buy/sell: ``action``, ``qty``, ``order_type``
                                    MARKET/LIMIT/STOPMARKET/STOPLIMIT, ``limit_price``,
                                    ``stop_price``, ``tif`` DAY/GTC
``CLOSEPOSITION``, ``FLATTEN``      close (``qty`` on CLOSEPOSITION: close that many)
``REVERSE``                         reverse (the same size)
``CANCELORDERS``                    cancel the instrument's working orders
==================================  ====================================================

Everything else is refused as ``unsupported_format`` naming the command or the option, so an
alert never runs with part of its meaning dropped: other commands (``CHANGE``, ``CANCEL`` by order
id, ``FLATTENEVERYTHING``...), ATM strategies, OCO ids, brackets and position conditions.
``key`` (CrossTrade's secret) is not checked -- the webhook URL carries this server's secret --
and ``account`` is ignored with a warning: the URL's recorder chooses the accounts.  Instruments
in NinjaTrader's form (``NQ 12-24``, ``NQ DEC24``) become the dated contract; TradingView's
(``NQ1!``) pass through.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple, Union

from phantom_scraper.signals.model import SignalError

MONTH_CODES = "FGHJKMNQUVXZ"
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_PAIR_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]{0,40})\s*=([^;]*)")
_COMMANDS = {"place": "place", "closeposition": "close", "flatten": "close", "reverse": "reverse",
             "cancelorders": "cancel"}
_SUPPORTED = "PLACE, CLOSEPOSITION, FLATTEN, REVERSE, CANCELORDERS"
_ORDER_TYPES = {"market": "market", "limit": "limit", "stopmarket": "stop", "stop": "stop",
                "stoplimit": "stop_limit"}
# Options whose meaning this server does not carry out: refused, never dropped silently.
_REFUSED_OPTIONS = ("strategy", "oco_id", "order_id", "take_profit", "stop_loss", "tp", "sl",
                    "require_market_position", "market_position", "max_positions", "limit_timeout",
                    "bracket", "atm")
_USED = {"key", "command", "account", "instrument", "action", "qty", "quantity", "order_type", "limit_price",
         "stop_price", "tif", "flatten_first"}


def _text(raw: Union[bytes, bytearray, memoryview, str]) -> str:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            return bytes(raw).decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            return ""
    return raw.lstrip("\ufeff").strip() if isinstance(raw, str) else ""


def is_crosstrade(raw: Union[bytes, bytearray, memoryview, str]) -> bool:
    """``key=value;`` text (not JSON) whose first pair is a name and a value."""
    text = _text(raw)
    return bool(text) and text[0] not in "{[\"" and ";" in text and _PAIR_RE.match(text) is not None


def from_crosstrade(raw: Union[bytes, bytearray, memoryview, str]) -> Tuple[Dict[str, Any], List[str]]:
    """-> (the alert in this project's field names, warnings for the answer)."""
    pairs: Dict[str, str] = {}
    for part in _text(raw).split(";"):
        if not part.strip():
            continue
        m = _PAIR_RE.fullmatch(part)
        if m is None:
            raise SignalError("unsupported_format", None,
                              "CrossTrade-style text must be key=value pairs each ending with ';' "
                              f"(could not read {part.strip()[:30]!r})")
        name, value = m.group(1).lower(), m.group(2).strip()
        if name in pairs and pairs[name] != value:
            raise SignalError("invalid_field", name, f'"{name}" is sent twice with different values')
        pairs[name] = value
    out: Dict[str, Any] = {}
    warnings: List[str] = []
    if pairs.get("key"):
        out["secret"] = pairs["key"]  # never checked, never echoed or stored (it is CrossTrade's)
    command = _norm(pairs.get("command", ""))
    if not command:
        raise SignalError("unsupported_format", "command",
                          f"CrossTrade text needs command= (supported here: {_SUPPORTED})")
    kind = _COMMANDS.get(command)
    if kind is None:
        raise SignalError("unsupported_format", "command",
                          f"CrossTrade command {pairs['command'][:30]!r} is not supported here; supported: {_SUPPORTED}")
    for name in pairs:
        if name in _REFUSED_OPTIONS or any(name.startswith(p + "_") for p in ("take_profit", "stop_loss", "tp", "sl")):
            raise SignalError("unsupported_format", name,
                              f'CrossTrade option "{name}" is not supported here; remove it (for brackets send JSON '
                              'with "takeProfit"/"stopLoss")')
    if pairs.get("account"):
        warnings.append('"account" ignored: the recorder of the webhook URL chooses the accounts here')
    ignored = sorted(n for n in pairs if n not in _USED)
    if ignored:
        warnings.append("ignored: " + ", ".join(ignored))
    if not pairs.get("instrument"):
        raise SignalError("missing_field", "instrument", '"instrument" is required (e.g. NQ1! or NQ 12-26)')
    out["ticker"] = _instrument(pairs["instrument"])
    qty = pairs.get("qty") or pairs.get("quantity")
    if kind == "place":
        action = _norm(pairs.get("action", ""))
        if action not in ("buy", "sell"):
            raise SignalError("missing_field" if not action else "invalid_field", "action",
                              '"action" must be BUY or SELL for command=PLACE')
        out["action"] = action
        if not qty:
            raise SignalError("missing_field", "qty", '"qty" is required for command=PLACE')
        out["quantity"] = qty
        otype = _norm(pairs.get("order_type", "")) or "market"
        if otype not in _ORDER_TYPES:
            raise SignalError("invalid_field", "order_type",
                              '"order_type" must be MARKET, LIMIT, STOPMARKET or STOPLIMIT')
        out["orderType"] = _ORDER_TYPES[otype]
        for src, dst in (("limit_price", "limitPrice"), ("stop_price", "stopPrice")):
            if pairs.get(src):
                out[dst] = pairs[src]
        if pairs.get("tif"):
            out["timeInForce"] = pairs["tif"]
        if pairs.get("flatten_first"):
            out["flattenFirst"] = pairs["flatten_first"]
    elif kind == "close":
        out["action"] = "close"
        if qty and command == "closeposition":
            out["quantity"] = qty
    else:
        out["action"] = kind
    return out, warnings


def _norm(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())


def _instrument(text: str) -> str:
    """NinjaTrader's ``NQ 12-24`` / ``NQ DEC24`` -> ``NQZ24``; anything else as sent."""
    t = text.strip().upper()
    m = re.fullmatch(r"([A-Z0-9]{1,6})\s+(\d{1,2})-(\d{2})", t)
    if m and 1 <= int(m.group(2)) <= 12:
        return f"{m.group(1)}{MONTH_CODES[int(m.group(2)) - 1]}{m.group(3)}"
    m = re.fullmatch(r"([A-Z0-9]{1,6})\s+([A-Z]{3})(\d{2})", t)
    if m and m.group(2) in _MONTH_NAMES:
        return f"{m.group(1)}{MONTH_CODES[_MONTH_NAMES.index(m.group(2))]}{m.group(3)}"
    return text.strip()
