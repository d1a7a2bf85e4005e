"""The WebSocket connection pool, the keep-alive daemon, and signal execution.

Pool rules (LESSONS.md §1–§5):

* ``_WS_POOL`` maps a sub-account id to its login's :class:`PooledConnection`.  Sub-accounts of one
  login share one authorized socket, so the project never opens more sockets than logins.
* ``_WS_POOL_LOCK`` guards the two dicts below and nothing else: no connect, send, close or wait
  ever happens while it is held.
* Each connection connects single-flight: concurrent callers share one attempt (a Future), waited on
  *outside* every lock, so a hung connect on one login never delays another login's orders.
* Connects are bounded (``max_concurrent_connects``), backed off exponentially with jitter after a
  failure, and an order never waits for a connect: with no live socket it goes over REST at once
  (the request provably never left the socket) while the connect runs in the background.
* A renewed token replaces the socket: the new one is authorized first, swapped in, and the old one
  closed only after its in-flight requests finished.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from typing import Callable, Dict, List, Optional

from phantom_scraper.errors import AuthError, TradovateError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The pool

_WS_POOL: Dict[int, "PooledConnection"] = {}  # sub-account id -> its login's shared connection
_LOGINS: Dict[tuple, "PooledConnection"] = {}  # (is_demo, login key) -> connection
_WS_POOL_LOCK = threading.Lock()  # serialises reads/writes of _WS_POOL and _LOGINS only

_CONNECT_SLOTS = threading.BoundedSemaphore(2)  # bounds concurrent connects across all logins


def set_max_concurrent_connects(n: int) -> None:
    """Replace the connect bound (configuration; call before traffic starts)."""
    global _CONNECT_SLOTS
    _CONNECT_SLOTS = threading.BoundedSemaphore(max(1, int(n)))


class PoolError(TradovateError):
    """The pool cannot provide a connection (unknown sub-account, or backing off)."""


class PooledConnection:
    """One login's authorized WebSocket, shared by all of its sub-accounts.

    ``integration`` is that login's :class:`TradovateIntegration`; it owns the token.  The
    connection's own ``_lock`` guards its fields (client, pending connect, counters) and is only
    ever held for bookkeeping.
    """

    def __init__(self, integration, *, is_demo: bool, login_key: str,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0,
                 connect_timeout_s: float = 15.0):
        self.integration = integration
        self.is_demo = is_demo
        self.login_key = login_key
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()  # guards every attribute below
        self._client = None
        self._client_token: Optional[str] = None
        self._connecting: Optional[concurrent.futures.Future] = None
        self._failures = 0
        self._next_attempt_at = 0.0
        self._closed = False
        self.subaccount_ids: set = set()
        self.connected_since: Optional[float] = None
        self.reconnect_count = 0
        self.connect_count = 0
        self.orders_websocket = 0
        self.orders_rest = 0
        self.last_order_latency_ms: Optional[float] = None
        self.last_error: Optional[str] = None
        self.on_reconnected: Optional[Callable[["PooledConnection"], None]] = None
        integration.add_token_listener(self._on_token_renewed)

    # -- reading state -----------------------------------------------------------------------
    def live_client(self):
        """The open client, or None.  Never blocks on I/O."""
        with self._lock:
            client = self._client
        return client if client is not None and client.is_open else None

    @property
    def connecting(self) -> bool:
        with self._lock:
            return self._connecting is not None

    def backoff_remaining_s(self) -> float:
        with self._lock:
            return max(0.0, self._next_attempt_at - time.monotonic())

    # -- connecting ----------------------------------------------------------------------------
    def ensure_connecting(self, *, ignore_backoff: bool = False) -> concurrent.futures.Future:
        """Start a connect unless one is running (single-flight); return its Future.

        The caller that starts it runs it in a new background thread, so this never blocks.
        """
        start = False
        with self._lock:
            client = self._client
            if self._closed:
                fut = concurrent.futures.Future()
                fut.set_exception(PoolError(f"connection {self.login_key} is closed"))
                return fut
            if client is not None and client.is_open and self._client_token == self.integration.access_token:
                fut = concurrent.futures.Future()
                fut.set_result(client)
                return fut
            fut = self._connecting
            if fut is None:
                wait_s = self._next_attempt_at - time.monotonic()
                if wait_s > 0 and not ignore_backoff:
                    fut = concurrent.futures.Future()
                    fut.set_exception(PoolError(f"connect for {self.login_key} backing off {wait_s:.1f}s"))
                    return fut
                fut = concurrent.futures.Future()
                self._connecting = fut
                start = True
        if start:
            threading.Thread(target=self._connect, args=(fut,), daemon=True,
                             name=f"ws-connect-{self.login_key}").start()
        return fut

    def connect_blocking(self, timeout_s: Optional[float] = None):
        """Connect (or join the running connect) and wait for it, outside every lock."""
        fut = self.ensure_connecting(ignore_backoff=True)
        return fut.result(timeout=timeout_s if timeout_s is not None else self.connect_timeout_s + 5)

    def _connect(self, fut: concurrent.futures.Future) -> None:
        client = None
        error: Optional[BaseException] = None
        try:
            with _CONNECT_SLOTS:  # bounded concurrent connects (LESSONS §2)
                self.integration.ensure_token()
                token = self.integration.access_token
                client = self.integration.open_websocket()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter through the Future
            error = exc
        old = None
        with self._lock:
            self._connecting = None
            if error is None and self._closed:
                error = PoolError(f"connection {self.login_key} closed while connecting")
            if error is None:
                old, self._client, self._client_token = self._client, client, token
                was_connected_before = self.connect_count > 0
                self.connect_count += 1
                if was_connected_before:
                    self.reconnect_count += 1
                self.connected_since = time.time()
                self._failures = 0
                self._next_attempt_at = 0.0
                self.last_error = None
            else:
                self._failures += 1
                delay = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (self._failures - 1)))
                delay *= random.uniform(0.5, 1.5)  # jitter: sockets dropped together reconnect apart
                self._next_attempt_at = time.monotonic() + delay
                self.last_error = _describe(error)
        if error is not None:
            if client is not None:
                client.close()
            logger.warning("WebSocket connect failed for %s: %s", self.login_key, _describe(error))
            fut.set_exception(error)
            return
        client.add_close_listener(self._on_client_closed)
        if old is not None:
            _close_when_idle(old)
        if was_connected_before:
            logger.info("WebSocket reconnected for %s (reconnect #%d)", self.login_key, self.reconnect_count)
            callback = self.on_reconnected
            if callback is not None:
                callback(self)
        else:
            logger.info("WebSocket connected for %s", self.login_key)
        fut.set_result(client)

    def _on_client_closed(self, client) -> None:
        with self._lock:
            current = client is self._client
        if current and not self._closed:
            logger.warning("WebSocket closed for %s; the keep-alive daemon will reconnect", self.login_key)
            daemon = _DAEMON
            if daemon is not None:
                daemon.wake()

    def _on_token_renewed(self, _new_token: str) -> None:
        """A renewed token: authorize a replacement socket in the background, then swap."""
        if self._closed:
            return
        logger.info("Token renewed for %s; replacing its WebSocket", self.login_key)
        self.ensure_connecting(ignore_backoff=True)

    # -- orders ------------------------------------------------------------------------------
    def record_order(self, transport: str, latency_ms: Optional[float]) -> None:
        with self._lock:
            if transport == "websocket":
                self.orders_websocket += 1
            elif transport == "rest":
                self.orders_rest += 1
            if latency_ms is not None:
                self.last_order_latency_ms = latency_ms

    # -- health --------------------------------------------------------------------------------
    def check(self, timeout_s: float = 5.0) -> bool:
        """A cheap request over the socket (not just a ping); False if the socket is unusable."""
        client = self.live_client()
        if client is None:
            return False
        try:
            client.request("account/list", timeout=timeout_s)
            return True
        except AuthError:
            raise
        except TradovateError as exc:
            logger.warning("Health check failed for %s: %s", self.login_key, _describe(exc))
            client.close()
            return False

    def status(self) -> dict:
        with self._lock:
            client = self._client
            info = {
                "login": self.login_key,
                "is_demo": self.is_demo,
                "connecting": self._connecting is not None,
                "connected_since": self.connected_since,
                "reconnect_count": self.reconnect_count,
                "orders_via_websocket": self.orders_websocket,
                "orders_via_rest": self.orders_rest,
                "last_order_latency_ms": self.last_order_latency_ms,
                "last_error": self.last_error,
                "backoff_s": round(max(0.0, self._next_attempt_at - time.monotonic()), 3),
            }
        stats = client.stats() if client is not None else {}
        info["ws_connected"] = bool(client is not None and client.is_open)
        info["has_websocket"] = client is not None
        info["state"] = stats.get("state", "closed")
        last_hb = stats.get("last_heartbeat_sent_at")
        info["seconds_since_heartbeat"] = round(time.time() - last_hb, 3) if last_hb else None
        last_frame = stats.get("last_server_frame_at")
        info["seconds_since_server_frame"] = round(time.time() - last_frame, 3) if last_frame else None
        expires = getattr(self.integration, "token_expires_at", None)
        info["token_expires_in_s"] = round(expires - time.time(), 1) if expires else None
        return info

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _close_when_idle(client, grace_s: float = 10.0) -> None:
    """Close a replaced client once its in-flight requests finished (or after ``grace_s``)."""

    def run() -> None:
        deadline = time.monotonic() + grace_s
        pending = getattr(client, "pending_count", lambda: 0)
        while pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()

    threading.Thread(target=run, daemon=True, name="ws-retire").start()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def register_login(integration, subaccount_ids, *, is_demo: bool, login_key: Optional[str] = None,
                   settings=None) -> PooledConnection:
    """Map ``subaccount_ids`` to the login's shared connection (created if new). No I/O."""
    key = login_key or getattr(integration, "login_key", None) or str(id(integration))
    kwargs = {}
    if settings is not None:
        kwargs = dict(backoff_initial_s=settings.reconnect_backoff_initial_s,
                      backoff_max_s=settings.reconnect_backoff_max_s,
                      connect_timeout_s=settings.ws_connect_timeout_s)
    created = None
    with _WS_POOL_LOCK:
        conn = _LOGINS.get((is_demo, key))
        if conn is None or conn.integration is not integration:
            created = conn = PooledConnection(integration, is_demo=is_demo, login_key=key, **kwargs)
            replaced = _LOGINS.get((is_demo, key))
            _LOGINS[(is_demo, key)] = conn
        else:
            replaced = None
        for sub_id in subaccount_ids:
            _WS_POOL[int(sub_id)] = conn
            conn.subaccount_ids.add(int(sub_id))
    if replaced is not None and replaced is not created:
        replaced.close()
    return conn


