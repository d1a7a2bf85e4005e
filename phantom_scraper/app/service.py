"""TradingService: what the Flask routes call -- a small facade over the collaborators in ``app/``.

It owns the life cycle and drives the pool it is given (a ``pool_api.ConnectionPool``:
``ultra_simple_server.create_app()`` hands it ``recorder_service.WebSocketPool()``).  The work is
done by collaborators that share one :class:`~phantom_scraper.app.context.Context` and never import
this module: ``logins`` (authenticate, accounts, targets), ``startup`` (risk guard, breakeven,
interrupted signals), ``intake`` (parse, dedupe, journal; manual trades; hand-off between
instances), ``signal_run`` (run a signal's accounts, its final writes), ``admin`` (status, kill
switch, health) and ``console_actions`` (the console's buttons: flatten, cancel, kill, unlock).

Life cycle (per worker process, never at import): ``start()`` logs in to every login, lists its
accounts, registers them with the pool, reconciles order intents left in flight by a previous
run, and only then accepts signals; it then warms the sockets and starts the keep-alive daemon.
``stop()`` stops intake, waits (bounded) for signals in flight, stops the daemon and closes every
socket.
"""
from __future__ import annotations

import logging
import random
import threading
from typing import Dict, Optional

from phantom_scraper import events
from phantom_scraper.app import gc_policy, housekeeping, recorders as recorders_mod, startup
from phantom_scraper.app.admin import Admin
from phantom_scraper.app.console_actions import ConsoleActions
from phantom_scraper.app.context import Context
from phantom_scraper.app.health import HealthCheck
from phantom_scraper.app.intake import Intake
from phantom_scraper.app.login_retry import LoginRetrier
from phantom_scraper.app.logins import Login  # noqa: F401  (re-exported)
from phantom_scraper.app.results import MANUAL_RECORDER, ServiceUnavailable, WebhookResult  # noqa: F401
from phantom_scraper.app.signal_run import SignalRunner
from phantom_scraper.config import Settings
from phantom_scraper.errors import AuthError, CaptchaRequiredError, TradovateError
from phantom_scraper.execution.drift import DriftMonitor
from phantom_scraper.execution.dispatch import describe
from phantom_scraper.execution.settlement import Settler, reconcile_pending
from phantom_scraper.journal.coordinator import Coordinator
from phantom_scraper.journal.journal import Journal
from phantom_scraper.journal.storage_check import warn_if_ephemeral
from phantom_scraper.signals import SymbolResolver
from phantom_scraper.tradovate.pool_api import ConnectionPool

logger = logging.getLogger(__name__)


def _shared(name: str, doc: str) -> property:
    """An attribute kept on the shared context (so every collaborator sees the same value)."""
    return property(lambda self: getattr(self.ctx, name), lambda self, value: setattr(self.ctx, name, value), doc=doc)


