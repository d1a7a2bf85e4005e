"""``GET /api/accounts``: per account its positions with open P&L, working orders with their role,
the trading day's realized P&L, open P&L and locks -- the data the status page renders too.

Built from the status page's cached broker view (``account_view``) and the risk guard's status and
last prices (its market-data socket is subscribed to every open position).  A position's open P&L
is ``(last price - average price) x value per point x quantity`` in USD; None until both the price
and the value per point are known (the account's ``open_pnl`` then falls back to the broker's own
cash-balance figure when there is one).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

ROLE_WORDS = {"take_profit": "take-profit", "stop": "stop-loss", "entry": "entry", "exit": "exit"}
_STOPS = frozenset({"Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"})


def order_role(order: dict, net_by_contract: Dict[str, int]) -> str:
    """``take_profit``, ``stop`` or ``entry`` (``exit`` for a closing market order): a bracket leg
    or an order against the open position is an exit -- a limit takes profit, a stop stops the
    loss; anything else opens or adds."""
    net = net_by_contract.get(order.get("contract"), 0)
    side = (order.get("action") or "").lower()
    closes = (net > 0 and side == "sell") or (net < 0 and side == "buy")
    if not (order.get("leg_of") or closes):
        return "entry"
    kind = order.get("type") or ""
    if kind in _STOPS:
        return "stop"
    if kind == "Limit" or kind == "MIT":
        return "take_profit"
    return "exit"


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 2)


def build(view: dict, risk: Optional[dict], last_price: Callable[[int], Optional[float]]) -> List[dict]:
    """The accounts of ``view`` (``AccountView.get``) enriched with prices and roles."""
    by_name = {r.get("account_name"): r for r in (risk or {}).get("accounts") or []}
    out = []
    for a in view.get("accounts") or []:
        guard = by_name.get(a["account"]) or {}
        positions, total, complete = [], 0.0, True
        for p in a.get("positions") or []:
            price = last_price(p["contract_id"]) if p.get("contract_id") is not None else None
            vpp, avg, qty = p.get("value_per_point"), p.get("avg_price"), int(p.get("net_pos") or 0)
            pnl = None
            if price is not None and vpp and avg is not None:
                pnl = (float(price) - float(avg)) * float(vpp) * qty
                total += pnl
            else:
                complete = False
            positions.append({"contract": p.get("contract"), "contract_id": p.get("contract_id"), "qty": qty,
                              "side": "long" if qty > 0 else "short", "avg_price": avg, "last_price": price,
                              "value_per_point": vpp, "open_pnl": _round(pnl)})
        net = {p["contract"]: p["qty"] for p in positions}
        working = [{"order_id": o.get("order_id"), "contract": o.get("contract"), "role": order_role(o, net),
                    "side": o.get("action"), "qty": o.get("qty"), "type": o.get("type"),
                    "price": o.get("price"), "stop_price": o.get("stop_price"), "status": o.get("status"),
                    "bracket_of": o.get("leg_of")} for o in a.get("working") or []]
        if complete:
            open_pnl = _round(total)
        else:  # the broker's own figure (cash-balance snapshot or stream), else the guard's
            open_pnl = _round(a.get("open_pnl") if a.get("open_pnl") is not None else guard.get("open_pnl"))
        today = a.get("today") or {}
        realized = guard.get("realized_pnl")
        if realized is None and today and today.get("trade_date") == guard.get("trading_day"):
            realized = today.get("realized_pnl")
        lock = guard.get("lock")
        locks = [{"reason": lock.get("reason"), "message": lock.get("message"), "since_utc": lock.get("locked_at_utc"),
                  "until_utc": lock.get("until_utc")}] if lock else []
        for extra in a.get("locks") or []:  # the event bus's view (kill switch, risk) when the guard has none
            if not locks:
                locks.append({"reason": extra.get("reason"), "message": extra.get("reason"),
                              "since_utc": None, "until_utc": None})
        out.append({
            "name": a["account"], "account_id": a.get("account_id"),
            "trading_day": guard.get("trading_day"), "realized_pnl": _round(realized), "open_pnl": open_pnl,
            "positions": positions, "working_orders": working, "locks": locks, "locked": bool(locks),
            "limits": guard.get("limits") or {}, "links": a.get("limits") or {},
            "history_day": {k: today.get(k) for k in ("trade_date", "realized_pnl", "trades", "wins", "losses")}
            if today else None,
            "equity": today.get("equity") or [],
        })
    return out
