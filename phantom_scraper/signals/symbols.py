"""TradingView symbol -> dated Tradovate ``Contract``.

Accepted forms (trimmed, case-insensitive, an ``EXCHANGE:`` prefix and a leading ``@`` or ``/``
dropped): continuous front month ``NQ1!``, ``CME_MINI:NQ1!``, ``MNQ1!``; a bare root ``NQ``;
dated ``NQZ6``, ``NQZ26``, ``NQZ2026`` (normalised to the one-digit year ``NQZ6``).
``NQ2!`` (second month) is rejected with ``unsupported``: ``contract/suggest`` is ordered by
relevance, not by expiry, so "the second suggestion" is not reliably the second month -- send the
dated contract instead.

* Continuous / root: ``client.suggest_contracts(root, limit)``; the front month is the first
  suggestion whose name is exactly root + month code + one digit (suggest for ``ES`` may also
  return other products such as ``ESG...``; those are skipped).  If suggest gives nothing and the
  client has ``roll_contract(name)``, that is tried.  Cached per root for ``refresh_s``.
* Dated: ``client.find_contract(name)``; cached per name for ``refresh_s``.
* Nothing found -> ``SignalError("unknown_symbol", "symbol", ...)`` before anything is sent.
* Broker errors (``TradovateError``) propagate -- except that a stale cached contract is served
  (with a warning) when its refresh fails, so a network blip at the daily refresh does not stop
  trading.

Tick size: the contract dict's ``providerTickSize`` or ``tickSize`` when present and positive,
else ``TICK_SIZES`` by root; a root in neither is ``unsupported`` (prices could not be rounded).
Point value: ``valuePerPoint`` if present, else ``POINT_VALUES``, else None.

Thread-safe: one lock guards the cache dict only; suggest/find calls happen outside it (two
threads missing at once may both fetch; the last one stored wins, both results are valid).
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import TradovateError
from .model import Contract, SignalError

log = logging.getLogger(__name__)

MONTH_CODES = "FGHJKMNQUVXZ"
TICK_SIZES: Dict[str, float] = {
    "ES": 0.25, "MES": 0.25, "NQ": 0.25, "MNQ": 0.25,
    "YM": 1.0, "MYM": 1.0, "RTY": 0.1, "M2K": 0.1,
    "CL": 0.01, "MCL": 0.01, "GC": 0.1, "MGC": 0.1,
}
POINT_VALUES: Dict[str, float] = {
    "ES": 50.0, "MES": 5.0, "NQ": 20.0, "MNQ": 2.0, "YM": 5.0, "MYM": 0.5,
    "RTY": 50.0, "M2K": 5.0, "CL": 1000.0, "MCL": 100.0, "GC": 100.0, "MGC": 10.0,
}

_DATED_RE = re.compile(rf"(?P<root>[A-Z0-9]+?)(?P<month>[{MONTH_CODES}])(?P<year>\d{{4}}|\d{{1,2}})")
_CONTINUOUS_RE = re.compile(r"(?P<root>[A-Z0-9]+?)(?P<n>\d)!")
_ROOT_RE = re.compile(r"[A-Z0-9]{0,5}[A-Z][A-Z0-9]{0,5}")


def parse_symbol(symbol: Any) -> Tuple[str, str]:
    """``(root, name)`` where name is the dated one-digit-year contract, or ``""`` for the front
    month.  Raises ``SignalError`` for malformed or unsupported forms."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise SignalError("unknown_symbol", "symbol", "the symbol is empty")
    text = symbol.strip().upper().rsplit(":", 1)[-1].strip().lstrip("@/")
    shown = symbol.strip()[:40]
    m = _CONTINUOUS_RE.fullmatch(text)
    if m:
        if m.group("n") != "1":
            raise SignalError("unsupported", "symbol",
                              f"{shown}: only the front month (1!) is supported; send the dated contract (e.g. NQH7)")
        return m.group("root"), ""
    m = _DATED_RE.fullmatch(text)
    if m:
        year = m.group("year")
        if len(year) == 4 and not year.startswith("20"):
            raise SignalError("unknown_symbol", "symbol", f"{shown}: year {year} is out of range")
        return m.group("root"), f"{m.group('root')}{m.group('month')}{year[-1]}"
    if _ROOT_RE.fullmatch(text):
        return text, ""
    raise SignalError("unknown_symbol", "symbol", f"{shown} is not a futures symbol")


def _positive_number(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def contract_from_dict(data: Dict[str, Any], root: str) -> Contract:
    tick = _positive_number(data.get("providerTickSize")) or _positive_number(data.get("tickSize")) \
        or TICK_SIZES.get(root)
    if tick is None:
        raise SignalError("unsupported", "symbol", f"no tick size is known for {root}")
    point_value = _positive_number(data.get("valuePerPoint")) or POINT_VALUES.get(root)
    return Contract(id=data["id"], name=data["name"].upper(), root=root, tick_size=tick,
                    point_value=point_value)


def _valid(data: Any, pattern: "re.Pattern[str]") -> bool:
    return (isinstance(data, dict) and isinstance(data.get("name"), str)
            and isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool)
            and pattern.fullmatch(data["name"].upper()) is not None)


class SymbolResolver:
    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time,
                 refresh_s: float = 86400.0, suggest_limit: int = 10):
        self._client = client
        self._clock = clock
        self._refresh_s = refresh_s
        self._suggest_limit = suggest_limit
        # Guards _cache (key -> (fetched_at, Contract)) only; never held during a client call.
        self._lock = threading.Lock()
        self._cache: Dict[str, Tuple[float, Contract]] = {}

    def resolve(self, symbol: str) -> Contract:
        """The dated contract for ``symbol``; ``SignalError`` if there is none."""
        root, name = parse_symbol(symbol)
        key = name or root + "!"
        with self._lock:
            cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1]
        try:
            contract = self._fetch_dated(root, name) if name else self._fetch_front(root)
        except TradovateError as exc:
            if cached is None:
                raise
            log.warning("symbol refresh for %s failed (%s); using cached %s", key, exc, cached[1].name)
            return cached[1]
        if contract is None:
            raise SignalError("unknown_symbol", "symbol",
                              f"{symbol.strip()[:40]}: no such Tradovate contract")
        with self._lock:
            self._cache[key] = (now, contract)
        if cached is None or cached[1].name != contract.name:
            log.info("symbol %s -> %s (id %s)", key, contract.name, contract.id)
        return contract

    def clear(self) -> None:
        """Forget every cached contract (e.g. after the broker answered InvalidContract)."""
        with self._lock:
            self._cache.clear()

    def _fetch_dated(self, root: str, name: str) -> Optional[Contract]:
        data = self._client.find_contract(name)
        if not _valid(data, re.compile(re.escape(name))):
            return None
        return contract_from_dict(data, root)

    def _fetch_front(self, root: str) -> Optional[Contract]:
        pattern = re.compile(rf"{re.escape(root)}[{MONTH_CODES}]\d")
        for data in self._client.suggest_contracts(root, self._suggest_limit) or []:
            if _valid(data, pattern):
                return contract_from_dict(data, root)
        roll = getattr(self._client, "roll_contract", None)
        if roll is not None:
            try:
                data = roll(root)
            except TradovateError as exc:  # rollcontract with a bare root is a best effort
                log.debug("roll_contract(%s) failed: %s", root, exc)
                return None
            if isinstance(data, dict) and isinstance(data.get("contract"), dict):
                data = data["contract"]
            if _valid(data, pattern):
                return contract_from_dict(data, root)
        return None
