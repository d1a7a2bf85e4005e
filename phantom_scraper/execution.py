"""Signal execution: one validated signal on every targeted account, journaled at every step.

``execute_trade_simple`` (also ``recorder_service``'s documented entry point) runs each account in
parallel.  Per account: read the position if the plan needs it, plan the orders, then for each placement::

    create intent as 'sending' (one commit) -> place_order_smart(clOrdId) -> OrderResult.status
        acked      -> acked (order id, transport, latency)
        rejected   -> rejected (final)
        not_sent   -> rejected "not sent"   (provably never executed: nothing at the broker)
        unknown    -> journaled 'unknown' BEFORE the router's bounded search (on_unknown);
                      found -> reconciled; not found -> stays unknown, ERROR once, settled in the
                      background (settlement.py), never resent

An order never waits for a socket connect: with no live socket it goes over REST at once and the
connect runs in the background (``PooledConnection.ensure_connecting``); whether the socket is
used at all is the router's decision (``Settings.use_websocket_orders``, read there only).  There
is no retry around placement; the only resends are the ones ``place_order_smart`` makes after a
proof of non-execution (penalty, 401), inside one attempt.

``reconcile_pending`` (settlement.py) settles, at start-up, the intents a gone process left
``sending`` or ``unknown``: found at the broker by ``clOrdId`` -> ``reconciled``; not found ->
stays ``unknown`` for background settlement, NOT resent (a signal from before a restart is stale).

A connection (``conn``) here is a ``phantom_scraper.pool_api.Connection``: ``integration``,
``live_client()``, ``ensure_connecting()`` and ``record_order()``.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

from . import exit_legs
from .account_lanes import AccountLanes, cancel_all
from .errors import TradovateError
from .journal import JournalError, make_cl_ord_id
from . import strategy_exec

logger = logging.getLogger(__name__)

_WORKING_STATES = {"Working", "Suspended", "PendingNew", "PendingReplace"}
_PLACEMENT_KINDS = {"placeorder", "placeoso", "liquidateposition", "startorderstrategy"}


def describe(exc: BaseException) -> str:
    """``Type: message`` for logs and outcomes (messages never hold secrets: see errors.py)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


@dataclass
class AccountOutcome:
    """What happened on one account for one signal (returned to the webhook and journaled)."""

    account_id: int
    account_name: str
    status: str  # acked | rejected | not_sent | unknown | error | skipped | validated
    order_id: Optional[int] = None  # the last order placed (the entry of a reverse)
    order_ids: List[int] = field(default_factory=list)
    cl_ord_ids: List[str] = field(default_factory=list)
    transport: Optional[str] = None
    latency_ms: Optional[float] = None
    reconciled: bool = False
    error: Optional[str] = None
    planned: List[dict] = field(default_factory=list)
    risk: List[dict] = field(default_factory=list)  # the risk guard's refusals/clips ({code, message})

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The journaled form (no order bodies): what /api/signals and the status page show."""
        return {"account_id": self.account_id, "account_name": self.account_name, "status": self.status,
                "order_id": self.order_id, "order_ids": list(self.order_ids), "cl_ord_ids": list(self.cl_ord_ids),
                "transport": self.transport, "latency_ms": self.latency_ms, "reconciled": self.reconciled,
                "error": self.error, **({"risk": list(self.risk)} if self.risk else {})}


# The one owner of the worker threads.  Two pools so a signal task never waits on account tasks
# queued behind other signal tasks in the same bounded pool (that nesting deadlocks once it is full).
EXECUTOR_SIZES = {"signal": 32, "order": 64}  # signal: whole signals (TradingService); order: one task per account
_EXECUTORS: Dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_EXECUTOR_LOCK = threading.Lock()  # serialises creation/shutdown of the executors


def executor(kind: str) -> concurrent.futures.ThreadPoolExecutor:
    """The ``"signal"`` or ``"order"`` executor, created on first use."""
    with _EXECUTOR_LOCK:
        pool = _EXECUTORS.get(kind)
        if pool is None:
            pool = _EXECUTORS[kind] = concurrent.futures.ThreadPoolExecutor(
                max_workers=EXECUTOR_SIZES[kind], thread_name_prefix=kind)
        return pool


def shutdown_executors(wait: bool = True) -> None:
    with _EXECUTOR_LOCK:
        pools = list(_EXECUTORS.values())
        _EXECUTORS.clear()
    for pool in pools:  # joined outside the lock
        if pool is not None:
            pool.shutdown(wait=wait)


# ---------------------------------------------------------------------------------------------
# Reads (may fall back freely: a read is never an order)

def _read(conn, endpoint: str, rest_fn: Callable[[], list], timeout_s: float) -> list:
    client = conn.live_client()
    if client is not None:
        try:
            result = client.request(endpoint, timeout=timeout_s)
            return result if isinstance(result, list) else ([] if result is None else [result])
        except TradovateError as exc:
            logger.debug("read %s over WebSocket failed (%s); using REST", endpoint, exc)
    return rest_fn()


def _fresh_state(conn):
    """The login's socket-fed ``BrokerState`` when it can be trusted (synced on the live socket)."""
    return exit_legs.fresh_state(conn)  # (None too while it is behind this lane's own orders)


