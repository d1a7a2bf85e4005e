"""The WebSocket connection pool and the keep-alive daemon (signal execution: ``phantom_scraper.execution.dispatch``).

The package never imports this module: ``ultra_simple_server.create_app()`` hands a
:class:`WebSocketPool` to the service (it implements ``phantom_scraper.tradovate.pool_api.ConnectionPool``).
The seed's documented names stay here: ``_WS_POOL``, ``_WS_POOL_LOCK``, ``get_pooled_connection``,
``start_websocket_keepalive_daemon`` and ``execute_trade_simple``.

Pool rules (docs/LESSONS.md §1–§5):

* ``_WS_POOL`` maps a sub-account id to its login's :class:`PooledConnection`.  Sub-accounts of one
  login share one authorized socket, so the project never opens more sockets than logins.
* ``_WS_POOL_LOCK`` guards the two dicts below and nothing else: no connect, send, close or wait
  ever happens while it is held (nor while a connection's own ``_lock`` is held).
* Each connection connects single-flight: concurrent callers share one attempt (a Future), waited on
  *outside* every lock, in the caller's thread; the connect itself runs in its own thread.  A hung
  connect on one login therefore never delays another login's orders.
* Connects are bounded (``_CONNECT_SLOTS``, two by default), a reconnect starts after a random
  stagger, and a failed connect is backed off exponentially with jitter (at least the broker's
  ``retry_after_s``).  An order never waits for a connect: with no live socket it goes over REST at
  once (the request provably never left the socket) while the connect runs in the background.
* A renewed token replaces the socket: the new one is authorized first, swapped in, and the old one
  closed only once its in-flight requests have been answered (bounded by a grace period).

Nothing here runs at import: the daemon starts with :func:`start_websocket_keepalive_daemon`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from typing import Callable, Dict, List, Optional

from phantom_scraper import events
from phantom_scraper.ops import fill_events
from phantom_scraper.execution import dispatch as execution
from phantom_scraper.tradovate import keepalive
from phantom_scraper.tradovate.broker_state import BrokerState
from phantom_scraper.errors import BrokerError, NotSentError, RateLimitedError, TradovateError
from phantom_scraper.execution.dispatch import describe as _describe

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The pool

_WS_POOL: Dict[int, "PooledConnection"] = {}  # sub-account id -> its login's shared connection
_LOGINS: Dict[tuple, "PooledConnection"] = {}  # (is_demo, login key) -> connection
_WS_POOL_LOCK = threading.Lock()  # serialises reads/writes of _WS_POOL and _LOGINS only

# Bounds concurrent connects across all logins (docs/LESSONS.md §2).  Replaced only by
# set_max_concurrent_connects() before traffic starts; a plain assignment, so no lock.
_CONNECT_SLOTS = threading.BoundedSemaphore(2)


def set_max_concurrent_connects(n: int) -> None:
    """Replace the connect bound (configuration; call before traffic starts)."""
    global _CONNECT_SLOTS
    _CONNECT_SLOTS = threading.BoundedSemaphore(max(1, int(n)))


def execute_trade_simple(signal, contract, targets, *, journal, signal_id: str, settings, **options):
    """Execute one validated signal on every targeted account, in parallel (the documented entry point).

    ``targets`` are ``(AccountTarget, PooledConnection)`` pairs; returns one ``AccountOutcome`` per
    target, in order.  The work is :func:`phantom_scraper.execution.dispatch.execute_trade_simple`.
    """
    return execution.execute_trade_simple(signal, contract, targets, journal=journal, signal_id=signal_id,
                                          settings=settings, **options)


class PoolError(TradovateError):
    """The pool cannot provide a connection (unknown sub-account, closed, or backing off)."""


def backoff_delay_s(failures: int, initial_s: float, max_s: float, rng: Callable[[], float] = random.random) -> float:
    """Capped exponential back-off with jitter: ``initial * 2**(failures-1)`` times 0.5–1.5, <= ``max_s``."""
    base = min(max_s, initial_s * (2 ** max(0, failures - 1)))
    return min(max_s, base * (0.5 + rng()))


class PooledConnection:
    """One login's authorized WebSocket, shared by all of its sub-accounts.

    ``integration`` is that login's :class:`TradovateIntegration`; it owns the token.
    ``on_dropped`` is called (in the socket's thread) when the current socket closes.
    """

    def __init__(self, integration, *, is_demo: bool, login_key: str,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0,
                 connect_timeout_s: float = 15.0, reconnect_jitter_s: float = 1.0,
                 retire_grace_s: float = 10.0, on_dropped: Optional[Callable[[], None]] = None,
                 state_keep_s: Optional[float] = None):
        self.integration = integration
        self.on_dropped = on_dropped
        self.is_demo = is_demo
        self.login_key = login_key
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_jitter_s = reconnect_jitter_s  # a reconnect waits uniform(0, this) first
        self.retire_grace_s = retire_grace_s  # longest wait for a replaced socket's requests
        self._closed_event = threading.Event()  # set by close(): ends a reconnect or warm-up stagger, a retire wait
        self.subaccount_ids: set = set()  # read and written under _WS_POOL_LOCK (register_login)
        self._lock = threading.Lock()  # serialises reads/writes of every attribute below; no I/O under it
        self._client = None
        self._client_token: Optional[str] = None
        self._connecting: Optional[concurrent.futures.Future] = None
        self._failures = 0
        self._next_attempt_at = 0.0
        self._closed = False
        self.connected_since: Optional[float] = None
        self.reconnect_count = 0
        self.connect_count = 0
        self.orders_websocket = 0
        self.orders_rest = 0
        self.last_order_latency_ms: Optional[float] = None
        self.last_error: Optional[str] = None
        self.last_stagger_s: Optional[float] = None
        self.on_reconnected: Optional[Callable[["PooledConnection"], None]] = None
        # Positions/orders/fills of this login, fed by each new socket's user/syncrequest stream.
        self.broker_state = BrokerState(f"broker-state {login_key}", keep_s=state_keep_s)
        self.broker_state.add_listener(fill_events.listener(self.broker_state), entity_types=("fill", "sync"))  # -> events, the fill ledger
        integration.add_token_listener(self._on_token_renewed)

    # -- reading state (never blocks on I/O) ---------------------------------------------------
    def live_client(self):
        """The open client, or None."""
        with self._lock:
            client = self._client
        return client if client is not None and client.is_open else None

    @property
    def connecting(self) -> bool:
        with self._lock:
            return self._connecting is not None

    @property
    def closed(self) -> bool:
        return self._closed_event.is_set()

    def wait_closed(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` (no lock held); True as soon as the connection is closed."""
        return self._closed_event.wait(timeout_s)

    def backoff_remaining_s(self) -> float:
        with self._lock:
            return max(0.0, self._next_attempt_at - time.monotonic())

    def token_is_stale(self) -> bool:
        """The live socket was authorized with a token the login has since replaced."""
        with self._lock:
            token = self._client_token
        return token is not None and token != self.integration.access_token

    # -- connecting ----------------------------------------------------------------------------
    def ensure_connecting(self, *, ignore_backoff: bool = False, reason: str = "") -> concurrent.futures.Future:
        """Start a connect unless one is running (single-flight); return its Future.  Never blocks.

        ``reason`` is ``"reconnect"`` (staggered by up to ``reconnect_jitter_s``), ``"token"`` (a
        replacement for a renewed token) or empty (a first connect or an order found no socket).
        """
        start = False
        with self._lock:
            fut = self._connecting
            if fut is None:
                fut = concurrent.futures.Future()
                client = self._client
                wait_s = self._next_attempt_at - time.monotonic()
                if self._closed:
                    fut.set_exception(PoolError(f"connection {self.login_key} is closed"))
                elif client is not None and client.is_open and self._client_token == self.integration.access_token:
                    fut.set_result(client)
                elif wait_s > 0 and not ignore_backoff:
                    fut.set_exception(PoolError(f"connect for {self.login_key} backing off {wait_s:.1f}s"))
                else:
                    self._connecting, start = fut, True
        if start:  # only the caller that created the attempt starts its thread
            stagger_s = random.uniform(0, self.reconnect_jitter_s) if reason == "reconnect" else 0.0
            threading.Thread(target=self._connect, args=(fut, stagger_s), daemon=True,
                             name=f"ws-connect-{self.login_key}").start()
        return fut

    def connect_blocking(self, timeout_s: Optional[float] = None):
        """Connect (or join the running connect) and wait for it, outside every lock."""
        fut = self.ensure_connecting()
        try:
            return fut.result(timeout=timeout_s if timeout_s is not None else self.connect_timeout_s + 5)
        except concurrent.futures.TimeoutError as exc:
            raise PoolError(f"connect for {self.login_key} still running after {timeout_s}s") from exc

    def _connect(self, fut: concurrent.futures.Future, stagger_s: float) -> None:
        """The connect thread: stagger, take a slot, authorize, swap in, resolve the Future."""
        client, token, error = None, None, None
        with self._lock:
            self.last_stagger_s = stagger_s
        try:
            if stagger_s > 0 and self._closed_event.wait(stagger_s):
                raise PoolError(f"connection {self.login_key} closed before reconnecting")
            with _CONNECT_SLOTS:  # waits for a slot in this thread only, holding no lock
                token = self.integration.ensure_token()
                client = self.integration.open_websocket()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter through the Future
            error = exc
        if error is None:  # synced before it serves orders, so position reads can trust it at once
            self._sync_broker_state(client)
        old = None
        with self._lock:
            self._connecting = None
            if error is None and self._closed:
                error = PoolError(f"connection {self.login_key} closed while connecting")
            if error is None:
                old, self._client, self._client_token = self._client, client, token
                reconnect = self.connect_count > 0
                self.connect_count += 1
                self.reconnect_count += int(reconnect)
                self.connected_since = time.time()
                self._failures, self._next_attempt_at, self.last_error = 0, 0.0, None
            else:
                self._failures += 1
                delay = backoff_delay_s(self._failures, self.backoff_initial_s, self.backoff_max_s)
                delay = max(delay, getattr(error, "retry_after_s", None) or 0.0)  # honour 429/p-time
                self._next_attempt_at = time.monotonic() + delay
                self.last_error = _describe(error)
        if error is not None:
            if client is not None:
                client.close()
            logger.warning("WebSocket connect failed for %s: %s", self.login_key, _describe(error))
            events.emit("socket_down", login=self.login_key, reason=self.last_error)
            fut.set_exception(error)
            return
        client.add_close_listener(self._on_client_closed)
        if old is not None:
            _close_when_idle(old, self.retire_grace_s, self._closed_event)
        if reconnect:
            logger.info("WebSocket reconnected for %s (reconnect #%d)", self.login_key, self.reconnect_count)
        else:
            logger.info("WebSocket connected for %s", self.login_key)
        fut.set_result(client)
        events.emit("socket_up", login=self.login_key, reconnect=reconnect)
        callback = self.on_reconnected
        if reconnect and callback is not None:
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - a hook must not break the pool
                logger.exception("on_reconnected hook failed for %s", self.login_key)
        if token != self.integration.access_token:  # renewed while connecting: replace again
            self.ensure_connecting(ignore_backoff=True, reason="token")

    def _sync_broker_state(self, client) -> None:
        """Subscribe the login's broker state to the new socket (connect thread, no lock held)."""
        settings = getattr(self.integration, "settings", None)
        try:
            with _WS_POOL_LOCK:  # register_login adds sub-accounts under it
                account_ids = set(self.subaccount_ids)
            self.broker_state.attach(client, account_ids=account_ids,
                                     user_id=getattr(self.integration, "user_id", None),
                                     timeout_s=getattr(settings, "rest_timeout_s", 10.0))
        except Exception as exc:  # noqa: BLE001 - positions then come from REST; never break the pool
            self.broker_state.mark_stale(f"sync failed: {_describe(exc)}")
            logger.warning("Broker-state sync failed for %s: %s", self.login_key, _describe(exc))

    def _on_client_closed(self, client) -> None:
        """Close listener (socket thread): wake the daemon if the current socket died."""
        with self._lock:
            current = client is self._client and not self._closed
        if current:
            logger.warning("WebSocket closed for %s (%s); the keep-alive daemon will reconnect",
                           self.login_key, client.close_reason)
            events.emit("socket_down", login=self.login_key, reason=client.close_reason)
            if self.on_dropped is not None:
                self.on_dropped()

    def _on_token_renewed(self, _new_token: str) -> None:
        """Token listener: authorize a replacement socket in the background, then swap."""
        events.emit("token_renewed", login=self.login_key)
        if self.closed:
            return
        with self._lock:
            had_socket = self._client is not None
        if had_socket:
            logger.info("Token renewed for %s; replacing its WebSocket", self.login_key)
            self.ensure_connecting(ignore_backoff=True, reason="token")

    # -- orders and health ---------------------------------------------------------------------
    def record_order(self, transport: str, latency_ms: Optional[float]) -> None:
        with self._lock:
            if transport == "websocket":
                self.orders_websocket += 1
            elif transport == "rest":
                self.orders_rest += 1
            if latency_ms is not None:
                self.last_order_latency_ms = latency_ms

    def check(self, timeout_s: float = 5.0) -> bool:
        """A cheap request over the socket (not just a ping).  Health checks never create unknown
        order outcomes: an answer of any kind (429, a penalty, an error status) proves the socket
        alive; only a probe that times out or dies replaces the socket, and then only once its
        pending requests (orders in flight) are answered or timed out."""
        client = self.live_client()
        if client is None:
            return False
        try:
            client.request("account/list", timeout=timeout_s)
            return True
        except (RateLimitedError, BrokerError) as exc:  # answered: the socket works
            logger.info("Health check for %s answered %s; socket kept", self.login_key, _describe(exc))
            return True
        except NotSentError as exc:  # not open any more: the close listener already woke the daemon
            logger.warning("Health check failed for %s: %s", self.login_key, _describe(exc))
            return False
        except TradovateError as exc:  # no answer in time, or lost while waiting
            logger.warning("Health check failed for %s: %s", self.login_key, _describe(exc))
            if client.pending_count():  # new orders stop using it now; its orders in flight may finish
                with self._lock:
                    if self._client is client:
                        self._client = None
                _close_when_idle(client, self.retire_grace_s, self._closed_event, "health check failed")
            else:
                client.close("health check failed")
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
        info["pending_requests"] = stats.get("pending_requests", 0)
        info["broker_state"] = self.broker_state.status()
        now = time.time()
        # Before the first heartbeat the clock starts at connect (heartbeats start after authorize).
        last_hb = stats.get("last_heartbeat_sent_at") or (info["connected_since"] if info["ws_connected"] else None)
        info["seconds_since_heartbeat"] = round(max(0.0, now - last_hb), 3) if last_hb else None
        info["connected_since_utc"] = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["connected_since"]))
                                       if info["connected_since"] else None)
        last_frame = stats.get("last_server_frame_at")
        info["seconds_since_server_frame"] = round(now - last_frame, 3) if last_frame else None
        expires = self.integration.token_expires_at
        info["token_expires_in_s"] = round(expires - now, 1) if expires else None
        return info

    def close(self) -> None:
        """Idempotent.  A connect still running closes its socket when it finishes."""
        self._closed_event.set()
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _close_when_idle(client, grace_s: float, stop: threading.Event,
                     reason: str = "replaced by a socket with a renewed token") -> None:
    """Close a client once its in-flight requests are answered or timed out (or after ``grace_s``,
    or at once when ``stop`` is set: the connection itself is closing): closing it earlier would
    turn their outcome into 'unknown'."""

    def run() -> None:
        deadline = time.monotonic() + grace_s
        while client.is_open and client.pending_count() and time.monotonic() < deadline:
            if stop.wait(0.02):
                break
        client.close(reason)

    threading.Thread(target=run, daemon=True, name="ws-retire").start()


