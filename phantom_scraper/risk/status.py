"""The risk guard's status (``risk`` in ``/api/websocket-status``, the status page, the console):
per account the trading day's figures with what they rest on, the limits, the lock."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from phantom_scraper.hours import next_session_start, trading_day
from phantom_scraper.risk import rules


def iso(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def guard_status(g) -> dict:
    now = g.clock()
    accounts = []
    for account_id, name in sorted(g._accounts.items(), key=lambda kv: kv[1]):
        with g._lock:
            values = dict(g._last_values.get(account_id) or {})
            lock = g._locks.get(account_id)
        limits = g.limits_for(account_id)
        accounts.append({
            "account_id": account_id, "account_name": name,
            "trading_day": values.get("trading_day") or trading_day(now).isoformat(),
            "realized_pnl": values.get("realized_pnl"), "open_pnl": values.get("open_pnl"),
            "total_pnl": values.get("total_pnl"), "peak_pnl": values.get("peak_pnl"),
            "pnl_complete": bool(values.get("complete")),
            "pnl_status": "known" if values.get("complete") else rules.PNL_UNKNOWN,
            "pnl_unknown": values.get("unknown") if values else "not evaluated yet",
            "pnl_freshness": values.get("freshness"), "limits": limits.to_dict(),
            "unlocked_at_pnl": g.unlocks.base_of(account_id, values.get("trading_day")),
            "trading_hours_open": limits.trading_hours.is_open(now) if limits.trading_hours else None,
            "lock": None if lock is None else {
                "reason": lock["reason"], "message": lock["message"], "locked_at_utc": iso(lock["locked_at"]),
                "until_utc": iso(lock["until"]), "flatten": bool(lock.get("flatten"))},
        })
    polled = sum(1 for a in g._accounts if g.limits_for(a).watches_pnl
                 and not (g.broker is not None and g.broker.cash_balance(a)))
    return {
        "enabled": g.enabled,
        "trading_day": trading_day(now).isoformat(),
        "next_session_start_utc": iso(next_session_start(now)),
        "market_data": g.feed.status() if g.feed is not None else None,
        "requests": {"broker_reads": g.broker_reads,
                     "snapshot_polls_per_hour_now": round(polled * 3600 / max(1.0, g.risk.snapshot_poll_s), 1),
                     "market_data_requests": g.feed.requests_sent if g.feed is not None else 0},
        "accounts": accounts,
        "recent_events": g.store.recent_events(20) if g.store is not None else [],
    }