def _net_position(conn, account_id: int, contract_id: int, timeout_s: float) -> int:
    state = _fresh_state(conn)
    if state is not None:  # kept current by props events: no round trip
        return state.net_pos(account_id, contract_id)
    positions = _read(conn, "position/list", conn.integration.list_positions, timeout_s)
    return sum(int(p.get("netPos") or 0) for p in positions
               if p.get("accountId") == account_id and p.get("contractId") == contract_id)


def _working_orders(conn, account_id: int, contract_id: int, timeout_s: float) -> list:
    state = _fresh_state(conn)
    if state is not None:
        return state.working_orders(account_id, contract_id)
    orders = _read(conn, "order/list", conn.integration.list_orders, timeout_s)
    return [o for o in orders if o.get("accountId") == account_id and o.get("contractId") == contract_id
            and o.get("ordStatus") in _WORKING_STATES]


# ---------------------------------------------------------------------------------------------
# Execution

# One lane per (account, product): see account_lanes.  Its jobs run on the "order" executor.
LANES = AccountLanes(lambda: executor("order"))


def reserve_lanes(account_ids, root: str) -> dict:
    """Take each account's place in its lane now (at arrival), before the symbol is resolved.
    Hand the result to ``execute_trade_simple(tickets=...)``, or ``cancel_lanes`` it."""
    return LANES.reserve(account_ids, root)


def cancel_lanes(tickets) -> None:
    cancel_all(tickets)


RETRY_STEP_OFFSET = 100  # step numbers (clOrdIds) of a signal's second run after InvalidContract


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
        from .signals import needs_position as _needs, plan_orders as _plan
        planner = planner or _plan
        needs_position = needs_position or _needs
    tickets = dict(tickets or {})
    if signal.test:  # validation places nothing: it takes no place in a lane
        cancel_all(tickets)
        tickets = {}
    else:
        missing = [t.id for t, _ in targets if t.id not in tickets]
        tickets.update(LANES.reserve(missing, contract.root))
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
    return LANES.submit(ticket, conn, target.id, contract, settings, job, inline=inline)


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
    tickets.update(LANES.reserve(missing, contract.root))
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

    from .fan_out import run_batched
    futures.update(run_batched(signal, contract, targets, prepared, tickets, batch, signal_id, settings,
                               start_others, wait_s=wait_s))
    return [futures[index] for index in range(len(targets))]


