"""Proof of absence for an order whose socket died before the answer.

An ``unknown`` outcome has two causes that look alike and are not (``tradovate.outcome`` tells them
apart, in one place, as ``connection_lost``):

* the socket **stayed open** and did not answer in time: the broker has the frame and may execute it
  at any moment (tested: 17 s late).  Never resent -- it is searched and settled (settlement.py);
* the socket **closed** after the frame was written: the frame may have been executed (and the
  answer lost) or never read at all (a fan-out's later frames behind the one that killed the
  socket).  Here, and only here, absence can be proved: after the reconnect (the broker has dropped
  that connection and everything it had not read), and a short grace (``ABSENCE_GRACE_S``), both
  ``command/list`` and ``order/list`` are searched for the ``clOrdId``:

  - found: adopted (``reconciled``), never resent;
  - absent from both: the intent is ``not_placed`` ("not sent: proved absent") and, while the
    signal is still fresh (``RESEND_FRESH_S``, 10 s after receipt) and no later signal has planned
    on that lane since, the account is planned once more at the head of its lane -- a new intent
    under a NEW ``clOrdId`` (step numbers from ``RESEND_STEP_OFFSET``), journaled like any other;
    otherwise it stays ``not_placed`` and is reported (and a follower left behind shows as drift).

At most one re-placement per signal and account (a re-placement's own unknown is never proved
absent again).  Nothing here runs on the order path: the proof is a background task.
"""
from __future__ import annotations

import logging
import time

from phantom_scraper import events
from phantom_scraper.errors import TradovateError
from phantom_scraper.execution.model import RETRY_STEP_OFFSET, describe
from phantom_scraper.journal.journal import JournalError
from phantom_scraper.tradovate.search import check_found, orders_by_intent

logger = logging.getLogger(__name__)

RESEND_STEP_OFFSET = 2 * RETRY_STEP_OFFSET  # clOrdIds of a re-placement after a proof of absence


def may_prove(placement, result) -> bool:
    run = placement.run
    return (bool(getattr(result, "connection_lost", False)) and placement.step.kind in ("placeorder", "placeoso")
            and run.step_offset < RESEND_STEP_OFFSET and not run.signal.test)


def start(placement, result, rerun) -> None:
    """Called by the placement that ended ``unknown`` with its socket lost: prove in the background.
    ``rerun(target, conn, run)`` runs one account of a run (``account._run_account``)."""
    try:
        placement.run.workers.executor("order").submit(_prove, placement, rerun)
    except RuntimeError:  # shutting down: it stays unknown, settled as usual
        pass


def _prove(placement, rerun) -> None:
    run, target, conn, cl = placement.run, placement.target, placement.conn, placement.cl_ord_id
    settings = run.settings
    grace = float(getattr(settings, "absence_grace_s", 3.0))
    deadline = time.monotonic() + max(10 * grace, settings.ws_connect_timeout_s * 2)
    stop = conn.integration.stop_event
    while conn.live_client() is None:  # the broker has dropped the old connection once we have a new one
        if time.monotonic() >= deadline or stop.is_set():
            logger.warning("Order %s: no reconnect to prove it absent; it stays unknown (settled as usual)", cl)
            return
        conn.ensure_connecting()
        stop.wait(0.05)
    if stop.wait(grace):
        return
    ti = conn.integration
    try:
        found = orders_by_intent(ti.list_commands(), [cl])
        if not found.get(cl):
            found = orders_by_intent(ti.list_orders(), [cl])
        check_found(found)
    except TradovateError as exc:
        logger.warning("Order %s: cannot read the book to prove it absent (%s); it stays unknown", cl, describe(exc))
        return
    ids = found.get(cl) or []
    journal = run.journal
    if ids:
        _journal(journal, cl, "reconciled", broker_order_id=ids[0], reconciled=True)
        run.workers.book.resolved(cl, ids[0])
        logger.warning("Order %s: its socket died before the answer; found at the broker as order %s (adopted)",
                       cl, ids[0])
        events.emit("settled", cl_ord_id=cl, order_id=ids[0], state="reconciled")
        return
    age = time.monotonic() - (run.received if run.received is not None else time.monotonic())
    fresh_s = float(getattr(settings, "resend_fresh_s", 10.0))
    key = (int(target.id), int(run.contract.id))
    exp = run.workers.book.expected(*key)
    overtaken = exp is not None and cl not in exp.doubt_ids  # a later job has planned on the lane since
    fresh = age <= fresh_s and not overtaken
    why = (f"not sent: absent from order/list and command/list {grace:g} s after the reconnect (its socket "
           f"closed before the answer)" + ("; placed once more under a new clOrdId" if fresh else
                                           f"; not placed again ({'a later signal ran' if overtaken else f'the signal is {age:.1f} s old'})"))
    _journal(journal, cl, "not_placed", error=why)
    run.workers.book.resolved(cl)
    events.emit("settled", cl_ord_id=cl, order_id=None, state="not_placed")
    logger.warning("Order %s account %s: %s", cl, target.name, why)
    if fresh:
        _place_again(run, target, conn, rerun)


def _place_again(run, target, conn, rerun) -> None:
    again = run.but(step_offset=RESEND_STEP_OFFSET)
    lanes = run.workers.lanes
    ticket = lanes.reserve([target.id], run.contract.root)[target.id]
    future = lanes.submit(ticket, conn, target.id, run.contract, run.settings,
                          lambda: rerun(target, conn, again), inline=False)
    future.add_done_callback(lambda f: _placed_again(f, run, target))


def _placed_again(future, run, target) -> None:
    if future.cancelled() or future.exception() is not None:
        logger.error("Signal %s account %s: placing again failed: %s", run.signal_id, target.name,
                     None if future.cancelled() else future.exception())
        return
    outcome = future.result()
    logger.warning("Signal %s account %s placed again after a proof of absence: %s %s", run.signal_id, target.name,
                   outcome.status, outcome.cl_ord_ids)


def _journal(journal, cl, state, **fields) -> None:
    try:
        journal.set_intent_state(cl, state, **fields)
    except JournalError as exc:
        logger.error("Order %s: could not journal %s: %s", cl, state, describe(exc))
