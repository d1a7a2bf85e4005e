"""Intake: a webhook's body parsed, deduplicated and journaled before anything runs; then handed to
the :class:`~phantom_scraper.app.signal_run.SignalRunner` (or, on a standby, to the login owner);
manual trades on the same path; signals handed over by another instance.
"""
from __future__ import annotations

import concurrent.futures
import hmac
import json
import logging
import time
from typing import Optional

from phantom_scraper import events
from phantom_scraper.app import duplicates, recorders as recorders_mod
from phantom_scraper.app.startup_queue import QUEUED, QueuedSignal
from phantom_scraper.app.results import (MANUAL_RECORDER, ServiceUnavailable, WebhookResult, outcomes_body,
                                         signal_error, summary_status)
from phantom_scraper.errors import TradovateError
from phantom_scraper.execution import dispatch as execution
from phantom_scraper.execution.dispatch import describe, execute_trade_simple
from phantom_scraper.signals import SignalError, parse_signal, with_mode

logger = logging.getLogger(__name__)


class Intake:
    def __init__(self, ctx, runner):
        self.ctx = ctx
        self.runner = runner

    def recorder_for_token(self, token: Optional[str]) -> Optional[recorders_mod.Recorder]:
        """Constant-time comparison against every recorder's token."""
        if not token:
            return None
        if self.ctx.gate.state in ("new", "starting"):
            self.ctx.gate.ready.wait(min(1.0, self.ctx.settings.webhook_budget_s / 2))
        if self.ctx.gate.state != "ready" and not self.queueing():
            raise ServiceUnavailable(self.ctx.gate.unavailable_reason())
        found = None
        given = token.encode("utf-8", "surrogatepass")
        for rec in self.ctx.recorders:
            if rec.token and hmac.compare_digest(given, rec.token.encode("utf-8")):
                found = rec
        return found

    def handle_signal(self, recorder: recorders_mod.Recorder, raw: bytes) -> WebhookResult:
        """Parse, persist, then execute; answer within ``webhook_budget_s``.

        Only parsing (pure) and the journal write (local SQLite) happen before the budget starts
        to matter; symbol resolution and the orders run in the executor, so a slow broker turns
        into a 202 rather than a webhook TradingView cancels after 3 s.
        """
        received = time.perf_counter()
        try:
            signal = with_mode(parse_signal(raw), recorder.signal_mode)  # what buy/sell mean: the recorder's
        except SignalError as exc:
            return WebhookResult(400, signal_error(exc))
        if not self.ctx.gate.enter():
            queued = self.queue_while_starting(recorder, signal)
            if queued is not None:
                return queued
            raise ServiceUnavailable(self.ctx.gate.unavailable_reason())
        submitted = False
        try:
            signal_id, duplicate, existing = self.ctx.journal.record_signal(
                recorder.name, signal.payload, signal.signal_id, None,
                self.ctx.settings.dedupe_window_s, retry_not_sent=True)  # an id that placed nothing runs again
            if duplicate:
                return self.duplicate_result(signal, signal_id, existing, recorder)
            if self.ctx.coordinator is not None and not self.ctx.coordinator.is_owner:
                self.ctx.coordinator.hand_off(signal_id)
                return self.await_handed_off(signal_id, received)
            targets, unavailable = self.ctx.logins.plan(recorder)  # (accounts on a login that is down)
            # The signal's one INFO line is written when it is done (_finished).
            logger.debug("Signal %s received: recorder=%s action=%s symbol=%s qty=%s accounts=%d%s",
                         signal_id, recorder.name, signal.action, signal.symbol, signal.quantity,
                         len(targets), " TEST" if signal.test else "")
            tickets = self.runner.reserve_lanes(signal, targets)  # arrival order per (account, product)
            events.emit("signal_received", signal_id=signal_id, t=received)
            states = execution.BatchedStates(self.ctx.journal)  # single-step orders' final states: written after
            try:
                future = self.runner.run_here(signal, targets, signal_id, tickets, recorder.name, received, states)
                if future is None:
                    future = self.ctx.workers.executor("signal").submit(self.runner.process, signal, targets, signal_id,
                                                                        tickets, recorder.name, states, unavailable)
                future = self.runner.with_unavailable(future, unavailable)
            except BaseException:
                execution.cancel_lanes(tickets)
                raise
            submitted = True
        finally:
            if not submitted:
                self.ctx.gate.leave()
        # The journal's final writes happen off the answer's path (phantom_scraper/execution/final_writes.py).
        future.add_done_callback(lambda f: self.runner.finished(signal_id, f, signal, recorder.name, received, states))
        budget = max(0.0, self.ctx.settings.webhook_budget_s - (time.perf_counter() - received))
        try:
            contract, outcomes = future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            logger.info("Signal %s still executing after the %.1f s budget: answered 202",
                        signal_id, self.ctx.settings.webhook_budget_s)
            return WebhookResult(202, {"success": True, "signal_id": signal_id, "status": "executing",
                                       "message": "accepted; execution continues (see /api/signals)"})
        except SignalError as exc:  # unknown symbol: bad input, nothing executed
            body = signal_error(exc, signal)
            body["signal_id"] = signal_id
            return WebhookResult(400, body)
        except TradovateError as exc:  # the broker failed before any order was sent (symbol lookup)
            return WebhookResult(200, {"success": False, "signal_id": signal_id,
                                       "error": {"code": "broker_unavailable",
                                                 "message": f"nothing was placed: {describe(exc)}"}})
        except Exception as exc:  # a bug: reported, never a 5xx that would make TradingView re-send
            return WebhookResult(200, {"success": False, "signal_id": signal_id,
                                       "error": {"code": "internal_error", "message": describe(exc)}})
        if contract is None:
            return WebhookResult(200, {"success": True, "signal_id": signal_id, "status": "skipped",
                                       "accounts": [], "message": "no enabled account to trade"})
        return WebhookResult(200, outcomes_body(signal_id, contract, signal, outcomes))

    def manual_trade(self, raw: bytes) -> WebhookResult:
        """A manual order on the same fast path as a webhook (pooled socket, REST fallback), same
        payload format as the webhook,
        plus an optional ``"account"`` (name; default: the first account of the first login).

        Journaled like a signal (recorder ``manual``, explicit ids deduplicated), so it shows in
        ``/api/signals`` and its intents are reconciled after a crash.  ``"test": true`` places
        nothing.
        """
        try:
            signal = parse_signal(raw)
        except SignalError as exc:
            return WebhookResult(400, signal_error(exc))
        account_name = signal.payload.get("account") if isinstance(signal.payload, dict) else None
        if account_name is not None and not isinstance(account_name, str):
            return WebhookResult(400, {"success": False, "error": {
                "code": "invalid_field", "field": "account", "message": "account must be an account name"}})
        if self.ctx.coordinator is not None and not self.ctx.coordinator.is_owner:
            raise ServiceUnavailable("this instance is a standby; manual trades go to the login owner")
        if not self.ctx.gate.enter():
            raise ServiceUnavailable(self.ctx.gate.unavailable_reason())
        try:
            target = self.ctx.logins.manual_target(account_name)
            if target is None:
                return WebhookResult(400, {"success": False, "error": {
                    "code": "unknown_account", "field": "account",
                    "message": f"no account named {account_name!r}; nothing was placed"}})
            try:
                contract = self.ctx.resolver.resolve(signal.symbol)
            except SignalError as exc:
                return WebhookResult(400, signal_error(exc, signal))
            signal_id, duplicate, existing = self.ctx.journal.record_signal(
                MANUAL_RECORDER, signal.payload, signal.signal_id, None, 0)
            if duplicate:
                return WebhookResult(200, {"success": True, "duplicate": True, "signal_id": existing,
                                           "message": "duplicate id: already received, nothing placed"})
            logger.info("Manual trade %s: action=%s symbol=%s qty=%s account=%s%s", signal_id, signal.action,
                        contract.name, signal.quantity, target[0].name, " TEST" if signal.test else "")
            outcomes = []
            try:
                outcomes = execute_trade_simple(
                    signal, contract, [target], journal=self.ctx.journal, signal_id=signal_id,
                    settings=self.ctx.settings,
                    planner=self.runner.planner(MANUAL_RECORDER, signal_id, rate_limited=False),
                    workers=self.ctx.workers)
                self.runner.risk_notes(signal_id, outcomes)
            finally:
                status = summary_status(outcomes) if outcomes else "error"
                self.ctx.journal.set_signal_status(signal_id, status,
                                               json.dumps([o.to_dict() for o in outcomes], default=str))
            body = outcomes_body(signal_id, contract, signal, outcomes)
            body["results"] = body["accounts"]  # the name this route used first
            return WebhookResult(200, body)
        finally:
            self.ctx.gate.leave()

    def execute_handed_off(self, signal_id: str, recorder_name: str, payload: dict) -> None:
        """A signal another instance received and handed over: execute it here (the owner)."""
        recorder = next((r for r in self.ctx.recorders if r.name == recorder_name), None)
        if recorder is None:
            self.ctx.journal.set_signal_status(signal_id, "rejected",
                                           json.dumps({"error": f"unknown recorder {recorder_name!r}"}))
            return
        try:
            signal = with_mode(parse_signal(json.dumps(payload).encode("utf-8")), recorder.signal_mode)
        except SignalError as exc:
            self.ctx.journal.set_signal_status(signal_id, "rejected", json.dumps(signal_error(exc)))
            return
        self.execute_signal(signal_id, recorder, signal, "taken over from a standby")

    def execute_signal(self, signal_id: str, recorder, signal, how: str) -> None:
        """Execute a signal already journaled (handed off by a standby, or received while starting)."""
        if recorder is None:
            self.ctx.journal.set_signal_status(signal_id, "rejected", json.dumps({"error": "unknown recorder"}))
            return
        if not self.ctx.gate.enter():  # stopping: leave it pending for the next owner
            if self.ctx.coordinator is not None:
                self.ctx.coordinator.hand_off(signal_id)
            else:
                self.ctx.journal.set_signal_status(signal_id, "interrupted", json.dumps(
                    {"message": "the server stopped before it was executed: nothing placed"}))
            return
        try:
            targets, unavailable = self.ctx.logins.plan(recorder)
            logger.info("Signal %s %s: recorder=%s action=%s symbol=%s qty=%s accounts=%d", signal_id, how,
                        recorder.name, signal.action, signal.symbol, signal.quantity, len(targets))
            tickets = self.runner.reserve_lanes(signal, targets)  # lane order on the owner: take-over order
            try:
                future = self.ctx.workers.executor("signal").submit(self.runner.process, signal, targets, signal_id,
                                                                    tickets, recorder.name, None, unavailable)
                future = self.runner.with_unavailable(future, unavailable)
            except BaseException:
                execution.cancel_lanes(tickets)
                raise
        except BaseException:
            self.ctx.gate.leave()
            raise
        future.add_done_callback(lambda f: self.runner.finished(signal_id, f))

    def await_handed_off(self, signal_id: str, received: float) -> WebhookResult:
        """A standby's answer: the owner's outcome if the journal shows it within the budget."""
        deadline = received + self.ctx.settings.webhook_budget_s
        while True:
            signal = self.ctx.journal.get_signal(signal_id)
            status = signal["status"] if signal else None
            if status not in ("pending", "received"):
                try:
                    summary = json.loads(signal["summary"]) if signal and signal["summary"] else None
                except ValueError:
                    summary = signal["summary"]
                return WebhookResult(200, {"success": status not in ("failed", "error", "rejected", "expired"),
                                           "signal_id": signal_id, "status": status, "executed_by": "owner",
                                           "accounts": summary})
            if time.perf_counter() >= deadline:
                return WebhookResult(202, {"success": True, "signal_id": signal_id, "status": "executing",
                                           "message": "accepted; the login owner executes it (see /api/signals)"})
            time.sleep(self.ctx.settings.handoff_poll_interval_s)

    # -- duplicates and the start-up queue --------------------------------------------------------
    def duplicate_result(self, signal, signal_id: str, existing: str, recorder) -> WebhookResult:
        if signal.signal_id:
            how, message = "id", "duplicate signal: this id was already received; nothing placed"
        else:
            how = "body"
            message = (f"deduplicated: an identical body (no id) arrived within "
                       f"{self.ctx.settings.dedupe_window_s:g} s; nothing placed (send an id to tell "
                       f"repeated alerts apart)")
        logger.info("Signal %s is a duplicate of %s by %s: nothing placed (recorder %s)",
                    signal_id, existing, "explicit id" if how == "id" else "identical body", recorder.name)
        events.emit("duplicate_signal", signal_id=signal_id, duplicate_of=existing)
        self.runner.settle_writes(1.0)  # a first delivery that just finished: its outcome is written first
        success, first_status = duplicates.first_delivery(self.ctx.journal, existing)
        if success is None:  # the first delivery may or may not have been placed: say so
            message = "this id was already received and its outcome is still unknown; nothing placed now"
        return WebhookResult(200, {"success": success, "duplicate": True, "deduplicated_by": how,
                                   "signal_id": existing, "status": first_status, "message": message})

    def queueing(self) -> bool:
        """Starting, with the journal open and the recorders known: webhooks are queued."""
        return (self.ctx.gate.state == "starting" and self.ctx.journal is not None and bool(self.ctx.recorders)
                and self.ctx.startup_queue.has_room())

    def queue_while_starting(self, recorder, signal) -> Optional[WebhookResult]:
        """A webhook while the logins are not ready: journaled ``queued``, answered 202, executed
        once ready (phantom_scraper/app/startup_queue.py).  None: not starting (the caller says 503)."""
        if not self.queueing():
            return None
        journal = self.ctx.journal
        signal_id, duplicate, existing = journal.record_signal(
            recorder.name, signal.payload, signal.signal_id, None, self.ctx.settings.dedupe_window_s,
            retry_not_sent=True, status=QUEUED)
        if duplicate:
            return self.duplicate_result(signal, signal_id, existing, recorder)
        item = QueuedSignal(signal_id, recorder.name, signal, time.time())
        if not self.ctx.startup_queue.add(item):  # the start finished (or failed) meanwhile
            if self.ctx.gate.state != "ready":
                journal.set_signal_status(signal_id, "failed", json.dumps(
                    {"message": "received while the server started; the start failed: nothing placed"}))
                return None
            journal.set_signal_status(signal_id, "received")
            self.execute_queued(item)
            return WebhookResult(202, {"success": True, "signal_id": signal_id, "status": "executing",
                                       "message": "accepted; execution continues (see /api/signals)"})
        logger.info("Signal %s received while starting: queued until the broker logins are ready", signal_id)
        return WebhookResult(202, {
            "success": True, "signal_id": signal_id, "status": QUEUED,
            "message": (f"received while the server starts: executed as soon as the broker logins are ready, "
                        f"if within {self.ctx.startup_queue.max_age_s:g} s (see /api/signals)")})

    def execute_queued(self, item: QueuedSignal) -> None:
        coordinator = self.ctx.coordinator
        if coordinator is not None and not coordinator.is_owner:
            self.ctx.journal.set_signal_status(item.signal_id, "pending")
            coordinator.hand_off(item.signal_id)
            return
        recorder = next((r for r in self.ctx.recorders if r.name == item.recorder), None)
        self.execute_signal(item.signal_id, recorder, item.payload, "received while starting")
