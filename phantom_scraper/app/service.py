"""TradingService: what the Flask routes call.  It owns the journal and the logins, and drives the
pool it is given (a ``pool_api.ConnectionPool``: ``ultra_simple_server.create_app()`` hands it
``recorder_service.WebSocketPool()``).

Life cycle (per worker process, never at import): ``start()`` logs in to every login, lists its
accounts, registers them with the pool, reconciles order intents left in flight by a previous
run, and only then accepts signals; it then warms the sockets and starts the keep-alive daemon.
``stop()`` stops intake, waits (bounded) for signals in flight, stops the daemon and closes every
socket.
"""
from __future__ import annotations

import concurrent.futures
import hmac
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from phantom_scraper import events
from phantom_scraper.execution import dispatch as execution, executors
from phantom_scraper.app import duplicates, gc_policy, housekeeping
from phantom_scraper.app.health import HealthCheck
from phantom_scraper.app.startup_queue import QUEUED, QueuedSignal, StartupQueue
from phantom_scraper.execution.dispatch import describe as _describe, execute_trade_simple
from phantom_scraper.execution import expectation
from phantom_scraper.execution.drift import DriftMonitor
from phantom_scraper.execution.final_writes import FinalWriter
from phantom_scraper.tradovate.search import recent_duplicates
from phantom_scraper.execution.settlement import Settler, reconcile_pending
from phantom_scraper.app import recorders as recorders_mod
from phantom_scraper import redact
from phantom_scraper.config import Settings
from phantom_scraper.journal.coordinator import Coordinator
from phantom_scraper.errors import AuthError, CaptchaRequiredError, TradovateError
from phantom_scraper.journal.journal import Journal
from phantom_scraper.journal.storage_check import warn_if_ephemeral
from phantom_scraper.tradovate.pool_api import Connection, ConnectionPool
from phantom_scraper.risk.actions import ServiceRiskActions
from phantom_scraper.risk.broker_view import BrokerStateView
from phantom_scraper.risk.guard import RiskGuard
from phantom_scraper.tradovate.marketdata import QuoteFeed
from phantom_scraper.risk.store import RiskStore
from phantom_scraper.signals import AccountTarget, SignalError, SymbolResolver, parse_signal, plan_orders
from phantom_scraper.signals.symbols import parse_symbol
from phantom_scraper.tradovate_integration import TradovateIntegration

logger = logging.getLogger(__name__)


MANUAL_RECORDER = "manual"


class ServiceUnavailable(Exception):
    """Not ready (starting, stopping, or the broker could not be reached at start)."""


@dataclass
class Login:
    config: recorders_mod.LoginConfig
    integration: TradovateIntegration
    accounts: Dict[str, dict]  # account name -> Tradovate account dict
    connection: Optional[Connection] = None


@dataclass
class WebhookResult:
    http_status: int
    body: dict


