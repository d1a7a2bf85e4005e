"""Cash balances and P&L (mixin of :class:`.exchange.Exchange`), as Tradovate reports them
(docs/TRADOVATE.md, "Market data and cash balance").

Each account has one ``cashBalance`` entity (USD).  A fill that reduces or closes a position
realizes ``closed qty x (fill price - position's netPrice) x valuePerPoint`` (sign by side) into
``amount``, ``realizedPnL`` (the trading day's) and ``weekRealizedPnL``, and emits a ``cashBalance``
Updated event.  The trading day is CME's (from 17:00 America/Chicago): the first change of a new
trading day starts it with ``realizedPnL`` 0 and ``amountSOD`` = ``amount``; a reader should treat a
``tradeDate`` older than today as 0 realized today.  Open P&L = Σ netPos x (price - netPrice) x
valuePerPoint at the current prices.  No commissions.  Times come from the simulator clock.
"""
from __future__ import annotations

import datetime as dt
from typing import List, Optional
from zoneinfo import ZoneInfo

from .timefmt import iso_z

_CME = ZoneInfo("America/Chicago")


def cme_trade_date(epoch: float) -> dict:
    local = dt.datetime.fromtimestamp(epoch, _CME)
    day = local.date() + dt.timedelta(days=1) if local.hour >= 17 else local.date()
    return {"year": day.year, "month": day.month, "day": day.day}


class CashMixin:
    # Lock held by the caller for every *_locked method (the exchange's one lock).
    def _cash_locked(self, account_id: int) -> Optional[dict]:
        for cb in self._entities["cashBalance"].values():
            if cb["accountId"] == account_id:
                return cb
        return None

    def _roll_cash_day_locked(self, cb: dict, now: float) -> bool:
        today = cme_trade_date(now)
        if cb.get("tradeDate") == today:
            return False
        cb["tradeDate"] = today
        cb["amountSOD"] = cb["amount"]
        cb["realizedPnL"] = 0.0
        return True

    def _realize_locked(self, ev: list, account_id: int, contract_id: int, old_net: int,
                        old_price: Optional[float], action: str, qty: int, price: float) -> None:
        """Book the P&L of the part of a fill that reduces a position (before it is updated)."""
        reducing = (old_net > 0 and action == "Sell") or (old_net < 0 and action == "Buy")
        cb = self._cash_locked(account_id)
        if cb is None:
            return
        now = self.clock()
        rolled = self._roll_cash_day_locked(cb, now)
        if reducing and old_price is not None:
            closed = min(abs(old_net), qty)
            vpp = self.catalog.contracts[contract_id].product.value_per_point
            pnl = round(closed * (price - old_price) * (1 if old_net > 0 else -1) * vpp, 2)
            cb["amount"] = round(cb["amount"] + pnl, 2)
            cb["realizedPnL"] = round(cb["realizedPnL"] + pnl, 2)
            cb["weekRealizedPnL"] = round(cb["weekRealizedPnL"] + pnl, 2)
        elif not rolled:
            return
        cb["timestamp"] = iso_z(now)
        self._emit(ev, "cashBalance", "Updated", cb)

    def _open_pnl_locked(self, account_id: int) -> float:
        total = 0.0
        for (acct, cid), pid in self._positions.items():
            pos = self._entities["position"][pid]
            if acct != account_id or not pos["netPos"] or pos["netPrice"] is None:
                continue
            vpp = self.catalog.contracts[cid].product.value_per_point
            total += pos["netPos"] * (self._prices[cid] - pos["netPrice"]) * vpp
        return round(total, 2)

    def open_pnl(self, account_id: int) -> float:
        with self._lock:
            return self._open_pnl_locked(account_id)

    def cash_snapshot(self, user_id: int, account_id: int) -> dict:
        """``cashBalance/getcashbalancesnapshot``: the account's cash and P&L right now."""
        acct = self._accounts.get(account_id)
        if acct is None or acct["userId"] != user_id:
            return {"errorText": "Access is denied"}
        ev: List[tuple] = []
        with self._lock:
            cb = self._cash_locked(account_id)
            if self._roll_cash_day_locked(cb, self.clock()):
                cb["timestamp"] = iso_z(self.clock())
                self._emit(ev, "cashBalance", "Updated", cb)
            open_pnl = self._open_pnl_locked(account_id)
            snap = {"accountId": account_id, "timestamp": iso_z(self.clock()), "tradeDate": dict(cb["tradeDate"]),
                    "currencyId": cb["currencyId"], "amount": cb["amount"], "realizedPnL": cb["realizedPnL"],
                    "weekRealizedPnL": cb["weekRealizedPnL"], "totalCashValue": cb["amount"],
                    "netLiq": round(cb["amount"] + open_pnl, 2), "openPnL": open_pnl,
                    "totalPnL": round(cb["realizedPnL"] + open_pnl, 2),
                    "initialMargin": 0.0, "maintenanceMargin": 0.0}
        self._publish(ev)
        return snap

    def cash_balance_rows(self) -> List[dict]:
        """For the control endpoint: every account's cash balance with its open P&L."""
        with self._lock:
            rows = []
            for cb in self._entities["cashBalance"].values():
                row = dict(cb)
                row["accountSpec"] = self._accounts[cb["accountId"]]["name"]
                row["openPnL"] = self._open_pnl_locked(cb["accountId"])
                rows.append(row)
            return rows