def _lookup(subaccount_id: int, is_demo: bool, access_token: Optional[str]) -> PooledConnection:
    with _WS_POOL_LOCK:
        conn = _WS_POOL.get(int(subaccount_id))
        if conn is None and access_token:
            # A caller that only knows the token: the login whose integration holds it.
            for candidate in _LOGINS.values():
                if candidate.is_demo == is_demo and candidate.integration.access_token == access_token:
                    conn = candidate
                    break
    if conn is None:
        raise PoolError(f"sub-account {subaccount_id} is not registered with the pool")
    return conn


def get_pooled_connection_sync(subaccount_id: int, is_demo: bool, access_token: Optional[str] = None,
                               *, timeout_s: Optional[float] = None):
    """Return the live client for ``subaccount_id``, connecting (single-flight) if needed."""
    conn = _lookup(subaccount_id, is_demo, access_token)
    client = conn.live_client()
    if client is not None:
        return client
    return conn.connect_blocking(timeout_s)


async def get_pooled_connection(subaccount_id: int, is_demo: bool, access_token: str):
    """The documented async entry point: the live client for a sub-account, or a new one.

    The wait happens in a worker thread, so the caller's event loop is never blocked.
    """
    return await asyncio.to_thread(get_pooled_connection_sync, subaccount_id, is_demo, access_token)