class BatchedStates:
    """Collects the final state of single-step intents and commits them in one transaction.

    Used only for orders that are the last external action of their account for this signal, so
    "each state is committed before the next external action" still holds; if the process dies
    before the states are written, those intents are still ``sending`` and start-up reconciles them
    by clOrdId.  ``flush()`` writes them now; ``take()`` hands them to the caller, which writes them
    after the webhook's answer together with the signal's status (``final_writes``).  Everything
    else a placement asks of its journal goes to the journal itself.
    """

    def __init__(self, journal):
        self.journal = journal
        self._lock = threading.Lock()  # serialises appends from the account threads
        self._updates: List[tuple] = []

    def __getattr__(self, name):  # create_intent, write, ...: the journal's own
        if name == "journal":  # (not yet set)
            raise AttributeError(name)
        return getattr(self.journal, name)

    def set_intent_state(self, cl_ord_id, state, **fields) -> None:
        if state == "unknown":  # committed at once: an unknown is on disk before it is searched
            self.journal.set_intent_state(cl_ord_id, state, **fields)
            return
        with self._lock:
            self._updates.append((cl_ord_id, state, fields))

    def take(self) -> List[tuple]:
        with self._lock:
            updates, self._updates = self._updates, []
        return updates

    def flush(self) -> None:
        updates = self.take()
        if updates:
            try:
                self.journal.set_intent_states(updates)
            except JournalError as exc:
                logger.error("Could not journal %d order outcome(s): %s (start-up reconciles them)",
                             len(updates), describe(exc))


def _prepare_fan_out(signal, contract, targets, journal, signal_id, planner, needs_position):
    """Plan every account that needs no position read and journal all of their orders as
    ``sending`` in ONE transaction, so N accounts cost one commit before their frames leave.

    Returns ``{target index: (steps, clOrdId)}``; other accounts take the general path.
    """
    from .signals import PlanError

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


def _run_account(target, conn, signal, contract, journal, signal_id, settings, planner,
                 needs_position, steps=None, precreated=None, step_offset=0) -> AccountOutcome:
    from .signals import PlanError

    outcome = AccountOutcome(target.id, target.name, "acked")
    started = time.perf_counter()
    try:
        if steps is None:  # (a fan-out account may arrive planned and journaled: _prepare_fan_out)
            net_pos, has_working = 0, False
            open_strategies = False
            if needs_position(signal):
                net_pos = _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s)
                # after the position read (a local journal read): strategies to interrupt first
                open_strategies = strategy_exec.has_open(journal, target.id, contract.id)
                flat_target = signal.action == "close" or (signal.action == "target" and signal.target_position == 0)
                if net_pos == 0 and flat_target:  # leftover bracket legs still need cancelling
                    has_working = bool(_working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s))
            extra = {"open_strategies": True} if open_strategies else {}
            try:
                steps = planner(signal, contract, target, net_pos, has_working, **extra)
            except PlanError as exc:
                outcome.status = "skipped" if exc.code == "nothing_to_do" else "rejected"
                outcome.error = f"{exc.code}: {exc.message}" if hasattr(exc, "message") else str(exc)
                logger.info("Signal %s account %s: %s", signal_id, target.name, outcome.error)
                return outcome
        outcome.planned = [{"kind": s.kind, "body": s.body} for s in steps]
        if not steps:
            outcome.status, outcome.error = "skipped", "nothing to do"
            return outcome
        if signal.test:
            outcome.status = "validated"
            return outcome
        for index, step in enumerate(steps):
            if not _run_step(signal, contract, target, conn, journal, signal_id, settings, index + step_offset, step,
                             outcome, precreated if index == 0 else None):
                break
    except JournalError as exc:  # nothing recorded for the next order, so it was not sent
        outcome.status, outcome.error = "error", "journal unavailable, not sent: " + describe(exc)
        logger.error("Signal %s account %s: %s", signal_id, target.name, outcome.error)
    except TradovateError as exc:  # a read or a cancel failed; no placement is pending here
        outcome.status, outcome.error = "error", describe(exc)
        logger.warning("Signal %s account %s failed: %s", signal_id, target.name, outcome.error)
    except Exception as exc:  # a bug must not take the other accounts down with it
        outcome.status, outcome.error = "error", describe(exc)
        logger.exception("Signal %s account %s crashed", signal_id, target.name)
    if outcome.latency_ms is None:
        outcome.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return outcome


