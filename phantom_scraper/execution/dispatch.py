"""Signal execution: one validated signal on every targeted account, journaled at every step.

``execute_trade_simple`` (also ``recorder_service``'s documented entry point) runs each account in
parallel.  Per account: read the position if the plan needs it, plan the orders, then for each placement::

    create intent as 'sending' (one commit) -> place_order_smart(clOrdId) -> OrderResult.status
        acked      -> acked (order id, transport, latency)
        rejected   -> rejected (final)
        not_sent   -> rejected "not sent"   (provably never executed: nothing at the broker)
        unknown    -> journaled 'unknown' BEFORE the router's bounded search (on_unknown);
                      found -> reconciled; not found -> stays unknown, ERROR once, settled in the
                      background (phantom_scraper/execution/settlement.py), never resent

An order never waits for a socket connect: with no live socket it goes over REST at once and the
connect runs in the background (``PooledConnection.ensure_connecting``); whether the socket is
used at all is the router's decision (``Settings.use_websocket_orders``, read there only).  There
is no retry around placement; the only resends are the ones ``place_order_smart`` makes after a
proof of non-execution (penalty, 401), inside one attempt.

``reconcile_pending`` (phantom_scraper/execution/settlement.py) settles, at start-up, the intents a gone process left
``sending`` or ``unknown``: found at the broker by ``clOrdId`` -> ``reconciled``; not found ->
stays ``unknown`` for background settlement, NOT resent (a signal from before a restart is stale).

A connection (``conn``) here is a ``phantom_scraper.tradovate.pool_api.Connection``: ``integration``,
``live_client()``, ``ensure_connecting()`` and ``record_order()``.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
from typing import Dict, List, Optional

from phantom_scraper.execution import executors
from phantom_scraper.execution.account import _run_account
from phantom_scraper.execution.account_lanes import cancel_all
from phantom_scraper.execution.batch import run_batched
from phantom_scraper.execution.model import (_PLACEMENT_KINDS, RETRY_STEP_OFFSET, AccountOutcome,  # noqa: F401
                                             BatchedStates, describe)
from phantom_scraper.journal.journal import JournalError, make_cl_ord_id

logger = logging.getLogger(__name__)

def reserve_lanes(account_ids, root: str) -> dict:
    """Take each account's place in its lane now (at arrival), before the symbol is resolved.
    Hand the result to ``execute_trade_simple(tickets=...)``, or ``cancel_lanes`` it."""
    return executors.LANES.reserve(account_ids, root)


def cancel_lanes(tickets) -> None:
    cancel_all(tickets)


def execute_trade_simple(signal, contract, targets, *, journal, signal_id: str, settings,
                         planner=None, needs_position=None, tickets=None, retry: bool = False,
                         states: Optional["BatchedStates"] = None) -> List[AccountOutcome]:
    """Run one validated signal on every targeted account, in parallel across accounts and in
    arrival order within each (account, product) lane.

    ``targets`` is a list of ``(AccountTarget, PooledConnection)``.  ``tickets`` are the lane
    places taken at arrival (``reserve_lanes``); missing ones are taken now.  ``retry`` is the one
    re-run of accounts whose order the broker refused as ``InvalidContract`` (their steps are
    numbered from ``RETRY_STEP_OFFSET`` so the new intents get new clOrdIds).  ``states``: where
    single-step orders put their final states for the caller to write after the answer
    (``BatchedStates.take``); without it they are committed before this returns.  Returns one
    :class:`AccountOutcome` per target, in the order given; an account's failure never affects
    another account.
    """
    if planner is None or needs_position is None:
        from phantom_scraper.signals import needs_position as _needs, plan_orders as _plan
        planner = planner or _plan
        needs_position = needs_position or _needs
    tickets = dict(tickets or {})
    if signal.test:  # validation places nothing: it takes no place in a lane
        cancel_all(tickets)
        tickets = {}
    else:
        missing = [t.id for t, _ in targets if t.id not in tickets]
        tickets.update(executors.LANES.reserve(missing, contract.root))
    try:
        return _execute(signal, contract, targets, journal, signal_id, settings, planner, needs_position, tickets,
                        RETRY_STEP_OFFSET if retry else 0, states)
    finally:
        cancel_all(tickets)  # places not used (a crash before submit) free their lanes


def _in_lane(tickets, target, conn, contract, settings, job, inline: bool):
    ticket = tickets.get(target.id)
    if ticket is None:  # a test signal: no lane
        future = concurrent.futures.Future()
        future.set_result(job())
        return future
    return executors.LANES.submit(ticket, conn, target.id, contract, settings, job, inline=inline)


def _execute(signal, contract, targets, journal, signal_id, settings, planner, needs_position, tickets,
             step_offset=0, states=None):
    args = (signal, contract, journal, signal_id, settings, planner, needs_position)
    if len(targets) == 1 or step_offset:  # one account: runs in this thread when its lane is idle
        futures = [_in_lane(tickets, target, conn, contract, settings,
                            functools.partial(_run_account, target, conn, *args, step_offset=step_offset),
                            inline=len(targets) == 1) for target, conn in targets]
        return [f.result() for f in futures]
    batch = states if states is not None else BatchedStates(journal)
    futures = _start_fan_out(signal, contract, targets, journal, signal_id, settings, planner, needs_position,
                             tickets, batch)
    outcomes = [f.result() for f in futures]
    if states is None:
        batch.flush()
    return outcomes


def start_fan_out(signal, contract, targets, *, journal, signal_id: str, settings, planner, needs_position,
                  tickets, states: "BatchedStates", wait_s: float) -> List["concurrent.futures.Future[AccountOutcome]"]:
    """A fan-out from the calling thread (the webhook's own): every account's intent journaled,
    the idle lanes' frames written in one batch, and their answers awaited here for at most
    ``wait_s``; returns one future per target (in order), the ones not finished yet continuing on
    the order executor.  Single-step orders' final states go to ``states`` (the caller writes
    them after the answer).  The tickets not used are cancelled, as by :func:`execute_trade_simple`."""
    tickets = dict(tickets or {})
    missing = [t.id for t, _ in targets if t.id not in tickets]
    tickets.update(executors.LANES.reserve(missing, contract.root))
    try:
        return _start_fan_out(signal, contract, targets, journal, signal_id, settings, planner, needs_position,
                              tickets, states, wait_s)
    finally:
        cancel_all(tickets)


def _start_fan_out(signal, contract, targets, journal, signal_id, settings, planner, needs_position, tickets,
                   batch, wait_s=None) -> List["concurrent.futures.Future[AccountOutcome]"]:
    args = (signal, contract, journal, signal_id, settings, planner, needs_position)
    prepared = _prepare_fan_out(signal, contract, targets, journal, signal_id, planner, needs_position)
    futures: Dict[int, concurrent.futures.Future] = {}

    def start_others(taken) -> None:  # every account the batch did not take: one lane job each
        for index, (target, conn) in enumerate(targets):
            if index in taken:
                continue
            if index in prepared:
                steps, cl_ord_id = prepared[index]
                job = functools.partial(_run_account, target, conn, signal, contract, batch, signal_id, settings,
                                        planner, needs_position, steps=steps, precreated=cl_ord_id)
            else:
                job = functools.partial(_run_account, target, conn, *args)
            futures[index] = _in_lane(tickets, target, conn, contract, settings, job, inline=False)

    futures.update(run_batched(signal, contract, targets, prepared, tickets, batch, signal_id, settings,
                               start_others, wait_s=wait_s))
    return [futures[index] for index in range(len(targets))]


def _prepare_fan_out(signal, contract, targets, journal, signal_id, planner, needs_position):
    """Plan every account that needs no position read and journal all of their orders as
    ``sending`` in ONE transaction, so N accounts cost one commit before their frames leave.

    Returns ``{target index: (steps, clOrdId)}``; other accounts take the general path.
    """
    from phantom_scraper.signals import PlanError

    if signal.test or needs_position(signal):
        return {}
    prepared, rows = {}, []
    for index, (target, _conn) in enumerate(targets):
        try:
            steps = planner(signal, contract, target, 0, False)
        except PlanError:
            continue  # the general path plans again and reports the reason
        if len(steps) != 1 or steps[0].kind not in _PLACEMENT_KINDS:
            continue
        cl_ord_id = make_cl_ord_id(signal_id, target.id, 0)
        rows.append((target.id, target.name, 0, steps[0].kind, steps[0].body, cl_ord_id))
        prepared[index] = (steps, cl_ord_id)
    if rows:
        try:
            journal.create_intents(signal_id, rows, state="sending")
        except JournalError as exc:  # nothing recorded, so nothing may be sent: report per account
            logger.error("Signal %s: journal unavailable, fan-out not sent: %s", signal_id, describe(exc))
            return {}
    return prepared