def connection_for(subaccount_id: int) -> Optional[PooledConnection]:
    with _WS_POOL_LOCK:
        return _WS_POOL.get(int(subaccount_id))


def pool_snapshot() -> Dict[int, PooledConnection]:
    """A copy of the pool, taken under the lock, safe to iterate."""
    with _WS_POOL_LOCK:
        return dict(_WS_POOL)


def logins_snapshot() -> List[PooledConnection]:
    with _WS_POOL_LOCK:
        return list(_LOGINS.values())


def pool_status() -> dict:
    connections = {}
    per_login = {id(c): c.status() for c in logins_snapshot()}
    for sub_id, conn in sorted(pool_snapshot().items()):
        info = dict(per_login.get(id(conn)) or conn.status())
        connections[str(sub_id)] = info
    return {"size": len(connections), "sockets": len(per_login), "connections": connections}


def warm_up(stagger_s: float = 0.25) -> None:
    """Start every login's connect in the background, staggered (no burst of connects)."""
    for i, conn in enumerate(logins_snapshot()):
        if i and stagger_s:
            time.sleep(random.uniform(0, stagger_s))
        conn.ensure_connecting(ignore_backoff=True)


def reset_pool() -> None:
    """Close and forget every connection (shutdown and tests)."""
    with _WS_POOL_LOCK:
        conns = list(_LOGINS.values())
        _LOGINS.clear()
        _WS_POOL.clear()
    for conn in conns:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The keep-alive daemon

