"""A fan-out's orders in one pass of each socket's loop.

For every account whose lane (account, product) is idle with this signal at its head and whose
previous orders are already settled (``AccountLanes.claim``), the account is planned right there
(the head of its lane: from the broker state at that moment, with the risk guard's exposure), all
of their intents are journaled as ``sending`` in one transaction, and the frames are handed to
their login's socket together (``TradovateWebSocket.request_many``: one hand-off to the loop
thread, the frames written back to back, one future each) -- instead of one executor task per
account, each hopping to the loop on its own.

Then each account's answer goes through the same router flow as a single order
(``SmartOrder.run(sent=...)``): an ack or a rejection is journaled right here (batched, see
``execution.BatchedStates``); anything that needs more work -- a penalty to wait out, a frame
that never left (REST fallback), an unknown outcome to search for -- continues on the ``order``
executor, so one slow account never holds up the others.  Accounts not taken here (a busy lane,
no live socket, a step that needs more than one placement) run the general per-account path.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from phantom_scraper.errors import NotSentError, PenaltyError, TradovateError
from phantom_scraper.execution.account import _Placement, _run_account, job_done, plan_at_head, plan_refused
from phantom_scraper.execution.model import AccountOutcome, describe
from phantom_scraper.journal.journal import JournalError, make_cl_ord_id
from phantom_scraper.tradovate.outcome import Outcome, classify_error

logger = logging.getLogger(__name__)

_BATCH_KINDS = frozenset({"placeorder", "placeoso", "liquidateposition"})


def run_batched(run, targets, tickets, states, start_others: Callable[[Dict[int, object]], None],
                wait_s: Optional[float] = None) -> Dict[int, "concurrent.futures.Future"]:
    """Send the orders of the accounts it can take in one batch per socket.  Returns
    ``{target index: Future[AccountOutcome]}`` for those.  ``start_others(taken)`` is called once
    the frames are written (before their answers are waited for): the caller starts the accounts
    not in ``taken`` there.  ``wait_s``: how long this thread waits for the answers in all (None:
    as long as they take); an answer not in by then is finished on the order executor.

    An account is taken when its lane is idle with this signal at its head (``claim``): it is
    planned right then -- the head of its lane -- from the broker state at that moment, and the
    intents of all taken accounts are journaled in one transaction before their frames leave.
    A lane that is busy plans when this signal reaches its head (``start_others``)."""

    signal, contract, settings, signal_id = run.signal, run.contract, run.settings, run.signal_id
    if not settings.use_websocket_orders or signal.test or run.needs_position(signal):
        start_others({})
        return {}
    results: Dict[int, concurrent.futures.Future] = {}
    claimed: List[tuple] = []  # (index, ticket)
    for index, (target, conn) in enumerate(targets):
        ticket = tickets.get(target.id)
        if ticket is None:
            continue
        client = conn.live_client()
        if client is None or not client.is_open or conn.integration.stop_event.is_set():
            continue
        taken = run.workers.lanes.claim(ticket, conn, contract, settings)
        if taken is None:
            continue
        if not taken:  # the lane must wait for its previous orders first: in a worker, as a lane job would
            results[index] = run.workers.executor("order").submit(_settle_then_run, ticket, target, conn, run)
            continue
        claimed.append((index, ticket))
    planned = _plan_claimed(run, targets, claimed, results)
    ready: List[tuple] = []  # (index, ticket, placement, started)
    for index, ticket, steps, cl_ord_id, outcome, started in planned:
        target, conn = targets[index]
        try:
            placement = _Placement(run, target, conn, 0, steps[0], outcome, precreated=cl_ord_id, journal=states)
        except Exception as exc:  # nothing sent for this account
            _account_error(outcome, signal_id, target, exc)
            results[index] = _done(outcome)
            run.workers.lanes.release(ticket, conn, target.id, contract, outcome)
            continue
        ready.append((index, ticket, placement, started))
    if not ready:
        start_others(results)
        return results

    # One hand-off per socket: every frame written back to back in one pass of its loop.
    groups: Dict[int, List[tuple]] = {}
    for item in ready:
        groups.setdefault(id(item[2].client), []).append(item)
    sent: Dict[int, object] = {}
    for items in groups.values():
        client = items[0][2].client
        if client is None:  # the socket went away between the claim and the placement: not written
            for index, *_ in items:
                sent[index] = (None, NotSentError("no live WebSocket when the batch was written; not sent"))
            continue
        try:
            batch = client.request_many([(p.order.endpoint, p.order.body) for _, _, p, _ in items],
                                        timeout=settings.order_ack_timeout_s)
        except NotSentError as exc:  # the socket closed meanwhile: nothing written (REST fallback)
            for index, *_ in items:
                sent[index] = (None, exc)
            continue
        for position, (index, *_) in enumerate(items):
            sent[index] = (batch, position)

    start_others({**results, **{index: None for index, *_ in ready}})
    # Each socket's answers are awaited as one: this thread wakes once per socket, not once per answer
    # (each wake-up takes the interpreter from the socket thread while it is still reading), and the
    # accounts of a socket whose answers are in are finished (their lanes released) at once -- a slow
    # login delays only its own accounts.
    batches = {id(b): b for b, _ in sent.values() if b is not None}
    limit = max((b.deadline for b in batches.values()), default=time.monotonic()) - time.monotonic()
    if wait_s is not None:
        limit = min(limit, wait_s)
    deadline = time.monotonic() + max(0.0, limit)
    whole = {key: _all_done(b.futures) for key, b in batches.items()}
    waiting = [item for item in ready if sent[item[0]][0] is None]  # nothing written: finished first
    _finish_ready(run, waiting, sent, targets, results, signal_id, contract)
    pending = dict(whole)
    while pending:
        done, _ = concurrent.futures.wait(list(pending.values()), timeout=max(0.0, deadline - time.monotonic()),
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        keys = [key for key, fut in pending.items() if fut in done] if done else list(pending)
        for key in keys:
            pending.pop(key)
        _finish_ready(run, [item for item in ready if sent[item[0]][0] is not None and id(sent[item[0]][0]) in keys],
                      sent, targets, results, signal_id, contract)
    return results


def _all_done(futures) -> "concurrent.futures.Future":
    """A future done when every one of ``futures`` is (one wake-up per socket's batch)."""
    whole: concurrent.futures.Future = concurrent.futures.Future()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_f) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            whole.set_result(None)

    if not futures:
        whole.set_result(None)
    for fut in futures:
        fut.add_done_callback(one_done)
    return whole


