"""A signal after intake: its lanes reserved, its accounts run (from the request's thread when the
contract is known, else on the signal executor), the one re-run after ``InvalidContract``, the risk
guard's notes, and its final journal writes after the answer (``execution.final_writes``).

:class:`SignalRunner` works on the service's :class:`~phantom_scraper.app.context.Context`; it never
imports the service.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from typing import Any, Dict, Optional

from phantom_scraper import events
from phantom_scraper.app import gc_policy
from phantom_scraper.app.results import accounts_brief, summary_status
from phantom_scraper.errors import TradovateError
from phantom_scraper.execution import dispatch as execution
from phantom_scraper.execution.dispatch import describe, execute_trade_simple
from phantom_scraper.execution.final_writes import FinalWriter
from phantom_scraper.execution.model import AccountOutcome, AccountStatus
from phantom_scraper.signals import SignalError, plan_orders
from phantom_scraper.signals.symbols import parse_symbol

logger = logging.getLogger(__name__)


class SignalRunner:
    def __init__(self, ctx):
        self.ctx = ctx
        self._lock = threading.Lock()  # guards _final (created on first use, stopped at shutdown)
        self._final: Optional[FinalWriter] = None  # finished signals' journal writes

    def reserve_lanes(self, signal, targets) -> dict:
        if signal.test or not targets:
            return {}
        try:
            root, _ = parse_symbol(signal.symbol)
        except SignalError:
            return {}  # the resolver reports it; nothing will run
        return execution.reserve_lanes([t.id for t, _ in targets], root, self.ctx.workers)

    def run_here(self, signal, targets, signal_id: str, tickets, recorder: str, received: float, states=None):
        """A signal whose contract is already known runs from this (the request's) thread, without
        a hand-off to the signal executor first, through ``execution.dispatch`` (which chooses the
        route once: one account from here, or a fan-out whose idle lanes' frames go in one batch and
        whose busy lanes' jobs are queued); the answers are awaited here within the webhook budget.
        -> Future of ``(contract, outcomes)``, or None when that path does not apply (nothing done:
        run ``process`` in the executor)."""
        if not targets or signal.test or self.ctx.resolver is None:
            return None
        contract = self.ctx.resolver.cached(signal.symbol)
        if contract is None:
            return None
        from phantom_scraper.signals import needs_position
        budget = self.ctx.settings.webhook_budget_s - (time.perf_counter() - received)
        wait_s = max(0.0, budget - 0.05)
        run = execution.signal_run(signal, contract, journal=self.ctx.journal, signal_id=signal_id,
                                   settings=self.ctx.settings, planner=self.planner(recorder, signal_id),
                                   needs_position=needs_position, recorder=recorder, workers=self.ctx.workers)
        try:  # the route (one account from here, or a fan-out) is chosen there, once
            accounts = execution.dispatch(run, targets, tickets=tickets, states=states, wait_s=wait_s)
        except Exception as exc:  # noqa: BLE001 - a bug: reported like one in the executor
            failed: concurrent.futures.Future = concurrent.futures.Future()
            failed.set_exception(exc)
            return failed
        concurrent.futures.wait(accounts, timeout=max(
            0.0, self.ctx.settings.webhook_budget_s - 0.05 - (time.perf_counter() - received)))
        if all(a.done() and a.exception() is None for a in accounts):
            outcomes = [a.result() for a in accounts]
            if not any(o.status == "rejected" and "InvalidContract" in (o.error or "") for o in outcomes):
                self.risk_notes(signal_id, outcomes)
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result((contract, outcomes))
                return done
        return self.ctx.workers.executor("signal").submit(self.complete, signal, contract, targets, signal_id, recorder,
                                                    accounts)

    def complete(self, signal, contract, targets, signal_id: str, recorder: str, accounts):
        """The rest of ``_process`` for the accounts started by ``_run_here``."""
        outcomes = [account.result() for account in accounts]
        contract, outcomes = self.after_invalid_contract(signal, contract, targets, signal_id, outcomes, recorder)
        self.risk_notes(signal_id, outcomes)
        return contract, outcomes

    def process(self, signal, targets, signal_id: str, tickets=None, recorder: str = "", states=None,
                unavailable=()):
        """In the executor: resolve the symbol, then run every account.  -> (contract, outcomes).
        With no target but accounts on a login that is down (``unavailable``) the contract is still
        returned (their refusals are added by :meth:`with_unavailable`)."""
        try:
            contract = self.ctx.resolver.resolve(signal.symbol)  # SignalError: unknown symbol
        except BaseException:
            execution.cancel_lanes(tickets)
            raise
        if not targets:
            return (contract if unavailable else None), []
        outcomes = execute_trade_simple(signal, contract, targets, journal=self.ctx.journal, signal_id=signal_id,
                                        settings=self.ctx.settings, tickets=tickets,
                                        planner=self.planner(recorder, signal_id), states=states, recorder=recorder,
                                        workers=self.ctx.workers)
        contract, outcomes = self.after_invalid_contract(signal, contract, targets, signal_id, outcomes, recorder)
        self.risk_notes(signal_id, outcomes)
        return contract, outcomes

    @staticmethod
    def with_unavailable(future: concurrent.futures.Future, unavailable) -> concurrent.futures.Future:
        """``future``'s ``(contract, outcomes)`` with a ``login_unavailable`` refusal added for each
        ``(account name, login, reason)`` of a login that is down (nothing was sent for them)."""
        if not unavailable:
            return future
        refusals = [AccountOutcome(0, name, AccountStatus.REJECTED,
                                   error=f"login_unavailable: login {login!r} is not open: {reason}")
                    for name, login, reason in unavailable]
        out: concurrent.futures.Future = concurrent.futures.Future()

        def done(f: concurrent.futures.Future) -> None:
            try:
                contract, outcomes = f.result()
            except BaseException as exc:  # noqa: BLE001 - handed on as it is
                out.set_exception(exc)
                return
            out.set_result((contract, list(outcomes) + (refusals if contract is not None else [])))

        future.add_done_callback(done)
        return out

    def after_invalid_contract(self, signal, contract, targets, signal_id: str, outcomes, recorder: str = ""):
        """The broker refused the resolved month (``InvalidContract``: not executed).  Resolve the
        symbol again once, skipping that month, and run the refused accounts once more on the new
        one.  -> (contract, outcomes)."""
        refused = [i for i, o in enumerate(outcomes)
                   if o.status == "rejected" and "InvalidContract" in (o.error or "")]
        if not refused:
            return contract, outcomes
        self.ctx.resolver.refused(signal.symbol, contract)
        try:
            fresh = self.ctx.resolver.resolve(signal.symbol)
        except (SignalError, TradovateError) as exc:
            logger.warning("Signal %s: %s refused as InvalidContract and no other month found: %s",
                           signal_id, contract.name, describe(exc))
            return contract, outcomes
        if fresh.id == contract.id:
            return contract, outcomes
        logger.warning("Signal %s: %s refused as InvalidContract; retrying %d account(s) on %s", signal_id,
                       contract.name, len(refused), fresh.name)
        again = execute_trade_simple(signal, fresh, [targets[i] for i in refused], journal=self.ctx.journal,
                                     signal_id=signal_id, settings=self.ctx.settings, retry=True,
                                     planner=self.planner(recorder, signal_id), recorder=recorder,
                                     workers=self.ctx.workers)
        for i, outcome in zip(refused, again):
            outcomes[i] = outcome
        return fresh, outcomes

    def planner(self, recorder: str, signal_id: str, rate_limited: bool = True):
        """The order planner with the risk guard's entry rules (decided from memory: no broker read)."""
        if self.ctx.risk is None:
            return plan_orders
        return self.ctx.risk.planner(recorder, signal_id, plan_orders, rate_limited=rate_limited)

    def risk_notes(self, signal_id: str, outcomes) -> None:
        if self.ctx.risk is None:
            return
        notes = self.ctx.risk.take_notes(signal_id)
        for outcome in outcomes:
            outcome.risk = notes.get(outcome.account_id, [])

    def finished(self, signal_id: str, future: concurrent.futures.Future, signal=None, recorder: str = "",
                  received: Optional[float] = None, states=None) -> None:
        """The signal is done (or failed): its final journal writes -- status, summary and the
        orders' final states collected in ``states`` -- are queued for the writer, which commits
        them after the answer, coalesced with other signals' (``final_writes``)."""
        done: Dict[str, Any] = {"status": "error", "outcomes": []}

        def build():
            updates = states.take() if states is not None else []
            try:
                contract, outcomes = future.result()
                done["outcomes"] = outcomes
                status = summary_status(outcomes) if contract is not None else "skipped"
                summary = json.dumps([o.summary() for o in outcomes], default=str) if contract is not None \
                    else json.dumps({"message": "no enabled account"})
                events.emit("signal", signal_id=signal_id, status=status, contract=contract, outcomes=outcomes)
            except SignalError as exc:
                status, summary = "rejected", json.dumps({"error": exc.to_dict()}, default=str)
            except Exception as exc:
                status, summary = "error", json.dumps({"error": describe(exc)})
                logger.error("Signal %s failed: %s", signal_id, describe(exc))
            done["status"] = status
            return signal_id, status, summary, updates

        def after():
            try:
                outcomes = done["outcomes"]
                if signal is None:
                    logger.info("Signal %s done: %s", signal_id, done["status"])
                else:  # the signal's one INFO line (per-order lines are DEBUG; failures WARNING/ERROR)
                    logger.info("Signal %s %s: recorder=%s action=%s symbol=%s qty=%s%s accounts=%d%s%s", signal_id,
                                done["status"], recorder, signal.action, signal.symbol, signal.quantity,
                                " TEST" if signal.test else "", len(outcomes), accounts_brief(outcomes),
                                "" if received is None else " in %.1f ms" % ((time.perf_counter() - received) * 1000))
            finally:
                self.ctx.gate.leave()

        try:
            self.final_writer().submit(build, after)
        except Exception:  # noqa: BLE001 - (no thread could be started) write it here
            logger.exception("Signal %s: the final-writes thread is unavailable; writing here", signal_id)
            try:
                self.ctx.journal.finish_signals([build()])
            except Exception:  # noqa: BLE001
                logger.exception("Could not record the outcome of signal %s", signal_id)
            after()

    def settle_writes(self, timeout_s: float = 2.0) -> None:
        """Before showing signals, history or metrics: what finished signals queued for the journal
        (and their events) is written first, so a reader right after an answer sees its outcome."""
        with self._lock:
            final = self._final
        if final is not None:
            final.flush(timeout_s)

    def final_writer(self) -> FinalWriter:
        with self._lock:
            if self._final is None:
                self._final = FinalWriter(self.ctx.journal, after_batch=gc_policy.freeze_now)
            return self._final

    def held_final_writes(self) -> set:
        """clOrdIds whose final state is queued but not written yet (settlement leaves them alone)."""
        with self._lock:
            final = self._final
        return final.pending_cl_ord_ids() if final is not None else set()

    def stop_writes(self) -> None:
        """Shutdown: what finished signals queued is written now (before in-flight intents are marked unknown)."""
        with self._lock:
            final = self._final
        if final is not None:
            final.stop()