class KeepAliveDaemon:
    """Every ``interval_s``: renew tokens that are due, check each socket with a cheap request,
    and reconnect the dropped ones (bounded, backed off).  Woken early when a socket closes."""

    def __init__(self, interval_s: float = 30.0, check_timeout_s: float = 5.0):
        self.interval_s = interval_s
        self.check_timeout_s = check_timeout_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.cycles = 0
        self.last_cycle_at: Optional[float] = None
        self.last_error: Optional[str] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ws-keepalive", daemon=True)
        self._thread.start()
        logger.info("WebSocket keep-alive daemon started (every %.1fs)", self.interval_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def status(self) -> dict:
        return {
            "running": self.alive,
            "interval_s": self.interval_s,
            "cycles": self.cycles,
            "last_cycle_at": self.last_cycle_at,
            "last_error": self.last_error,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_cycle()
                self.last_error = None
            except Exception as exc:  # the safety net: one bad cycle never kills the daemon
                self.last_error = _describe(exc)
                logger.exception("WebSocket keep-alive cycle failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def run_cycle(self) -> None:
        self.cycles += 1
        self.last_cycle_at = time.time()
        waits = []
        for conn in logins_snapshot():
            if self._stop.is_set():
                return
            try:
                conn.integration.ensure_token()  # renews ahead of expiry; listeners swap the socket
            except TradovateError as exc:
                logger.warning("Token renewal failed for %s: %s", conn.login_key, _describe(exc))
                continue
            if conn.connecting:
                continue
            if conn.live_client() is not None and conn.check(self.check_timeout_s):
                continue
            if conn.backoff_remaining_s() > 0:
                continue
            waits.append(conn.ensure_connecting())
        for fut in waits:  # connects run in their own threads, bounded by _CONNECT_SLOTS
            try:
                fut.result(timeout=60)
            except Exception:  # already logged by the connect
                pass


_DAEMON: Optional[KeepAliveDaemon] = None
_DAEMON_LOCK = threading.Lock()  # serialises start/stop of the single daemon


def start_websocket_keepalive_daemon(interval_s: Optional[float] = None) -> KeepAliveDaemon:
    """Start the one keep-alive daemon (idempotent: a running daemon is returned as is)."""
    global _DAEMON
    with _DAEMON_LOCK:
        if _DAEMON is not None and _DAEMON.alive:
            return _DAEMON
        _DAEMON = KeepAliveDaemon(interval_s if interval_s is not None else 30.0)
        daemon = _DAEMON
    daemon.start()
    return daemon


def stop_websocket_keepalive_daemon() -> None:
    global _DAEMON
    with _DAEMON_LOCK:
        daemon, _DAEMON = _DAEMON, None
    if daemon is not None:
        daemon.stop()


def keepalive_daemon() -> Optional[KeepAliveDaemon]:
    return _DAEMON


# ---------------------------------------------------------------------------------------------
# Signal execution

from dataclasses import asdict, dataclass, field  # noqa: E402  (kept next to their only users)

from phantom_scraper.errors import (  # noqa: E402
    NotSentError,
    OrderRejectedError,
    OutcomeUnknownError,
)

_WORKING_STATES = {"Working", "Suspended", "PendingNew", "PendingReplace"}
_PLACEMENT_KINDS = {"placeorder", "placeoso", "liquidateposition"}


@dataclass
class AccountOutcome:
    """What happened on one account for one signal (returned to the webhook and journaled)."""

    account_id: int
    account_name: str
    status: str  # acked | rejected | unknown | error | skipped | validated
    order_ids: List[int] = field(default_factory=list)
    cl_ord_ids: List[str] = field(default_factory=list)
    transport: Optional[str] = None
    latency_ms: Optional[float] = None
    reconciled: bool = False
    error: Optional[str] = None
    planned: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_EXECUTOR: Optional[concurrent.futures.ThreadPoolExecutor] = None
_EXECUTOR_LOCK = threading.Lock()  # serialises creation of the shared executor


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="order")
        return _EXECUTOR


def shutdown_executor(wait: bool = True) -> None:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        ex, _EXECUTOR = _EXECUTOR, None
    if ex is not None:
        ex.shutdown(wait=wait)


def _read(conn: PooledConnection, endpoint: str, rest_fn: Callable[[], list], timeout_s: float) -> list:
    """A read over the warm socket when there is one (reads may fall back freely), else REST."""
    client = conn.live_client()
    if client is not None:
        try:
            result = client.request(endpoint, timeout=timeout_s)
            return result if isinstance(result, list) else ([] if result is None else [result])
        except TradovateError as exc:
            logger.debug("read %s over WebSocket failed (%s); using REST", endpoint, exc)
    return rest_fn()


def _net_position(conn: PooledConnection, account_id: int, contract_id: int, timeout_s: float) -> int:
    positions = _read(conn, "position/list", conn.integration.list_positions, timeout_s)
    return sum(int(p.get("netPos") or 0) for p in positions
               if p.get("accountId") == account_id and p.get("contractId") == contract_id)


def _working_orders(conn: PooledConnection, account_id: int, contract_id: int, timeout_s: float) -> list:
    orders = _read(conn, "order/list", conn.integration.list_orders, timeout_s)
    return [o for o in orders if o.get("accountId") == account_id and o.get("contractId") == contract_id
            and o.get("ordStatus") in _WORKING_STATES]


def execute_trade_simple(signal, contract, targets, *, journal, signal_id: str, settings,
                         planner=None, needs_position=None) -> List[AccountOutcome]:
    """Run one validated signal on every targeted account, in parallel.

    ``targets`` is a list of ``(AccountTarget, PooledConnection)``.  Each account goes through
    ``place_order_smart()`` with a warm socket from the pool when there is one.  Returns one
    :class:`AccountOutcome` per target, in the order given.
    """
    if planner is None or needs_position is None:
        from phantom_scraper.signals import needs_position as _needs, plan_orders as _plan
        planner = planner or _plan
        needs_position = needs_position or _needs
    if len(targets) == 1:  # no hand-off for a single account: the order leaves from this thread
        target, conn = targets[0]
        return [_run_account(signal, contract, target, conn, journal, signal_id, settings, planner, needs_position)]
    futures = [
        _executor().submit(_run_account, signal, contract, target, conn, journal, signal_id, settings,
                           planner, needs_position)
        for target, conn in targets
    ]
    return [f.result() for f in futures]


def _run_account(signal, contract, target, conn, journal, signal_id, settings, planner, needs_position) -> AccountOutcome:
    from phantom_scraper.signals import PlanError

    outcome = AccountOutcome(target.id, target.name, "acked")
    started = time.perf_counter()
    try:
        net_pos, has_working = 0, False
        if needs_position(signal):
            net_pos = _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s)
            if net_pos == 0 and signal.action == "close":
                has_working = bool(_working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s))
        try:
            steps = planner(signal, contract, target, net_pos, has_working)
        except PlanError as exc:
            outcome.status = "skipped" if exc.code == "nothing_to_do" else "rejected"
            outcome.error = f"{exc.code}: {exc.message}" if hasattr(exc, "message") else str(exc)
            logger.info("Signal %s account %s: %s", signal_id, target.name, outcome.error)
            return outcome
        outcome.planned = [{"kind": s.kind, "body": s.body} for s in steps]
        if not steps:
            outcome.status = "skipped"
            outcome.error = "nothing to do"
            return outcome
        if signal.test:
            outcome.status = "validated"
            return outcome
        for index, step in enumerate(steps):
            if not _run_step(signal, contract, target, conn, journal, signal_id, settings, index, step, outcome):
                break
    except TradovateError as exc:
        outcome.status = "error"
        outcome.error = _describe(exc)
        logger.warning("Signal %s account %s failed: %s", signal_id, target.name, outcome.error)
    except Exception as exc:  # a bug must not take the other accounts down with it
        outcome.status = "error"
        outcome.error = _describe(exc)
        logger.exception("Signal %s account %s crashed", signal_id, target.name)
    if outcome.latency_ms is None:
        outcome.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return outcome