def _finish_ready(run, items, sent, targets, results, signal_id, contract) -> None:
    """Finish these accounts: here when the answer is in and final, else on the order executor."""
    for index, ticket, placement, started in items:
        target, conn = targets[index]
        batch, where = sent[index]
        answer = functools.partial(_raise, where) if batch is None else functools.partial(batch.result, where)
        finish = functools.partial(_finish, ticket, placement, answer, started, signal_id, target, conn, contract)
        if batch is not None and batch.futures[where].done() and _quick(batch, where):
            results[index] = _done(finish())
        else:  # more work (penalty wait, REST fallback, unknown search): off this thread
            results[index] = _off_thread(run, finish)


def _off_thread(run, finish) -> "concurrent.futures.Future":

    try:
        return run.workers.executor("order").submit(finish)
    except RuntimeError:  # executors shut down (process stopping): finish here, the lane must move on
        return _done(finish())


def _quick(batch, position: int) -> bool:
    """The answer is in and final (acked or rejected): finishing it only journals and reports."""
    try:
        batch.result(position)
        return True
    except PenaltyError:
        return False
    except TradovateError as exc:
        attempt = classify_error(exc, "websocket")
        return attempt.outcome is Outcome.REJECTED or (attempt.outcome is Outcome.NOT_SENT and attempt.rate_limited)


