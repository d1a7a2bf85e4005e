"""``cashBalance/getcashbalancesnapshot`` (POST ``{accountId}``), on both transports
(docs/TRADOVATE.md, "Market data and cash balance").

Answers ``{accountId, timestamp, tradeDate, amount, realizedPnL, weekRealizedPnL, totalCashValue,
netLiq, openPnL, totalPnL, initialMargin, maintenanceMargin}`` (``errorText`` for a foreign account).
"""
from __future__ import annotations

from .handlers import Api, BadRequest, Request, _arg, route


@route("cashbalance/getcashbalancesnapshot")
def cash_balance_snapshot(api: Api, req: Request):
    try:
        account_id = int(_arg(req, "accountId"))
    except (TypeError, ValueError) as exc:
        raise BadRequest("accountId is required (integer)") from exc
    return api.exchange.cash_snapshot(req.user_id, account_id)
