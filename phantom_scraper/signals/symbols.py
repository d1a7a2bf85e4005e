"""TradingView symbol -> dated Tradovate ``Contract``.

Accepted forms (trimmed, case-insensitive, an ``EXCHANGE:`` prefix and a leading ``@`` or ``/``
dropped): continuous front month ``NQ1!``, ``CME_MINI:NQ1!``, ``MNQ1!``; a bare root ``NQ``;
dated ``NQZ6``, ``NQZ26``, ``NQZ2026`` (normalised to the one-digit year ``NQZ6``).
``NQ2!`` (second month) is rejected with ``unsupported``: ``contract/suggest`` is ordered by
relevance, not by expiry, so "the second suggestion" is not reliably the second month -- send the
dated contract instead.

* Continuous / root: the front month by maturity date, not by search relevance.  The product's
  ``contractMaturity`` list (``client.find_product`` + ``client.list_maturities``) is read and
  each maturity gets a roll date: ``roll_days_before`` days before its expiration when set, else
  the CME equity-index convention for equity-index roots (``EQUITY_INDEX_ROOTS``: the Thursday
  eight days before the third-Friday expiry, i.e. expiry - 8 days) and the expiration itself for
  other products.  The front is the earliest maturity whose roll date is still ahead; it is
  cached until that roll date (or ``refresh_s``, whichever comes first).  A contract the broker
  refused with ``InvalidContract`` (``refused()``) is skipped until the cache is refreshed by a
  roll.  Without maturity data (a client lacking those calls, a product not found) the old rule
  applies: the first ``contract/suggest`` hit named root + month code + one digit, else
  ``roll_contract(root)``.
* "Today" is the UTC date of ``clock()``, or ``trading_date`` (YYYY-MM-DD, the ``TRADING_DATE``
  setting) when set: tests and replays pin the calendar with it.
* A failed ``contractMaturity`` lookup (HTTP 404/5xx, a timeout: ``TradovateError``) does not fail
  the signal: it is logged (WARNING) and the front is chosen without it -- the cached front while
  its roll date is still ahead, else the earliest ``contract/suggest`` month not yet rolled by the
  calendar (equity index: the third Friday - 8 days; other products: the month itself).  Such a
  choice is cached for ``FALLBACK_CACHE_S`` only, so the maturity list is asked again soon.
* Dated: ``client.find_contract(name)``; cached per name for ``refresh_s``.  A dated month already
  past (``NQH2022``, ``NQH22``: a two- or four-digit year before this month) is
  ``SignalError("expired_contract")`` naming the root's front month; a one-digit year is
  ambiguous (Tradovate reads it as the next such year) and goes to the broker as sent.
* Nothing found -> ``SignalError("unknown_symbol", "symbol", ...)`` before anything is sent.
* Broker errors (``TradovateError``) propagate -- except that a stale cached contract is served
  (with a warning) when its refresh fails, so a network blip at the daily refresh does not stop
  trading.

Tick size: the product's ``tickSize`` (``product/find?name=<root>``, Tradovate's Product model;
read once per root and kept), else the contract dict's ``providerTickSize``/``tickSize`` (seen in
examples, not in the Partner schema), else ``TICK_SIZES`` -- a cache of known roots, no longer a
gate: any root the broker describes is tradable; a root nobody describes is ``unsupported``
(prices could not be rounded).  Point value: the product's ``valuePerPoint``, else the
contract's, else ``POINT_VALUES``, else None.  A broker value that differs from the table wins
(logged once).

Thread-safe: one lock guards the cache dict only; suggest/find calls happen outside it (two
threads missing at once may both fetch; the last one stored wins, both results are valid).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from phantom_scraper.errors import AuthError, RateLimitedError, TradovateError
from phantom_scraper.signals.model import Contract, SignalError

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

_DIFFERS: Set[Tuple[str, str]] = set()  # (root, what) already logged; a set add is GIL-atomic

# Roots that roll by the CME equity-index convention (the Thursday 8 days before expiry).
EQUITY_INDEX_ROOTS = frozenset({"ES", "MES", "NQ", "MNQ", "YM", "MYM", "RTY", "M2K", "EMD", "NKD"})

FALLBACK_CACHE_S = 300.0  # a front chosen without the maturity list is trusted this long
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")

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


def dated_month(symbol: Any) -> Optional[Tuple[int, int]]:
    """``(year, month)`` of a dated symbol sent with a two- or four-digit year (``NQH22``,
    ``NQH2022``); None for a one-digit year (ambiguous), a continuous symbol or a root."""
    if not isinstance(symbol, str):
        return None
    text = symbol.strip().upper().rsplit(":", 1)[-1].strip().lstrip("@/")
    m = _DATED_RE.fullmatch(text)
    if m is None or len(m.group("year")) == 1:
        return None
    year = m.group("year")
    return (int(year) if len(year) == 4 else 2000 + int(year)), MONTH_CODES.index(m.group("month")) + 1


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def _positive_number(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def contract_from_dict(data: Dict[str, Any], root: str, product: Optional[Dict[str, Any]] = None) -> Contract:
    product = product or {}
    broker_tick = _positive_number(product.get("tickSize")) or _positive_number(data.get("providerTickSize")) \
        or _positive_number(data.get("tickSize"))
    tick = broker_tick or TICK_SIZES.get(root)
    if tick is None:
        raise SignalError("unsupported", "symbol", f"no tick size is known for {root}")
    broker_pv = _positive_number(product.get("valuePerPoint")) or _positive_number(data.get("valuePerPoint"))
    point_value = broker_pv or POINT_VALUES.get(root)
    for what, said, table in (("tick size", broker_tick, TICK_SIZES.get(root)),
                              ("value per point", broker_pv, POINT_VALUES.get(root))):
        if said is not None and table is not None and abs(said - table) > 1e-12 and (root, what) not in _DIFFERS:
            _DIFFERS.add((root, what))
            log.warning("%s: the broker's %s is %s, the built-in table says %s; using the broker's", root, what,
                        said, table)
    return Contract(id=data["id"], name=data["name"].upper(), root=root, tick_size=tick,
                    point_value=point_value)


def _valid(data: Any, pattern: "re.Pattern[str]") -> bool:
    return (isinstance(data, dict) and isinstance(data.get("name"), str)
            and isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool)
            and pattern.fullmatch(data["name"].upper()) is not None)


def roll_date(root: str, expiration: dt.date, days_before: Optional[int] = None) -> dt.date:
    """The day trading moves off a maturity expiring on ``expiration``."""
    if days_before is not None:
        return expiration - dt.timedelta(days=days_before)
    if root in EQUITY_INDEX_ROOTS:
        return expiration - dt.timedelta(days=8)  # third Friday - 8 days = the Thursday a week before
    return expiration


def _maturity_date(value: Any) -> Optional[dt.date]:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


class SymbolResolver:
    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time,
                 refresh_s: float = 86400.0, suggest_limit: int = 10,
                 roll_days_before: Optional[int] = None, trading_date: Optional[str] = None):
        self._client = client
        self._clock = clock
        self._refresh_s = refresh_s
        self._suggest_limit = suggest_limit
        self._roll_days_before = roll_days_before
        self.trading_date = trading_date  # a plain attribute: replaced whole, read once per call
        # Guards _cache (key -> (fetched_at, Contract, valid_until, rolls_on)), _rolls and _refused only;
        # never held during a client call.
        self._lock = threading.Lock()
        self._cache: Dict[str, Tuple[float, Contract, float, Optional[dt.date]]] = {}
        self._rolls: Dict[str, dt.date] = {}  # root -> next roll date of its current front
        self._refused: Set[str] = set()  # contract names the broker refused (InvalidContract)
        self._products: Dict[str, Dict[str, Any]] = {}  # root -> product/find answer (tickSize, valuePerPoint)

    def today(self) -> dt.date:
        pinned = (self.trading_date or "").strip()
        if pinned:
            try:
                return dt.date.fromisoformat(pinned)
            except ValueError:
                log.warning("trading date %r is not YYYY-MM-DD; using the clock", pinned)
        return dt.datetime.fromtimestamp(self._clock(), tz=dt.timezone.utc).date()

    def resolve(self, symbol: str) -> Contract:
        """The dated contract for ``symbol``; ``SignalError`` if there is none."""
        root, name = parse_symbol(symbol)
        key = name or root + "!"
        if name:
            self._refuse_expired(symbol, root)
        with self._lock:
            cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and now < cached[2] and (cached[3] is None or self.today() < cached[3]):
            return cached[1]
        next_roll, provisional = None, False
        try:
            if name:
                contract = self._fetch_dated(root, name)
            else:
                contract, next_roll, provisional = self._fetch_front(root, cached)
        except TradovateError as exc:
            if cached is None:
                raise
            log.warning("symbol refresh for %s failed (%s); using cached %s", key, exc, cached[1].name)
            return cached[1]
        if contract is None:
            raise SignalError("unknown_symbol", "symbol",
                              f"{symbol.strip()[:40]}: no such Tradovate contract")
        valid_until = now + (min(self._refresh_s, FALLBACK_CACHE_S) if provisional else self._refresh_s)
        if next_roll is not None:  # cached until the roll date (00:00 UTC of that day)
            roll_at = dt.datetime.combine(next_roll, dt.time(), tzinfo=dt.timezone.utc).timestamp()
            today_at = dt.datetime.combine(self.today(), dt.time(), tzinfo=dt.timezone.utc).timestamp()
            valid_until = min(valid_until, now + max(0.0, roll_at - today_at))
        with self._lock:
            self._cache[key] = (now, contract, valid_until, next_roll)
            if next_roll is not None:
                self._rolls[root] = next_roll
        if cached is None or cached[1].name != contract.name:
            log.info("symbol %s -> %s (id %s)%s", key, contract.name, contract.id,
                     f", rolls on {next_roll.isoformat()}" if next_roll else "")
        return contract

    def cached(self, symbol: str) -> Optional[Contract]:
        """The contract ``resolve`` would return without asking the broker, or None (not cached,
        due for a refresh or a roll, or not a symbol)."""
        try:
            root, name = parse_symbol(symbol)
        except SignalError:
            return None
        with self._lock:
            cached = self._cache.get(name or root + "!")
        if cached is not None and self._clock() < cached[2] and (cached[3] is None or self.today() < cached[3]):
            return cached[1]
        return None

    def refused(self, symbol: str, contract: Contract) -> None:
        """The broker answered ``InvalidContract`` for ``contract``: forget it for ``symbol``
        and skip it when the front is picked again."""
        root, name = parse_symbol(symbol)
        with self._lock:
            self._cache.pop(name or root + "!", None)
            if not name:
                self._refused.add(contract.name)
        log.warning("broker refused %s as InvalidContract; %s is resolved again", contract.name, symbol)

    def fronts(self) -> Dict[str, dict]:
        """For the status JSON: each continuous root's current front and next roll date."""
        with self._lock:
            out = {}
            for key, (_, contract, _, _) in self._cache.items():
                if key.endswith("!"):
                    root = key[:-1]
                    roll = self._rolls.get(root)
                    out[root] = {"front": contract.name, "contract_id": contract.id,
                                 "next_roll": roll.isoformat() if roll else None}
            return out

    def clear(self) -> None:
        """Forget every cached contract and every refusal."""
        with self._lock:
            self._cache.clear()
            self._rolls.clear()
            self._refused.clear()

    def _product(self, root: str, swallow: bool = True) -> Dict[str, Any]:
        """``product/find?name=<root>`` (kept per root once found), or {} when unavailable (a
        broker error propagates with ``swallow=False``: the front-month search reports it)."""
        with self._lock:
            known = self._products.get(root)
        if known is not None:
            return known
        find_product = getattr(self._client, "find_product", None)
        if find_product is None:
            return {}
        try:
            product = find_product(root)
        except TradovateError as exc:  # the contract or the table may still know the tick size
            if not swallow:
                raise
            log.warning("product/find %s failed (%s); tick size from the contract or the table", root, exc)
            return {}
        if not isinstance(product, dict):
            return {}
        with self._lock:
            self._products[root] = product
        return product

    def _fetch_dated(self, root: str, name: str) -> Optional[Contract]:
        data = self._client.find_contract(name)
        if not _valid(data, re.compile(re.escape(name))):
            return None
        return contract_from_dict(data, root, self._product(root))

    def _refuse_expired(self, symbol: str, root: str) -> None:
        """``expired_contract`` for a dated month already past, naming the front month."""
        dated = dated_month(symbol)
        today = self.today()
        if dated is None or dated >= (today.year, today.month):
            return
        shown = symbol.strip()[:40]
        try:
            front = f"; the front month is {self.resolve(root).name}"
        except (SignalError, TradovateError) as exc:  # the hint is a courtesy: the refusal stands
            log.info("front month of %s for the expired-contract message: %s", root, exc)
            front = ""
        raise SignalError("expired_contract", "symbol",
                          f"{shown} expired ({_MONTH_NAMES[dated[1] - 1]} {dated[0]}){front}: send "
                          f"{root}1! (the front month, rolled automatically) or a current dated contract")

    def _fetch_front(self, root: str, cached=None) -> Tuple[Optional[Contract], Optional[dt.date], bool]:
        """(front, its roll date, provisional: chosen without the maturity list)."""
        try:
            by_maturity = self._front_by_maturity(root)
        except (RateLimitedError, AuthError):
            # the login itself is refused (a 429's hour of lock-out, a penalty, a token): more
            # requests would not help -- a 429 window even restarts with each -- so the signal
            # reports it instead of falling back
            raise
        except TradovateError as exc:  # an auxiliary lookup (404, 5xx, timeout): the front can still be chosen safely
            log.warning("contractMaturity lookup for %s failed (%s); choosing the front from the cached front "
                        "and contract/suggest", root, exc)
            contract, rolls_on = self._front_without_maturities(root, cached)
            return contract, rolls_on, True
        if by_maturity is not None:
            return by_maturity[0], by_maturity[1], False
        return self._front_by_suggest(root), None, False

    def _front_without_maturities(self, root: str, cached) -> Tuple[Optional[Contract], Optional[dt.date]]:
        """The cached front while its roll is ahead; else the earliest suggested month whose
        estimated roll (``_estimated_roll``) is still ahead and that is later than the cached front."""
        today = self.today()
        if cached is not None and cached[3] is not None and today < cached[3]:
            log.warning("front of %s: keeping the cached %s (rolls on %s)", root, cached[1].name, cached[3])
            return cached[1], cached[3]
        pattern = re.compile(rf"{re.escape(root)}[{MONTH_CODES}]\d")
        with self._lock:
            refused = set(self._refused)
        after = self._year_month(cached[1].name, root, today) if cached is not None else None
        candidates = []
        for data in self._client.suggest_contracts(root, self._suggest_limit) or []:
            if not _valid(data, pattern) or data["name"].upper() in refused:
                continue
            ym = self._year_month(data["name"].upper(), root, today)
            rolls_on = self._estimated_roll(root, ym)
            if today < rolls_on and (after is None or ym > after):
                candidates.append((ym, rolls_on, data))
        if not candidates:
            if cached is not None:
                log.warning("front of %s: no later month suggested; keeping %s", root, cached[1].name)
                return cached[1], None
            return None, None
        ym, rolls_on, data = min(candidates, key=lambda c: c[0])
        contract = contract_from_dict(data, root)
        log.warning("front of %s chosen without the maturity list: %s (estimated roll %s)", root, contract.name,
                    rolls_on)
        return contract, rolls_on

    @staticmethod
    def _year_month(name: str, root: str, today: dt.date) -> Tuple[int, int]:
        """A one-digit-year contract name's (year, month): the year ending in that digit from last year on."""
        month = MONTH_CODES.index(name[len(root)]) + 1
        digit = int(name[len(root) + 1:])
        year = today.year - today.year % 10 + digit
        if year < today.year - 1:
            year += 10
        return year, month

    def _estimated_roll(self, root: str, ym: Tuple[int, int]) -> dt.date:
        if self._roll_days_before is not None or root in EQUITY_INDEX_ROOTS:
            return roll_date(root, _third_friday(*ym), self._roll_days_before)
        return dt.date(*ym, 1)  # other products stop trading before their month: leave them by its start

    def _front_by_maturity(self, root: str) -> Optional[Tuple[Optional[Contract], Optional[dt.date]]]:
        """(front, its roll date) from the product's maturities; None when there are none."""
        find_product = getattr(self._client, "find_product", None)
        list_maturities = getattr(self._client, "list_maturities", None)
        if find_product is None or list_maturities is None:
            return None
        product = self._product(root, swallow=False)
        if product.get("id") is None:
            return None
        dated: List[Tuple[dt.date, str]] = []
        for m in list_maturities(product["id"]) or []:
            expires = _maturity_date(m.get("expirationDate")) if isinstance(m, dict) else None
            month = m.get("expirationMonth") if isinstance(m, dict) else None
            if expires is None or not isinstance(month, int) or not 1 <= month % 100 <= 12:
                continue
            name = f"{root}{MONTH_CODES[month % 100 - 1]}{(month // 100) % 10}"
            dated.append((roll_date(root, expires, self._roll_days_before), name))
        if not dated:
            return None
        today = self.today()
        with self._lock:
            refused = set(self._refused)
        pattern = re.compile(rf"{re.escape(root)}[{MONTH_CODES}]\d")
        for rolls_on, name in sorted(dated):
            if today >= rolls_on or name in refused:
                continue
            data = self._client.find_contract(name)
            if _valid(data, pattern):
                return contract_from_dict(data, root, product), rolls_on
        return None, None

    def _front_by_suggest(self, root: str) -> Optional[Contract]:
        pattern = re.compile(rf"{re.escape(root)}[{MONTH_CODES}]\d")
        for data in self._client.suggest_contracts(root, self._suggest_limit) or []:
            if _valid(data, pattern):
                return contract_from_dict(data, root, self._product(root))
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
                return contract_from_dict(data, root, self._product(root))
        return None
