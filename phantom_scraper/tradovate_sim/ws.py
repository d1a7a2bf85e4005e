"""WebSocket transport: Tradovate's SockJS-style framing over a websockets 12 asyncio server.

Runs in its own thread and event loop.  Frames: ``o`` on open, ``h`` when idle, ``a[...]`` for
responses and events (several may share one frame).  Client requests ``endpoint\\nid\\nquery\\nbody``
go through the shared handler table (:class:`.handlers.Api`), one task per request, so response
latency is injected with ``asyncio.sleep`` without blocking other requests.
All session state below is touched only on the loop thread (no lock needed); other threads reach
it through ``call_soon_threadsafe`` / ``run_coroutine_threadsafe``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from http import HTTPStatus
from typing import Dict, List, Optional, Set
from urllib.parse import urlsplit

import websockets.exceptions
import websockets.server

from .faults import ORDER_ENDPOINTS
from .handlers import Api, Request, dumps, normalise_endpoint

log = logging.getLogger(__name__)

WS_PATH = "/v1/websocket"


class _Session:
    """One client socket."""

    def __init__(self, ws, now: float):
        self.ws = ws
        self.opened = now
        self.last_client = now  # last client text frame ([] included)
        self.last_sent = now  # last server frame of any kind
        self.user_id: Optional[int] = None
        self.token: Optional[str] = None
        self.accounts: Set[int] = set()
        self.types: Set[str] = set()
        self.outbox: List[dict] = []
        self.flush_scheduled = False
        self.sync_pending = False  # events are held until the snapshot response is out
        self.tasks: Set[asyncio.Task] = set()
        self.dropped = False
        self.order_ready_at = 0.0  # loop time the last delayed order request executes (order_delay_ms)

    def subscribe(self, accounts: Set[int], types: Set[str]) -> None:
        """Called by the user/syncrequest handler (on the loop thread)."""
        self.accounts, self.types = set(accounts), set(types)
        self.sync_pending = True


class WsServer:
    def __init__(self, api: Api, host: str, port: int):
        self.api = api
        self.config = api.config
        self.host = host
        self.port = port
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server = None
        self._watchdog: Optional[asyncio.Task] = None
        self._error: Optional[BaseException] = None
        self._sessions: Set[_Session] = set()
        self._by_user: Dict[int, List[_Session]] = {}  # authorized sessions, oldest first
        self._subs: Dict[int, Set[_Session]] = {}  # account id -> subscribed sessions

    # ---- lifecycle (any thread) -------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="tradovate-sim-ws",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"WebSocket server failed to start: {self._error}") from self._error

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop_async(), loop).result(timeout=10)
        except Exception:
            log.exception("WebSocket server did not stop cleanly")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(websockets.server.serve(
                self._handle, self.host, self.port, process_request=self._process_request,
                ping_interval=None, compression=None, close_timeout=1,
                max_size=self.config.ws_max_message_bytes))
            self.port = self._server.sockets[0].getsockname()[1]
            self._watchdog = loop.create_task(self._watch())
            self._loop = loop
        except BaseException as exc:  # reported to start()
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _stop_async(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        sockets = [s.ws for s in self._sessions]
        await self._shutdown_all("Maintenance", "Simulator stopping")
        if sockets:  # a short grace for the closing handshake, then drop what is left
            await asyncio.wait([asyncio.ensure_future(ws.wait_closed()) for ws in sockets], timeout=0.3)
            for ws in sockets:
                if not ws.closed:
                    ws.transport.abort()
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 3)
        except asyncio.TimeoutError:
            log.warning("WebSocket handlers still running at stop")
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:  # e.g. requests sleeping out an injected latency
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    # ---- cross-thread entry points --------------------------------------------------------------
    def publish(self, events) -> None:
        """Exchange listener: deliver events on the loop (any thread)."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._dispatch, events)
            except RuntimeError:  # loop closed while stopping
                pass

    def _call(self, coro_fn, *args, timeout: float = 10.0):
        loop = self._loop
        if loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), loop).result(timeout=timeout)

    def close_all(self) -> int:
        return self._call(self._close_all_async)

    def send_shutdown(self, reason_code: str = "Maintenance", reason: str = "") -> int:
        return self._call(self._shutdown_all, reason_code, reason)

    def session_count(self) -> int:
        return len(self._sessions)

    async def _close_all_async(self) -> int:
        sessions = list(self._sessions)
        for s in sessions:
            self._drop(s, "close_all_sockets", mode="abort")
        return len(sessions)

    async def _shutdown_all(self, reason_code: str, reason: str) -> int:
        sessions = list(self._sessions)
        await asyncio.gather(*(self._shutdown(s, reason_code, reason) for s in sessions),
                             return_exceptions=True)
        return len(sessions)

    # ---- connection handling (loop thread) ----------------------------------------------------------
    async def _process_request(self, path: str, headers):
        faults = self.api.faults
        if faults.connect_latency_ms:
            await asyncio.sleep(faults.connect_latency_ms / 1000.0)  # TCP + TLS set-up
        if urlsplit(path).path.rstrip("/").lower() != WS_PATH:
            return HTTPStatus.NOT_FOUND, [], b"Not found\n"
        if faults.refuse_ws_connects:
            return HTTPStatus.SERVICE_UNAVAILABLE, [], b"Service unavailable\n"
        return None

    async def _handle(self, ws) -> None:
        loop = asyncio.get_running_loop()
        s = _Session(ws, loop.time())
        self._sessions.add(s)
        try:
            await self._send(s, "o")
            async for message in ws:
                if not isinstance(message, str):
                    continue  # only text frames count as client activity
                s.last_client = loop.time()
                if message.strip() == "[]":
                    continue
                await self._on_frame(s, message)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self._forget(s)

    async def _on_frame(self, s: _Session, message: str) -> None:
        parts = (message.split("\n", 3) + ["", "", ""])[:4]
        endpoint = parts[0].strip()
        try:
            req_id = int(parts[1].strip())
        except ValueError:
            log.debug("ignoring malformed frame %r", message[:80])
            return
        if endpoint.lower() == "authorize":
            await self._authorize(s, req_id, parts[3])
        elif s.user_id is None:
            await self._send(s, "a" + dumps([{"s": 401, "i": req_id, "d": "Access is denied"}]))
        else:
            task = asyncio.get_running_loop().create_task(
                self._request(s, req_id, endpoint, parts[2], parts[3]))
            s.tasks.add(task)
            task.add_done_callback(s.tasks.discard)

    async def _authorize(self, s: _Session, req_id: int, body: str) -> None:
        token = body.strip()
        if self.config.accept_quoted_token and token.startswith('"'):
            try:
                token = str(json.loads(token))
            except ValueError:
                pass
        user_id = self._token_user(token)
        if user_id is None:
            reply = {"s": 401, "i": req_id, "d": "Invalid access token"}
        else:
            reply = {"s": 200, "i": req_id}
            if s.user_id is None:
                s.user_id, s.token = user_id, token
                self._register(s)
        await self._answer(s, reply)

    def _token_user(self, token: str) -> Optional[int]:
        """The user an ``authorize`` token stands for (access and md tokens alike), else None."""
        return self.api.exchange.token_user(token, md_ok=True)

    def _register(self, s: _Session) -> None:
        sessions = self._by_user.setdefault(s.user_id, [])
        sessions.append(s)
        while len(sessions) > self.config.max_ws_per_user:
            oldest = sessions.pop(0)
            log.info("connection quota reached for user %s: closing the oldest socket", s.user_id)
            self.api.exchange.revoke_token(oldest.token)
            asyncio.get_running_loop().create_task(
                self._shutdown(oldest, "ConnectionQuotaReached", "Too many connections"))

    async def _request(self, s: _Session, req_id: int, endpoint: str, query: str, body: str) -> None:
        if s.dropped and self.api.faults.close_drops_unread:
            return  # the connection is gone: frames behind the one that closed it are never read
        if normalise_endpoint(endpoint) in ORDER_ENDPOINTS and self.api.faults.take("hold_next_orders"):
            # a broker executing late: the frame is executed after the hold even if the socket is gone.
            # The hold is read as it runs: lowering hold_orders_ms (to 0) releases held frames early.
            loop = asyncio.get_running_loop()
            held_since = loop.time()
            while loop.time() - held_since < self.api.faults.hold_orders_ms / 1000.0:
                await asyncio.sleep(min(0.02, max(0.0, self.api.faults.hold_orders_ms / 1000.0
                                                  - (loop.time() - held_since))))
        delay_ms = self.api.faults.order_delay(normalise_endpoint(endpoint))
        if delay_ms:  # transit to the exchange; one socket's orders still execute in sending order
            loop = asyncio.get_running_loop()
            s.order_ready_at = max(s.order_ready_at + 1e-4, loop.time() + delay_ms / 1000.0)
            await asyncio.sleep(max(0.0, s.order_ready_at - loop.time()))
        req = Request("websocket", endpoint, query, body, token=s.token, user_id=s.user_id, session=s)
        reply = self.api.dispatch(req)
        is_sync = normalise_endpoint(endpoint) == "user/syncrequest" and s.sync_pending
        if reply.action == "close":
            self._drop(s, "close_after_next_orders", mode="abort")
            return
        if reply.action == "drop":
            self._release_sync(s, None)
            return
        message = {"s": reply.status, "i": req_id}
        if reply.status >= 400 and reply.status != 429:
            message["d"] = reply.body if isinstance(reply.body, str) else dumps(reply.body)
        elif reply.status < 400:
            message["d"] = reply.body
        latency_ms = self.api.faults.response_latency()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000.0)
        if is_sync:
            self._release_sync(s, message)
        else:
            await self._send(s, "a" + dumps([message]))

    async def _answer(self, s: _Session, message: dict) -> None:
        """Answer authorize (latency and black-hole apply as to any response)."""
        if self.api.faults.take("blackhole_next_responses"):
            return
        latency_ms = self.api.faults.response_latency()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000.0)
        await self._send(s, "a" + dumps([message]))

    # ---- events ---------------------------------------------------------------------------------
    def _dispatch(self, events) -> None:
        touched = set()
        for account_id, etype, event_type, entity in events:
            for s in self._subs.get(account_id, ()):
                if etype in s.types:
                    s.outbox.append({"e": "props", "d": {"entityType": etype, "eventType": event_type,
                                                         "entity": entity}})
                    touched.add(s)
        for s in touched:
            self._schedule_flush(s)

    def _release_sync(self, s: _Session, response: Optional[dict]) -> None:
        if response is not None:
            s.outbox.insert(0, response)
        s.sync_pending = False
        for account_id in s.accounts:
            self._subs.setdefault(account_id, set()).add(s)
        self._schedule_flush(s)

    def _schedule_flush(self, s: _Session) -> None:
        if s.outbox and not s.flush_scheduled and not s.sync_pending and not s.dropped:
            s.flush_scheduled = True
            asyncio.get_running_loop().create_task(self._flush(s))

    async def _flush(self, s: _Session) -> None:
        delay_ms = float(self.api.faults.props_delay_ms)  # (fault: events trailing the answers)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)
        s.flush_scheduled = False
        messages, s.outbox = s.outbox, []
        if messages:
            await self._send(s, "a" + dumps(messages))

    # ---- sending and closing ------------------------------------------------------------------------
    async def _send(self, s: _Session, text: str) -> None:
        if s.dropped:
            return
        s.last_sent = asyncio.get_running_loop().time()
        try:
            await s.ws.send(text)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def _shutdown(self, s: _Session, reason_code: str, reason: str) -> None:
        """A deliberate close: ``shutdown`` event, then a normal close."""
        event = {"e": "shutdown", "d": {"reasonCode": reason_code}}
        if reason:
            event["d"]["reason"] = reason
        pending, s.outbox = s.outbox, []
        await self._send(s, "a" + dumps(pending + [event]))
        self._drop(s, reason_code, mode="close")

    def _drop(self, s: _Session, why: str, mode: Optional[str] = None) -> None:
        """Close a socket now: ``abort`` drops TCP (client sees 1006), ``close`` sends a close frame."""
        if s.dropped:
            return
        s.dropped = True
        log.debug("closing socket (%s)", why)
        self._forget(s)
        if (mode or self.config.drop_mode) == "abort":
            s.ws.transport.abort()
        else:
            asyncio.get_running_loop().create_task(s.ws.close(1000, why[:100]))

    def _forget(self, s: _Session) -> None:
        self._sessions.discard(s)
        if s.user_id is not None and s in self._by_user.get(s.user_id, ()):
            self._by_user[s.user_id].remove(s)
        for account_id in s.accounts:
            self._subs.get(account_id, set()).discard(s)

    async def _watch(self) -> None:
        """Authorize timeout, idle timeout, token expiry and server heartbeats for every socket."""
        cfg = self.config
        tick = max(0.01, min(0.25, cfg.authorize_timeout_s / 5, cfg.ws_idle_timeout_s / 5,
                             cfg.server_heartbeat_interval_s / 5))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for s in list(self._sessions):
                try:
                    if s.user_id is None and now - s.opened > cfg.authorize_timeout_s:
                        self._drop(s, "not authorized in time")
                    elif now - s.last_client > cfg.ws_idle_timeout_s:
                        self._drop(s, "no client frame within the idle timeout")
                    elif (s.user_id is not None and cfg.close_ws_on_token_expiry
                          and self.api.exchange.token_user(s.token, md_ok=True) is None):
                        self._drop(s, "token expired or revoked")
                    elif now - s.last_sent >= cfg.server_heartbeat_interval_s:
                        s.last_sent = now
                        loop.create_task(self._send(s, "h"))
                except Exception:  # one broken socket must not stop the watchdog
                    log.exception("watchdog failed for a socket")