def register_login(integration, subaccount_ids, *, is_demo: bool, login_key: Optional[str] = None,
                   settings=None) -> PooledConnection:
    """Map ``subaccount_ids`` to the login's shared connection (created if new).  No I/O."""
    key = login_key or str(id(integration))
    kwargs = {}
    if settings is not None:
        kwargs = dict(backoff_initial_s=settings.reconnect_backoff_initial_s,
                      backoff_max_s=settings.reconnect_backoff_max_s,
                      connect_timeout_s=settings.ws_connect_timeout_s,
                      reconnect_jitter_s=min(1.0, settings.reconnect_backoff_initial_s),
                      retire_grace_s=settings.order_ack_timeout_s + settings.reconcile_window_s,
                      state_keep_s=settings.broker_state_keep_s)
    with _WS_POOL_LOCK:
        existing = _LOGINS.get((is_demo, key))
    fresh = None
    if existing is None or existing.integration is not integration:
        fresh = PooledConnection(integration, is_demo=is_demo, login_key=key, on_dropped=_wake_daemon, **kwargs)
    with _WS_POOL_LOCK:
        replaced = None
        conn = _LOGINS.get((is_demo, key))
        if fresh is not None and (conn is None or conn.integration is not integration):
            replaced, conn = conn, fresh
            _LOGINS[(is_demo, key)] = conn
            if replaced is not None:  # the old login's sub-accounts now belong to the new one
                for sub_id in replaced.subaccount_ids:
                    _WS_POOL[sub_id] = conn
                conn.subaccount_ids |= replaced.subaccount_ids
        for sub_id in subaccount_ids:
            _WS_POOL[int(sub_id)] = conn
            conn.subaccount_ids.add(int(sub_id))
    if fresh is not None and fresh is not conn:
        fresh.close()  # lost a race with another register_login: drop it (and its token listener's effect)
    if replaced is not None:
        replaced.close()  # outside the lock
    return conn


