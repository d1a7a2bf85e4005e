"""Reading the raw body and its fields: decoding, aliases, value conversion.

Every failure is a ``SignalError`` naming the field as the sender spelled it; no message echoes
the secret (``Fields.show``).  Used by ``parse.py`` only.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from phantom_scraper.signals.model import SignalError

MAX_ABS_PRICE = 1e9
MAX_QUANTITY = 100_000
MAX_TEXT_LEN = 128

_ALIASES: Dict[str, Tuple[str, ...]] = {
    "action": ("action",),
    "order_action": ("order",),  # strategy-position templates; used only without "action"
    "symbol": ("ticker", "symbol"),
    "quantity": ("quantity", "qty", "contracts"),
    "order_type": ("ordertype",),
    "limit_price": ("limitprice",),
    "price": ("price", "signalprice"),
    "stop_price": ("stopprice",),
    "take_profit": ("takeprofit", "tp"),
    "tp_ticks": ("takeprofitticks", "tpticks"),
    "tp_points": ("takeprofitpoints", "tppoints"),
    "tp_price": ("takeprofitprice", "tpprice"),
    "stop_loss": ("stoploss", "sl"),
    "sl_ticks": ("stoplossticks", "slticks"),
    "sl_points": ("stoplosspoints", "slpoints"),
    "sl_price": ("stoplossprice", "slprice"),
    "sentiment": ("sentiment", "position", "marketposition"),
    "position_size": ("positionsize", "marketpositionsize"),
    "time_in_force": ("timeinforce", "tif"),
    "breakeven": ("breakeven",),
    "flatten_first": ("flattenfirst",),
    "flatten_opposite": ("flattenopposite",),
    "quantity_type": ("quantitytype",),
    "close_percent": ("percent", "closepercent", "percentofposition"),
    "time": ("time",),
    "id": ("id", "signalid"),
    "test": ("test",),
    "allow_add": ("allowadd",),
    "secret": ("secret", "passphrase"),
}
_SECRET_KEYS = frozenset(_ALIASES["secret"])

_TRUE_WORDS = ("true", "yes", "1", "on")
_FALSE_WORDS = ("false", "no", "0", "off")
# ASCII digits only: Python's \d and float() also read fullwidth and Arabic-Indic digits.
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A quantity as text: ASCII digits, no exponent ("3", "+3", "3.0"; never "1e1" or "３").
_QUANTITY_TEXT_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?")
# A key followed by nothing before , } ] or the end: TradingView's empty placeholder.
_EMPTY_PLACEHOLDER_RE = re.compile(r'"((?:[^"\\\r\n]|\\.){1,100})"\s*:\s*(?=[,}\]]|$)')
_CONSTANT_RE = re.compile(r'"((?:[^"\\\r\n]|\\.){1,100})"\s*:\s*-?(?:NaN|Infinity)\b')
_KEY_RE = re.compile(r"[^a-z0-9]")


def norm(word: str) -> str:
    return _KEY_RE.sub("", word.lower())


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def decode_body(raw: Union[bytes, bytearray, memoryview, str]) -> Any:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SignalError("invalid_json", None, "the body is not UTF-8 text") from None
    elif isinstance(raw, str):
        text = raw.lstrip("\ufeff")
    else:
        raise SignalError("invalid_json", None, "the body must be bytes or text")
    text = text.strip()
    if not text:
        raise SignalError("invalid_json", None, "the body is empty; put a JSON object in the alert message")
    data = _loads(text)
    if isinstance(data, str) and data.strip().startswith("{"):
        data = _loads(data.strip())  # JSON sent as a JSON string (double-encoded)
    if not isinstance(data, dict):
        raise SignalError("invalid_json", None, "the body must be a JSON object ({...})")
    return data


MAX_NESTING = 64  # objects/arrays inside each other; alerts nest a few levels, never dozens


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deeply ``value``'s dicts and lists nest (iteratively; stops counting past ``limit``)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _loads(text: str) -> Any:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
        if nesting_depth(data) > MAX_NESTING:
            raise RecursionError
        return data
    except _BadConstant as exc:
        found = _CONSTANT_RE.search(text)
        key = found.group(1)[:64] if found else None
        where = f'"{key}": ' if key else ""
        raise SignalError("invalid_field" if key else "invalid_json", key,
                          f"{where}{exc} is not a valid number (a plot or price was na?)") from None
    except RecursionError:
        raise SignalError("invalid_json", None, "the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        empty = _EMPTY_PLACEHOLDER_RE.search(text)
        if empty:
            key = empty.group(1)[:64]
            raise SignalError("empty_field", key,
                              f'"{key}" has no value (an empty TradingView placeholder?)') from None
        raise SignalError("invalid_json", None,
                          f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        raise SignalError("invalid_json", None, "the body contains a number that is out of range") from None


def sanitize(payload: Dict[str, Any]) -> Dict[str, Any]:
    """A copy without secret keys at any depth (iterative: the JSON may be deeply nested)."""
    out: Dict[str, Any] = {}
    stack = [(payload, out)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for key, value in items:
            if isinstance(src, dict) and isinstance(key, str) and norm(key) in _SECRET_KEYS:
                continue
            if isinstance(value, (dict, list)):
                child: Any = {} if isinstance(value, dict) else [None] * len(value)
                stack.append((value, child))
                value = child
            dst[key] = value
    return out


class Fields:
    """Looks fields up by alias and builds error messages that never echo the secret."""

    def __init__(self, data: Dict[str, Any]):
        self._by_norm: Dict[str, List[Tuple[str, Any]]] = {}
        for key, value in data.items():  # "limitPrice" and "limit_price" land in one list
            self._by_norm.setdefault(norm(key), []).append((key, value))
        self.secret: Optional[str] = None

    def show(self, value: Any) -> str:
        """A short quote of a sent value for a message; never the secret."""
        if not isinstance(value, str):
            return f"a {type(value).__name__}"
        if self.secret and self.secret in value:
            return "<redacted>"
        return repr(value[:40] + ("..." if len(value) > 40 else ""))

    def read(self, name: str, convert: Callable[..., Any], *extra: Any) -> Tuple[Optional[str], Any]:
        """``(key as sent, convert(key, value, self, *extra))``, or ``(None, None)`` if absent."""
        got = self.get(name)
        if got is None:
            return None, None
        return got[0], convert(got[0], got[1], self, *extra)

    def get(self, name: str) -> Optional[Tuple[str, Any]]:
        """(key as sent, value) of the first alias present, or None.  null counts as absent."""
        found = [kv for a in _ALIASES[name] for kv in self._by_norm.get(a, ()) if kv[1] is not None]
        if not found:
            return None
        key, value = found[0]
        for other_key, other_value in found[1:]:
            if _comparable(other_value) != _comparable(value):
                raise SignalError("invalid_field", other_key,
                                  f'"{key}" and "{other_key}" say different things; send one of them')
        if isinstance(value, str) and not value.strip():
            raise SignalError("empty_field", key, f'"{key}" is empty (an empty TradingView placeholder?)')
        return key, value


def _comparable(value: Any) -> Any:
    """Aliases agree when they mean the same: 2 == "2" == 2.0, "Buy" == "buy "."""
    if isinstance(value, str):
        text = value.strip().lower()
        return float(text) if _NUMBER_RE.fullmatch(text) else text
    return value  # numbers compare across int/float as they are (2 == 2.0)


def as_number(key: str, value: Any, f: Fields) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SignalError("invalid_field", key, f'"{key}" must be a number')
    if isinstance(value, int):
        if abs(value) > MAX_ABS_PRICE:
            raise SignalError("invalid_field", key, f'"{key}" is out of range')
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER_RE.fullmatch(text):
            raise SignalError("invalid_field", key, f'"{key}" must be a number, got {f.show(value)}')
        value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_ABS_PRICE:
        raise SignalError("invalid_field", key, f'"{key}" is out of range')
    return value


def as_positive(key: str, value: Any, f: Fields) -> float:
    result = as_number(key, value, f)
    if result <= 0:
        raise SignalError("invalid_field", key, f'"{key}" must be greater than 0')
    return result


def as_whole(key: str, value: Any, f: Fields) -> int:
    result = as_number(key, value, f)
    if result != int(result):
        raise SignalError("invalid_field", key, f'"{key}" must be a whole number, got {f.show(value)}')
    if abs(result) > MAX_QUANTITY:
        raise SignalError("invalid_field", key, f'"{key}" is too large')
    return int(result)


def as_word(key: str, value: Any, f: Fields, table: Dict[str, str], what: str) -> str:
    if not isinstance(value, str):
        raise SignalError("invalid_field", key, f'"{key}" must be text ({what})')
    result = table.get(norm(value))
    if result is None:
        raise SignalError("invalid_field", key, f'"{key}" {f.show(value)} is not one of: {what}')
    return result


def as_text(key: str, value: Any, f: Fields) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SignalError("invalid_field", key, f'"{key}" must be text')
    if isinstance(value, float) and not math.isfinite(value):
        raise SignalError("invalid_field", key, f'"{key}" must be text')
    result = value.strip() if isinstance(value, str) else str(value)
    if len(result) > MAX_TEXT_LEN:
        raise SignalError("invalid_field", key, f'"{key}" is longer than {MAX_TEXT_LEN} characters')
    return result


def as_bool(key: str, value: Any, f: Fields) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise SignalError("invalid_field", key, f'"{key}" must be true or false')


def as_quantity(key: str, value: Any, f: Fields) -> int:
    """A contract count: a JSON integer (or integral number) or text of ASCII digits without an
    exponent.  A trader never types ``1e1`` or fullwidth digits; such text is refused
    (``invalid_quantity``, naming the field) rather than read as a number."""
    check_quantity_text(key, value, f)
    return as_whole(key, value, f)


def check_quantity_text(key: str, value: Any, f: Fields) -> None:
    """Raise ``invalid_quantity`` for a quantity sent as text that is not plain ASCII digits."""
    if isinstance(value, str) and value.strip() and not _QUANTITY_TEXT_RE.fullmatch(value.strip()):
        raise SignalError("invalid_quantity", key,
                          f'"{key}" must be a whole number in ASCII digits (no exponent), got {f.show(value)}')


def as_whole_positive(key: str, value: Any, f: Fields) -> int:
    result = as_whole(key, value, f)
    if result <= 0:
        raise SignalError("invalid_field", key, f'"{key}" must be greater than 0')
    return result