def _finish(ticket, placement, answer, started, signal_id, target, conn, contract):

    outcome = placement.outcome
    try:
        try:
            placement.run_guarded(answer)
        except Exception as exc:  # noqa: BLE001 - a bug must not take the other accounts down
            _account_error(outcome, signal_id, target, exc)
        outcome.stamp_latency(started)
        job_done(placement.run, target, conn, outcome)
    finally:
        placement.run.workers.lanes.release(ticket, conn, target.id, contract, outcome)
    return outcome


def _plan_claimed(run, targets, claimed, results) -> List[tuple]:
    """Plan every claimed account now (the head of its lane) and journal the single-order ones as
    ``sending`` in ONE transaction.  -> ``[(index, ticket, steps, clOrdId, outcome, started)]`` to
    send; the others are finished (refused, error) or handed to a worker (several steps) in
    ``results``."""
    from phantom_scraper.signals import PlanError

    planned, rows = [], []
    for index, ticket in claimed:
        target, conn = targets[index]
        outcome = AccountOutcome.begin(target)
        started = time.perf_counter()
        try:
            steps = plan_at_head(run, target, conn, outcome)
        except PlanError as exc:
            plan_refused(outcome, exc, run.signal_id, target)
            steps = []
        except Exception as exc:  # noqa: BLE001 - a bug: this account only
            _account_error(outcome, run.signal_id, target, exc)
            steps = None
        if not steps or len(steps) != 1 or steps[0].kind not in _BATCH_KINDS:
            if steps:  # several steps (or a kind the batch does not send): the general path, lane kept
                results[index] = run.workers.executor("order").submit(_run_claimed, ticket, target, conn, run, steps,
                                                                    outcome)
                continue
            if steps is not None and outcome.status == "acked":
                outcome.status, outcome.error = "skipped", "nothing to do"
            outcome.stamp_latency(started)
            job_done(run, target, conn, outcome)
            results[index] = _done(outcome)
            run.workers.lanes.release(ticket, conn, target.id, run.contract, outcome)
            continue
        outcome.planned = [{"kind": s.kind, "body": s.body} for s in steps]
        outcome.warnings = list(dict.fromkeys(n for s in steps for n in s.meta.get("notes", ())))
        cl_ord_id = make_cl_ord_id(run.signal_id, target.id, run.step_offset)
        rows.append((target.id, target.name, run.step_offset, steps[0].kind, steps[0].body, cl_ord_id))
        planned.append((index, ticket, steps, cl_ord_id, outcome, started))
    if rows:
        try:
            run.journal.create_intents(run.signal_id, rows, state="sending")
        except JournalError as exc:  # nothing recorded, so nothing may be sent: report per account
            logger.error("Signal %s: journal unavailable, fan-out not sent: %s", run.signal_id, describe(exc))
            for index, ticket, _steps, _cl, outcome, _started in planned:
                target, conn = targets[index]
                outcome.status, outcome.error = "error", "journal unavailable, not sent: " + describe(exc)
                results[index] = _done(outcome)
                run.workers.lanes.release(ticket, conn, target.id, run.contract, outcome)
            return []
    return planned


def _run_claimed(ticket, target, conn, run, steps, planned=None):
    outcome = None
    try:
        outcome = _run_account(target, conn, run, steps=steps, planned=planned)
        return outcome
    finally:
        run.workers.lanes.release(ticket, conn, target.id, run.contract, outcome)


def _settle_then_run(ticket, target, conn, run):
    """A claimed lane whose previous orders are not settled yet: wait for them, then plan and run."""
    outcome = None
    try:
        run.workers.lanes.settle_claimed(ticket, run.settings, conn)
        outcome = _run_account(target, conn, run)
        return outcome
    finally:
        run.workers.lanes.release(ticket, conn, target.id, run.contract, outcome)