def _lookup(subaccount_id: int, is_demo: bool, access_token: Optional[str]) -> PooledConnection:
    with _WS_POOL_LOCK:
        conn = _WS_POOL.get(int(subaccount_id))
        candidates = list(_LOGINS.values()) if conn is None and access_token else []
    for candidate in candidates:  # a caller that only knows the token: the login holding it
        if candidate.is_demo == is_demo and candidate.integration.access_token == access_token:
            return candidate
    if conn is None:
        raise PoolError(f"sub-account {subaccount_id} is not registered with the pool")
    return conn


def get_pooled_connection_sync(subaccount_id: int, is_demo: bool, access_token: Optional[str] = None,
                               *, timeout_s: Optional[float] = None):
    """The live client for ``subaccount_id``, connecting (single-flight) if needed.

    Raises :class:`PoolError` (unknown sub-account, closed, backing off after a failed connect,
    or still connecting after ``timeout_s``) or the connect's own error.
    """
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
    per_login = {id(c): c.status() for c in logins_snapshot()}
    connections = {str(sub_id): dict(per_login.get(id(conn)) or conn.status())
                   for sub_id, conn in sorted(pool_snapshot().items())}
    return {"size": len(connections), "sockets": len(per_login), "connections": connections}


def warm_up(stagger_s: float = 0.25) -> None:
    """Start every login's connect in the background, staggered (no burst of connects)."""
    for i, conn in enumerate(logins_snapshot()):
        if i and stagger_s and conn.wait_closed(random.uniform(0, stagger_s)):
            continue  # closed while waiting (the pool is being reset): nothing to warm
        conn.ensure_connecting(ignore_backoff=True)


