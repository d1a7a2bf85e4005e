"""One signal on one account: read what the plan needs, plan, then place each step (journaled).

A placement (:class:`_Placement`) is the intent journaled, the order built, sent by the router,
and its outcome journaled and reported; a fan-out (``batch``) sends several placements' frames at once.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, List, Optional

from phantom_scraper.errors import TradovateError
from phantom_scraper.execution import absence, cancels, exit_legs
from phantom_scraper.execution.model import (_PLACEMENT_KINDS, RETRY_STEP_OFFSET, AccountOutcome,  # noqa: F401
                                             describe)
from phantom_scraper.journal.journal import JournalError, make_cl_ord_id
from phantom_scraper.strategies import lifecycle as strategy_exec
from phantom_scraper.signals.model import step_delta
from phantom_scraper.tradovate.broker_state import CANCELLABLE_STATES

logger = logging.getLogger(__name__)

_WORKING_STATES = CANCELLABLE_STATES


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


def _wait_flat(conn, account_id: int, contract_id: int, settings) -> bool:
    """After a liquidation, until the account is flat in the contract (``RECONCILE_WINDOW_S`` at
    most).  With a fresh socket-fed state the wait wakes on the position event that flattens it
    (a reversal's entry follows its liquidation's fill at once); otherwise -- or once that state
    goes stale -- the broker's position is read every ``RECONCILE_POLL_INTERVAL_S / 5``."""
    deadline = time.monotonic() + settings.reconcile_window_s
    while True:
        state = _fresh_state(conn)
        if state is not None:
            if state.wait_for(lambda s: s.net_pos(account_id, contract_id) == 0,
                              max(0.0, deadline - time.monotonic())):
                return True
            if time.monotonic() >= deadline:
                return False
            continue  # the state went stale meanwhile: read the broker's position
        if _net_position(conn, account_id, contract_id, settings.order_ack_timeout_s) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(settings.reconcile_poll_interval_s / 5, max(0.0, deadline - time.monotonic())))


def plan_refused(outcome: AccountOutcome, exc, signal_id: str, target) -> None:
    """The planner (or the risk guard) left nothing to send: skipped, or rejected with its reason."""
    outcome.status = "skipped" if exc.code == "nothing_to_do" else "rejected"
    outcome.error = f"{exc.code}: {exc.message}" if hasattr(exc, "message") else str(exc)
    logger.info("Signal %s account %s: %s", signal_id, target.name, outcome.error)


def plan_at_head(run, target, conn, outcome: Optional[AccountOutcome] = None) -> list:
    """The account's steps, planned now -- at the head of its lane, from the broker state at this
    moment (the risk guard reads the same state: position, working entries, orders in doubt).
    Raises ``PlanError`` when nothing is to be sent.  ``outcome`` records where the plan started
    (the lane's expectation is built from it when the job ends)."""
    from phantom_scraper.signals import reads_working_orders

    signal, contract, settings = run.signal, run.contract, run.settings
    net_pos, has_working, extra = 0, False, {}
    state = _fresh_state(conn)
    if outcome is not None:
        outcome.plan_seq = run.workers.book.mark()
        if state is not None:
            outcome.base_position = state.net_pos(target.id, contract.id)
            outcome.fill_mark = state.fill_mark()
    if run.needs_position(signal):
        net_pos = _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s)
        # after the position read (a local journal read): strategies to interrupt first
        if strategy_exec.has_open(run.journal, target.id, contract.id):
            extra["open_strategies"] = True
        if net_pos == 0 and reads_working_orders(signal):  # leftover legs / a side entry's cancel
            has_working = bool(_working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s))
    if state is None and getattr(run.planner, "takes_broker", False) and not signal.test:
        # The socket-fed state is stale or behind this lane's own orders: the risk guard must not
        # judge the exposure from it.  Read the position and the working orders from the broker.
        position = net_pos if run.needs_position(signal) else \
            _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s)
        extra["broker"] = (position, _working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s))
    return run.planner(signal, contract, target, net_pos, has_working, **extra)


