"""What operators ask of the service: its status, the kill switch and unlock, the orders that need
attention, and health."""
from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from phantom_scraper.app import gc_policy, housekeeping
from phantom_scraper.app.results import ServiceUnavailable, WebhookResult
from phantom_scraper.execution.dispatch import describe
from phantom_scraper.tradovate.search import recent_duplicates

logger = logging.getLogger(__name__)


class Admin:
    def __init__(self, ctx):
        self.ctx = ctx

    def status(self) -> dict:
        resolver = self.ctx.resolver
        return {
            "success": True,
            "websocket_orders_enabled": bool(self.ctx.settings.use_websocket_orders),
            "service_state": self.ctx.gate.state,
            "start_error": self.ctx.gate.start_error,
            "logins": self.ctx.logins.status(),  # open, or down/failed with the reason (each on its own)
            "environment": self.ctx.settings.tradovate_env,
            "connection_pool": self.ctx.pool.status(),
            "keepalive_daemon": self.ctx.pool.daemon_status(),
            "order_strategies": self.open_strategies(),
            "risk": self.ctx.risk.status() if self.ctx.risk is not None else None,
            "drift": self.ctx.drift.status() if self.ctx.drift is not None else None,
            "lanes": self.ctx.workers.lanes.status(),  # busy lanes, and their hand-over times
            "coordinator": self.ctx.coordinator.status() if self.ctx.coordinator is not None else None,
            "orders_needing_attention": self.orders_needing_attention(),
            # each continuous root traded so far: its front month and the date it rolls
            "front_months": resolver.fronts() if resolver is not None else {},
            **housekeeping.status(self.ctx),  # request_budget per login, housekeeping
            "gc": gc_policy.pause_stats(),
        }

    def open_strategies(self) -> dict:
        """Open order strategies per account name (the journal's record; see strategy_exec)."""
        from phantom_scraper.strategies import lifecycle as strategy_exec
        try:
            return strategy_exec.open_by_account(self.ctx.journal)
        except Exception as exc:  # the status page must render even if this read fails
            logger.warning("open order strategies unreadable: %s", exc)
            return {}

    def risk_accounts(self, selector) -> Tuple[Optional[List[int]], Optional[WebhookResult]]:
        if self.ctx.gate.state != "ready" or self.ctx.risk is None:
            raise ServiceUnavailable(self.ctx.gate.unavailable_reason())
        if selector != "all" and not (isinstance(selector, list) and selector
                                      and all(isinstance(n, str) for n in selector)):
            return None, WebhookResult(400, {"success": False, "error": {
                "code": "invalid_field", "field": "accounts",
                "message": 'accounts must be "all" or a list of account names'}})
        ids, unknown = self.ctx.risk.accounts_by_name(selector)
        if unknown:
            return None, WebhookResult(400, {"success": False, "error": {
                "code": "unknown_account", "field": "accounts", "message": f"no account named {', '.join(unknown)}"}})
        return ids, None

    def kill_switch(self, selector, flatten: bool = True, by: str = "kill switch") -> WebhookResult:
        """Lock the accounts (until unlocked) and, with ``flatten``, cancel their orders and flatten them."""
        ids, error = self.risk_accounts(selector)
        if error is not None:
            return error
        results = self.ctx.risk.kill(ids, flatten=flatten, wait_s=max(5.0, self.ctx.settings.order_ack_timeout_s * 2),
                                     by=by)
        names = dict((a, self.ctx.risk.account_name(a)) for a in ids)
        return WebhookResult(200, {"success": True, "locked": [names[a] for a in ids], "flatten": bool(flatten),
                                   "accounts": [{"account_id": a, "account_name": names[a], **results[a]} for a in ids],
                                   **self.unavailable_logins()})

    def unavailable_logins(self) -> dict:
        """The logins that are down: their accounts are unknown to this process and were not acted on."""
        with self.ctx.logins.lock:
            down = {name: d.error for name, d in self.ctx.logins.down.items()}
        return {"unavailable_logins": down} if down else {}

    def unlock_accounts(self, selector, by: str = "operator (DELETE /api/kill-switch)") -> WebhookResult:
        ids, error = self.risk_accounts(selector)
        if error is not None:
            return error
        results = self.ctx.risk.unlock(ids, by=by)
        return WebhookResult(200, {"success": True, "unlocked": [self.ctx.risk.account_name(a) for a in ids if results[a]],
                                   "accounts": [{"account_id": a, "account_name": self.ctx.risk.account_name(a),
                                                 "was_locked": results[a],
                                                 "relock": self.ctx.risk.relock_notes.get(a) if results[a] else None}
                                                for a in ids]})

    def orders_needing_attention(self) -> dict:
        """Unknown order outcomes (never resent; settled in the background), recent not_placed
        ones, and DUPLICATE alarms, for the status page and /api/websocket-status."""
        unknown, not_placed = [], []
        if self.ctx.journal is not None and not self.ctx.journal.closed:
            try:
                for i in self.ctx.journal.unsettled_intents():
                    row = {"cl_ord_id": i["cl_ord_id"], "account_id": i["account_id"],
                           "account_name": i["account_name"], "signal_id": i["signal_id"], "state": i["state"],
                           "error": i["error"], "since": i["created_at"]}
                    (unknown if i["state"] == "unknown" else not_placed).append(row)
            except Exception as exc:  # noqa: BLE001 - the status must render without the journal
                return {"error": describe(exc), "unknown": [], "not_placed": [], "duplicates": recent_duplicates()}
        drift = self.ctx.drift
        return {"unknown": unknown, "not_placed": not_placed, "duplicates": recent_duplicates(),
                "drift": drift.items() if drift is not None else []}
