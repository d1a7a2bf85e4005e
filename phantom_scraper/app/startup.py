"""Start-up steps after the logins are open: the risk guard wired to the logins' broker states and
the market-data socket, order strategies refreshed and breakeven started, and the signals a previous
process left ``received`` given a final status."""
from __future__ import annotations

import json
import logging

from phantom_scraper.app.startup_queue import QUEUED
from phantom_scraper.risk.actions import ServiceRiskActions
from phantom_scraper.risk.broker_view import BrokerStateView
from phantom_scraper.risk.guard import RiskGuard
from phantom_scraper.risk.store import RiskStore
from phantom_scraper.strategies import lifecycle as strategy_exec
from phantom_scraper.strategies.breakeven import BreakevenManager
from phantom_scraper.tradovate.marketdata import QuoteFeed

logger = logging.getLogger(__name__)


def build_risk_guard(ctx, *, strict_names: bool = True) -> RiskGuard:
    """The risk guard, wired to the open logins' broker states and the market-data socket (built
    again, the old one stopped, when a login that was down opens).  A risk override naming an
    account no login has stops the start (``strict_names``) unless a login is down (then a warning)."""
    if ctx.risk is not None:
        ctx.risk.stop()
    s = ctx.settings
    guard = RiskGuard(s, clock=ctx.risk_clock, workers=ctx.workers)
    names = ctx.logins.account_names()

    def state_of(account_id: int):
        conn = ctx.logins.by_account[account_id].connection
        return lambda: getattr(conn, "broker_state", None)

    view = BrokerStateView({a: state_of(a) for a in names})
    first = ctx.logins.first().integration
    actions = ServiceRiskActions(
        journal=ctx.journal, settings=s,
        integration_for=lambda a: first if a is None else ctx.logins.integration_for_account(a),
        connection_for=lambda a: ctx.logins.by_account[a].connection, account_name=names.get,
        workers=ctx.workers)
    feed = None
    md_url = ctx.logins.first().config.md_url or s.resolved_md_url()  # the feed's login's
    if md_url:  # open positions are always priced (the console's open P&L), limits or not
        # the login's token (renewed when due); a refused authorize asks the login for a fresh one
        feed = QuoteFeed(md_url, first.ensure_token, guard.on_quote, settings=s, renew=first.reauthenticate,
                         md_token=lambda: first.md_access_token)
        first.add_token_listener(feed.token_renewed)
    guard.attach(store=RiskStore(ctx.journal), accounts=names, broker=view, actions=actions, feed=feed,
                 complete=strict_names and not ctx.logins.down)
    if not md_url and any(guard.limits_for(a).watches_pnl for a in names):  # (per-account limits: after attach)
        logger.warning("Risk: no market-data URL (TRADOVATE_MD_URL): open P&L comes from the "
                       "cash-balance snapshot every %.0f s", s.risk.snapshot_poll_s)
    view.listen(guard.on_account_change, lambda: [guard.on_account_change(a) for a in names])
    if guard.enabled:
        logger.info("Risk guard on: defaults %s", guard.defaults.to_dict())
    return guard


def start_breakeven(ctx, on_quote) -> None:
    """Order strategies: forget those the broker finished while we were away, and move stops
    to breakeven on the prices given to :meth:`on_quote` (strategy_exec, breakeven) -- from a
    market-data socket of its own that subscribes only while a breakeven is waiting."""
    if ctx.journal is None:
        return
    strategy_exec.store_for(ctx.journal).ensure_tables()  # created here, never on the order path
    closed = strategy_exec.refresh(ctx.journal, ctx.logins.integration_for_account)
    if closed:
        logger.info("%d order strateg(ies) ended at the broker while this process was down", closed)
    if ctx.breakeven is not None:  # a retried start-up
        ctx.breakeven.stop()
    feed = None
    md_url = ctx.logins.first().config.md_url or ctx.settings.resolved_md_url()
    if md_url:  # quotes only for contracts with a breakeven waiting (no socket otherwise)
        first = ctx.logins.first().integration
        feed = QuoteFeed(md_url, first.ensure_token, on_quote, settings=ctx.settings, name="breakeven",
                         renew=first.reauthenticate, md_token=lambda: first.md_access_token)
        first.add_token_listener(feed.token_renewed)  # re-authorized on renewal, as the risk feed is
    journal = ctx.journal
    ctx.breakeven = BreakevenManager(
        strategy_exec.store_for(journal), ctx.logins.integration_for_account, feed=feed,
        housekeeping=lambda: strategy_exec.refresh(journal, ctx.logins.integration_for_account))
    ctx.breakeven.start()


def settle_interrupted_signals(journal, queued_here=()) -> None:
    """Signals a previous process left ``received`` get a final status from their intents
    (which reconcile_pending has just settled), so /api/signals says what happened."""
    # queued by this process while it starts (queued_here) are executed once ready, not settled
    leftover = [i for i in journal.signal_ids_with_status(QUEUED) if i not in set(queued_here)]
    for signal_id in journal.signal_ids_with_status("received") + leftover:
        intents = journal.intents_for_signal(signal_id)
        if not intents:
            status = "interrupted"
            summary = {"message": "interrupted by a restart before any order was sent; nothing sent"}
        else:
            states = {i["state"] for i in intents} - {"skipped"}  # nothing to do there: neither way
            if not states:
                status = "skipped"
            elif states <= {"acked", "reconciled"}:
                status = "acked"
            elif "unknown" in states or "sending" in states:
                status = "unknown"
            elif states & {"acked", "reconciled"}:
                status = "partial"
            else:
                status = "failed"
            summary = [{"account_id": i["account_id"], "account_name": i["account_name"],
                        "status": {"reconciled": "acked"}.get(i["state"], i["state"]),
                        "order_id": i["broker_order_id"], "cl_ord_ids": [i["cl_ord_id"]],
                        "transport": i["transport"], "latency_ms": i["latency_ms"],
                        "reconciled": bool(i["reconciled"]),
                        "error": i["error"] or "settled at restart"} for i in intents]
        journal.set_signal_status(signal_id, status, json.dumps(summary, default=str))
        logger.warning("Signal %s interrupted by a restart: settled as %s", signal_id, status)