def seed_from(outcome: AccountOutcome, planned: Optional[AccountOutcome]) -> AccountOutcome:
    if planned is not None:
        outcome.base_position, outcome.fill_mark, outcome.plan_seq = \
            planned.base_position, planned.fill_mark, planned.plan_seq
    return outcome


def job_done(run, target, conn, outcome: AccountOutcome) -> None:
    """The lane's job ended: its expectation (see :mod:`.expectation`); never fails the job."""
    try:
        run.workers.book.job_done(run, target, conn, outcome)
    except Exception:  # noqa: BLE001 - bookkeeping must not break an order
        logger.exception("Could not record the expectation of account %s", target.name)


def _run_account(target, conn, run, steps=None, precreated=None, journal=None, planned=None) -> AccountOutcome:
    """One account of ``run`` (a :class:`SignalRun`), run at the head of its lane: plan (unless the
    fan-out planned it a moment ago at the head of the same lane), then each step.  ``journal``:
    where single-step final states go (a ``BatchedStates``), default the run's journal."""
    from phantom_scraper.signals import PlanError

    outcome = seed_from(AccountOutcome.begin(target), planned)
    try:
        return _run_planned(target, conn, run, outcome, steps, precreated, journal)
    finally:
        job_done(run, target, conn, outcome)


def _run_planned(target, conn, run, outcome, steps, precreated, journal) -> AccountOutcome:
    from phantom_scraper.signals import PlanError

    started = time.perf_counter()
    signal_id = run.signal_id
    try:
        if steps is None:
            try:
                steps = plan_at_head(run, target, conn, outcome)
            except PlanError as exc:
                plan_refused(outcome, exc, signal_id, target)
                return outcome
        outcome.planned = [{"kind": s.kind, "body": s.body} for s in steps]
        outcome.warnings = list(dict.fromkeys(n for s in steps for n in s.meta.get("notes", ())))
        if not steps:
            outcome.status, outcome.error = "skipped", "nothing to do"
            return outcome
        if run.signal.test:
            outcome.status = "validated"
            return outcome
        for index, step in enumerate(steps):
            if not _run_step(run, target, conn, index + run.step_offset, step, outcome,
                             precreated if index == 0 else None, journal):
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
    outcome.stamp_latency(started)
    return outcome


def _run_step(run, target, conn, index, step, outcome, precreated=None, journal=None) -> bool:
    """Execute one planned step; False stops the account's remaining steps."""
    ti = conn.integration
    contract, settings, signal_id = run.contract, run.settings, run.signal_id
    if step.kind == "trim_legs":  # exit legs cut to what the reduction leaves, before it is sent
        exit_legs.trim(conn, target.id, contract.id, int(step.body.get("cover") or 0), settings.order_ack_timeout_s)
        return True
    if step.kind == "wait_flat":
        if not _wait_flat(conn, target.id, contract.id, settings):
            outcome.status = "error"
            outcome.error = "position not flat in time after liquidation; the entry was not sent"
            logger.warning("Signal %s account %s: %s", signal_id, target.name, outcome.error)
            return False
        return True
    if step.kind == "cancel_working":  # cancels may be repeated; not journaled as intents
        report = cancels.cancel_until_none_working(
            conn, target.id, contract.id, settings.order_ack_timeout_s,
            lambda: _working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s))
        outcome.order_ids.extend(i for i in report.cancelled if i not in outcome.order_ids)
        outcome.cancelled.extend(report.cancelled)
        if not report.done:
            outcome.status = "error"
            outcome.error = f"orders {report.still_working} still working after the cancels: " + \
                "; ".join(report.errors or ["the broker did not show them cancelled"])
            return False
        return True
    if step.kind == "interrupt_strategies":  # like cancels: may be repeated; not an order intent
        strategy_exec.interrupt_open(run.journal, ti, target.id, contract.id)
        return True
    if step.kind not in _PLACEMENT_KINDS:
        raise ValueError(f"unknown step kind {step.kind!r}")

    # Only an account's last step may leave its final state to the batched writes.
    last = index % RETRY_STEP_OFFSET == len(outcome.planned) - 1
    placement = _Placement(run, target, conn, index, step, outcome, precreated,
                           journal=journal if (journal is not None and last) else None)
    return placement.run_guarded()


