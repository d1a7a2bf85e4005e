"""TradovateWebSocket against a tiny scripted loopback server (framing, classification, lifecycle)."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import websockets

from phantom_scraper.errors import (
    AuthError,
    BrokerError,
    NotSentError,
    OutcomeUnknownError,
    PenaltyError,
    RateLimitedError,
)
from phantom_scraper.redact import redact
from phantom_scraper.tradovate.ws import ConnState, TradovateWebSocket
from tests.helpers import FreezableProxy, assert_no_socket_threads, socket_threads

TOKEN = "tok-secret-123"


class FakeServer:
    """Scripted Tradovate-like socket server in its own thread.  ``actions[endpoint]`` picks the reply."""

    def __init__(self, send_o=True, h_interval=None, token=TOKEN):
        self.send_o = send_o
        self.h_interval = h_interval
        self.token = token
        self.actions = {}
        self.frames = []  # every text frame received, in order
        self.heartbeats = 0
        self.conns = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-ws-server", daemon=True)

    def start(self):
        self.thread.start()
        async def _serve():
            return await websockets.serve(self._handler, "127.0.0.1", 0, compression=None)
        self.server = asyncio.run_coroutine_threadsafe(_serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v1/websocket"
        return self

    def stop(self):
        if not self.thread.is_alive():
            return

        async def _stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def push(self, text):
        """Send a raw frame to every connected client."""
        async def _push():
            for ws in list(self.conns):
                await ws.send(text)
        asyncio.run_coroutine_threadsafe(_push(), self.loop).result(5)

    async def _heartbeats(self, ws):
        while True:
            await asyncio.sleep(self.h_interval)
            await ws.send("h")

    async def _handler(self, ws, path=None):
        self.conns.append(ws)
        if self.send_o:
            await ws.send("o")
        hb = asyncio.ensure_future(self._heartbeats(ws)) if self.h_interval else None
        try:
            async for msg in ws:
                self.frames.append(msg)
                if msg == "[]":
                    self.heartbeats += 1
                    continue
                endpoint, rid, query, body = msg.split("\n", 3)
                rid = int(rid)
                if endpoint == "authorize":
                    ok = body == self.token
                    reply = {"s": 200, "i": rid} if ok else {"s": 401, "i": rid, "d": "Invalid access token"}
                    await ws.send("a" + json.dumps([reply]))
                    continue
                action = self.actions.get(endpoint, "echo")
                if callable(action):
                    await action(ws, rid, query, body)
                elif action == "echo":
                    d = {"endpoint": endpoint, "query": query, "body": json.loads(body) if body else None}
                    await ws.send("a" + json.dumps([{"s": 200, "i": rid, "d": d}]))
                elif action == "silent":
                    pass
                elif action == "close":
                    await ws.close()
                elif action == "404":
                    await ws.send("a" + json.dumps([{"s": 404, "i": rid, "d": json.dumps("Not found: x")}]))
                elif action == "401":
                    await ws.send("a" + json.dumps([{"s": 401, "i": rid, "d": "Access is denied"}]))
                elif action == "429":
                    await ws.send("a" + json.dumps([{"s": 429, "i": rid}]))
                elif action == "penalty":
                    await ws.send("a" + json.dumps([{"s": 200, "i": rid, "d": {"p-ticket": "T1", "p-time": 2}}]))
                elif action == "string-d":
                    await ws.send("a" + json.dumps([{"s": 200, "i": rid, "d": json.dumps({"orderId": 7})}]))
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if hb:
                hb.cancel()


@pytest.fixture
def server():
    srv = FakeServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    yield
    assert_no_socket_threads()


def make(url, token=TOKEN, **kw):
    kw.setdefault("heartbeat_interval_s", 0.05)
    kw.setdefault("connect_timeout_s", 1.0)
    kw.setdefault("idle_probe_after_s", 0.2)
    kw.setdefault("probe_timeout_s", 0.2)
    kw.setdefault("close_timeout_s", 0.5)
    return TradovateWebSocket(url, token, name="t", **kw)


def test_round_trip_frame_format_and_close(server):
    ws = make(server.url).connect()
    assert ws.state is ConnState.OPEN and ws.is_open
    d = ws.request("order/placeorder", {"symbol": "ESZ6", "orderQty": 1}, timeout=1)
    assert d == {"endpoint": "order/placeorder", "query": "", "body": {"symbol": "ESZ6", "orderQty": 1}}
    assert ws.request("contract/find", query="name=ESZ6", timeout=1)["query"] == "name=ESZ6"
    auth = server.frames[0]
    assert auth == f"authorize\n0\n\n{TOKEN}" or auth.startswith("authorize\n") and auth.endswith("\n" + TOKEN)
    order_frame = [f for f in server.frames if f.startswith("order/placeorder")][0]
    _, rid, query, body = order_frame.split("\n", 3)
    assert int(rid) > 0 and query == "" and body == '{"symbol":"ESZ6","orderQty":1}'
    stats = ws.stats()
    assert stats["state"] == "open" and stats["orders_sent"] == 1 and stats["requests_sent"] == 2
    assert stats["last_order_latency_ms"] is not None and TOKEN not in json.dumps(stats, default=str)
    ws.close()
    ws.close()  # idempotent
    assert ws.state is ConnState.CLOSED and socket_threads() == []
    with pytest.raises(NotSentError):
        ws.request("account/list", timeout=1)


def test_heartbeats_start_after_authorize(server):
    ws = make(server.url).connect()
    time.sleep(0.3)
    assert server.heartbeats >= 3
    assert server.frames[0].startswith("authorize")  # nothing before authorize
    assert ws.stats()["last_heartbeat_sent_at"] is not None
    ws.close()


def test_authorize_refused_is_auth_error_and_cleans_up(server):
    with pytest.raises(AuthError) as info:
        make(server.url, token="wrong").connect()
    assert "wrong" not in str(info.value)
    assert socket_threads() == []


def test_no_open_frame_is_bounded_not_sent():
    srv = FakeServer(send_o=False).start()
    try:
        started = time.monotonic()
        ws = make(srv.url, connect_timeout_s=0.3)
        with pytest.raises(NotSentError):
            ws.connect()
        assert time.monotonic() - started < 2
        assert ws.state is ConnState.CLOSED
    finally:
        srv.stop()


def test_connection_refused_is_not_sent(server):
    url = server.url
    server.stop()
    with pytest.raises(NotSentError):
        make(url).connect()


def test_closed_after_write_is_outcome_unknown_and_close_listener_once(server):
    server.actions["order/placeorder"] = "close"
    ws = make(server.url).connect()
    closes = []
    ws.add_close_listener(lambda w: closes.append(w.state))
    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError):
        ws.request("order/placeorder", {"x": 1}, timeout=5)
    assert time.monotonic() - started < 1
    assert ws.wait_closed(2)
    assert closes == [ConnState.CLOSED]
    with pytest.raises(NotSentError):
        ws.request("order/placeorder", {"x": 1}, timeout=1)


def test_silent_answer_times_out_as_unknown(server):
    server.actions["order/placeorder"] = "silent"
    ws = make(server.url).connect()
    with pytest.raises(OutcomeUnknownError):
        ws.request("order/placeorder", {"x": 1}, timeout=0.2)
    assert ws.is_open  # a timeout alone does not kill the socket
    ws.close()


def test_error_statuses(server):
    server.actions.update({"a/404": "404", "a/429": "429", "a/pen": "penalty", "a/str": "string-d"})
    ws = make(server.url).connect()
    with pytest.raises(BrokerError) as info:
        ws.request("a/404", timeout=1)
    assert info.value.status == 404 and "Not found: x" in str(info.value)
    with pytest.raises(RateLimitedError):
        ws.request("a/429", timeout=1)
    with pytest.raises(PenaltyError) as pen:
        ws.request("a/pen", timeout=1)
    assert pen.value.p_ticket == "T1" and pen.value.retry_after_s == 2 and not pen.value.captcha
    assert ws.request("a/str", timeout=1) == {"orderId": 7}
    assert ws.is_open
    ws.close()


def test_401_closes_the_socket(server):
    server.actions["order/placeorder"] = "401"
    ws = make(server.url).connect()
    with pytest.raises(BrokerError) as info:
        ws.request("order/placeorder", {}, timeout=1)
    assert info.value.status == 401
    assert ws.wait_closed(2)


def test_events_and_shutdown(server):
    ws = make(server.url).connect()
    events = []
    ws.add_listener(events.append)
    entity = [{"id": 1, "ordStatus": "Working"}, {"id": 2, "ordStatus": "Filled"}]
    server.push("a" + json.dumps([{"e": "props", "d": {"entityType": "order", "eventType": "Created", "entity": entity}}]))
    server.push('a[{"e":"shutdown","d":{"reasonCode":"Maintenance","reason":"bye"}}]')
    assert ws.wait_closed(2)
    assert [e["e"] for e in events] == ["props", "shutdown"]
    assert events[0]["d"]["entity"] == entity
    assert "Maintenance" in ws.close_reason


def test_server_close_frame(server):
    ws = make(server.url).connect()
    server.push('c[3000,"Go away!"]')
    assert ws.wait_closed(2)
    assert "Go away" in ws.close_reason


def test_close_from_a_listener_does_not_deadlock(server):
    ws = make(server.url).connect()
    ws.add_listener(lambda event: ws.close())
    ws.add_close_listener(lambda w: w.close())
    server.push('a[{"e":"props","d":{}}]')
    assert ws.wait_closed(2)


def test_idle_server_without_h_stays_open(server):
    """No 'h' at all (server sends them every 25 s): pongs keep the socket alive."""
    ws = make(server.url, idle_probe_after_s=0.05, probe_timeout_s=0.2).connect()
    time.sleep(0.6)
    assert ws.is_open
    assert ws.request("x/y", timeout=1)["endpoint"] == "x/y"
    ws.close()


def test_dead_socket_fails_pending_within_a_second(server):
    server.actions["order/placeorder"] = "silent"
    proxy = FreezableProxy(server.port).start()
    try:
        ws = make(f"ws://127.0.0.1:{proxy.port}/v1/websocket", idle_probe_after_s=0.2, probe_timeout_s=0.3).connect()
        errors = []
        t = threading.Thread(target=lambda: errors.append(_capture(ws.request, "order/placeorder", {}, timeout=30)))
        t.start()
        time.sleep(0.05)
        proxy.freeze()
        started = time.monotonic()
        t.join(3)
        assert not t.is_alive()
        assert time.monotonic() - started < 1.0
        assert isinstance(errors[0], OutcomeUnknownError)
        assert ws.wait_closed(2)
    finally:
        proxy.stop()


def test_concurrent_requests_from_many_threads(server):
    ws = make(server.url).connect()
    results = []

    def work(n):
        results.append(ws.request("echo/it", {"n": n}, timeout=2)["body"]["n"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(results) == list(range(20))
    ws.close()


def test_redact():
    assert "abc" not in redact('{"accessToken":"abc","x":1,"password":"pw"}')
    assert "pw" not in redact('{"password": "pw"}')


def _capture(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001
        return exc


# ------------------------------------------------------------------ request_many (fan-out batches)

def test_request_many_writes_every_frame_before_any_answer_and_resolves_each(server):
    """One hand-off for the whole batch: the server sees all frames before it answers any (it
    answers only once it holds them all), each future gets its own answer, ids are distinct."""
    held = []

    async def hold_until_all(ws, rid, query, body):
        held.append((rid, json.loads(body)))
        if len(held) == 3:
            for r, b in held:
                await ws.send("a" + json.dumps([{"s": 200, "i": r, "d": {"n": b["n"]}}]))

    server.actions["order/placeorder"] = hold_until_all
    with make(server.url).connect() as ws:
        batch = ws.request_many([("order/placeorder", {"n": n}) for n in range(3)], timeout=2)
        assert [batch.result(i)["n"] for i in range(len(batch))] == [0, 1, 2]
        assert len({rid for rid, _ in held}) == 3
        assert ws.stats()["orders_sent"] == 3 and ws.pending_count() == 0


def test_request_many_classifies_each_request_on_its_own(server):
    async def by_body(ws, rid, query, body):
        n = json.loads(body)["n"]
        if n == 1:
            await ws.send("a" + json.dumps([{"s": 404, "i": rid, "d": json.dumps("Not found")}]))
        elif n == 2:
            return  # never answered
        else:
            await ws.send("a" + json.dumps([{"s": 200, "i": rid, "d": {"orderId": 100 + n}}]))

    server.actions["order/placeorder"] = by_body
    with make(server.url).connect() as ws:
        batch = ws.request_many([("order/placeorder", {"n": n}) for n in range(4)], timeout=0.3)
        assert batch.result(0) == {"orderId": 100}
        with pytest.raises(BrokerError):
            batch.result(1)
        with pytest.raises(OutcomeUnknownError):  # written, no answer within its timeout
            batch.result(2)
        assert batch.result(3) == {"orderId": 103}
        assert ws.pending_count() == 0  # the unanswered one was forgotten at its timeout


def test_request_many_on_a_closed_socket_writes_nothing(server):
    ws = make(server.url).connect()
    ws.close()
    with pytest.raises(NotSentError):
        ws.request_many([("order/placeorder", {"n": 1}), ("order/placeorder", {"n": 2})], timeout=1)
    assert not [f for f in server.frames if f.startswith("order/")]


def test_request_many_pending_fail_unknown_when_the_socket_drops(server):
    server.actions["order/placeorder"] = "silent"
    with make(server.url).connect() as ws:
        batch = ws.request_many([("order/placeorder", {"n": n}) for n in range(2)], timeout=5)
        wait_until = time.monotonic() + 2
        while len([f for f in server.frames if f.startswith("order/")]) < 2 and time.monotonic() < wait_until:
            time.sleep(0.01)
        for conn in list(server.conns):
            asyncio.run_coroutine_threadsafe(conn.close(), server.loop).result(2)
        for i in range(2):
            with pytest.raises(OutcomeUnknownError):
                batch.result(i)