class TradingService:
    settings = _shared("settings", "the frozen Settings")
    pool = _shared("pool", "the ConnectionPool")
    journal = _shared("journal", "the Journal (opened at start when not given)")
    recorders = _shared("recorders", "the recorders (webhook tokens -> accounts)")
    resolver = _shared("resolver", "the SymbolResolver (after start)")
    risk = _shared("risk", "the RiskGuard (after start)")
    risk_clock = _shared("risk_clock", "the risk guard's clock (tests set a simulated one before start)")
    breakeven = _shared("breakeven", "the BreakevenManager (after start)")
    drift = _shared("drift", "the DriftMonitor (after start)")
    coordinator = _shared("coordinator", "the Coordinator (PostgreSQL journal only)")
    fill_ledger = _shared("fill_ledger", "the FillLedger (journal/fills.py; set at start)")
    housekeeping = _shared("housekeeping", "the Housekeeping thread (app/housekeeping.py; set at start)")

    def __init__(self, settings: Settings, *, pool: ConnectionPool, journal: Optional[Journal] = None):
        self.ctx = Context(settings=settings, pool=pool, journal=journal)
        self.runner = SignalRunner(self.ctx)
        self.intake = Intake(self.ctx, self.runner)
        self.admin = Admin(self.ctx)
        self.console = ConsoleActions(self.ctx, self.admin)  # the console's buttons (web/console.py)
        self._gate = self.ctx.gate
        self._settler: Optional[Settler] = None  # built at start; run by the keep-alive daemon
        self._login_configs: Dict[str, recorders_mod.LoginConfig] = {}
        self._retrier = LoginRetrier(self.ctx, self._login_opened)  # logins down at start, opened again
        self._health = HealthCheck(self)  # /health (phantom_scraper/app/health.py)

    @property
    def logins(self) -> Dict[str, Login]:
        return self.ctx.logins.by_name

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._gate.state

    @property
    def start_error(self) -> Optional[str]:
        return self._gate.start_error

    def start_in_background(self) -> None:
        if self._gate.begin():
            threading.Thread(target=self._start, name="service-start", daemon=True).start()

    def start(self) -> None:
        if self._gate.begin():
            self.ctx.workers.book.forget()  # what a previous service in this process expected is not ours
            self._start()

    def _start(self) -> None:
        gate = self._gate
        delay_s = self.settings.reconnect_backoff_initial_s
        while True:
            try:
                self._start_inner()
                break
            except TradovateError as exc:
                # The broker unreachable or erroring (5xx, timeouts) or a captcha penalty: retried
                # with back-off (the status page shows the error).  Bad credentials and
                # configuration errors are final.
                transient = not isinstance(exc, AuthError) or isinstance(exc, CaptchaRequiredError)
                error = exc
            except Exception as exc:
                transient, error = False, exc
            self.ctx.logins.reset()
            message = f"{type(error).__name__}: {error}"
            if not transient or gate.stop_requested.is_set():
                gate.fail(message)
                logger.error("Start-up failed: %s", message)
                if self.journal is not None:
                    self.ctx.startup_queue.fail(self.journal, message)
                gate.ready.set()
                return
            gate.set_error(message)
            wait_s = min(self.settings.reconnect_backoff_max_s, delay_s) * random.uniform(0.8, 1.2)
            if isinstance(error, CaptchaRequiredError) and error.p_time_s:
                wait_s = max(wait_s, float(error.p_time_s))  # the broker said how long
            hosts = sorted({c.rest_url for c in self._login_configs.values() if c.rest_url})
            logger.warning("Start-up failed (%s; broker %s); retrying in %.1f s", message,
                           ", ".join(hosts) or "?", wait_s)
            if gate.stop_requested.wait(wait_s):
                gate.fail()
                if self.journal is not None:
                    self.ctx.startup_queue.fail(self.journal, "stopped while starting")
                gate.ready.set()
                return
            delay_s = min(self.settings.reconnect_backoff_max_s, delay_s * 2)
        if not gate.become_ready():  # stop() came during the start: start no background work
            self.ctx.startup_queue.fail(self.journal, "stopped while starting")
            gate.ready.set()
            return
        gc_policy.start(gate.nothing_in_flight)  # full collections only while no signal runs
        if self.coordinator is not None:
            try:
                # The first lease attempt is made before this returns: a lone instance is the
                # owner (logins open, intents reconciled) by the time it is ready.
                self.coordinator.start(first_try_timeout_s=self.settings.ws_connect_timeout_s + 30)
                logger.info("Ready as the %s of %d login(s), %d recorder(s)",
                            "owner" if self.coordinator.is_owner else "standby",
                            len(self._login_configs), len(self.recorders))
            finally:
                gate.ready.set()
                # What arrived while starting: executed now (a standby hands it to the login owner).
                self.ctx.startup_queue.drain(self.journal, self.intake.execute_queued)
            return
        logger.info("Ready: %d login(s), %d account(s), %d recorder(s)", len(self.logins),
                    len(self.ctx.logins.by_account), len(self.recorders))
        for name, down in list(self.ctx.logins.down.items()):
            logger.warning("Ready without login %s (%s): %s", name, "not retried" if down.final else "retrying",
                           down.error)
        events.emit("startup", environment=self.settings.tradovate_env, accounts=len(self.ctx.logins.by_account))
        try:
            if self.risk is not None:
                self.risk.start()
            self._start_drift()
            self.pool.warm_up()
            # Each cycle also adopts 'unknown' order intents that have since appeared at the broker.
            self.pool.start_daemon(self.settings.keepalive_interval_s, self._settle_unknown)
            self._retrier.start()
        finally:
            gate.ready.set()  # after the background work exists: stop() waits for this
            # What arrived while starting: executed now, in arrival order, if still fresh.
            self.ctx.startup_queue.drain(self.journal, self.intake.execute_queued)

    def _settle_unknown(self) -> None:
        """Keep-alive cycle hook: one command/list per login settles its unknown intents."""
        if self.state == "ready" and self._settler is not None:
            self._settler.run_once()

    def _start_inner(self) -> None:
        s = self.settings
        if self.journal is None:
            if not s.database_url:
                warn_if_ephemeral(s.database_path)
            self.journal = Journal(s.journal_target)
        housekeeping.start_ledger(self)  # fills journaled from the first socket on
        login_configs, self.recorders = recorders_mod.load(s)
        self._login_configs = login_configs
        if self.journal.backend == "postgres" and self.coordinator is None:
            # Several instances may share this journal: the logins are opened only by the process
            # holding their lease (coordinator thread, _become_owner).
            self.coordinator = Coordinator(
                self.journal, [f"{c.credentials.username}@{c.env}" for c in login_configs.values()],
                on_acquired=self._become_owner, on_lost=self._lose_logins,
                on_pending=self.intake.execute_handed_off, lease_poll_interval_s=s.lease_poll_interval_s,
                pending_signal_max_age_s=s.pending_signal_max_age_s)
            return
        self._open_logins(login_configs)

    def _open_logins(self, login_configs) -> None:
        """Authenticate every login, register its connection, reconcile what a previous process
        left in flight (by clOrdId), settle its interrupted signals."""
        s = self.settings
        self.ctx.logins.open(login_configs, self.recorders, self.pool, s)
        self.resolver = SymbolResolver(self.ctx.logins.first().integration, trading_date=s.trading_date)
        settled = reconcile_pending(self.journal, self.integration_for_account)
        self._settler = Settler(self.journal, self.integration_for_account, s.unknown_settle_period_s,
                                stale_sending_s=max(60.0, 12 * s.order_ack_timeout_s),
                                held=self.runner.held_final_writes, book=self.ctx.workers.book)
        if settled:
            logger.warning("Reconciled %d order intent(s) left in flight by the previous run", len(settled))
        startup.settle_interrupted_signals(self.journal, self.ctx.startup_queue.ids())
        self.risk = startup.build_risk_guard(self.ctx)
        startup.start_breakeven(self.ctx, self.on_quote)
        housekeeping.start_for(self)

    def _start_drift(self) -> None:
        """The drift monitor (execution/drift.py): each lane's expectation against the broker."""
        self._stop_drift()
        risk = lambda: self.risk  # noqa: E731  (read at call time: the guard is rebuilt on a retried start)
        self.drift = DriftMonitor(self.settings, journal=self.journal, planner_for=self.runner.planner,
                                  is_locked=lambda a: risk() is not None and risk().is_locked(a),
                                  workers=self.ctx.workers)
        self.drift.start()

    def _stop_drift(self) -> None:
        drift, self.drift = self.drift, None
        if drift is not None:
            drift.stop()

    def on_quote(self, contract_id: int, price: float, timestamp: Optional[float] = None) -> None:
        """A market price (the market-data feed's callback): breakeven triggers are checked on it."""
        manager = self.breakeven
        if manager is not None:
            manager.on_quote(contract_id, price, timestamp)

    # -- several instances (PostgreSQL journal) ----------------------------------------------------
    def _become_owner(self) -> bool:
        """The coordinator holds the lease: open the logins (reconciling first), start the pool."""
        if self._gate.stop_requested.is_set():
            return False
        try:
            self._open_logins(self._login_configs)
        except Exception as exc:
            logger.error("Taking the logins over failed: %s", describe(exc))
            self.ctx.logins.reset()
            return False
        if self.risk is not None:
            self.risk.start()
        self._start_drift()
        self.pool.warm_up()
        self.pool.start_daemon(self.settings.keepalive_interval_s, self._settle_unknown)
        self._retrier = LoginRetrier(self.ctx, self._login_opened)
        self._retrier.start()
        logger.info("Owner: %d login(s), %d account(s)", len(self.logins), len(self.ctx.logins.by_account))
        return True

    def _lose_logins(self) -> None:
        """The lease is gone (database session lost): stop using the logins at once."""
        self._retrier.stop()
        if self.breakeven is not None:
            self.breakeven.stop()
            self.breakeven = None
        if self.risk is not None:  # the new owner's guard takes over (locks are in the journal)
            self.risk.stop()
            self.risk = None
        self._stop_drift()
        self.pool.stop_daemon()
        self.pool.reset()
        self.ctx.logins.reset()

    def _login_opened(self, name: str) -> None:
        """A login that was down is open (the login retrier): its socket connects and the risk
        guard is built again over every open login's accounts (the locks are in the journal)."""
        if self._gate.state != "ready" or self._gate.stop_requested.is_set():
            return
        self.logins[name].connection.ensure_connecting(ignore_backoff=True)
        if self.risk is not None:
            self.risk = startup.build_risk_guard(self.ctx, strict_names=False)
            self.risk.start()
        logger.info("Login %s joined: %d login(s) open, %d account(s)", name, len(self.logins),
                    len(self.ctx.logins.by_account))

    def integration_for_account(self, account_id: int):
        return self.ctx.logins.integration_for_account(account_id)

    def wait_ready(self, timeout_s: float) -> bool:
        return self._gate.ready.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop intake, wait for signals in flight (bounded), close every socket."""
        gate = self._gate
        begun = gate.begin_stop()
        if begun is None:
            return
        never_started, was_starting, in_flight = begun
        if never_started:
            return
        gate.stop_requested.set()
        if was_starting or not gate.ready.is_set():  # let the start-up finish before tearing it down
            gate.ready.wait(timeout_s)
        self._retrier.stop(timeout_s)  # no login joins while the service winds down

        logger.info("Stopping: intake closed, %d signal(s) in flight", in_flight)
        events.emit("shutdown", environment=self.settings.tradovate_env)
        # Shutdown settles, it never sends: let in-flight orders finish (sockets with requests in
        # flight drain) up to timeout_s; then stop every login (no attempt starts after this and
        # searches end), close the sockets (what is still pending becomes 'unknown') and journal
        # whatever is still open as 'unknown' for the next start to reconcile.
        if not gate.idle.wait(timeout_s):
            logger.error("Stopping with signals still in flight; their orders are journaled 'unknown' "
                         "and reconciled at the next start (never resent)")
        if self.breakeven is not None:
            self.breakeven.stop()
        if self.risk is not None:
            self.risk.stop()
        self._stop_drift()
        if self.coordinator is not None:  # after the drain: the lease (and the logins) pass on now
            self.coordinator.stop(timeout_s)
        self.pool.stop_daemon()
        for login in self.logins.values():
            login.integration.stop_event.set()
        self.pool.reset()
        if not gate.idle.is_set():
            gate.idle.wait(min(2.0, timeout_s))  # the account threads journal their outcomes
        # finished signals' acked states land first: those orders are not in flight
        self.runner.stop_writes()
        if self.journal is not None:
            try:
                left = self.journal.mark_in_flight_unknown("in flight at shutdown; reconciled at the next start")
                if left:
                    logger.error("Shutdown: %d order(s) in flight journaled as unknown: %s", len(left),
                                 ", ".join(left))
            except Exception as exc:  # noqa: BLE001 - the next start treats 'sending' the same way
                logger.error("Shutdown: could not journal in-flight orders: %s", describe(exc))
        housekeeping.stop_for(self)
        for login in self.logins.values():
            login.integration.close()
        if self.journal is not None:
            self.journal.close()
        gc_policy.stop(gate.nothing_in_flight)
        self.ctx.workers.shutdown(wait=False)  # idle worker threads end (anything queued still runs)
        gate.stopped()
        logger.info("Stopped")

    # -- what the routes call (the collaborators do the work) -----------------------------------
    def recorder_for_token(self, token):
        return self.intake.recorder_for_token(token)

    def targets_for(self, recorder):
        return self.ctx.logins.targets_for(recorder)

    def handle_signal(self, recorder, raw: bytes) -> WebhookResult:
        return self.intake.handle_signal(recorder, raw)

    def manual_trade(self, raw: bytes) -> WebhookResult:
        return self.intake.manual_trade(raw)

    def settle_writes(self, timeout_s: float = 2.0) -> None:
        self.runner.settle_writes(timeout_s)

    def status(self) -> dict:
        return self.admin.status()

    def kill_switch(self, selector, flatten: bool = True) -> WebhookResult:
        return self.admin.kill_switch(selector, flatten)

    def unlock_accounts(self, selector) -> WebhookResult:
        return self.admin.unlock_accounts(selector)

    def orders_needing_attention(self) -> dict:
        return self.admin.orders_needing_attention()

    def logins_status(self) -> dict:
        return self.ctx.logins.status()

    def health(self):
        """Readiness in constant time, from figures in memory (phantom_scraper/app/health.py)."""
        return self._health.check()