def reset_pool() -> None:
    """Close and forget every connection (shutdown and tests)."""
    with _WS_POOL_LOCK:
        conns = list(_LOGINS.values())
        _LOGINS.clear()
        _WS_POOL.clear()
    for conn in conns:  # closed outside the lock
        conn.close()


# ---------------------------------------------------------------------------------------------
# The keep-alive daemon

class KeepAliveDaemon(keepalive.KeepAliveDaemon):
    """The pool's daemon: tends every login in ``_WS_POOL`` (see ``phantom_scraper.tradovate.keepalive``)."""

    def __init__(self, interval_s: float = 30.0, check_timeout_s: float = 5.0):
        super().__init__(interval_s, check_timeout_s, connections=logins_snapshot, log=logger)


_DAEMON: Optional[KeepAliveDaemon] = None
_DAEMON_LOCK = threading.Lock()  # serialises start/stop of the single daemon (thread start only, no joins)


def start_websocket_keepalive_daemon(interval_s: Optional[float] = None, *,
                                     check_timeout_s: float = 5.0) -> KeepAliveDaemon:
    """Start the one keep-alive daemon (idempotent: a running daemon is returned as is)."""
    global _DAEMON
    with _DAEMON_LOCK:
        if _DAEMON is None or not _DAEMON.alive:
            _DAEMON = KeepAliveDaemon(interval_s if interval_s is not None else 30.0, check_timeout_s)
            _DAEMON.start()
        return _DAEMON


