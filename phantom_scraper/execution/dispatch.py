"""Signal execution: one validated signal on every targeted account, journaled at every step.

One way in: :func:`dispatch` (the webhook's own thread: one account sent from it, or a fan-out with
the idle lanes in one batch) and :func:`execute` (waited for; ``execute_trade_simple`` -- also
``recorder_service``'s documented entry point -- builds the run and calls it).  Both take a frozen
:class:`SignalRun` (signal, contract, signal id, journal, settings, planner).  Arrival only reserves
the lanes; each account is planned, risk-checked and sent when the signal reaches the head of its
(account, product) lane, from the broker state at that moment.  Per account: read the position if
the plan needs it, plan the orders, then for each placement::

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
import time
from typing import Dict, List, Optional

from phantom_scraper.execution import batch as fan_out
from phantom_scraper.execution import executors
from phantom_scraper.execution.account import _run_account
from phantom_scraper.execution.account_lanes import cancel_all
from phantom_scraper.execution.model import (_PLACEMENT_KINDS, RETRY_STEP_OFFSET, AccountOutcome,  # noqa: F401
                                             BatchedStates, SignalRun, describe)

logger = logging.getLogger(__name__)

def reserve_lanes(account_ids, root: str, workers: Optional[executors.Workers] = None) -> dict:
    """Take each account's place in its lane now (at arrival), before the symbol is resolved.
    Hand the result to ``execute_trade_simple(tickets=...)``, or ``cancel_lanes`` it."""
    return (workers or executors.shared()).lanes.reserve(account_ids, root)


def cancel_lanes(tickets) -> None:
    cancel_all(tickets)


def execute_trade_simple(signal, contract, targets, *, journal, signal_id: str, settings,
                         planner=None, needs_position=None, tickets=None, retry: bool = False,
                         states: Optional["BatchedStates"] = None, recorder: str = "",
                         workers: Optional[executors.Workers] = None) -> List[AccountOutcome]:
    """Run one validated signal on every targeted account, in parallel across accounts and in
    arrival order within each (account, product) lane.

    ``targets`` is a list of ``(AccountTarget, PooledConnection)``.  ``tickets`` are the lane
    places taken at arrival (``reserve_lanes``); missing ones are taken now.  ``retry`` is the one
    re-run of accounts whose order the broker refused as ``InvalidContract`` (their steps are
    numbered from ``RETRY_STEP_OFFSET`` so the new intents get new clOrdIds).  ``states``: where
    single-step orders put their final states for the caller to write after the answer
    (``BatchedStates.take``); without it they are committed before this returns.  Returns one
    :class:`AccountOutcome` per target, in the order given; an account's failure never affects
    another account.  ``workers``: the caller's lanes and executors (a service passes its own;
    without, the bare functions' shared set, ``executors.shared()``).
    """
    run = signal_run(signal, contract, journal=journal, signal_id=signal_id, settings=settings, planner=planner,
                     needs_position=needs_position, retry=retry, recorder=recorder, workers=workers)
    return execute(run, targets, tickets=tickets, states=states)


def signal_run(signal, contract, *, journal, signal_id: str, settings, planner=None, needs_position=None,
               retry: bool = False, received: Optional[float] = None, recorder: str = "",
               workers: Optional[executors.Workers] = None) -> SignalRun:
    """The frozen run object of one signal (defaults: the plain planner, no risk guard, the bare
    functions' shared workers)."""
    if planner is None or needs_position is None:
        from phantom_scraper.signals import needs_position as _needs, plan_orders as _plan
        planner = planner or _plan
        needs_position = needs_position or _needs
    return SignalRun(signal, contract, signal_id, journal, settings, planner, needs_position,
                     RETRY_STEP_OFFSET if retry else 0, time.monotonic() if received is None else received,
                     recorder=recorder, workers=workers or executors.shared())


def execute(run: SignalRun, targets, *, tickets=None, states=None) -> List[AccountOutcome]:
    """Every account of ``run``, waited for here (see :func:`execute_trade_simple`)."""
    if run.leader is None and targets:
        run = run.but(leader=targets[0][0].id)
    tickets = dict(tickets or {})
    if run.signal.test:  # validation places nothing: it takes no place in a lane
        cancel_all(tickets)
        tickets = {}
    else:
        missing = [t.id for t, _ in targets if t.id not in tickets]
        tickets.update(run.workers.lanes.reserve(missing, run.contract.root))
    try:
        if len(targets) == 1 or run.step_offset:  # one account: runs in this thread when its lane is idle
            futures = [_in_lane(tickets, target, conn, run, functools.partial(_run_account, target, conn, run),
                                inline=len(targets) == 1) for target, conn in targets]
            return [f.result() for f in futures]
        batch = states if states is not None else BatchedStates(run.journal)
        outcomes = [f.result() for f in _start_fan_out(run, targets, tickets, batch)]
        if states is None:
            batch.flush()
        return outcomes
    finally:
        cancel_all(tickets)  # places not used (a crash before submit) free their lanes


def dispatch(run: SignalRun, targets, *, tickets, states: "BatchedStates",
             wait_s: float) -> Optional[List["concurrent.futures.Future[AccountOutcome]"]]:
    """THE way into execution from the webhook's own thread, the route chosen once:

    * one account whose lane is idle: planned, journaled and sent from this thread (``run_now``);
    * several accounts (or one whose lane is busy): the idle lanes planned and sent in one batch,
      the busy ones queued to plan when this signal reaches the head of their lane (fan-out);

    the answers awaited here for at most ``wait_s`` (the caller answers 202 past it).  Returns one
    future per target, in order.  Every job plans at the head of its (account, product) lane."""
    if run.leader is None and targets:
        run = run.but(leader=targets[0][0].id)
    tickets = dict(tickets or {})
    if len(targets) == 1:
        target, conn = targets[0]
        account = fan_out.run_now(run, target, conn, tickets.get(target.id), wait_s=wait_s, states=states)
        if account is not None:
            return [account]
    missing = [t.id for t, _ in targets if t.id not in tickets]
    tickets.update(run.workers.lanes.reserve(missing, run.contract.root))
    try:
        return _start_fan_out(run, targets, tickets, states, wait_s)
    finally:
        cancel_all(tickets)


def _in_lane(tickets, target, conn, run, job, inline: bool):
    ticket = tickets.get(target.id)
    if ticket is None:  # a test signal: no lane
        future = concurrent.futures.Future()
        future.set_result(job())
        return future
    return run.workers.lanes.submit(ticket, conn, target.id, run.contract, run.settings, job, inline=inline)


def _start_fan_out(run, targets, tickets, batch, wait_s=None) -> List["concurrent.futures.Future[AccountOutcome]"]:
    futures: Dict[int, concurrent.futures.Future] = {}

    def start_others(taken) -> None:  # every account the batch did not take: one lane job each, planned at its head
        for index, (target, conn) in enumerate(targets):
            if index not in taken:
                futures[index] = _in_lane(tickets, target, conn, run,
                                          functools.partial(_run_account, target, conn, run), inline=False)

    futures.update(fan_out.run_batched(run, targets, tickets, batch, start_others, wait_s=wait_s))
    return [futures[index] for index in range(len(targets))]
