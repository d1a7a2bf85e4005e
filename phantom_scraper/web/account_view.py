"""What the status page shows per account: open positions, working orders and bracket legs, today's
realized P&L with an equity curve, limits and risk locks, and the ``unknown`` intents needing a
person's attention.

Read from the login's socket-fed ``BrokerState`` when it is fresh (no request at all), else over
REST (``position/list``, ``order/list``, ``orderVersion/list``, ``fill/list``: reads, never on
the order path); cached for ``ttl_s`` so a page refreshing every few seconds, or several open
tabs, cost the broker at most a few requests per interval.  A login whose reads fail is reported,
not raised.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from phantom_scraper.ops import history
from phantom_scraper.ops import history_source
from phantom_scraper.errors import TradovateError
from phantom_scraper.tradovate.broker_state import WORKING_STATES

logger = logging.getLogger(__name__)

WORKING = WORKING_STATES


def attention(journal) -> List[dict]:
    """Order intents whose outcome is unknown: each may or may not be at the broker."""
    if journal is None:
        return []
    return [{"cl_ord_id": i["cl_ord_id"], "account": i.get("account_name") or i.get("account_id"),
             "signal_id": i.get("signal_id"), "kind": i.get("kind"), "error": i.get("error"),
             "since": i.get("updated_at")}
            for i in journal.pending_intents() if i["state"] == "unknown"]


def _snapshot(ti, account_id: int) -> Optional[dict]:
    """Tradovate's cash balance snapshot (open and realized P&L), None where not served."""
    try:
        data = ti.cash_balance_snapshot(account_id)
    except TradovateError:
        return None
    return data if isinstance(data, dict) and not data.get("errorText") else None


def fresh_state(login):
    """The login's socket-fed BrokerState when it can be trusted, else None."""
    state = getattr(getattr(login, "connection", None), "broker_state", None)
    return state if state is not None and state.fresh else None


def _latest_versions(rows) -> Dict[Any, dict]:
    versions: Dict[Any, dict] = {}
    for v in rows or []:
        if isinstance(v, dict) and (v.get("orderId") not in versions or v.get("id", 0) > versions[v["orderId"]].get("id", 0)):
            versions[v.get("orderId")] = v
    return versions


def _login_view(login, today: str, risk_locks: Dict[str, dict], limits: Dict[str, dict]) -> List[dict]:
    ti = login.integration
    names = {int(a["id"]): a["name"] for a in login.accounts.values()}
    state = fresh_state(login)
    if state is not None:
        positions, orders = state.positions(), state.entities("order")
        versions = _latest_versions(state.entities("orderVersion"))
    else:
        positions = ti.list_positions()
        orders = ti.list_orders()
        try:
            versions = _latest_versions(ti.list_order_versions())
        except TradovateError:
            versions = {}
    out = []
    for account_id, name in sorted(names.items(), key=lambda kv: kv[1]):
        pos_rows = []
        for p in positions or []:
            if p.get("accountId") != account_id or not p.get("netPos"):
                continue
            contract, value = history_source.contract_info(ti, int(p["contractId"]))
            pos_rows.append({"contract": contract, "contract_id": int(p["contractId"]), "net_pos": p["netPos"],
                             "avg_price": p.get("netPrice"),
                             "value_per_point": value})
        working = []
        for o in orders or []:
            if o.get("accountId") != account_id or o.get("ordStatus") not in WORKING:
                continue
            v = versions.get(o.get("id")) or {}
            contract, _value = history_source.contract_info(ti, int(o["contractId"]))
            working.append({"order_id": o.get("id"), "contract": contract, "action": o.get("action"),
                            "qty": v.get("orderQty"), "type": v.get("orderType"), "price": v.get("price"),
                            "stop_price": v.get("stopPrice"), "status": o.get("ordStatus"),
                            "leg_of": o.get("parentId")})
        snap = state.cash_balance(account_id) if state is not None else _snapshot(ti, account_id)
        out.append({"account": name, "account_id": account_id, "positions": pos_rows, "working": working,
                    "open_pnl": snap.get("openPnL") if snap else None,
                    "broker_realized_pnl": snap.get("realizedPnL") if snap else None,
                    "limits": limits.get(name, {}), "locks": [risk_locks[k] for k in (name, "all") if k in risk_locks]})
    return out


class AccountView:
    """Per app: the cached per-account view (see the module docstring)."""

    def __init__(self, ttl_s: float = 3.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()  # guards _cached and _at (reads happen outside it)
        self._cached: Optional[dict] = None
        self._at = 0.0

    def get(self, service, risk_locks: Optional[Dict[str, dict]] = None) -> dict:
        with self._lock:
            if self._cached is not None and self._clock() - self._at < self.ttl_s:
                return self._cached
        view = self._build(service, risk_locks or {})
        with self._lock:
            self._cached, self._at = view, self._clock()
        return view

    def invalidate(self) -> None:
        """The next read goes to the broker (after an action from the console)."""
        with self._lock:
            self._cached = None

    def _build(self, service, risk_locks: Dict[str, dict]) -> dict:
        today = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
        limits = {}
        for rec in getattr(service, "recorders", ()) or ():
            for link in rec.accounts or ():
                limits.setdefault(link.account, {"multiplier": link.multiplier, "max_qty": link.max_qty,
                                                 "enabled": link.enabled})
        accounts, errors = [], []
        for login_name, login in list(getattr(service, "logins", {}).items()):
            try:
                accounts += _login_view(login, today, risk_locks, limits)
            except TradovateError as exc:
                errors.append(f"{login_name}: broker read failed ({type(exc).__name__})")
        try:
            # the last trading day with fills lies within a long weekend (journal fills: few days' rows)
            fills, values, fill_errors = history_source.broker_fills(service, time.time() - 4 * 86400)
        except Exception:  # noqa: BLE001 - the page still renders
            logger.exception("history for the status page failed")
            fills, values, fill_errors = [], {}, ["history unavailable"]
        errors += fill_errors
        all_days = history.realized_by_day(fills, values)
        latest = max((d.trade_date for d in all_days), default=today)  # the last trading day with fills
        days = {d.account: d for d in all_days if d.trade_date == latest}
        for a in accounts:
            d = days.get(a["account"])
            a["today"] = ({"trade_date": d.trade_date, "realized_pnl": round(d.realized_pnl, 2), "trades": d.trades,
                           "wins": d.wins, "losses": d.losses, "equity": d.equity} if d else None)
        try:
            needs = attention(getattr(service, "journal", None))
        except Exception:  # noqa: BLE001
            logger.exception("reading unknown intents failed")
            needs, errors = [], errors + ["journal unreadable"]
        recent = [d.row() for d in all_days[-30:]][::-1]  # the History view: newest day first
        return {"accounts": accounts, "attention": needs, "errors": errors, "days": recent}