def _run_step(signal, contract, target, conn, journal, signal_id, settings, index, step, outcome,
              precreated=None) -> bool:
    """Execute one planned step; False stops the account's remaining steps."""
    ti = conn.integration
    if step.kind == "trim_legs":  # exit legs cut to what the reduction leaves, before it is sent
        exit_legs.trim(conn, target.id, contract.id, int(step.body.get("cover") or 0), settings.order_ack_timeout_s)
        return True
    if step.kind == "wait_flat":
        deadline = time.monotonic() + settings.reconcile_window_s
        while _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s) != 0:
            if time.monotonic() >= deadline:
                outcome.status = "error"
                outcome.error = "position not flat in time after liquidation; the entry was not sent"
                logger.warning("Signal %s account %s: %s", signal_id, target.name, outcome.error)
                return False
            time.sleep(settings.reconcile_poll_interval_s / 5)
        return True
    if step.kind == "cancel_working":  # cancels may be retried; not journaled as intents
        for order in _working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s):
            ti.cancel_order_rest({"orderId": order["id"], "isAutomated": True})
            outcome.order_ids.append(order["id"])
        return True
    if step.kind == "interrupt_strategies":  # like cancels: may be repeated; not an order intent
        strategy_exec.interrupt_open(journal, ti, target.id, contract.id)
        return True
    if step.kind not in _PLACEMENT_KINDS:
        raise ValueError(f"unknown step kind {step.kind!r}")

    placement = _Placement(signal, contract, target, conn, journal, signal_id, index, step, outcome, precreated)
    return placement.run_guarded()


class _Placement:
    """One placement step around its send: the intent journaled (unless the fan-out did it), the
    order built; ``finish(result)`` journals and reports the outcome.  Between the two the order
    is sent -- by ``order.run()``, or as part of a fan-out's batch (``order.run(sent=...)``)."""

    def __init__(self, signal, contract, target, conn, journal, signal_id, index, step, outcome, precreated=None):
        self.contract, self.target, self.conn, self.journal = contract, target, conn, journal
        self.signal_id, self.index, self.step, self.outcome = signal_id, index, step, outcome
        ti = conn.integration
        self.cl_ord_id = cl_ord_id = precreated or make_cl_ord_id(signal_id, target.id, index)
        if precreated is None:  # the intent and the decision to send, in one commit, before the frame
            journal.create_intent(signal_id, target.id, target.name, index, step.kind, step.body, cl_ord_id,
                                  state="sending")
        outcome.cl_ord_ids.append(cl_ord_id)
        endpoint = f"order/{step.kind}"
        if step.kind == "startorderstrategy":  # its own record (params, breakeven) before the frame leaves
            endpoint = strategy_exec.ENDPOINT
            strategy_exec.before_start(journal, signal_id, target, contract, step, cl_ord_id)
        client, fallback = conn.live_client(), None  # the router decides whether to use it
        if client is None:
            conn.ensure_connecting()  # repaired in the background; this order goes over REST now
            fallback = "no live WebSocket (reconnecting in the background)"
        self.client = client
        self.journaled_unknown: List[bool] = []
        self.order = ti.smart_order(dict(step.body), ws=client, endpoint=endpoint, cl_ord_id=cl_ord_id,
                                    fallback_reason=fallback, on_unknown=self._on_unknown)

    def _on_unknown(self, reason: str) -> None:  # before the router searches: 'unknown' is on disk first
        try:
            self.journal.set_intent_state(self.cl_ord_id, "unknown", error=reason)
            self.journaled_unknown.append(True)
        except JournalError as exc:
            logger.error("Order %s: could not journal unknown: %s", self.cl_ord_id, describe(exc))

    def run_guarded(self, sent=None):
        """``order.run`` -> ``finish``; a bug after the frame may have left is an unknown, never retried."""
        try:
            result = self.order.run(sent)
        except Exception as exc:
            return self.failed(exc)
        return self.finish(result)

    def failed(self, exc: BaseException) -> bool:
        logger.error("Order %s: unexpected error while placing: %s", self.cl_ord_id, describe(exc), exc_info=exc)
        return _fail(self.journal, self.cl_ord_id, "unknown", describe(exc), self.outcome, self.target,
                     bool(self.journaled_unknown))

    def finish(self, result) -> bool:
        journal, cl_ord_id, step, outcome, target = self.journal, self.cl_ord_id, self.step, self.outcome, self.target
        ti = self.conn.integration
        if step.kind == "startorderstrategy":
            strategy_exec.after_start(journal, cl_ord_id, result.status, result.order_id)
        if result.status == "rejected":
            text = f"{result.failure_reason}: {result.failure_text}".rstrip(": ")
            if step.kind == "liquidateposition" and _already_flat(text):
                return _flat_already(journal, cl_ord_id, self.signal_id, target, outcome, self.index)
            return _fail(journal, cl_ord_id, "rejected", text, outcome, target)
        if result.status == "not_sent":  # provably not executed (429/penalty included): nothing at the broker
            return _fail(journal, cl_ord_id, "not_sent", "not sent: " + (result.error or ""), outcome, target)
        if result.status != "acked":  # unknown: journaled, searched, not found; settled in the background
            return _fail(journal, cl_ord_id, "unknown", result.error or "outcome unknown", outcome, target,
                         bool(self.journaled_unknown))
        self.conn.record_order(result.transport, result.latency_ms)
        outcome.order_id = result.order_id
        # Every broker order this request made is reported (and the lane waits until each rests or
        # fills): a strategy's entry and legs (order_id is the strategy), an OSO's entry and brackets.
        if step.kind == "startorderstrategy":
            outcome.order_ids.extend(strategy_exec.strategy_order_ids(ti, cl_ord_id, result.order_id))
        else:
            outcome.order_ids.append(result.order_id)
            outcome.order_ids.extend(result.response[key] for key in ("oso1Id", "oso2Id")
                                     if isinstance(result.response, dict) and result.response.get(key) is not None)
        outcome.transport = result.transport
        outcome.latency_ms = result.latency_ms
        outcome.reconciled = outcome.reconciled or bool(result.reconciled)
        # The signal's one INFO line (service) names each account's order; the router logs it at DEBUG.
        state = "reconciled" if self.journaled_unknown else "acked"
        try:
            journal.set_intent_state(cl_ord_id, state, broker_order_id=result.order_id, transport=result.transport,
                                     latency_ms=result.latency_ms, reconciled=bool(result.reconciled))
        except JournalError as exc:  # the order exists; the intent stays pending and is reconciled at start
            outcome.error = "placed, but the journal could not record it: " + describe(exc)
            logger.error("Order %s placed as %s but not journaled: %s", cl_ord_id, result.order_id, describe(exc))
        return True


