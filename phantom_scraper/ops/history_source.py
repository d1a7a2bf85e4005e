"""Gathers what :mod:`phantom_scraper.ops.history` needs: signals and intents from the journal, fills
from each login (``fill/list`` over REST: a read, never on the order path), contract names and
values per point (cached per process)."""
from __future__ import annotations

import datetime as _dt
import logging
import re
import threading
from typing import Any, Dict, List, Optional, Tuple

from phantom_scraper.ops import history
from phantom_scraper.errors import TradovateError
from phantom_scraper.signals.symbols import POINT_VALUES

logger = logging.getLogger(__name__)

_ROOT = re.compile(r"^([A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$")
_contracts: Dict[int, Tuple[str, Optional[float]]] = {}  # contract id -> (name, value per point)
_contracts_lock = threading.Lock()  # guards _contracts (lookups happen outside it)


def parse_time(text: Optional[str], end_of_day: bool = False) -> Optional[float]:
    """``from``/``to`` of ``/api/history``: epoch seconds, an ISO date or an ISO date-time; empty:
    None.  Raises ValueError.  The range is ``[from, to)``: an ISO date as ``to`` (``end_of_day``)
    is the next midnight (UTC), so that day is the last one included."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            day = _dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=_dt.timezone.utc)
            return (day + _dt.timedelta(days=1 if end_of_day else 0)).timestamp()
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date or time: {text[:40]!r} (use YYYY-MM-DD, ISO 8601 or epoch seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _epoch(ts: Any) -> float:
    if isinstance(ts, (int, float)):
        return float(ts)
    try:
        return _dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _trade_date(fill: dict, epoch: float) -> str:
    td = fill.get("tradeDate")
    if isinstance(td, dict) and td.get("year"):
        return f"{int(td['year']):04d}-{int(td['month']):02d}-{int(td['day']):02d}"
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%d")


def remember_contract(contract_id: int, name: str, value_per_point: Optional[float]) -> None:
    with _contracts_lock:
        _contracts.setdefault(int(contract_id), (name, float(value_per_point) if value_per_point else None))


def known_contract_name(contract_id) -> object:
    """The contract's name if it was looked up before (no network), else its id."""
    with _contracts_lock:
        known = _contracts.get(contract_id)
    return known[0] if known is not None else contract_id


def known_value_per_point(contract_id: int) -> Optional[float]:
    """The contract's USD value per point if it was looked up before (no network), else None."""
    with _contracts_lock:
        known = _contracts.get(contract_id)
    return known[1] if known is not None else None


def contract_info(ti, contract_id: int) -> Tuple[str, Optional[float]]:
    """The contract's name and USD value per point (cached; the broker asked once per contract)."""
    with _contracts_lock:
        known = _contracts.get(contract_id)
    if known is not None:
        return known
    data = ti.get_contract(contract_id) or {}
    name = str(data.get("name") or contract_id)
    match = _ROOT.match(name)
    root = match.group(1) if match else name
    value = data.get("valuePerPoint") or POINT_VALUES.get(root)
    if value is None:
        try:
            product = ti.find_product(root) or {}
            value = product.get("valuePerPoint") if isinstance(product, dict) else None
        except TradovateError:
            value = None
    found = (name, float(value) if value else None)
    with _contracts_lock:
        _contracts[contract_id] = found
    return found


def broker_fills(service, start: Optional[float] = None,
                 end: Optional[float] = None) -> Tuple[List[history.Fill], Dict[str, float], List[str]]:
    """Every fill of every traded account, the value per point per contract name, and errors:
    the journal's fill ledger in ``[start, end)`` (the broker state drops finished orders and
    their fills once they are journaled), merged by fill id with the broker's own list."""
    fills: List[history.Fill] = []
    values: Dict[str, float] = {}
    errors: List[str] = []
    seen: set = set()
    owners = {}
    for login_name, login in list(service.logins.items()):
        for a in login.accounts.values():
            owners[int(a["id"])] = (login_name, login.integration, a["name"])
    ledger = getattr(service, "fill_ledger", None)
    if ledger is not None:
        try:
            rows = ledger.between(start, end)
        except Exception as exc:  # noqa: BLE001 - the broker's copy still answers
            rows = []
            errors.append(f"journal fills: {type(exc).__name__}")
        for r in rows:
            owner = owners.get(int(r["account_id"]))
            if owner is None:
                continue
            try:
                name, value = contract_info(owner[1], int(r["contract_id"]))
            except TradovateError as exc:
                errors.append(f"{owner[0]}: {type(exc).__name__}")
                continue
            if value:
                values[name] = value
            seen.add(r["fill_id"])
            fills.append(history.Fill(int(r["account_id"]), owner[2], name, r["order_id"], str(r["action"]),
                                      int(r["qty"] or 0), float(r["price"] or 0.0), float(r["at"]),
                                      str(r["trade_date"]), r["fill_id"]))
    for login_name, login in list(service.logins.items()):
        ti = login.integration
        names = {int(a["id"]): a["name"] for a in login.accounts.values()}
        state = getattr(getattr(login, "connection", None), "broker_state", None)
        try:
            if state is not None and state.fresh:  # the socket's copy: no request
                orders = {int(o["id"]): o for o in state.entities("order") if "id" in o}
                raw = state.entities("fill")
            else:
                orders = {int(o["id"]): o for o in ti.list_orders() if isinstance(o, dict) and "id" in o}
                raw = ti.list_fills()
        except TradovateError as exc:
            errors.append(f"{login_name}: {type(exc).__name__}")
            continue
        for f in raw or []:
            if not isinstance(f, dict) or not f.get("active", True) or f.get("id") in seen:
                continue
            order = orders.get(int(f.get("orderId") or 0)) or {}
            account_id = order.get("accountId")
            if account_id is None or int(account_id) not in names:
                continue
            try:
                name, value = contract_info(ti, int(f["contractId"]))
            except TradovateError as exc:
                errors.append(f"{login_name}: {type(exc).__name__}")
                continue
            if value:
                values[name] = value
            epoch = _epoch(f.get("timestamp"))
            fills.append(history.Fill(int(account_id), names[int(account_id)], name, f.get("orderId"),
                                      str(f.get("action")), int(f.get("qty") or 0), float(f.get("price") or 0.0),
                                      epoch, _trade_date(f, epoch), f.get("id")))
    return fills, values, errors


def gather(service, start: Optional[float], end: Optional[float], account: Optional[str] = None,
           limit: int = 2000) -> Dict[str, Any]:
    """The history in ``[start, end)`` (epoch seconds; None: open): the last day shown is the one
    holding the last instant before ``end`` (``to=2026-11-24`` ends at the next midnight: the 24th)."""
    journal = service.journal
    signals = journal.signals_between(start, end, limit) if journal is not None else []
    fills, values, errors = broker_fills(service, start, end)
    day = lambda t: _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d")  # noqa: E731
    result = history.build(signals, fills, values, account, first_day=day(start) if start is not None else None,
                           last_day=day(end - 0.001) if end is not None else None)
    result["errors"] = errors
    return result