def run_now(run, target, conn, ticket, wait_s: float, states=None):
    """One account's order sent from the calling thread (the webhook's own), with no hand-off to a
    worker before the frame leaves: claim the idle lane -> plan (the head of the lane) -> journal
    the intent (one commit) -> frame handed to the socket.  The answer is then awaited here for up
    to ``wait_s``; an ack or a rejection is journaled here too.  Anything slower (no answer yet, a
    penalty, a REST fallback, an unknown to search, a lane that must first wait for its previous
    orders, a plan of several steps) goes on in the ``order`` executor, exactly as the general path
    would run it.

    ``states`` (``execution.BatchedStates``): where the order's final state goes, for the caller to
    write after the answer; without it, it is committed here.

    Returns a Future of the :class:`AccountOutcome`, or None when this path does not apply (no live
    socket, a plan that reads the position first, the lane busy): then nothing was done and the
    ticket is untouched."""
    from phantom_scraper.signals import PlanError

    signal, contract, settings, signal_id = run.signal, run.contract, run.settings, run.signal_id
    if not settings.use_websocket_orders or ticket is None or run.needs_position(signal):
        return None
    client = conn.live_client()
    if client is None or not client.is_open or conn.integration.stop_event.is_set():
        return None
    started_wait = time.perf_counter()
    # The previous order of this lane is usually settled (its fill and position event in) within a
    # moment of its answer: wait for that here, within half of what is left of the budget.
    taken = run.workers.lanes.claim(ticket, conn, contract, settings, wait_s=wait_s / 2)
    if taken is None:
        return None
    wait_s = max(0.0, wait_s - (time.perf_counter() - started_wait))
    if not taken:  # the lane waits for its previous orders first: in a worker, as a lane job would
        return run.workers.executor("order").submit(_settle_then_run, ticket, target, conn, run)
    outcome = AccountOutcome.begin(target)
    started = time.perf_counter()
    try:
        try:
            steps = plan_at_head(run, target, conn, outcome)
        except PlanError as exc:
            plan_refused(outcome, exc, signal_id, target)
            job_done(run, target, conn, outcome)
            steps = None
        if steps is not None and (len(steps) != 1 or steps[0].kind not in _BATCH_KINDS):
            future = run.workers.executor("order").submit(_run_claimed, ticket, target, conn, run, steps, outcome)
            ticket = None  # released by the worker
            return future
        if steps is not None:
            outcome.planned = [{"kind": s.kind, "body": s.body} for s in steps]
            outcome.warnings = list(dict.fromkeys(n for s in steps for n in s.meta.get("notes", ())))
            placement = _Placement(run, target, conn, run.step_offset, steps[0], outcome, journal=states)
    except JournalError as exc:  # nothing recorded, so nothing was sent
        outcome.status, outcome.error = "error", "journal unavailable, not sent: " + describe(exc)
        logger.error("Signal %s account %s: %s", signal_id, target.name, outcome.error)
        steps = None
    except Exception as exc:  # noqa: BLE001 - nothing was sent
        _account_error(outcome, signal_id, target, exc)
        steps = None
    finally:
        if ticket is not None and steps is None:
            outcome.stamp_latency(started)
            run.workers.lanes.release(ticket, conn, target.id, contract, outcome)
    if steps is None:
        return _done(outcome)
    try:
        batch = client.request_many([(placement.order.endpoint, placement.order.body)],
                                    timeout=settings.order_ack_timeout_s)
        answer = functools.partial(batch.result, 0)
    except NotSentError as exc:  # the socket closed meanwhile: nothing written (REST fallback)
        batch, answer = None, functools.partial(_raise, exc)
    finish = functools.partial(_finish, ticket, placement, answer, started, signal_id, target, conn, contract)
    if batch is not None:
        concurrent.futures.wait(batch.futures, timeout=wait_s)
        if batch.futures[0].done() and _quick(batch, 0):
            return _done(finish())
    return _off_thread(run, finish)


def _account_error(outcome, signal_id, target, exc: BaseException) -> None:

    outcome.status, outcome.error = "error", describe(exc)
    logger.error("Signal %s account %s crashed: %s", signal_id, target.name, outcome.error, exc_info=exc)


def _raise(exc: BaseException):
    raise exc


def _done(value) -> "concurrent.futures.Future":
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(value)
    return future


__all__: Tuple[str, ...] = ("run_batched", "run_now")