def _already_flat(text: str) -> bool:
    return "already flat" in (text or "").lower()


def _flat_already(journal, cl_ord_id, signal_id, target, outcome, index) -> bool:
    """Tradovate answers a liquidation of a flat position with "Position is already flat" (and
    still cancels the contract's working orders).  The flatten step reached its goal: record it,
    and let a reversal go on with its entry."""
    logger.info("Signal %s account %s: position already flat; flatten step done", signal_id, target.name)
    if index % RETRY_STEP_OFFSET == len(outcome.planned) - 1 and not outcome.order_ids:
        outcome.status, outcome.error = "skipped", "position already flat"
    try:
        journal.set_intent_state(cl_ord_id, "rejected", error="position already flat: nothing to close")
    except JournalError as exc:
        logger.error("Order %s: could not journal its already-flat answer: %s", cl_ord_id, describe(exc))
    return True


_JOURNAL_STATE = {"rejected": "rejected", "not_sent": "rejected", "unknown": "unknown"}


def _fail(journal, cl_ord_id, status, error, outcome, target, already_journaled=False) -> bool:
    """Record a placement that did not end acked (outcome ``status``: rejected / not_sent /
    unknown); stops the account.  An unknown is logged at ERROR once, here."""
    outcome.status, outcome.error = status, error
    state = _JOURNAL_STATE[status]
    if status == "unknown":
        logger.error("Order %s account %s outcome UNKNOWN (needs attention; never resent, settled in the "
                     "background by clOrdId): %s", cl_ord_id, target.name, error)
    else:
        logger.warning("Order %s account %s %s: %s", cl_ord_id, target.name, status, error)
    if already_journaled:
        return False
    try:
        journal.set_intent_state(cl_ord_id, state, error=error)
    except JournalError as exc:
        logger.error("Order %s: could not journal %s: %s", cl_ord_id, state, describe(exc))
    return False
