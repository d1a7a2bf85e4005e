"""One account's daily P&L with what each part of it rests on (pure: no I/O, no clock of its own).

Unknown is not zero.  Every figure carries its source and age:

* **sync**: the login's broker state (positions, cash balance from the sync stream) is trusted only
  while it is *fresh* (synced on the current socket).  A login that is not fresh is "unknown", never
  "flat": its empty position copy proves nothing.
* **realized**: the sync stream's ``cashBalance`` (0 when its trade date is an earlier trading day),
  else the polled cash-balance snapshot, when that is usable (below).
* **open**, per contract: net x (quote - net price) x value per point, from a live quote (its age is
  reported); a contract without a usable quote makes the open P&L unknown, unless the snapshot is.
* **snapshot** (``cashBalance/getcashbalancesnapshot``): usable only when it is younger than
  ``max_snapshot_age_s`` and was *requested after every change the guard has seen in the account's
  positions* (``seq``): a snapshot taken before a position existed or changed does not cover it.
  It then stands for the whole account's open P&L (it has no per-contract figures).

``complete`` is True only when every figure could be vouched for; ``unknown`` then says why not.
"""
from __future__ import annotations

import datetime as dt
from typing import Dict, Iterable, Optional, Tuple

Position = Tuple[int, Optional[float]]  # (net position, net price)
Snapshot = Tuple[float, int, dict]  # (taken at, sequence number when requested, body)


def trade_date(stamp) -> Optional[dt.date]:
    try:
        return dt.date(int(stamp["year"]), int(stamp["month"]), int(stamp["day"]))
    except (TypeError, KeyError, ValueError):
        return None


def _realized(entity: dict, day: dt.date) -> Optional[float]:
    if entity.get("realizedPnL") is None:
        return None
    stamp = trade_date(entity.get("tradeDate"))
    return 0.0 if stamp is not None and stamp < day else float(entity["realizedPnL"])


def account_pnl(*, day: dt.date, now: float, fresh: Optional[bool], cash: Optional[dict],
                snapshot: Optional[Snapshot], positions: Dict[int, Position],
                quotes: Dict[int, Tuple[float, Optional[float]]], live: Iterable[int],
                vpp: Dict[int, float], changed_seq: int, max_snapshot_age_s: float) -> dict:
    """The day's P&L of one account.  ``fresh``: the login's sync state (None: not known to the view,
    taken as fresh); ``quotes``: contract -> (price, quote time); ``live``: contracts whose quote is
    current (subscribed on a connected feed); ``changed_seq``: sequence number of the newest position
    change seen in this account."""
    live = set(live)
    contracts = sorted(c for c, (net, _p) in positions.items() if net)
    snap_ok, snap_note = False, None
    if snapshot is not None:
        taken_at, seq, body = snapshot
        if not body:
            snap_note = "the cash-balance snapshot failed"
        elif now - taken_at > max_snapshot_age_s:
            snap_note = f"the cash-balance snapshot is {now - taken_at:.0f} s old"
        elif seq <= changed_seq:
            snap_note = "the cash-balance snapshot is older than a position change"
        else:
            snap_ok = True
    freshness = {"sync": "unknown" if fresh is None else ("synced" if fresh else "not_synced"),
                 "snapshot_age_s": round(now - snapshot[0], 3) if snapshot is not None else None,
                 "snapshot_usable": snap_ok, "realized_from": None, "open_from": None, "contracts": {}}
    out = {"trading_day": day.isoformat(), "realized_pnl": None, "open_pnl": None, "total_pnl": None,
           "complete": False, "missing_prices": [], "contracts": contracts, "unknown": None,
           "freshness": freshness}
    if fresh is False:
        out["unknown"] = "the login's broker state is not synced (socket down or not synced yet): positions unknown"
        return out
    realized = _realized(cash, day) if cash else None
    if realized is not None:
        freshness["realized_from"] = "cash_balance"
    elif snap_ok and _realized(snapshot[2], day) is not None:
        realized, freshness["realized_from"] = _realized(snapshot[2], day), "snapshot"
    open_pnl, missing = 0.0, []
    for contract_id in contracts:
        net, net_price = positions[contract_id]
        price, at = quotes.get(contract_id, (None, None))
        value = vpp.get(contract_id)
        info = {"net_pos": net, "quote_age_s": round(now - at, 3) if at is not None and price is not None else None,
                "quote_live": contract_id in live, "source": None}
        freshness["contracts"][str(contract_id)] = info
        if price is None or contract_id not in live or value is None or net_price is None:
            missing.append(contract_id)
            continue
        info["source"] = "quote"
        open_pnl += net * (price - float(net_price)) * value
    freshness["open_from"] = "quotes" if contracts else "flat"
    if missing and snap_ok and snapshot[2].get("openPnL") is not None:
        open_pnl, missing = float(snapshot[2]["openPnL"]), []
        freshness["open_from"] = "snapshot"
        for info in freshness["contracts"].values():
            info["source"] = "snapshot"
    out["missing_prices"] = missing
    if not missing:
        out["open_pnl"] = round(open_pnl, 2)
    if realized is not None:
        out["realized_pnl"] = realized
    reasons = []
    if realized is None:
        reasons.append("no cash balance from the sync stream" + (f" and {snap_note}" if snap_note else
                                                                 " and no usable cash-balance snapshot"))
    if missing:
        why = ", ".join(str(c) for c in missing)
        reasons.append(f"no live quote or value per point for contract(s) {why}"
                       + (f" and {snap_note}" if snap_note else ""))
    if reasons:
        out["unknown"] = "; ".join(reasons)
        return out
    out["complete"] = True
    out["total_pnl"] = round(realized + open_pnl, 2)
    return out
