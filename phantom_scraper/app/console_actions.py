"""What the console's buttons do, on the service's own paths (a collaborator sharing the
:class:`~phantom_scraper.app.context.Context`; it never imports the service):

* flatten an account (the risk guard's lock barrier without the lock: drain its lanes, cancel its
  working orders, close every position until the broker shows it flat) or one contract of it
  (``liquidateposition`` through the risk guard's actions);
* cancel an account's working orders (positions stay open);
* the kill switch and unlock, through :class:`~phantom_scraper.app.admin.Admin` (the same calls as
  ``POST``/``DELETE /api/kill-switch``).

Each answers a dict for the page: ``ok``, a plain-words ``message`` and the details.  Called from a
request thread; nothing here holds a lock across broker I/O.
"""
from __future__ import annotations

import logging
from typing import Optional

from phantom_scraper.app.results import ServiceUnavailable

logger = logging.getLogger(__name__)

BY = "operator (console)"


class ConsoleActions:
    def __init__(self, ctx, admin):
        self.ctx = ctx
        self.admin = admin

    def _risk(self):
        risk = self.ctx.risk
        if self.ctx.gate.state != "ready" or risk is None or risk.actions is None or risk.broker is None:
            raise ServiceUnavailable(self.ctx.gate.unavailable_reason())
        return risk

    @staticmethod
    def _account(risk, name: str) -> Optional[int]:
        ids, unknown = risk.accounts_by_name([name])
        return None if unknown or not ids else ids[0]

    def flatten(self, account: str, contract_id: Optional[int] = None, *, wait_s: Optional[float] = None) -> dict:
        """Close one contract's position (``contract_id``) or the whole account (its working orders
        cancelled too)."""
        risk = self._risk()
        account_id = self._account(risk, account)
        if account_id is None:
            return {"ok": False, "message": f"no account named {account}; nothing was done"}
        if contract_id is not None:
            net = risk.broker.positions(account_id).get(int(contract_id), (0, None))[0]
            if not net:
                return {"ok": True, "message": f"{account}: already flat in that contract; nothing was sent"}
            try:
                text = risk.actions.flatten(account_id, int(contract_id), BY)
            except Exception as exc:  # noqa: BLE001 - shown to the person who clicked
                logger.error("Console flatten of %s contract %s failed: %s", account, contract_id, exc)
                return {"ok": False, "message": f"{account}: flatten failed: {exc}"}
            logger.warning("Console: %s flattened contract %s (%+d) by %s: %s", account, contract_id, net, BY, text)
            return {"ok": "acked" in text, "message": f"{account}: closing {net:+d} — {text}"}
        if wait_s is None:
            wait_s = max(10.0, 4 * float(self.ctx.settings.order_ack_timeout_s))
        done, result = risk.request_flatten(account_id, BY)
        if not done.wait(wait_s):
            return {"ok": False, "message": f"{account}: flatten requested; the broker has not answered within "
                                            f"{wait_s:.0f} s (see the account below)"}
        closed, cancelled = result.get("flattened") or [], result.get("cancelled") or []
        errors = list(result.get("errors") or []) + ([result["error"]] if result.get("error") else [])
        if not closed and not cancelled and not errors:
            return {"ok": True, "message": f"{account}: already flat, no working orders; nothing was sent", **result}
        parts = [f"{len(closed)} position(s) closed", f"{len(cancelled)} working order(s) cancelled"]
        if result.get("flat") is False:
            parts.append("NOT flat yet: the broker still shows " + str(result.get("pending")))
        if errors:
            parts.append("errors: " + "; ".join(str(e) for e in errors))
        return {"ok": not errors and result.get("flat") is not False, "message": f"{account}: " + ", ".join(parts),
                **result}

    def cancel_working(self, account: str) -> dict:
        """Cancel every working order of the account (positions stay open)."""
        risk = self._risk()
        account_id = self._account(risk, account)
        if account_id is None:
            return {"ok": False, "message": f"no account named {account}; nothing was done"}
        orders = risk.broker.working_orders(account_id)
        if not orders:
            return {"ok": True, "message": f"{account}: no working orders; nothing was sent"}
        cancelled, errors = [], []
        for order in orders:
            try:
                risk.actions.cancel(account_id, int(order["id"]))
                cancelled.append(order["id"])
            except Exception as exc:  # noqa: BLE001 - the others are still cancelled
                errors.append(f"order {order.get('id')}: {exc}")
        logger.warning("Console: %s cancelled %d working order(s)%s", account, len(cancelled),
                       f"; errors: {errors}" if errors else "")
        message = f"{account}: {len(cancelled)} working order(s) cancelled"
        return {"ok": not errors, "message": message + (("; errors: " + "; ".join(errors)) if errors else ""),
                "cancelled": cancelled}

    def kill(self, account: str) -> dict:
        """The kill switch: lock (until unlocked) and flatten one account or ``all``."""
        result = self.admin.kill_switch("all" if account == "all" else [account], flatten=True, by=BY)
        body = result.body
        if result.http_status != 200:
            return {"ok": False, "message": (body.get("error") or {}).get("message") or "refused"}
        pending = [a["account_name"] for a in body.get("accounts") or [] if (a.get("flatten") or {}).get("pending")]
        message = f"locked {', '.join(body.get('locked') or [])}: new entries are refused until unlocked; flattened"
        if pending:
            message += f" (still waiting for the broker on {', '.join(pending)})"
        return {"ok": True, "message": message}

    def unlock(self, account: str) -> dict:
        result = self.admin.unlock_accounts("all" if account == "all" else [account], by=BY)
        body = result.body
        if result.http_status != 200:
            return {"ok": False, "message": (body.get("error") or {}).get("message") or "refused"}
        names = body.get("unlocked") or []
        return {"ok": True, "message": f"unlocked {', '.join(names)}" if names else "nothing was locked"}
