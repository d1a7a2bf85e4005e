"""One authorized Tradovate WebSocket, running in its own thread with its own asyncio loop.

Lifecycle (``ConnState``)::

    CONNECTING --connect(): 'o', authorize s=200--> OPEN --close()/loss/shutdown/401--> CLOSING --> CLOSED

The thread lives exactly as long as the connection: when the socket closes for any reason, every
pending request fails at once with ``OutcomeUnknownError``, the close listeners run once, the loop
stops and the thread ends.  A client object is used for one connection; reconnecting means
building a new one (the pool's job).

Error classification of ``request()`` (see ``errors.py``):

* ``NotSentError``: the frame was never written (not open, loop gone, socket already closing).
* ``OutcomeUnknownError``: the frame was written, then a timeout or the socket was lost.
* ``BrokerError`` (status = ``s``) for ``s >= 400``; ``TooManyRequestsError`` for ``s = 429``;
  ``PenaltyError`` for a ``p-ticket`` body (not executed: wait ``p-time`` and resend with it).

``outcome.classify_error`` maps these onto an order attempt's outcome (``not_sent`` / ``rejected``
/ ``unknown``); nothing else interprets them.

With websockets 12 (legacy protocol), ``send()`` on an OPEN protocol reaches ``transport.write``
without a suspension point, so once our own OPEN check has passed the frame counts as written.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import websockets
from websockets.protocol import State as _ProtoState

from phantom_scraper.errors import (
    AuthError,
    BrokerError,
    ConnectionLostError,
    NotSentError,
    OutcomeUnknownError,
    TooManyRequestsError,
    TradovateError,
)
from phantom_scraper.redact import redact
from phantom_scraper.tradovate.ws_requests import ConnState, RequestBatch, _Pending
from phantom_scraper.tradovate.wire import as_int, decode_d, encode_body, encode_frame, parse_messages, penalty_from

logger = logging.getLogger(__name__)


class TradovateWebSocket:
    """One authorized socket.  Public methods are safe from any thread."""

    def __init__(
        self,
        url: str,
        access_token: str,
        *,
        name: str = "tradovate",
        heartbeat_interval_s: float = 2.5,
        connect_timeout_s: float = 10.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        idle_probe_after_s: float = 5.0,
        probe_timeout_s: float = 3.0,
        close_timeout_s: float = 2.0,
    ):
        self.url = url
        self.name = name
        self._token = access_token
        self._heartbeat_interval_s = heartbeat_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._max_message_bytes = max_message_bytes
        self._idle_probe_after_s = idle_probe_after_s
        self._probe_timeout_s = probe_timeout_s
        self._close_timeout_s = close_timeout_s

        # Everything below is written only by the loop thread (or before it starts / after it
        # ends); other threads read single attributes, which is atomic under the GIL.
        self._state = ConnState.CONNECTING
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._ws: Any = None  # websockets legacy client protocol
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Pending] = {}
        self._tasks: List["asyncio.Task[Any]"] = []
        self._closing_task: Optional["asyncio.Task[Any]"] = None
        self._listeners: List[Callable[[dict], None]] = []
        self._close_listeners: List[Callable[["TradovateWebSocket"], None]] = []
        self._close_reason: Optional[str] = None
        self._connect_called = False
        self._last_frame_mono = 0.0
        self.budget: Any = None  # the login's RequestBudget (tradovate/budget.py), counted per frame
        self._stats: Dict[str, Any] = {
            "connected_since": None,
            "last_heartbeat_sent_at": None,
            "last_server_frame_at": None,
            "requests_sent": 0,
            "orders_sent": 0,
            "last_order_latency_ms": None,
        }

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is ConnState.OPEN

    @property
    def close_reason(self) -> Optional[str]:
        return self._close_reason

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """``fn(event)`` for every event message (props, shutdown, ...), in the socket thread."""
        self._listeners = self._listeners + [fn]  # copy-on-write: the reader iterates a snapshot

    def add_close_listener(self, fn: Callable[["TradovateWebSocket"], None]) -> None:
        """``fn(ws)`` once when the socket closes, whatever the reason (in the socket thread)."""
        self._close_listeners = self._close_listeners + [fn]

    def connect(self) -> "TradovateWebSocket":
        """Open, wait for 'o', authorize.  Raises AuthError or NotSentError; cleans up on failure."""
        if self._connect_called:
            raise RuntimeError("a TradovateWebSocket connects once; build a new one to reconnect")
        self._connect_called = True
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"tradovate-ws-{self.name}", daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            fut.result(timeout=self._connect_timeout_s + 1.0)
        except BaseException as exc:  # noqa: BLE001 - translated below, always cleaned up
            fut.cancel()
            self._abandon_connect()
            if isinstance(exc, TradovateError):
                raise
            raise NotSentError(f"{self.name}: connect failed: {type(exc).__name__}: {exc}") from exc
        logger.info("%s: WebSocket authorized and open (%s)", self.name, self.url)
        return self

    def request(self, endpoint: str, body: Any = None, query: str = "", timeout: float = 5.0) -> Any:
        """Send one request and return its ``d``; always bounded by ``timeout``."""
        return self.request_many([(endpoint, body, query)], timeout=timeout).result(0)

    def request_many(self, requests: Sequence[tuple], timeout: float = 5.0) -> RequestBatch:
        """Write every request's frame back to back in ONE pass of the socket's loop (one hand-off
        to the loop thread for all of them) and return at once; ``batch.result(i)`` waits for
        request ``i``.  ``requests`` are ``(endpoint, body)`` or ``(endpoint, body, query)``.

        Raises ``NotSentError`` (nothing written) when the socket is not open; a bad body raises
        here, in the caller, before anything is sent.  Each request then ends exactly as one
        ``request()`` would: its ``d``, ``NotSentError`` (frame never written), ``OutcomeUnknownError``
        (written, then no answer within ``timeout`` or the socket lost) or the broker's error.
        """
        loop = self._loop
        first = requests[0][0] if requests else "request"
        if self._state is not ConnState.OPEN or loop is None or loop.is_closed():
            raise NotSentError(f"{self.name}: socket is {self._state.value}; {first} not sent")
        if threading.current_thread() is self._thread:
            raise NotSentError(f"{self.name}: request() from the socket thread would deadlock; {first} not sent")
        items = [(r[0], r[2] if len(r) > 2 else "", encode_body(r[1] if len(r) > 1 else None)) for r in requests]
        batch = RequestBatch(self, items, timeout)
        if not items:
            return batch
        try:
            loop.call_soon_threadsafe(self._send_batch, batch)
        except RuntimeError as exc:  # loop closed between the check and the call
            raise NotSentError(f"{self.name}: socket loop is gone; {first} not sent") from exc
        return batch

    def pending_count(self) -> int:
        """Requests written and not yet answered (nor timed out)."""
        return len(self._pending)

    def close(self, reason: str = "closed by client") -> None:
        """Idempotent; joins the thread unless called from the socket thread itself."""
        loop, thread = self._loop, self._thread
        if thread is None:
            self._state = ConnState.CLOSED
            return
        if threading.current_thread() is thread:
            self._begin_shutdown(reason, abort=False)  # the thread ends once the close completes
            return
        if thread.is_alive() and loop is not None:
            try:
                loop.call_soon_threadsafe(self._begin_shutdown, reason, False)
            except RuntimeError:
                pass  # loop already closed: the thread is finishing on its own
        thread.join(timeout=self._close_timeout_s + 2.0)
        if thread.is_alive():
            logger.error("%s: socket thread did not stop within its close timeout", self.name)

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        thread = self._thread
        if thread is not None and threading.current_thread() is not thread:
            thread.join(timeout)
        return self._state is ConnState.CLOSED

    def stats(self) -> Dict[str, Any]:
        """A snapshot for the status JSON.  Never contains the token."""
        snap = dict(self._stats)
        snap.update(name=self.name, url=self.url, state=self._state.value,
                    pending_requests=len(self._pending), close_reason=self._close_reason)
        return snap

    def __enter__(self) -> "TradovateWebSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TradovateWebSocket {self.name} {self._state.value}>"

    # ------------------------------------------------------------------ loop thread
    def _run_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        except Exception:  # noqa: BLE001 - the one safety net of this thread
            logger.exception("%s: socket loop crashed", self.name)
        finally:
            self._state = ConnState.CLOSED
            try:
                # Let callbacks scheduled while stopping run (they fail fast as NotSent), then
                # cancel whatever is left.
                loop.run_until_complete(asyncio.sleep(0))
                leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in leftover:
                    task.cancel()
                if leftover:
                    loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            finally:
                loop.close()

    def _abandon_connect(self) -> None:
        """Connect failed halfway: close what was opened and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._begin_shutdown, "connect failed", True)
            except RuntimeError:
                pass
        if thread is not None:
            thread.join(timeout=self._close_timeout_s + 2.0)
        self._state = ConnState.CLOSED

    async def _open(self) -> None:
        deadline = time.monotonic() + self._connect_timeout_s
        try:
            self._ws = await websockets.connect(
                self.url,
                open_timeout=self._connect_timeout_s,
                close_timeout=self._close_timeout_s,
                max_size=self._max_message_bytes,  # sync snapshots exceed the 1 MiB default
                compression=None,
                ping_interval=None,  # Tradovate wants '[]' heartbeats; pings only as a probe
                ping_timeout=None,
            )
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise NotSentError(f"{self.name}: cannot open {self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            await self._await_open_frame(deadline)
            auth_id = next(self._ids)
            logger.debug("%s > authorize\\n%d\\n\\n<token>", self.name, auth_id)
            await self._ws.send(f"authorize\n{auth_id}\n\n{self._token}")
            await self._await_authorized(auth_id, deadline)
        except asyncio.TimeoutError as exc:
            raise NotSentError(f"{self.name}: no 'o'/authorize answer within {self._connect_timeout_s} s") from exc
        except websockets.exceptions.ConnectionClosed as exc:
            raise NotSentError(f"{self.name}: socket closed during authorize ({exc})") from exc
        now = time.monotonic()
        self._last_frame_mono = now
        self._state = ConnState.OPEN
        self._stats["connected_since"] = time.time()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._reader(), name=f"{self.name}-reader"),
            loop.create_task(self._heartbeat(), name=f"{self.name}-heartbeat"),
            loop.create_task(self._watchdog(), name=f"{self.name}-watchdog"),
        ]

    async def _recv_before(self, deadline: float) -> str:
        raw = await asyncio.wait_for(self._ws.recv(), max(0.0, deadline - time.monotonic()))
        self._note_frame()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        logger.debug("%s < %s", self.name, redact(text[:500]))
        return text

    async def _await_open_frame(self, deadline: float) -> None:
        while True:
            text = await self._recv_before(deadline)
            if text.startswith("o"):
                return
            if text.startswith("c"):
                raise NotSentError(f"{self.name}: server closed before 'o': {text[:200]}")
            # 'h' or anything else before 'o': keep waiting (bounded by the deadline)

    async def _await_authorized(self, auth_id: int, deadline: float) -> None:
        while True:
            text = await self._recv_before(deadline)
            if text.startswith("c"):
                raise AuthError(f"{self.name}: server closed the socket instead of authorizing: {text[:200]}")
            if not text.startswith("a"):
                continue
            early_events = []
            for msg in self._parse_array(text):
                if "e" in msg:
                    early_events.append(msg)
                elif as_int(msg.get("i")) == auth_id:
                    status = as_int(msg.get("s"))
                    if status != 200:
                        detail = decode_d(msg.get("d"))
                        raise AuthError(f"{self.name}: authorize refused (s={status}): {detail}")
                    for event in early_events:
                        self._dispatch_event(event)
                    return

    def _send_batch(self, batch: RequestBatch) -> None:
        """Loop thread: write the batch's frames back to back, then time each answer out."""
        with batch.attempt.lock:  # claim: the caller may have given up before we started
            if batch.attempt.abandoned:
                batch.fail_unsent(NotSentError(f"{self.name}: requests abandoned before sending"))
                return
            batch.attempt.started = True
        proto = self._ws
        if (
            self._state is not ConnState.OPEN
            or proto is None
            or proto.state is not _ProtoState.OPEN
            or proto.transfer_data_task.done()
            or proto.transport is None
            or proto.transport.is_closing()
        ):
            batch.fail_unsent(NotSentError(f"{self.name}: socket is {self._state.value}; not sent"))
            return
        rids = []
        debug = logger.isEnabledFor(logging.DEBUG)
        for index, (endpoint, query, body_text) in enumerate(batch.items):
            future = batch.futures[index]
            if future.done():  # (cannot happen: nothing else resolves an unsent request)
                continue
            rid = next(self._ids)
            frame = encode_frame(endpoint, rid, query, body_text)
            if debug:
                logger.debug("%s > %s", self.name, redact(frame[:500]))
            pending = _Pending(future, endpoint, time.monotonic())
            self._pending[rid] = pending
            # From here on the frame counts as written: the protocol is OPEN and its transport
            # not closing, so write_frame_sync reaches transport.write (no suspension point).
            self._stats["requests_sent"] += 1
            if endpoint[:6].lower() == "order/":
                self._stats["orders_sent"] += 1
            try:
                proto.write_frame_sync(True, 0x1, frame.encode("utf-8"))
            except Exception as exc:  # noqa: BLE001 - any failure during the write is ambiguous
                self._pending.pop(rid, None)
                future.set_exception(OutcomeUnknownError(
                    f"{self.name}: {endpoint} #{rid} written, then {type(exc).__name__}"))
                batch.fail_unsent(NotSentError(f"{self.name}: socket failed while writing; not sent"), index + 1)
                self._begin_shutdown(f"write failed ({type(exc).__name__})", abort=True)
                break
            rids.append(rid)
        if rids:
            if self.budget is not None:
                self.budget.note(len(rids))
            loop = asyncio.get_running_loop()
            loop.call_later(batch.timeout, self._expire, rids, batch.timeout)
            if proto.transport.get_write_buffer_size() > 0:
                loop.create_task(self._drain(proto))  # flow control, as websockets' send() does

    @staticmethod
    async def _drain(proto: Any) -> None:
        try:
            await proto.drain()
        except Exception:  # noqa: BLE001 - a dead socket is noticed by the reader
            pass

    def _expire(self, rids: List[int], timeout: float) -> None:
        """Loop thread: requests of a batch still unanswered after ``timeout`` are unknown."""
        now = time.monotonic()
        for rid in rids:
            pending = self._pending.get(rid)
            if pending is None or pending.future.done():
                continue
            if now - pending.sent_mono < timeout:  # (timer fired early: look again later)
                asyncio.get_running_loop().call_later(timeout - (now - pending.sent_mono), self._expire, [rid], timeout)
                continue
            self._pending.pop(rid, None)
            pending.future.set_exception(
                OutcomeUnknownError(f"{self.name}: no answer to {pending.endpoint} #{rid} within {timeout} s"))

    # ------------------------------------------------------------------ background tasks
    async def _reader(self) -> None:
        reason = "connection lost"
        abort = False
        try:
            async for raw in self._ws:
                self._note_frame()
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                if logger.isEnabledFor(logging.DEBUG):  # (a regex per frame: only when it is logged)
                    logger.debug("%s < %s", self.name, redact(text[:500]))
                if self._handle_frame(text):
                    return
            reason = f"closed by server (code {self._ws.close_code})"
        except websockets.exceptions.ConnectionClosed as exc:
            reason = f"connection lost ({exc})"
        except Exception:  # noqa: BLE001 - safety net: never die silently
            logger.exception("%s: reader failed", self.name)
            reason, abort = "reader failed", True
        self._begin_shutdown(reason, abort=abort)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            try:
                await self._ws.send("[]")
            except Exception as exc:  # noqa: BLE001 - a failed heartbeat means a dead socket
                self._begin_shutdown(f"heartbeat failed ({type(exc).__name__})", abort=True)
                return
            self._stats["last_heartbeat_sent_at"] = time.time()

    async def _watchdog(self) -> None:
        """Any server frame is life; after a silence, a ping must be answered in time."""
        tick = max(0.01, min(self._idle_probe_after_s, self._probe_timeout_s) / 4.0)
        probe_sent: Optional[float] = None
        pong: Any = None
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if probe_sent is None:
                if now - self._last_frame_mono >= self._idle_probe_after_s:
                    try:
                        pong = await self._ws.ping()
                    except Exception as exc:  # noqa: BLE001
                        self._begin_shutdown(f"probe failed ({type(exc).__name__})", abort=True)
                        return
                    probe_sent = time.monotonic()
            elif self._last_frame_mono >= probe_sent or pong.done():
                probe_sent = None  # alive
            elif now - probe_sent >= self._probe_timeout_s:
                silent = now - self._last_frame_mono
                logger.warning("%s: no server frame for %.1f s and no pong: socket is dead", self.name, silent)
                self._begin_shutdown("dead socket (no frame, no pong)", abort=True)
                return

    # ------------------------------------------------------------------ frames
    def _note_frame(self) -> None:
        self._last_frame_mono = time.monotonic()
        self._stats["last_server_frame_at"] = time.time()

    def _parse_array(self, text: str) -> List[dict]:
        msgs = parse_messages(text)
        if msgs is None:
            logger.warning("%s: unparseable frame ignored: %r", self.name, redact(text[:200]))
            return []
        return msgs

    def _handle_frame(self, text: str) -> bool:
        """Returns True when the frame ends the connection."""
        kind = text[:1]
        if kind in ("o", "h"):
            return False
        if kind == "c":
            logger.info("%s: server close frame %s", self.name, text[1:200])
            self._begin_shutdown(f"server close frame {text[1:200]}", abort=False)
            return True
        if kind != "a":
            if text.strip() not in ("", "[]"):
                logger.debug("%s: unknown frame type ignored", self.name)
            return False
        msgs = self._parse_array(text)
        for msg in msgs:  # answers first: a caller waiting on one never waits behind events
            if "e" not in msg:
                self._resolve(msg)
        for msg in msgs:
            if "e" in msg:
                self._dispatch_event(msg)
        return False

    def _resolve(self, msg: dict) -> None:
        rid = as_int(msg.get("i"))
        pending = self._pending.pop(rid, None) if rid is not None else None
        if pending is None or pending.future.done():
            logger.debug("%s: answer to unknown/expired request %s", self.name, rid)
            return
        status = as_int(msg.get("s")) or 0
        d = decode_d(msg.get("d"))
        if pending.endpoint[:6].lower() == "order/":
            self._stats["last_order_latency_ms"] = round((time.monotonic() - pending.sent_mono) * 1000.0, 1)
        where = f"{self.name}: {pending.endpoint} #{rid}"
        if status == 429:
            pending.future.set_exception(TooManyRequestsError(f"{where}: {TooManyRequestsError.TEXT}"))
        elif status >= 400:
            pending.future.set_exception(BrokerError(f"{where}: s={status} {d}", status=status))
            if status == 401:
                logger.warning("%s: s=401 on an authorized socket: token revoked, closing", self.name)
                self._begin_shutdown("token refused (s=401)", abort=False)
        else:
            penalty = penalty_from(d)
            if penalty is not None:
                pending.future.set_exception(penalty)
            else:
                pending.future.set_result(d)

    def _dispatch_event(self, msg: dict) -> None:
        if msg.get("e") == "shutdown":
            d = decode_d(msg.get("d")) or {}
            code = d.get("reasonCode") if isinstance(d, dict) else d
            text = d.get("reason") if isinstance(d, dict) else ""
            logger.warning("%s: server shutdown notice: %s %s", self.name, code, text or "")
        for fn in self._listeners:
            try:
                fn(msg)
            except Exception:  # noqa: BLE001 - a listener must not kill the reader
                logger.exception("%s: event listener failed", self.name)
        if msg.get("e") == "shutdown":
            self._begin_shutdown(f"server shutdown ({code})", abort=False)

    # ------------------------------------------------------------------ closing
    def _begin_shutdown(self, reason: str, abort: bool) -> None:
        """Loop thread only.  Starts the close once; later calls are no-ops."""
        if self._closing_task is not None or self._state is ConnState.CLOSED:
            return
        loop = self._loop
        assert loop is not None
        self._closing_task = loop.create_task(self._shutdown(reason, abort), name=f"{self.name}-close")

    async def _shutdown(self, reason: str, abort: bool) -> None:
        was_open = self._state is ConnState.OPEN
        self._state = ConnState.CLOSING
        self._close_reason = reason
        pending, self._pending = self._pending, {}

        def fail_pending() -> None:  # the waiting callers are woken (their futures are thread-safe)
            for rid, p in pending.items():
                if not p.future.done():
                    p.future.set_exception(ConnectionLostError(
                        f"{self.name}: socket closed ({reason}) before the answer to {p.endpoint} #{rid}"))

        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        ws = self._ws
        if abort or ws is None:  # immediate: the callers learn of it once the socket is gone
            if ws is not None and ws.transport is not None:
                ws.transport.abort()
            self._state = ConnState.CLOSED
            fail_pending()
        else:  # a closing handshake may take a while: fail the requests first
            fail_pending()
            try:
                await asyncio.wait_for(ws.close(), self._close_timeout_s + 0.5)
            except Exception:  # noqa: BLE001 - closing is best effort
                if ws.transport is not None:
                    ws.transport.abort()
        self._state = ConnState.CLOSED
        log = logger.warning if was_open and reason != "closed by client" else logger.info
        log("%s: WebSocket closed: %s (%d pending failed)", self.name, reason, len(pending))
        for fn in self._close_listeners:
            try:
                fn(self)
            except Exception:  # noqa: BLE001
                logger.exception("%s: close listener failed", self.name)
        asyncio.get_running_loop().stop()