def _run_step(signal, contract, target, conn, journal, signal_id, settings, index, step, outcome) -> bool:
    """Execute one planned step; False stops the account's remaining steps."""
    from phantom_scraper.journal import make_cl_ord_id

    ti = conn.integration
    if step.kind == "wait_flat":
        deadline = time.monotonic() + settings.reconcile_window_s
        while True:
            if _net_position(conn, target.id, contract.id, settings.order_ack_timeout_s) == 0:
                return True
            if time.monotonic() >= deadline:
                outcome.status = "error"
                outcome.error = "position not flat in time after liquidation; the entry was not sent"
                logger.warning("Signal %s account %s: %s", signal_id, target.name, outcome.error)
                return False
            time.sleep(settings.reconcile_poll_interval_s / 5)
    if step.kind == "cancel_working":
        for order in _working_orders(conn, target.id, contract.id, settings.order_ack_timeout_s):
            ti.cancel_order_rest({"orderId": order["id"], "isAutomated": True})
            outcome.order_ids.append(order["id"])
        return True
    if step.kind not in _PLACEMENT_KINDS:
        raise ValueError(f"unknown step kind {step.kind!r}")

    cl_ord_id = make_cl_ord_id(signal_id, target.id, index)
    journal.create_intent(signal_id, target.id, target.name, index, step.kind, step.body, cl_ord_id)
    journal.set_intent_state(cl_ord_id, "sending")  # committed before the frame is written
    outcome.cl_ord_ids.append(cl_ord_id)
    client = conn.live_client() if settings.use_websocket_orders and ti.use_websocket_orders else None
    if client is None and settings.use_websocket_orders:
        conn.ensure_connecting()  # repaired in the background; this order goes over REST now
    try:
        result = ti.place_order_smart(dict(step.body), ws=client, endpoint=f"order/{step.kind}", cl_ord_id=cl_ord_id)
    except OrderRejectedError as exc:
        journal.set_intent_state(cl_ord_id, "rejected", error=_describe(exc))
        outcome.status, outcome.error = "rejected", f"{exc.failure_reason}: {exc.failure_text}".rstrip(": ")
        logger.info("Order %s account %s rejected: %s", cl_ord_id, target.name, outcome.error)
        return False
    except NotSentError as exc:
        journal.set_intent_state(cl_ord_id, "rejected", error="not sent: " + _describe(exc))
        outcome.status, outcome.error = "error", "not sent: " + _describe(exc)
        logger.warning("Order %s account %s not sent: %s", cl_ord_id, target.name, _describe(exc))
        return False
    except (OutcomeUnknownError, TradovateError) as exc:
        journal.set_intent_state(cl_ord_id, "unknown", error=_describe(exc))
        outcome.status, outcome.error = "unknown", _describe(exc)
        logger.error("Order %s account %s outcome UNKNOWN: %s", cl_ord_id, target.name, _describe(exc))
        return False
    if result.status != "acked":
        journal.set_intent_state(cl_ord_id, "rejected", error=f"{result.failure_reason}: {result.failure_text}")
        outcome.status, outcome.error = "rejected", f"{result.failure_reason}: {result.failure_text}"
        return False
    journal.set_intent_state(cl_ord_id, "acked", broker_order_id=result.order_id, transport=result.transport,
                             latency_ms=result.latency_ms, reconciled=bool(result.reconciled))
    conn.record_order(result.transport, result.latency_ms)
    outcome.order_ids.append(result.order_id)
    outcome.transport = result.transport
    outcome.latency_ms = result.latency_ms
    outcome.reconciled = outcome.reconciled or bool(result.reconciled)
    logger.info("Order signal=%s account=%s clOrdId=%s transport=%s latency_ms=%.1f outcome=acked orderId=%s",
                signal_id, target.name, cl_ord_id, result.transport, result.latency_ms or 0.0, result.order_id)
    return True


