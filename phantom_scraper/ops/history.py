"""Trade history: what each signal asked, what each account did, the fills, and realized P&L per
account and trading day.  Pure functions over plain data (journal rows and broker fills); the
server gathers the data (``phantom_scraper/ops/history_source.py``).

* Per signal: the request (action, symbol, quantity, the alert's price), and per account its
  outcome (state, order id, transport), its fills with prices, the average fill price, slippage
  against the signal's price (in points, positive = worse for the trader), and per-hop latency:
  ``received_to_ack_ms`` (webhook received -> broker answer journaled), ``send_to_ack_ms`` (the
  router's), ``ack_to_fill_ms`` (answer -> first fill).
* Per account and trading day (Tradovate's ``tradeDate`` of each fill): realized P&L from fill
  pairs matched first-in first-out per contract, times the contract's value per point; a
  "trade" is one closing fill (a fill that reduces a position), a win when its P&L is above 0.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import zoneinfo
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional


@dataclass
class Fill:
    account_id: int
    account_name: str
    contract: str
    order_id: Optional[int]
    action: str  # Buy | Sell
    qty: int
    price: float
    timestamp: float  # epoch seconds
    trade_date: str  # YYYY-MM-DD (the broker's trading day)
    fill_id: Optional[int] = None


@dataclass
class DayTotals:
    account: str
    trade_date: str
    realized_pnl: float = 0.0
    trades: int = 0
    wins: int = 0
    losses: int = 0
    fills: int = 0
    equity: List[List[float]] = field(default_factory=list)  # [[timestamp, cumulative P&L of the day]]

    def row(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("equity")
        d["realized_pnl"] = round(self.realized_pnl, 2)
        return d


def realized_by_day(fills: Iterable[Fill], value_per_point: Dict[str, float]) -> List[DayTotals]:
    """FIFO-matched realized P&L per (account, trading day), oldest first."""
    lots: Dict[tuple, deque] = defaultdict(deque)  # (account, contract) -> open lots [signed qty, price]
    days: Dict[tuple, DayTotals] = {}
    for f in sorted(fills, key=lambda f: (f.timestamp, f.fill_id or 0)):
        key = (f.account_name, f.contract)
        day = days.setdefault((f.account_name, f.trade_date), DayTotals(f.account_name, f.trade_date))
        day.fills += 1
        signed = f.qty if f.action == "Buy" else -f.qty
        book = lots[key]
        pnl, closed = 0.0, 0
        while signed and book and (book[0][0] > 0) != (signed > 0):
            lot = book[0]
            take = min(abs(signed), abs(lot[0]))
            direction = 1 if lot[0] > 0 else -1  # a long lot closed by a sell earns price - lot price
            pnl += direction * (f.price - lot[1]) * take
            closed += take
            lot[0] -= direction * take
            signed += direction * take
            if lot[0] == 0:
                book.popleft()
        if signed:
            book.append([signed, f.price])
        if closed:
            money = pnl * float(value_per_point.get(f.contract) or 1.0)
            day.realized_pnl += money
            day.trades += 1
            day.wins += int(money > 0)
            day.losses += int(money < 0)
            day.equity.append([f.timestamp, round(day.realized_pnl, 2)])
    return sorted(days.values(), key=lambda d: (d.trade_date, d.account))


def _signal_price(payload: dict) -> Optional[float]:
    for key in ("price", "signalPrice", "signal_price", "close", "entryPrice", "entry_price"):
        value = payload.get(key)
        try:
            if value is not None and value != "":
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _signal_error(summary) -> Optional[str]:
    """A refused signal's reason from its stored summary (``{"error": {...}}`` or a message)."""
    if not summary:
        return None
    try:
        data = json.loads(summary) if isinstance(summary, str) else summary
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        where = f" ({err['field']})" if err.get("field") else ""
        return f"{err.get('code') or 'error'}{where}: {err.get('message') or ''}".strip()
    return str(err) if err else (str(data["message"]) if data.get("message") else None)


def signal_rows(signals: Iterable[dict], fills: Iterable[Fill]) -> List[Dict[str, Any]]:
    """Per signal: the request and each account's outcome with its fills and latencies."""
    by_order: Dict[int, List[Fill]] = defaultdict(list)
    for f in fills:
        if f.order_id is not None:
            by_order[int(f.order_id)].append(f)
    out = []
    for s in signals:
        payload = s.get("payload") or {}
        price = _signal_price(payload)
        accounts = []
        for intent in s.get("intents") or []:
            order_id = intent.get("broker_order_id")
            got = sorted(by_order.get(int(order_id), []) if order_id is not None else [], key=lambda f: f.timestamp)
            qty = sum(f.qty for f in got)
            avg = round(sum(f.qty * f.price for f in got) / qty, 6) if qty else None
            action = (intent.get("request") or {}).get("action") or (got[0].action if got else None)
            slippage = None
            if avg is not None and price is not None and action in ("Buy", "Sell"):
                slippage = round((avg - price) if action == "Buy" else (price - avg), 6)
            acked_at = intent.get("updated_at") if intent.get("state") in ("acked", "reconciled") else None
            request = intent.get("request") or {}
            accounts.append({
                "account": intent.get("account_name") or str(intent.get("account_id")),
                "contract": (got[0].contract if got else None) or request.get("symbol")
                or (str(request["contractId"]) if request.get("contractId") is not None else None),
                "step": intent.get("step"), "kind": intent.get("kind"), "action": action,
                "qty_asked": (intent.get("request") or {}).get("orderQty"),
                "state": intent.get("state"), "order_id": order_id, "transport": intent.get("transport"),
                "error": intent.get("error"),
                "fills": [{"qty": f.qty, "price": f.price, "timestamp": f.timestamp} for f in got],
                "filled_qty": qty, "avg_fill_price": avg, "slippage_points": slippage,
                "send_to_ack_ms": intent.get("latency_ms"),
                "received_to_ack_ms": round((acked_at - s["received_at"]) * 1000, 1)
                if acked_at and s.get("received_at") else None,
                "ack_to_fill_ms": round(max(0.0, got[0].timestamp - acked_at) * 1000, 1)
                if got and acked_at else None,
            })
        out.append({"signal_id": s.get("id"), "received_at": s.get("received_at"), "recorder": s.get("recorder"),
                    "error": _signal_error(s.get("summary")),
                    "status": s.get("status"), "action": payload.get("action") or payload.get("order"),
                    "symbol": payload.get("ticker") or payload.get("symbol"),
                    "quantity": payload.get("quantity", payload.get("qty", payload.get("contracts"))),
                    "signal_price": price, "duplicate_of": s.get("duplicate_of"), "accounts": accounts})
    return out