class _Placement:
    """One placement step around its send: the intent journaled (unless the fan-out did it), the
    order built; ``finish(result)`` journals and reports the outcome.  Between the two the order
    is sent -- by ``order.run()``, or as part of a fan-out's batch (``order.run(sent=...)``)."""

    def __init__(self, run, target, conn, index, step, outcome, precreated=None, journal=None):
        contract, signal_id = run.contract, run.signal_id
        journal = run.journal if journal is None else journal
        self.run = run
        self.contract, self.target, self.conn, self.journal = contract, target, conn, journal
        self.signal_id, self.index, self.step, self.outcome = signal_id, index, step, outcome
        ti = conn.integration
        self.cl_ord_id = cl_ord_id = precreated or make_cl_ord_id(signal_id, target.id, index)
        if precreated is None:  # the intent and the decision to send, in one commit, before the frame
            journal.create_intent(signal_id, target.id, target.name, index, step.kind, step.body, cl_ord_id,
                                  state="sending")
        outcome.cl_ord_ids.append(cl_ord_id)
        # In doubt from now until its answer (or its settlement): counts towards the exposure.
        self.run.workers.book.in_doubt(cl_ord_id, target.id, contract.id, step_delta(step))
        endpoint, body = f"order/{step.kind}", dict(step.body)
        if step.kind == "startorderstrategy":  # its own record (params, breakeven) before the frame leaves
            endpoint = strategy_exec.ENDPOINT
            body = strategy_exec.before_start(journal, signal_id, target, contract, step, cl_ord_id)
        client, fallback = conn.live_client(), None  # the router decides whether to use it
        if client is None:
            conn.ensure_connecting()  # repaired in the background; this order goes over REST now
            fallback = "no live WebSocket (reconnecting in the background)"
        self.client = client
        self.journaled_unknown: List[bool] = []
        self.order = ti.smart_order(body, ws=client, endpoint=endpoint, cl_ord_id=cl_ord_id,
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
        finally:
            # on_unknown (a method of this placement) is called only inside run(): letting go of it
            # breaks the placement <-> order cycle, which held the whole signal run (its targets,
            # outcomes, attempts) until the next full collection
            self.order.on_unknown = None
        return self.finish(result)

    def failed(self, exc: BaseException) -> bool:
        logger.error("Order %s: unexpected error while placing: %s", self.cl_ord_id, describe(exc), exc_info=exc)
        return _fail(self.journal, self.cl_ord_id, "unknown", describe(exc), self.outcome, self.target,
                     bool(self.journaled_unknown))

    def finish(self, result) -> bool:
        journal, cl_ord_id, step, outcome, target = self.journal, self.cl_ord_id, self.step, self.outcome, self.target
        if result.status != "unknown":  # answered (or provably not sent): no longer in doubt
            self.run.workers.book.resolved(cl_ord_id, result.order_id if result.status == "acked" else None)
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
            if absence.may_prove(self, result):  # its socket died: provable absent after the reconnect
                absence.start(self, result, _run_account)
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
    """A liquidation of a flat position is answered "Position is already flat" (the contract's
    working orders are still cancelled): a close that lost the race with a bracket fill.  The
    flatten step reached its goal -- its intent is ``skipped`` (no order, nothing refused), the
    account's outcome ``skipped`` when nothing else was placed, and a reversal goes on with its
    entry.  Any other refusal of a liquidation stays a rejection."""
    logger.info("Signal %s account %s: position already flat; flatten step done", signal_id, target.name)
    if index % RETRY_STEP_OFFSET == len(outcome.planned) - 1 and not outcome.order_ids:
        outcome.status, outcome.error = "skipped", "position already flat"
    try:
        journal.set_intent_state(cl_ord_id, "skipped", error="position already flat: nothing to close")
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