def stop_websocket_keepalive_daemon(timeout_s: float = 10.0) -> None:
    """Stop and join the daemon (idempotent); the join happens outside the lock."""
    global _DAEMON
    with _DAEMON_LOCK:
        daemon, _DAEMON = _DAEMON, None
    if daemon is not None:
        daemon.stop(timeout_s)


def keepalive_daemon() -> Optional[KeepAliveDaemon]:
    return _DAEMON


def _wake_daemon() -> None:
    """A connection's socket dropped: the daemon (if any) runs a cycle now."""
    daemon = _DAEMON
    if daemon is not None:
        daemon.wake()


# ---------------------------------------------------------------------------------------------
# The pool as the service sees it

class WebSocketPool:
    """This module's pool behind ``phantom_scraper.tradovate.pool_api.ConnectionPool`` (what create_app hands
    to TradingService).  It holds no state: the pool is the module's ``_WS_POOL``."""

    def configure(self, settings) -> None:
        set_max_concurrent_connects(settings.max_concurrent_connects)

    def register_login(self, integration, subaccount_ids, *, is_demo: bool, login_key: str,
                       settings) -> PooledConnection:
        return register_login(integration, subaccount_ids, is_demo=is_demo, login_key=login_key, settings=settings)

    def warm_up(self) -> None:
        warm_up()

    def start_daemon(self, interval_s: float, settle_hook: Callable[[], None]) -> None:
        start_websocket_keepalive_daemon(interval_s).cycle_hooks.append(settle_hook)

    def stop_daemon(self) -> None:
        stop_websocket_keepalive_daemon()

    def reset(self) -> None:
        reset_pool()

    def status(self) -> dict:
        return pool_status()

    def daemon_status(self) -> dict:
        daemon = _DAEMON
        return daemon.status() if daemon is not None else {"running": False}

    def has_live_socket(self) -> bool:
        return any(c.live_client() is not None for c in logins_snapshot())