def build(signals: Iterable[dict], fills: List[Fill], value_per_point: Dict[str, float],
          account: Optional[str] = None, first_day: Optional[str] = None,
          last_day: Optional[str] = None) -> Dict[str, Any]:
    """``fills`` should reach back to when the positions were flat (P&L is matched over all of
    them); ``first_day``/``last_day`` (YYYY-MM-DD, inclusive) then select the trading days shown."""
    if account:
        fills = [f for f in fills if f.account_name == account or str(f.account_id) == account]
    days = [d for d in realized_by_day(fills, value_per_point)
            if (first_day is None or d.trade_date >= first_day) and (last_day is None or d.trade_date <= last_day)]
    rows = signal_rows(signals, fills)
    if account:
        for r in rows:
            r["accounts"] = [a for a in r["accounts"] if a["account"] == account]
        rows = [r for r in rows if r["accounts"]]
    totals: Dict[str, Dict[str, Any]] = {}
    for d in days:
        t = totals.setdefault(d.account, {"realized_pnl": 0.0, "trades": 0, "wins": 0, "losses": 0})
        t["realized_pnl"] = round(t["realized_pnl"] + d.realized_pnl, 2)
        for k in ("trades", "wins", "losses"):
            t[k] += getattr(d, k)
    return {"signals": rows, "days": [dict(d.row(), equity=d.equity) for d in days], "totals": totals}


DAY_COLUMNS = ("trade_date", "account", "realized_pnl", "trades", "wins", "losses", "fills")
SIGNAL_COLUMNS = ("received_utc", "received_local", "signal_id", "recorder", "status", "action", "symbol", "contract",
                  "quantity", "signal_price", "account", "state", "order_id", "transport", "filled_qty",
                  "avg_fill_price", "slippage_points", "received_to_ack_ms", "send_to_ack_ms", "ack_to_fill_ms",
                  "error")


def iso_times(epoch: Optional[float], tz_name: str = "UTC") -> Dict[str, Optional[str]]:
    """``received_utc`` (ISO 8601, ``Z``) and ``received_local`` (ISO 8601 with the display zone's offset)."""
    if not epoch:
        return {"received_utc": None, "received_local": None}
    try:
        zone = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = _dt.timezone.utc
    at = _dt.datetime.fromtimestamp(float(epoch), _dt.timezone.utc)
    return {"received_utc": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "received_local": at.astimezone(zone).isoformat(timespec="milliseconds")}


def to_csv(history: Dict[str, Any], view: str = "days", tz_name: str = "UTC") -> str:
    """``days``: one row per account and trading day; ``signals``: one row per signal and account
    (a signal refused before any order: one row with its status as the state and its reason as
    the error); times in UTC and in ``tz_name``."""
    buf = io.StringIO()
    if view == "signals":
        w = csv.DictWriter(buf, SIGNAL_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for s in history["signals"]:
            times = iso_times(s.get("received_at"), tz_name)
            for a in s["accounts"] or [{"state": s.get("status"), "error": s.get("error")}]:
                row = {**s, **times, **a}
                if not row.get("error"):
                    row["error"] = s.get("error")
                w.writerow(row)
    else:
        w = csv.DictWriter(buf, DAY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for d in history["days"]:
            w.writerow(d)
    return buf.getvalue()


def equity_svg(points: List[List[float]], width: int = 240, height: int = 60) -> str:
    """A small inline SVG line of cumulative P&L (nothing fetched from anywhere)."""
    if not points:
        return ""
    series = [[points[0][0], 0.0]] + [list(p) for p in points]
    xs, ys = [p[0] for p in series], [p[1] for p in series]
    x0, x1 = min(xs), max(xs)
    lo, hi = min(ys + [0.0]), max(ys + [0.0])
    span_x, span_y = (x1 - x0) or 1.0, (hi - lo) or 1.0

    def at(x, y):
        return f"{(x - x0) / span_x * (width - 4) + 2:.1f},{height - 2 - (y - lo) / span_y * (height - 4):.1f}"

    path = " ".join(at(x, y) for x, y in series)
    zero = height - 2 - (0 - lo) / span_y * (height - 4)
    colour = "#070" if ys[-1] >= 0 else "#b00"
    return (f"<svg class='equity' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='equity curve'>"
            f"<line x1='0' y1='{zero:.1f}' x2='{width}' y2='{zero:.1f}' stroke='#ccc'/>"
            f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{path}'/></svg>")