class TradingService:
    def __init__(self, settings: Settings, *, pool: ConnectionPool, journal: Optional[Journal] = None):
        self.settings = settings
        self.pool = pool
        self.journal = journal
        self.logins: Dict[str, Login] = {}
        self.recorders: Tuple[recorders_mod.Recorder, ...] = ()
        self.resolver: Optional[SymbolResolver] = None
        self._state_lock = threading.Lock()  # guards _state, _in_flight and _start_error
        self._state = "new"  # new | starting | ready | failed | stopping | stopped
        self._start_error: Optional[str] = None
        self._in_flight = 0
        self._ready = threading.Event()
        self._stop_requested = threading.Event()  # ends start-up retries early
        self._idle = threading.Event()
        self._idle.set()
        self._account_login: Dict[int, Login] = {}
        self.breakeven = None  # BreakevenManager once started (order strategies with breakeven)
        self._settler: Optional[Settler] = None  # built at start; run by the keep-alive daemon
        self.risk: Optional[RiskGuard] = None  # built at start-up (after the logins)
        self.risk_clock = time.time  # the risk guard's clock (tests set a simulated one before start)
        # With the PostgreSQL journal: the login lease and hand-off between instances (None on SQLite).
        self.coordinator: Optional[Coordinator] = None
        self._login_configs: Dict[str, recorders_mod.LoginConfig] = {}
        self._final: Optional[FinalWriter] = None  # finished signals' journal writes (guarded by _state_lock)
        self._health: Optional[HealthCheck] = None  # /health (phantom_scraper/app/health.py)
        # Webhooks that arrive while the logins are not ready yet (phantom_scraper/app/startup_queue.py)
        self._startup_queue = StartupQueue(settings.pending_signal_max_age_s)
        self.fill_ledger = None  # journal/fills.py, and app/housekeeping.py's thread (set at start)
        self.housekeeping = None

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        with self._state_lock:
            return self._state

    @property
    def start_error(self) -> Optional[str]:
        with self._state_lock:
            return self._start_error

    def start_in_background(self) -> None:
        with self._state_lock:
            if self._state != "new":
                return
            self._state = "starting"
        threading.Thread(target=self._start, name="service-start", daemon=True).start()

    def start(self) -> None:
        with self._state_lock:
            if self._state != "new":
                return
            self._state = "starting"
        expectation.BOOK.forget()  # what a previous service in this process expected is not ours
        self._start()

    def _start(self) -> None:
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
            self._reset_logins()
            message = f"{type(error).__name__}: {error}"
            if not transient or self._stop_requested.is_set():
                with self._state_lock:
                    self._state = "failed" if self._state == "starting" else self._state
                    self._start_error = message
                logger.error("Start-up failed: %s", message)
                if self.journal is not None:
                    self._startup_queue.fail(self.journal, message)
                self._ready.set()
                return
            with self._state_lock:
                self._start_error = message
            wait_s = min(self.settings.reconnect_backoff_max_s, delay_s) * random.uniform(0.8, 1.2)
            if isinstance(error, CaptchaRequiredError) and error.p_time_s:
                wait_s = max(wait_s, float(error.p_time_s))  # the broker said how long
            logger.warning("Start-up failed (%s); retrying in %.1f s", message, wait_s)
            if self._stop_requested.wait(wait_s):
                with self._state_lock:
                    self._state = "failed" if self._state == "starting" else self._state
                if self.journal is not None:
                    self._startup_queue.fail(self.journal, "stopped while starting")
                self._ready.set()
                return
            delay_s = min(self.settings.reconnect_backoff_max_s, delay_s * 2)
        with self._state_lock:
            self._start_error = None
        with self._state_lock:
            became_ready = self._state == "starting"
            if became_ready:
                self._state = "ready"
        if not became_ready:  # stop() came during the start: start no background work
            self._startup_queue.fail(self.journal, "stopped while starting")
            self._ready.set()
            return
        gc_policy.start(self._nothing_in_flight)  # full collections only while no signal runs
        if self.coordinator is not None:
            try:
                # The first lease attempt is made before this returns: a lone instance is the
                # owner (logins open, intents reconciled) by the time it is ready.
                self.coordinator.start(first_try_timeout_s=self.settings.ws_connect_timeout_s + 30)
                logger.info("Ready as the %s of %d login(s), %d recorder(s)",
                            "owner" if self.coordinator.is_owner else "standby",
                            len(self._login_configs), len(self.recorders))
            finally:
                self._ready.set()
                # What arrived while starting: executed now (a standby hands it to the login owner).
                self._startup_queue.drain(self.journal, self._execute_queued)
            return
        logger.info("Ready: %d login(s), %d account(s), %d recorder(s)", len(self.logins),
                    len(self._account_login), len(self.recorders))
        events.emit("startup", environment=self.settings.tradovate_env, accounts=len(self._account_login))
        try:
            if self.risk is not None:
                self.risk.start()
            self._start_drift()
            self.pool.warm_up()
            # Each cycle also adopts 'unknown' order intents that have since appeared at the broker.
            self.pool.start_daemon(self.settings.keepalive_interval_s, self._settle_unknown)
        finally:
            self._ready.set()  # after the background work exists: stop() waits for this
            # What arrived while starting: executed now, in arrival order, if still fresh.
            self._startup_queue.drain(self.journal, self._execute_queued)

    def _reset_logins(self) -> None:
        """Forget a half-done start-up (before a retry or after a failure)."""
        for login in self.logins.values():
            if login.connection is not None:
                login.connection.close()
            login.integration.close()
        self.logins.clear()
        self._account_login.clear()

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
                on_pending=self._execute_handed_off, lease_poll_interval_s=s.lease_poll_interval_s,
                pending_signal_max_age_s=s.pending_signal_max_age_s)
            return
        self._open_logins(login_configs)

    def _open_logins(self, login_configs) -> None:
        """Authenticate every login, register its connection, reconcile what a previous process
        left in flight (by clOrdId), settle its interrupted signals."""
        s = self.settings
        redact.register_secret(*(r.token for r in self.recorders))
        redact.register_secret(*(c.credentials.password for c in login_configs.values()
                                 if c.credentials.password != c.credentials.username))  # sim's demo/demo is no secret
        redact.register_secret(*(c.credentials.sec for c in login_configs.values()))
        self.pool.configure(s)
        for name, cfg in login_configs.items():
            ti = TradovateIntegration(cfg.credentials, cfg.rest_url, cfg.ws_url, is_demo=cfg.is_demo, settings=s)
            ti.authenticate()
            accounts = {a["name"]: a for a in ti.list_accounts() if _active(a)}
            login = Login(cfg, ti, accounts)
            self.logins[name] = login
            for acct in accounts.values():
                self._account_login[int(acct["id"])] = login
            login.connection = self.pool.register_login(
                ti, [a["id"] for a in accounts.values()], is_demo=cfg.is_demo,
                login_key=f"{cfg.credentials.username}@{cfg.env}", settings=s)
        for rec in self.recorders:  # every linked account must exist: fail loudly at start
            for link in rec.accounts or ():
                if link.account not in self.logins[link.login].accounts:
                    raise recorders_mod.ConfigError(
                        f"recorder {rec.name!r} links account {link.account!r}, which login {link.login!r} does not have")
        first = next(iter(self.logins.values()))
        self.resolver = SymbolResolver(first.integration, trading_date=self.settings.trading_date)
        settled = reconcile_pending(self.journal, self.integration_for_account)
        self._settler = Settler(self.journal, self.integration_for_account, s.unknown_settle_period_s,
                                stale_sending_s=max(60.0, 12 * s.order_ack_timeout_s), held=self._held_final_writes)
        if settled:
            logger.warning("Reconciled %d order intent(s) left in flight by the previous run", len(settled))
        self._settle_interrupted_signals()
        self._build_risk_guard()
        self._start_breakeven()
        housekeeping.start_for(self)

    def _start_drift(self) -> None:
        """The drift monitor (execution/drift.py): each lane's expectation against the broker."""
        self._stop_drift()
        self.drift = DriftMonitor(self.settings, journal=self.journal, planner_for=self._planner,
                                  is_locked=lambda a: self.risk is not None and self.risk.is_locked(a),
                                  lanes=lambda: executors.LANES)
        self.drift.start()

    def _stop_drift(self) -> None:
        drift, self.drift = getattr(self, "drift", None), None
        if drift is not None:
            drift.stop()

    def _build_risk_guard(self) -> None:
        """The risk guard, wired to the logins' broker states and the market-data socket."""
        if self.risk is not None:
            self.risk.stop()
        s = self.settings
        guard = RiskGuard(s, clock=self.risk_clock)
        names = {int(a["id"]): name for login in self.logins.values() for name, a in login.accounts.items()}

        def state_of(account_id: int):
            conn = self._account_login[account_id].connection
            return lambda: getattr(conn, "broker_state", None)

        view = BrokerStateView({a: state_of(a) for a in names})
        first = next(iter(self.logins.values())).integration
        actions = ServiceRiskActions(
            journal=self.journal, settings=s,
            integration_for=lambda a: first if a is None else self.integration_for_account(a),
            connection_for=lambda a: self._account_login[a].connection, account_name=names.get)
        feed = None
        md_url = s.resolved_md_url()
        if md_url:  # open positions are always priced (the console's open P&L), limits or not
            feed = QuoteFeed(md_url, lambda: first.access_token, guard.on_quote, settings=s)
            first.add_token_listener(feed.token_renewed)
        elif not md_url and any(guard.limits_for(a).watches_pnl for a in names):
            logger.warning("Risk: no market-data URL (TRADOVATE_MD_URL): open P&L comes from the "
                           "cash-balance snapshot every %.0f s", s.risk.snapshot_poll_s)
        guard.attach(store=RiskStore(self.journal), accounts=names, broker=view, actions=actions, feed=feed)
        view.listen(guard.on_account_change, lambda: [guard.on_account_change(a) for a in names])
        self.risk = guard
        if guard.enabled:
            logger.info("Risk guard on: defaults %s", guard.defaults.to_dict())

    def _start_breakeven(self) -> None:
        """Order strategies: forget those the broker finished while we were away, and move stops
        to breakeven on the prices given to :meth:`on_quote` (strategy_exec, breakeven) -- from a
        market-data socket of its own that subscribes only while a breakeven is waiting."""
        from phantom_scraper.strategies import lifecycle as strategy_exec
        from phantom_scraper.strategies.breakeven import BreakevenManager
        if self.journal is None:
            return
        strategy_exec.store_for(self.journal).ensure_tables()  # created here, never on the order path
        closed = strategy_exec.refresh(self.journal, self.integration_for_account)
        if closed:
            logger.info("%d order strateg(ies) ended at the broker while this process was down", closed)
        if self.breakeven is not None:  # a retried start-up
            self.breakeven.stop()
        feed = None
        md_url = self.settings.resolved_md_url()
        if md_url:  # quotes only for contracts with a breakeven waiting (no socket otherwise)
            first = next(iter(self.logins.values())).integration
            feed = QuoteFeed(md_url, lambda: first.access_token, self.on_quote, settings=self.settings,
                             name="breakeven")
            first.add_token_listener(feed.token_renewed)  # re-authorized on renewal, as the risk feed is
        journal = self.journal
        self.breakeven = BreakevenManager(
            strategy_exec.store_for(journal), self.integration_for_account, feed=feed,
            housekeeping=lambda: strategy_exec.refresh(journal, self.integration_for_account))
        self.breakeven.start()

    def on_quote(self, contract_id: int, price: float, timestamp: Optional[float] = None) -> None:
        """A market price (the market-data feed's callback): breakeven triggers are checked on it."""
        manager = self.breakeven
        if manager is not None:
            manager.on_quote(contract_id, price, timestamp)

    # -- several instances (PostgreSQL journal) ----------------------------------------------------
    def _become_owner(self) -> bool:
        """The coordinator holds the lease: open the logins (reconciling first), start the pool."""
        if self._stop_requested.is_set():
            return False
        try:
            self._open_logins(self._login_configs)
        except Exception as exc:
            logger.error("Taking the logins over failed: %s", _describe(exc))
            self._reset_logins()
            return False
        if self.risk is not None:
            self.risk.start()
        self._start_drift()
        self.pool.warm_up()
        self.pool.start_daemon(self.settings.keepalive_interval_s, self._settle_unknown)
        logger.info("Owner: %d login(s), %d account(s)", len(self.logins), len(self._account_login))
        return True

    def _lose_logins(self) -> None:
        """The lease is gone (database session lost): stop using the logins at once."""
        if self.breakeven is not None:
            self.breakeven.stop()
            self.breakeven = None
        if self.risk is not None:  # the new owner's guard takes over (locks are in the journal)
            self.risk.stop()
            self.risk = None
        self._stop_drift()
        self.pool.stop_daemon()
        self.pool.reset()
        self._reset_logins()

    def _execute_handed_off(self, signal_id: str, recorder_name: str, payload: dict) -> None:
        """A signal another instance received and handed over: execute it here (the owner)."""
        recorder = next((r for r in self.recorders if r.name == recorder_name), None)
        if recorder is None:
            self.journal.set_signal_status(signal_id, "rejected",
                                           json.dumps({"error": f"unknown recorder {recorder_name!r}"}))
            return
        try:
            signal = parse_signal(json.dumps(payload).encode("utf-8"))
        except SignalError as exc:
            self.journal.set_signal_status(signal_id, "rejected", json.dumps(_signal_error(exc)))
            return
        self._execute_signal(signal_id, recorder, signal, "taken over from a standby")

    def _execute_signal(self, signal_id: str, recorder, signal, how: str) -> None:
        """Execute a signal already journaled (handed off by a standby, or received while starting)."""
        if recorder is None:
            self.journal.set_signal_status(signal_id, "rejected", json.dumps({"error": "unknown recorder"}))
            return
        if not self._enter():  # stopping: leave it pending for the next owner
            if self.coordinator is not None:
                self.coordinator.hand_off(signal_id)
            else:
                self.journal.set_signal_status(signal_id, "interrupted", json.dumps(
                    {"message": "the server stopped before it was executed: nothing placed"}))
            return
        try:
            targets = self.targets_for(recorder)
            logger.info("Signal %s %s: recorder=%s action=%s symbol=%s qty=%s accounts=%d", signal_id, how,
                        recorder.name, signal.action, signal.symbol, signal.quantity, len(targets))
            tickets = self._reserve_lanes(signal, targets)  # lane order on the owner: take-over order
            try:
                future = executors.executor("signal").submit(self._process, signal, targets, signal_id, tickets,
                                                              recorder.name)
            except BaseException:
                execution.cancel_lanes(tickets)
                raise
        except BaseException:
            self._leave()
            raise
        future.add_done_callback(lambda f: self._finished(signal_id, f))

    def _await_handed_off(self, signal_id: str, received: float) -> WebhookResult:
        """A standby's answer: the owner's outcome if the journal shows it within the budget."""
        deadline = received + self.settings.webhook_budget_s
        while True:
            signal = self.journal.get_signal(signal_id)
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
            time.sleep(self.settings.handoff_poll_interval_s)

    def _settle_interrupted_signals(self) -> None:
        """Signals a previous process left ``received`` get a final status from their intents
        (which reconcile_pending has just settled), so /api/signals says what happened."""
        mine = self._startup_queue.ids()  # queued by this process while it starts: executed once ready
        leftover = [i for i in self.journal.signal_ids_with_status(QUEUED) if i not in mine]
        for signal_id in self.journal.signal_ids_with_status("received") + leftover:
            intents = self.journal.intents_for_signal(signal_id)
            if not intents:
                status = "interrupted"
                summary = {"message": "interrupted by a restart before any order was sent; nothing sent"}
            else:
                states = {i["state"] for i in intents}
                if states <= {"acked", "reconciled"}:
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
            self.journal.set_signal_status(signal_id, status, json.dumps(summary, default=str))
            logger.warning("Signal %s interrupted by a restart: settled as %s", signal_id, status)

    def integration_for_account(self, account_id: int) -> Optional[TradovateIntegration]:
        login = self._account_login.get(int(account_id))
        return login.integration if login else None

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop intake, wait for signals in flight (bounded), close every socket."""
        with self._state_lock:
            if self._state in ("stopping", "stopped"):
                return
            never_started = self._state == "new"
            was_starting = self._state == "starting"
            self._state = "stopped" if never_started else "stopping"
            in_flight = self._in_flight
        if never_started:
            return
        self._stop_requested.set()
        if was_starting or not self._ready.is_set():  # let the start-up finish before tearing it down
            self._ready.wait(timeout_s)

        logger.info("Stopping: intake closed, %d signal(s) in flight", in_flight)
        events.emit("shutdown", environment=self.settings.tradovate_env)
        # Shutdown settles, it never sends: let in-flight orders finish (sockets with requests in
        # flight drain) up to timeout_s; then stop every login (no attempt starts after this and
        # searches end), close the sockets (what is still pending becomes 'unknown') and journal
        # whatever is still open as 'unknown' for the next start to reconcile.
        if not self._idle.wait(timeout_s):
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
        if not self._idle.is_set():
            self._idle.wait(min(2.0, timeout_s))  # the account threads journal their outcomes
        with self._state_lock:
            final = self._final
        if final is not None:  # finished signals' acked states land first: those orders are not in flight
            final.stop()
        if self.journal is not None:
            try:
                left = self.journal.mark_in_flight_unknown("in flight at shutdown; reconciled at the next start")
                if left:
                    logger.error("Shutdown: %d order(s) in flight journaled as unknown: %s", len(left),
                                 ", ".join(left))
            except Exception as exc:  # noqa: BLE001 - the next start treats 'sending' the same way
                logger.error("Shutdown: could not journal in-flight orders: %s", _describe(exc))
        housekeeping.stop_for(self)
        for login in self.logins.values():
            login.integration.close()
        if self.journal is not None:
            self.journal.close()
        gc_policy.stop(self._nothing_in_flight)
        with self._state_lock:
            self._state = "stopped"
        logger.info("Stopped")

    # -- recorders -----------------------------------------------------------------------------
    def recorder_for_token(self, token: Optional[str]) -> Optional[recorders_mod.Recorder]:
        """Constant-time comparison against every recorder's token."""
        if not token:
            return None
        if self.state in ("new", "starting"):
            self.wait_ready(min(1.0, self.settings.webhook_budget_s / 2))
        if self.state != "ready" and not self._queueing():
            raise ServiceUnavailable(self._unavailable_reason())
        found = None
        given = token.encode("utf-8", "surrogatepass")
        for rec in self.recorders:
            if rec.token and hmac.compare_digest(given, rec.token.encode("utf-8")):
                found = rec
        return found

    def targets_for(self, recorder: recorders_mod.Recorder) -> List[tuple]:
        targets = []
        if recorder.accounts is None:
            login = self.logins[recorders_mod.DEFAULT_LOGIN]
            for name, acct in sorted(login.accounts.items()):
                if recorder.account_filter and name not in recorder.account_filter:
                    continue
                targets.append((AccountTarget(id=int(acct["id"]), name=name,
                                              subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
            return targets
        for link in recorder.accounts:
            if not link.enabled:
                continue
            login = self.logins[link.login]
            acct = login.accounts[link.account]
            targets.append((AccountTarget(id=int(acct["id"]), name=link.account, multiplier=link.multiplier,
                                          max_qty=link.max_qty, enabled=link.enabled,
                                          subtract_exit_qty=recorder.subtract_exit_qty), login.connection))
        return targets

    # -- signals -------------------------------------------------------------------------------
    def handle_signal(self, recorder: recorders_mod.Recorder, raw: bytes) -> WebhookResult:
        """Parse, persist, then execute; answer within ``webhook_budget_s``.

        Only parsing (pure) and the journal write (local SQLite) happen before the budget starts
        to matter; symbol resolution and the orders run in the executor, so a slow broker turns
        into a 202 rather than a webhook TradingView cancels after 3 s.
        """
        received = time.perf_counter()
        try:
            signal = parse_signal(raw)
        except SignalError as exc:
            return WebhookResult(400, _signal_error(exc))
        if not self._enter():
            queued = self._queue_while_starting(recorder, signal)
            if queued is not None:
                return queued
            raise ServiceUnavailable(self._unavailable_reason())
        submitted = False
        try:
            signal_id, duplicate, existing = self.journal.record_signal(
                recorder.name, signal.payload, signal.signal_id, None,
                self.settings.dedupe_window_s, retry_not_sent=True)  # an id that placed nothing runs again
            if duplicate:
                return self._duplicate_result(signal, signal_id, existing, recorder)
            if self.coordinator is not None and not self.coordinator.is_owner:
                self.coordinator.hand_off(signal_id)
                return self._await_handed_off(signal_id, received)
            targets = self.targets_for(recorder)
            # The signal's one INFO line is written when it is done (_finished).
            logger.debug("Signal %s received: recorder=%s action=%s symbol=%s qty=%s accounts=%d%s",
                         signal_id, recorder.name, signal.action, signal.symbol, signal.quantity,
                         len(targets), " TEST" if signal.test else "")
            tickets = self._reserve_lanes(signal, targets)  # arrival order per (account, product)
            events.emit("signal_received", signal_id=signal_id, t=received)
            states = execution.BatchedStates(self.journal)  # single-step orders' final states: written after
            try:
                future = self._run_here(signal, targets, signal_id, tickets, recorder.name, received, states)
                if future is None:
                    future = executors.executor("signal").submit(self._process, signal, targets, signal_id,
                                                                  tickets, recorder.name, states)
            except BaseException:
                execution.cancel_lanes(tickets)
                raise
            submitted = True
        finally:
            if not submitted:
                self._leave()
        # The journal's final writes happen off the answer's path (phantom_scraper/execution/final_writes.py).
        future.add_done_callback(lambda f: self._finished(signal_id, f, signal, recorder.name, received, states))
        budget = max(0.0, self.settings.webhook_budget_s - (time.perf_counter() - received))
        try:
            contract, outcomes = future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            logger.info("Signal %s still executing after the %.1f s budget: answered 202",
                        signal_id, self.settings.webhook_budget_s)
            return WebhookResult(202, {"success": True, "signal_id": signal_id, "status": "executing",
                                       "message": "accepted; execution continues (see /api/signals)"})
        except SignalError as exc:  # unknown symbol: bad input, nothing executed
            body = _signal_error(exc, signal)
            body["signal_id"] = signal_id
            return WebhookResult(400, body)
        except TradovateError as exc:  # the broker failed before any order was sent (symbol lookup)
            return WebhookResult(200, {"success": False, "signal_id": signal_id,
                                       "error": {"code": "broker_unavailable",
                                                 "message": f"nothing was placed: {_describe(exc)}"}})
        except Exception as exc:  # a bug: reported, never a 5xx that would make TradingView re-send
            return WebhookResult(200, {"success": False, "signal_id": signal_id,
                                       "error": {"code": "internal_error", "message": _describe(exc)}})
        if contract is None:
            return WebhookResult(200, {"success": True, "signal_id": signal_id, "status": "skipped",
                                       "accounts": [], "message": "no enabled account to trade"})
        return WebhookResult(200, _outcomes_body(signal_id, contract, signal, outcomes))

    def _duplicate_result(self, signal, signal_id: str, existing: str, recorder) -> WebhookResult:
        if signal.signal_id:
            how, message = "id", "duplicate signal: this id was already received; nothing placed"
        else:
            how = "body"
            message = (f"deduplicated: an identical body (no id) arrived within "
                       f"{self.settings.dedupe_window_s:g} s; nothing placed (send an id to tell "
                       f"repeated alerts apart)")
        logger.info("Signal %s is a duplicate of %s by %s: nothing placed (recorder %s)",
                    signal_id, existing, "explicit id" if how == "id" else "identical body", recorder.name)
        events.emit("duplicate_signal", signal_id=signal_id, duplicate_of=existing)
        self.settle_writes(1.0)  # a first delivery that just finished: its outcome is written first
        success, first_status = duplicates.first_delivery(self.journal, existing)
        if success is None:  # the first delivery may or may not have been placed: say so
            message = "this id was already received and its outcome is still unknown; nothing placed now"
        return WebhookResult(200, {"success": success, "duplicate": True, "deduplicated_by": how,
                                   "signal_id": existing, "status": first_status, "message": message})

    def _queueing(self) -> bool:
        """Starting, with the journal open and the recorders known: webhooks are queued."""
        return (self.state == "starting" and self.journal is not None and bool(self.recorders)
                and self._startup_queue.has_room())

    def _queue_while_starting(self, recorder, signal) -> Optional[WebhookResult]:
        """A webhook while the logins are not ready: journaled ``queued``, answered 202, executed
        once ready (phantom_scraper/app/startup_queue.py).  None: not starting (the caller says 503)."""
        if not self._queueing():
            return None
        signal_id, duplicate, existing = self.journal.record_signal(
            recorder.name, signal.payload, signal.signal_id, None, self.settings.dedupe_window_s,
            retry_not_sent=True, status=QUEUED)
        if duplicate:
            return self._duplicate_result(signal, signal_id, existing, recorder)
        item = QueuedSignal(signal_id, recorder.name, signal, time.time())
        if not self._startup_queue.add(item):  # the start finished (or failed) meanwhile
            if self.state != "ready":
                self.journal.set_signal_status(signal_id, "failed", json.dumps(
                    {"message": "received while the server started; the start failed: nothing placed"}))
                return None
            self.journal.set_signal_status(signal_id, "received")
            self._execute_queued(item)
            return WebhookResult(202, {"success": True, "signal_id": signal_id, "status": "executing",
                                       "message": "accepted; execution continues (see /api/signals)"})
        logger.info("Signal %s received while starting: queued until the broker logins are ready", signal_id)
        return WebhookResult(202, {
            "success": True, "signal_id": signal_id, "status": QUEUED,
            "message": (f"received while the server starts: executed as soon as the broker logins are ready, "
                        f"if within {self._startup_queue.max_age_s:g} s (see /api/signals)")})

    def _execute_queued(self, item: QueuedSignal) -> None:
        if self.coordinator is not None and not self.coordinator.is_owner:
            self.journal.set_signal_status(item.signal_id, "pending")
            self.coordinator.hand_off(item.signal_id)
            return
        recorder = next((r for r in self.recorders if r.name == item.recorder), None)
        self._execute_signal(item.signal_id, recorder, item.payload, "received while starting")

    @staticmethod
    def _reserve_lanes(signal, targets) -> dict:
        if signal.test or not targets:
            return {}
        try:
            root, _ = parse_symbol(signal.symbol)
        except SignalError:
            return {}  # the resolver reports it; nothing will run
        return execution.reserve_lanes([t.id for t, _ in targets], root)

    def _run_here(self, signal, targets, signal_id: str, tickets, recorder: str, received: float, states=None):
        """A signal whose contract is already known runs from this (the request's) thread, without
        a hand-off to the signal executor first: one account through ``fan_out.run_now``, several
        (or one whose lane is busy) through ``execution.start_fan_out`` (one journal transaction,
        the idle lanes' frames in one batch, the busy lanes' jobs queued); the answers are awaited
        here within the webhook budget.  -> Future of ``(contract, outcomes)``, or None when that
        path does not apply (nothing done: run ``_process`` in the executor)."""
        if not targets or signal.test or self.resolver is None:
            return None
        contract = self.resolver.cached(signal.symbol)
        if contract is None:
            return None
        from phantom_scraper.signals import needs_position
        budget = self.settings.webhook_budget_s - (time.perf_counter() - received)
        wait_s = max(0.0, budget - 0.05)
        run = execution.signal_run(signal, contract, journal=self.journal, signal_id=signal_id, settings=self.settings,
                                   planner=self._planner(recorder, signal_id), needs_position=needs_position,
                                   recorder=recorder)
        try:  # the route (one account from here, or a fan-out) is chosen there, once
            accounts = execution.dispatch(run, targets, tickets=tickets, states=states, wait_s=wait_s)
        except Exception as exc:  # noqa: BLE001 - a bug: reported like one in the executor
            failed: concurrent.futures.Future = concurrent.futures.Future()
            failed.set_exception(exc)
            return failed
        concurrent.futures.wait(accounts, timeout=max(
            0.0, self.settings.webhook_budget_s - 0.05 - (time.perf_counter() - received)))
        if all(a.done() and a.exception() is None for a in accounts):
            outcomes = [a.result() for a in accounts]
            if not any(o.status == "rejected" and "InvalidContract" in (o.error or "") for o in outcomes):
                self._risk_notes(signal_id, outcomes)
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result((contract, outcomes))
                return done
        return executors.executor("signal").submit(self._complete, signal, contract, targets, signal_id, recorder,
                                                    accounts)

    def _complete(self, signal, contract, targets, signal_id: str, recorder: str, accounts):
        """The rest of ``_process`` for the accounts started by ``_run_here``."""
        outcomes = [account.result() for account in accounts]
        contract, outcomes = self._after_invalid_contract(signal, contract, targets, signal_id, outcomes, recorder)
        self._risk_notes(signal_id, outcomes)
        return contract, outcomes

    def _process(self, signal, targets, signal_id: str, tickets=None, recorder: str = "", states=None):
        """In the executor: resolve the symbol, then run every account.  -> (contract, outcomes)."""
        try:
            contract = self.resolver.resolve(signal.symbol)  # SignalError: unknown symbol
        except BaseException:
            execution.cancel_lanes(tickets)
            raise
        if not targets:
            return None, []
        outcomes = execute_trade_simple(signal, contract, targets, journal=self.journal, signal_id=signal_id,
                                        settings=self.settings, tickets=tickets,
                                        planner=self._planner(recorder, signal_id), states=states, recorder=recorder)
        contract, outcomes = self._after_invalid_contract(signal, contract, targets, signal_id, outcomes, recorder)
        self._risk_notes(signal_id, outcomes)
        return contract, outcomes

    def _after_invalid_contract(self, signal, contract, targets, signal_id: str, outcomes, recorder: str = ""):
        """The broker refused the resolved month (``InvalidContract``: not executed).  Resolve the
        symbol again once, skipping that month, and run the refused accounts once more on the new
        one.  -> (contract, outcomes)."""
        refused = [i for i, o in enumerate(outcomes)
                   if o.status == "rejected" and "InvalidContract" in (o.error or "")]
        if not refused:
            return contract, outcomes
        self.resolver.refused(signal.symbol, contract)
        try:
            fresh = self.resolver.resolve(signal.symbol)
        except (SignalError, TradovateError) as exc:
            logger.warning("Signal %s: %s refused as InvalidContract and no other month found: %s",
                           signal_id, contract.name, _describe(exc))
            return contract, outcomes
        if fresh.id == contract.id:
            return contract, outcomes
        logger.warning("Signal %s: %s refused as InvalidContract; retrying %d account(s) on %s", signal_id,
                       contract.name, len(refused), fresh.name)
        again = execute_trade_simple(signal, fresh, [targets[i] for i in refused], journal=self.journal,
                                     signal_id=signal_id, settings=self.settings, retry=True,
                                     planner=self._planner(recorder, signal_id), recorder=recorder)
        for i, outcome in zip(refused, again):
            outcomes[i] = outcome
        return fresh, outcomes

    def _planner(self, recorder: str, signal_id: str, rate_limited: bool = True):
        """The order planner with the risk guard's entry rules (decided from memory: no broker read)."""
        if self.risk is None:
            return plan_orders
        return self.risk.planner(recorder, signal_id, plan_orders, rate_limited=rate_limited)

    def _risk_notes(self, signal_id: str, outcomes) -> None:
        if self.risk is None:
            return
        notes = self.risk.take_notes(signal_id)
        for outcome in outcomes:
            outcome.risk = notes.get(outcome.account_id, [])

    def _finished(self, signal_id: str, future: concurrent.futures.Future, signal=None, recorder: str = "",
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
                status = _summary_status(outcomes) if contract is not None else "skipped"
                summary = json.dumps([o.summary() for o in outcomes], default=str) if contract is not None \
                    else json.dumps({"message": "no enabled account"})
                events.emit("signal", signal_id=signal_id, status=status, contract=contract, outcomes=outcomes)
            except SignalError as exc:
                status, summary = "rejected", json.dumps({"error": exc.to_dict()}, default=str)
            except Exception as exc:
                status, summary = "error", json.dumps({"error": _describe(exc)})
                logger.error("Signal %s failed: %s", signal_id, _describe(exc))
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
                                " TEST" if signal.test else "", len(outcomes), _accounts_brief(outcomes),
                                "" if received is None else " in %.1f ms" % ((time.perf_counter() - received) * 1000))
            finally:
                self._leave()

        try:
            self._final_writer().submit(build, after)
        except Exception:  # noqa: BLE001 - (no thread could be started) write it here
            logger.exception("Signal %s: the final-writes thread is unavailable; writing here", signal_id)
            try:
                self.journal.finish_signals([build()])
            except Exception:  # noqa: BLE001
                logger.exception("Could not record the outcome of signal %s", signal_id)
            after()

    def settle_writes(self, timeout_s: float = 2.0) -> None:
        """Before showing signals, history or metrics: what finished signals queued for the journal
        (and their events) is written first, so a reader right after an answer sees its outcome."""
        with self._state_lock:
            final = self._final
        if final is not None:
            final.flush(timeout_s)

    def _held_final_writes(self) -> set:
        with self._state_lock:
            final = self._final
        return final.pending_cl_ord_ids() if final is not None else set()

    def _final_writer(self) -> FinalWriter:
        with self._state_lock:
            if self._final is None:
                self._final = FinalWriter(self.journal, after_batch=gc_policy.freeze_now)
            return self._final

    def _nothing_in_flight(self) -> bool:
        with self._state_lock:
            return self._in_flight == 0

    def _enter(self) -> bool:
        with self._state_lock:
            if self._state != "ready":
                return False
            self._in_flight += 1
            self._idle.clear()
            return True

    def _leave(self) -> None:
        with self._state_lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _unavailable_reason(self) -> str:
        with self._state_lock:
            state, err = self._state, self._start_error
        if state == "failed":
            return f"start-up failed: {err}"
        return f"service is {state}"

    # -- manual trades ---------------------------------------------------------------------------
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
            return WebhookResult(400, _signal_error(exc))
        account_name = signal.payload.get("account") if isinstance(signal.payload, dict) else None
        if account_name is not None and not isinstance(account_name, str):
            return WebhookResult(400, {"success": False, "error": {
                "code": "invalid_field", "field": "account", "message": "account must be an account name"}})
        if self.coordinator is not None and not self.coordinator.is_owner:
            raise ServiceUnavailable("this instance is a standby; manual trades go to the login owner")
        if not self._enter():
            raise ServiceUnavailable(self._unavailable_reason())
        try:
            target = None
            for login in self.logins.values():
                for acct_name, acct in sorted(login.accounts.items()):
                    if account_name is None or acct_name == account_name:
                        target = (AccountTarget(id=int(acct["id"]), name=acct_name), login.connection)
                        break
                if target is not None:
                    break
            if target is None:
                return WebhookResult(400, {"success": False, "error": {
                    "code": "unknown_account", "field": "account",
                    "message": f"no account named {account_name!r}; nothing was placed"}})
            try:
                contract = self.resolver.resolve(signal.symbol)
            except SignalError as exc:
                return WebhookResult(400, _signal_error(exc, signal))
            signal_id, duplicate, existing = self.journal.record_signal(
                MANUAL_RECORDER, signal.payload, signal.signal_id, None, 0)
            if duplicate:
                return WebhookResult(200, {"success": True, "duplicate": True, "signal_id": existing,
                                           "message": "duplicate id: already received, nothing placed"})
            logger.info("Manual trade %s: action=%s symbol=%s qty=%s account=%s%s", signal_id, signal.action,
                        contract.name, signal.quantity, target[0].name, " TEST" if signal.test else "")
            outcomes = []
            try:
                outcomes = execute_trade_simple(
                    signal, contract, [target], journal=self.journal, signal_id=signal_id,
                    settings=self.settings,
                    planner=self._planner(MANUAL_RECORDER, signal_id, rate_limited=False))
                self._risk_notes(signal_id, outcomes)
            finally:
                status = _summary_status(outcomes) if outcomes else "error"
                self.journal.set_signal_status(signal_id, status,
                                               json.dumps([o.to_dict() for o in outcomes], default=str))
            body = _outcomes_body(signal_id, contract, signal, outcomes)
            body["results"] = body["accounts"]  # the name this route used first
            return WebhookResult(200, body)
        finally:
            self._leave()

    # -- status ------------------------------------------------------------------------------------
    def status(self) -> dict:
        resolver = getattr(self, "resolver", None)
        return {
            "success": True,
            "websocket_orders_enabled": bool(self.settings.use_websocket_orders),
            "service_state": self.state,
            "start_error": self.start_error,
            "environment": self.settings.tradovate_env,
            "connection_pool": self.pool.status(),
            "keepalive_daemon": self.pool.daemon_status(),
            "order_strategies": self._open_strategies(),
            "risk": self.risk.status() if self.risk is not None else None,
            "drift": self.drift.status() if getattr(self, "drift", None) is not None else None,
            "coordinator": self.coordinator.status() if self.coordinator is not None else None,
            "orders_needing_attention": self.orders_needing_attention(),
            # each continuous root traded so far: its front month and the date it rolls
            "front_months": resolver.fronts() if resolver is not None else {},
            **housekeeping.status(self),  # request_budget per login, housekeeping
            "gc": gc_policy.pause_stats(),
        }

    def _open_strategies(self) -> dict:
        """Open order strategies per account name (the journal's record; see strategy_exec)."""
        from phantom_scraper.strategies import lifecycle as strategy_exec
        try:
            return strategy_exec.open_by_account(self.journal)
        except Exception as exc:  # the status page must render even if this read fails
            logger.warning("open order strategies unreadable: %s", exc)
            return {}
    # -- kill switch -------------------------------------------------------------------------------
    def _risk_accounts(self, selector) -> Tuple[Optional[List[int]], Optional[WebhookResult]]:
        if self.state != "ready" or self.risk is None:
            raise ServiceUnavailable(self._unavailable_reason())
        if selector != "all" and not (isinstance(selector, list) and selector
                                      and all(isinstance(n, str) for n in selector)):
            return None, WebhookResult(400, {"success": False, "error": {
                "code": "invalid_field", "field": "accounts",
                "message": 'accounts must be "all" or a list of account names'}})
        ids, unknown = self.risk.accounts_by_name(selector)
        if unknown:
            return None, WebhookResult(400, {"success": False, "error": {
                "code": "unknown_account", "field": "accounts", "message": f"no account named {', '.join(unknown)}"}})
        return ids, None

    def kill_switch(self, selector, flatten: bool = True) -> WebhookResult:
        """Lock the accounts (until unlocked) and, with ``flatten``, cancel their orders and flatten them."""
        ids, error = self._risk_accounts(selector)
        if error is not None:
            return error
        results = self.risk.kill(ids, flatten=flatten, wait_s=max(5.0, self.settings.order_ack_timeout_s * 2))
        names = dict((a, self.risk.account_name(a)) for a in ids)
        return WebhookResult(200, {"success": True, "locked": [names[a] for a in ids], "flatten": bool(flatten),
                                   "accounts": [{"account_id": a, "account_name": names[a], **results[a]} for a in ids]})

    def unlock_accounts(self, selector) -> WebhookResult:
        ids, error = self._risk_accounts(selector)
        if error is not None:
            return error
        results = self.risk.unlock(ids, by="operator (DELETE /api/kill-switch)")
        return WebhookResult(200, {"success": True, "unlocked": [self.risk.account_name(a) for a in ids if results[a]],
                                   "accounts": [{"account_id": a, "account_name": self.risk.account_name(a),
                                                 "was_locked": results[a]} for a in ids]})

    def orders_needing_attention(self) -> dict:
        """Unknown order outcomes (never resent; settled in the background), recent not_placed
        ones, and DUPLICATE alarms, for the status page and /api/websocket-status."""
        unknown, not_placed = [], []
        if self.journal is not None and not self.journal.closed:
            try:
                for i in self.journal.unsettled_intents():
                    row = {"cl_ord_id": i["cl_ord_id"], "account_id": i["account_id"],
                           "account_name": i["account_name"], "signal_id": i["signal_id"], "state": i["state"],
                           "error": i["error"], "since": i["created_at"]}
                    (unknown if i["state"] == "unknown" else not_placed).append(row)
            except Exception as exc:  # noqa: BLE001 - the status must render without the journal
                return {"error": _describe(exc), "unknown": [], "not_placed": [], "duplicates": recent_duplicates()}
        drift = getattr(self, "drift", None)
        return {"unknown": unknown, "not_placed": not_placed, "duplicates": recent_duplicates(),
                "drift": drift.items() if drift is not None else []}

    def health(self) -> Tuple[bool, dict]:
        """Readiness in constant time, from figures in memory (phantom_scraper/app/health.py)."""
        if self._health is None:
            self._health = HealthCheck(self)
        return self._health.check()


def _rest_reachable(ti) -> bool:
    try:
        ti.list_accounts()
        return True
    except (TradovateError, AuthError):
        return False


def _active(account: dict) -> bool:
    return not account.get("closed") and account.get("active", True) is not False and not account.get("archived")


def _signal_error(exc: SignalError, signal=None) -> dict:
    field = exc.field
    if signal is not None and field == "symbol" and isinstance(signal.payload, dict):
        # the resolver does not know how the sender spelled the field: ticker or symbol
        field = next((k for k in signal.payload if k.lower() in ("ticker", "symbol")), field)
    return {"success": False, "error": {"code": exc.code, "field": field, "message": exc.message}}


def _accounts_brief(outcomes, limit: int = 5) -> str:
    """`` [DEMO1 acked #123 websocket, ...]`` for the signal's log line (the first ``limit``)."""
    if not outcomes:
        return ""
    parts = [f"{o.account_name} {o.status}" + (f" #{o.order_id}" if o.order_id is not None else "")
             + (f" {o.transport}" if o.transport else "") for o in outcomes[:limit]]
    more = f", +{len(outcomes) - limit} more" if len(outcomes) > limit else ""
    return " [" + ", ".join(parts) + more + "]"


def _summary_status(outcomes) -> str:
    statuses = {o.status for o in outcomes}
    if not statuses:
        return "skipped"
    if statuses <= {"acked"}:
        return "acked"
    if statuses <= {"validated"}:
        return "validated"
    if "unknown" in statuses:
        return "unknown"
    if statuses & {"acked"}:
        return "partial"
    if statuses <= {"skipped"}:
        return "skipped"
    return "failed"


def _outcomes_body(signal_id, contract, signal, outcomes) -> dict:
    status = _summary_status(outcomes)
    return {
        # unknown is neither: null until settlement says (the accounts carry "unknown" too)
        "success": None if status == "unknown" else status in ("acked", "validated", "skipped"),
        "signal_id": signal_id,
        "status": status,
        "test": bool(signal.test),
        "contract": contract.name,
        # The planned order bodies only in test mode (that is what a test is for); else the outcome.
        "accounts": [o.to_dict() if signal.test else o.summary() for o in outcomes],
    }