def reconcile_pending(journal, integration_for_account: Callable[[int], object]) -> List[dict]:
    """Start-up: settle intents left ``sending``/``unknown`` by looking them up by clOrdId.

    Found at the broker -> ``reconciled`` with its order id.  Not found -> ``rejected`` with the
    reason; it is NOT resent (a signal from before a restart is stale).
    """
    settled = []
    for intent in journal.pending_intents():
        cl_ord_id = intent["cl_ord_id"]
        ti = integration_for_account(intent["account_id"])
        if ti is None:
            logger.error("Cannot reconcile %s: account %s has no login", cl_ord_id, intent["account_id"])
            continue
        try:
            order_id = ti.find_order_id_by_cl_ord_id(cl_ord_id)
        except TradovateError as exc:
            logger.error("Cannot reconcile %s yet: %s", cl_ord_id, _describe(exc))
            continue
        if intent["state"] == "sending":
            journal.set_intent_state(cl_ord_id, "unknown", error="in flight at restart")
        if order_id is not None:
            journal.set_intent_state(cl_ord_id, "reconciled", broker_order_id=order_id, reconciled=True)
            logger.warning("Reconciled %s after restart: found at the broker as order %s", cl_ord_id, order_id)
        else:
            journal.set_intent_state(cl_ord_id, "rejected",
                                     error="not found at the broker after restart; not resent")
            logger.warning("Reconciled %s after restart: not at the broker; not resent", cl_ord_id)
        settled.append({"cl_ord_id": cl_ord_id, "order_id": order_id})
    return settled
