"""TradovateIntegration against the project's simulator: one test per order path ("Done means").

Every order test asserts the simulator's book of record (``sim.orders()``) afterwards.
Time constants are scaled down; everything runs on 127.0.0.1.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from phantom_scraper.config import Credentials, Settings
from phantom_scraper.errors import (
    AuthError,
    CaptchaRequiredError,
    NotSentError,
    OutcomeUnknownError,
    RateLimitedError,
)
from phantom_scraper.tradovate_integration import OrderResult, TradovateIntegration
from phantom_scraper.tradovate_sim import Simulator
from tests.helpers import SIM_TEST_CONFIG
from phantom_scraper.tradovate.ws import ConnState
from tests.helpers import FreezableProxy, assert_no_socket_threads, socket_threads

FAST = Settings(
    heartbeat_interval_s=0.1,
    ws_connect_timeout_s=2.0,
    ws_idle_probe_after_s=0.3,
    ws_probe_timeout_s=0.3,
    order_ack_timeout_s=0.5,
    reconcile_window_s=1.0,
    reconcile_poll_interval_s=0.05,
    rest_timeout_s=3.0,
    penalty_max_wait_s=2.0,
)
CREDS = Credentials(username="demo", password="demo")


@pytest.fixture
def make_sim():
    """For tests that need another simulator reading; the rest use conftest's ``sim``."""
    sims = []

    def _make(**cfg):
        sim = Simulator(SIM_TEST_CONFIG.replace(**cfg)).start()
        sims.append(sim)
        return sim

    yield _make
    for sim in sims:
        sim.stop()


@pytest.fixture
def make_ti():
    made = []

    def _make(sim, settings=FAST, creds=CREDS, ws_url=None):
        ti = TradovateIntegration(creds, sim.rest_url, ws_url or sim.ws_url, is_demo=True, settings=settings)
        made.append(ti)
        return ti

    yield _make
    for ti in made:
        ti.close()


@pytest.fixture(autouse=True)
def no_socket_thread_left_behind():
    yield
    assert_no_socket_threads()


def order_body(ti, qty=1, symbol=None):
    account = ti.list_accounts()[0]
    if symbol is None:
        symbol = ti.suggest_contracts("ES", 1)[0]["name"]
    return {"accountSpec": account["name"], "accountId": account["id"], "action": "Buy",
            "symbol": symbol, "orderQty": qty, "orderType": "Market", "isAutomated": True}


def book(sim, cl_ord_id, field="clOrdId"):
    return [o for o in sim.orders() if o.get(field) == cl_ord_id]


def count_calls(monkeypatch, obj, name):
    calls = []
    real = getattr(obj, name)

    def wrapper(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


# ----------------------------------------------------------------------------- happy path
def test_websocket_success(sim, make_ti, caplog):
    ti = make_ti(sim)
    ti.authenticate()
    body = order_body(ti)
    ws = ti.open_websocket()
    try:
        with caplog.at_level(logging.DEBUG):  # per-order lines are DEBUG: a signal's one INFO line is the service's
            res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-ws-1")
    finally:
        ws.close()
    assert isinstance(res, OrderResult)
    assert (res.status, res.transport, res.reconciled, res.cl_ord_id) == ("acked", "websocket", False, "intent-ws-1")
    assert res.order_id is not None and res.latency_ms >= 0 and res.fallback_reason is None
    [entry] = book(sim, "intent-ws-1")
    assert entry["transport"] == "websocket" and entry["orderId"] == res.order_id
    assert any("via WebSocket" in r.getMessage() and "intent-ws-1" in r.getMessage() for r in caplog.records)
    assert "demo" not in " ".join(r.getMessage() for r in caplog.records if "password" in r.getMessage())


def test_generated_cl_ord_id_and_success_reason_shape(make_sim, make_ti):
    sim = make_sim(include_success_reason=True)
    ti = make_ti(sim)
    ws = ti.open_websocket()
    try:
        res = ti.place_order_smart(order_body(ti), ws=ws)
    finally:
        ws.close()
    assert res.status == "acked" and 0 < len(res.cl_ord_id) <= 64
    assert len(book(sim, res.cl_ord_id)) == 1


# ----------------------------------------------------------------------------- fallback
def test_websocket_refused_falls_back_to_rest(sim, make_ti, caplog):
    ti = make_ti(sim)
    sim.faults.refuse_ws_connects = True
    with pytest.raises(NotSentError):
        ti.open_websocket()
    with caplog.at_level(logging.WARNING):
        res = ti.place_order_smart(order_body(ti), ws=None, cl_ord_id="intent-fb-1")
    assert (res.status, res.transport) == ("acked", "rest") and res.fallback_reason
    [entry] = book(sim, "intent-fb-1")
    assert entry["transport"] == "rest"
    assert any("REST fallback" in r.getMessage() for r in caplog.records)


def test_closed_socket_falls_back_to_rest(sim, make_ti, caplog):
    ti = make_ti(sim)
    ws = ti.open_websocket()
    ws.close()
    with caplog.at_level(logging.WARNING):
        res = ti.place_order_smart(order_body(ti), ws=ws, cl_ord_id="intent-fb-2")
    assert (res.status, res.transport) == ("acked", "rest")
    assert len(book(sim, "intent-fb-2")) == 1
    assert any("REST fallback" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- unknown outcomes
def test_executed_then_socket_closed_gives_exactly_one_order(sim, make_ti):
    ti = make_ti(sim)
    body = order_body(ti)
    ws = ti.open_websocket()
    sim.faults.close_after_next_orders = 1
    res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-close-1")
    assert ws.wait_closed(2)
    assert (res.status, res.reconciled, res.transport) == ("acked", True, "websocket")
    [entry] = book(sim, "intent-close-1")
    assert entry["orderId"] == res.order_id


def test_answer_black_holed_gives_exactly_one_order(sim, make_ti):
    ti = make_ti(sim)
    body = order_body(ti)
    ws = ti.open_websocket()
    try:
        sim.faults.no_answer_next_orders = 1
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-bh-1")
    finally:
        ws.close()
    assert (res.status, res.reconciled, res.transport) == ("acked", True, "websocket")
    [entry] = book(sim, "intent-bh-1")
    assert entry["orderId"] == res.order_id


def test_response_black_holed_gives_exactly_one_order(sim, make_ti):
    ti = make_ti(sim)
    body = order_body(ti)
    ws = ti.open_websocket()
    try:
        sim.faults.blackhole_next_responses = 1
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-bh-2")
    finally:
        ws.close()
    assert res.status == "acked" and res.reconciled
    assert len(book(sim, "intent-bh-2")) == 1


def test_dead_socket_fails_pending_fast_then_exactly_one_order(make_sim, make_ti, caplog):
    """The frame dies in a frozen TCP path: pending fails within a second, nothing found, one resend."""
    sim = make_sim(ws_idle_timeout_s=30)
    ws_port = int(sim.ws_url.split(":")[2].split("/")[0])
    proxy = FreezableProxy(ws_port).start()
    try:
        ti = make_ti(sim, settings=FAST.replace(order_ack_timeout_s=10.0),
                     ws_url=f"ws://127.0.0.1:{proxy.port}/v1/websocket")
        body = order_body(ti)
        ws = ti.open_websocket()
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError):
            ws.request("order/placeorder", dict(body, clOrdId="intent-dead-0"), timeout=10)
        assert time.monotonic() - started < 1.0
        assert ws.state is ConnState.CLOSED
        assert book(sim, "intent-dead-0") == []
        with caplog.at_level(logging.WARNING):
            res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-dead-1")
        assert res.transport == "rest" and len(book(sim, "intent-dead-1")) == 1
    finally:
        proxy.stop()


def test_unknown_then_nothing_found_is_never_resent(make_sim, make_ti, monkeypatch, caplog):
    """The contract since the outcome model: an unknown outcome is searched, and when nothing is
    found it stays unknown (settled in the background) -- no REST resend, ever."""
    sim = make_sim(ws_idle_timeout_s=30)
    ws_port = int(sim.ws_url.split(":")[2].split("/")[0])
    proxy = FreezableProxy(ws_port).start()
    try:
        ti = make_ti(sim, settings=FAST.replace(ws_idle_probe_after_s=5.0, ws_probe_timeout_s=5.0),
                     ws_url=f"ws://127.0.0.1:{proxy.port}/v1/websocket")
        body = order_body(ti)
        ws = ti.open_websocket()
        rest_calls = count_calls(monkeypatch, ti, "_rest_order")
        unknowns = []
        proxy.freeze()  # the order frame never reaches the broker; the ack times out
        with caplog.at_level(logging.WARNING):
            res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-resend-1", on_unknown=unknowns.append)
        proxy.stop()  # drop the frozen path so the close below does not wait for a handshake
        ws.close()
        assert (res.status, res.transport, res.reconciled, res.order_id) == ("unknown", "websocket", False, None)
        assert len(unknowns) == 1  # the caller was told before the search (it journals 'unknown')
        assert rest_calls == []
        assert book(sim, "intent-resend-1") == []
        assert not any("resending ONCE" in r.getMessage() for r in caplog.records)
    finally:
        proxy.stop()


# ----------------------------------------------------------------------------- rejection
def test_business_rejection_is_one_attempt_only(sim, make_ti, monkeypatch):
    ti = make_ti(sim)
    body = order_body(ti, symbol="ZZZZ9")
    ws = ti.open_websocket()
    try:
        ws_calls = count_calls(monkeypatch, ws, "request")
        rest_calls = count_calls(monkeypatch, ti, "_rest_order")
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-rej-1")
    finally:
        ws.close()
    assert res.status == "rejected" and res.failure_reason and res.order_id is None
    assert res.transport == "websocket"
    assert len(ws_calls) == 1 and rest_calls == []
    assert all(o.get("ordStatus") == "Rejected" for o in book(sim, "intent-rej-1"))
    assert len(book(sim, "intent-rej-1")) <= 1


def test_business_rejection_over_rest_is_final(sim, make_ti, monkeypatch):
    ti = make_ti(sim)
    body = order_body(ti, symbol="ZZZZ9")
    rest_calls = count_calls(monkeypatch, ti, "_rest_order")
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-rej-2")
    assert res.status == "rejected" and res.transport == "rest" and len(rest_calls) == 1
    assert len(book(sim, "intent-rej-2")) <= 1


# ----------------------------------------------------------------------------- tokens
def test_token_renewed_before_expiry_without_a_failed_order(make_sim, make_ti):
    sim = make_sim(token_lifetime_s=1.5)
    ti = make_ti(sim)
    seen = []
    ti.add_token_listener(seen.append)
    first = ti.authenticate()
    body = order_body(ti)
    time.sleep(1.1)  # inside the renew margin (a third of the 1.5 s lifetime)
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-tok-1")
    assert res.status == "acked"
    assert ti.access_token != first and seen[-1] == ti.access_token
    assert ti.token_expires_at > time.time() + 0.5
    assert len(book(sim, "intent-tok-1")) == 1
    ws = ti.open_websocket()  # a socket with the renewed token
    try:
        res2 = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-tok-2")
    finally:
        ws.close()
    assert res2.transport == "websocket" and len(book(sim, "intent-tok-2")) == 1


def test_revoked_token_relogin_once_on_401(sim, make_ti):
    ti = make_ti(sim)
    body = order_body(ti)
    old = ti.access_token
    sim.faults.expire_all_tokens()
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-401-1")
    assert res.status == "acked" and ti.access_token != old
    assert len(book(sim, "intent-401-1")) == 1


@pytest.mark.parametrize("status", [200, 401])
def test_bad_credentials_are_an_auth_error(make_sim, make_ti, status):
    sim = make_sim(bad_credentials_status=status)
    ti = make_ti(sim, creds=Credentials(username="demo", password="hunter2-wrong"))
    with pytest.raises(AuthError) as info:
        ti.authenticate()
    assert "hunter2" not in str(info.value) and "demo" in str(info.value)


# ----------------------------------------------------------------------------- rate limits
def test_penalty_ticket_waited_and_resent(sim, make_ti):
    ti = make_ti(sim)
    body = order_body(ti)
    sim.faults.penalty_time_s = 0.2
    sim.faults.penalty_next = 1
    started = time.monotonic()
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-pen-1")
    assert res.status == "acked" and time.monotonic() - started >= 0.2
    assert len(book(sim, "intent-pen-1")) == 1
    ws = ti.open_websocket()
    try:
        sim.faults.penalty_next = 1
        started = time.monotonic()
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-pen-2")
    finally:
        ws.close()
    assert (res.status, res.transport) == ("acked", "websocket") and time.monotonic() - started >= 0.2
    assert len(book(sim, "intent-pen-2")) == 1


def test_penalty_with_captcha_stops(sim, make_ti):
    ti = make_ti(sim)
    sim.faults.penalty_captcha = True
    sim.faults.penalty_next = 1
    with pytest.raises(CaptchaRequiredError):
        ti.authenticate()


def test_http_429_is_rate_limited_and_not_sent(sim, make_ti, monkeypatch):
    ti = make_ti(sim)
    body = order_body(ti)
    rest_calls = count_calls(monkeypatch, ti, "_rest_order")
    sim.faults.http_429_next = 1
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-429-1")
    assert (res.status, res.rate_limited, res.transport) == ("not_sent", True, "rest")
    assert book(sim, "intent-429-1") == []
    ws = ti.open_websocket()
    try:
        sim.faults.http_429_next = 1
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-429-2")
    finally:
        ws.close()
    assert (res.status, res.rate_limited, res.transport) == ("not_sent", True, "websocket")
    assert book(sim, "intent-429-2") == []
    assert len(rest_calls) == 1  # the REST attempt only: a socket 429 does not fall back


def test_http_500_on_rest_order_is_unknown_and_never_resent(sim, make_ti, monkeypatch):
    """A 5xx may have executed: searched, not found (this simulator answers 500 before executing),
    so it stays unknown -- the old contract resent it over REST."""
    ti = make_ti(sim)
    body = order_body(ti)
    rest_calls = count_calls(monkeypatch, ti, "_rest_order")
    sim.faults.http_500_next = 1
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-500-1")
    assert (res.status, res.transport) == ("unknown", "rest")
    assert len(rest_calls) == 1
    assert book(sim, "intent-500-1") == []


def test_http_500_after_execution_is_adopted_not_resent(make_sim, make_ti, monkeypatch):
    sim = make_sim(http_500_after_execute=True)
    ti = make_ti(sim)
    body = order_body(ti)
    rest_calls = count_calls(monkeypatch, ti, "_rest_order")
    sim.faults.http_500_next = 1
    res = ti.place_order_smart(body, ws=None, cl_ord_id="intent-500-2")
    assert (res.status, res.reconciled, res.transport) == ("acked", True, "rest") and len(rest_calls) == 1
    [entry] = book(sim, "intent-500-2")
    assert entry["orderId"] == res.order_id


def test_socket_closed_at_token_expiry_falls_back_without_failing(make_sim, make_ti):
    sim = make_sim(token_lifetime_s=1.2, close_ws_on_token_expiry=True)
    ti = make_ti(sim)
    body = order_body(ti)
    ws = ti.open_websocket()
    assert ws.wait_closed(2.0)  # the simulator ends the socket with its token
    res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-exp-1")
    assert (res.status, res.transport) == ("acked", "rest")
    assert len(book(sim, "intent-exp-1")) == 1


# ----------------------------------------------------------------------------- socket lifecycle
def test_rare_server_heartbeats_do_not_look_dead(make_sim, make_ti):
    """'h' every 25 s (SockJS reading): pings answer the idle probe, the socket stays."""
    sim = make_sim(server_heartbeat_interval_s=25.0, ws_idle_timeout_s=0.5)
    ti = make_ti(sim, settings=FAST.replace(ws_idle_probe_after_s=0.1, ws_probe_timeout_s=0.2))
    ws = ti.open_websocket()
    try:
        time.sleep(1.0)
        assert ws.is_open
        assert ws.request("account/list", timeout=1)
    finally:
        ws.close()


def test_heartbeats_keep_an_idle_client_alive(make_sim, make_ti):
    sim = make_sim(ws_idle_timeout_s=0.5, server_heartbeat_interval_s=0.2)
    ti = make_ti(sim)
    body = order_body(ti)
    ws = ti.open_websocket()
    try:
        time.sleep(1.5)  # three idle timeouts
        assert ws.is_open
        res = ti.place_order_smart(body, ws=ws, cl_ord_id="intent-hb-1")
    finally:
        ws.close()
    assert res.transport == "websocket" and len(book(sim, "intent-hb-1")) == 1


def test_without_heartbeats_the_simulator_drops_the_client(make_sim, make_ti):
    """Control for the test above: the idle timeout is real, and the loss is noticed."""
    sim = make_sim(ws_idle_timeout_s=0.3)
    ti = make_ti(sim, settings=FAST.replace(heartbeat_interval_s=30.0))
    ws = ti.open_websocket()
    closed = threading.Event()
    ws.add_close_listener(lambda w: closed.set())
    assert closed.wait(2.0)
    assert ws.state is ConnState.CLOSED


def test_close_leaves_no_thread_behind(sim, make_ti):
    ti = make_ti(sim)
    sockets = [ti.open_websocket(name=f"t{i}") for i in range(3)]
    assert len(socket_threads()) == 3
    for ws in sockets:
        ws.close()
        ws.close()
    assert socket_threads() == []
    ti.close()


def test_shutdown_event_closes_cleanly(sim, make_ti):
    ti = make_ti(sim)
    ws = ti.open_websocket()
    events = []
    ws.add_listener(events.append)
    sim.faults.send_shutdown("Maintenance")
    assert ws.wait_closed(2)
    assert any(e.get("e") == "shutdown" for e in events)


# ----------------------------------------------------------------------------- reads
@pytest.mark.parametrize("status", [404, 200])
def test_find_contract_unknown_is_none(make_sim, make_ti, status):
    sim = make_sim(unknown_contract_find_status=status)
    ti = make_ti(sim)
    assert ti.find_contract("ZZZZ9") is None
    name = ti.suggest_contracts("NQ", 1)[0]["name"]
    assert ti.find_contract(name)["name"] == name


def _lost_liquidation(sim, ti):
    """A position, then a liquidation whose socket closes before the answer (executed)."""
    body = order_body(ti)
    assert ti.place_order_smart(body, ws=None).status == "acked"
    contract = ti.find_contract(body["symbol"])
    ws = ti.open_websocket()
    sim.faults.close_after_next_orders = 1
    res = ti.place_order_smart({"accountId": body["accountId"], "contractId": contract["id"], "admin": False},
                               ws=ws, endpoint="order/liquidateposition", cl_ord_id="intent-liq-1")
    ws.close()
    return res


def test_liquidate_reconciled_by_custom_tag50_when_opted_in(sim, make_ti):
    ti = make_ti(sim, settings=FAST.replace(custom_tag50=True))
    res = _lost_liquidation(sim, ti)
    assert res.status == "acked" and res.reconciled
    assert len(book(sim, "intent-liq-1", field="customTag50")) == 1


def test_liquidation_without_custom_tag50_is_found_after_an_unknown_outcome(make_sim, make_ti):
    """The default sends no customTag50 (a login without tag 50 enabled is refused with it: the
    simulator's ``refuse_custom_tag50``); a liquidation whose answer was lost is still found, by
    account, contract and time, and adopted -- never resent."""
    sim = make_sim(refuse_custom_tag50=True)
    ti = make_ti(sim)
    res = _lost_liquidation(sim, ti)
    liquidations = [o for o in sim.orders() if o["endpoint"] == "liquidateposition"]
    assert len(liquidations) == 1 and liquidations[0]["customTag50"] is None
    assert res.status == "acked" and res.reconciled and res.order_id == liquidations[0]["orderId"]


def test_custom_tag50_refused_by_a_login_without_it(make_sim, make_ti):
    """What the opt-in risks: a login without tag 50 gets the liquidation refused, position open."""
    sim = make_sim(refuse_custom_tag50=True)
    ti = make_ti(sim, settings=FAST.replace(custom_tag50=True))
    body = order_body(ti)
    assert ti.place_order_smart(body, ws=None).status == "acked"
    contract = ti.find_contract(body["symbol"])
    res = ti.place_order_smart({"accountId": body["accountId"], "contractId": contract["id"], "admin": False},
                               ws=None, endpoint="order/liquidateposition", cl_ord_id="intent-liq-2")
    assert res.status == "rejected" and "customTag50" in (res.failure_text or "")


def test_a_lost_liquidation_right_after_a_bracketed_entry_is_still_found(make_sim, make_ti):
    """An OSO entry (its two exit legs carry no clOrdId of their own) seconds before a close whose
    answer is lost: the legs were created inside the search's clock slack and the liquidation
    cancels them, but a leg (``parentId``/``ocoId``) is never a liquidation's order -- the one
    candidate is found and adopted, not left unknown as ambiguous."""
    sim = make_sim(refuse_custom_tag50=True)
    ti = make_ti(sim)
    body = order_body(ti)
    price = sim.get_price(body["symbol"])["price"]
    oso = dict(body, bracket1={"action": "Sell", "orderType": "Limit", "price": price + 50},
               bracket2={"action": "Sell", "orderType": "Stop", "stopPrice": price - 50})
    assert ti.place_order_smart(oso, ws=None, endpoint="order/placeoso", cl_ord_id="intent-oso-1").status == "acked"
    contract = ti.find_contract(body["symbol"])
    sim.faults.close_after_next_orders = 1
    ws = ti.open_websocket()
    res = ti.place_order_smart({"accountId": body["accountId"], "contractId": contract["id"], "admin": False},
                               ws=ws, endpoint="order/liquidateposition", cl_ord_id="intent-liq-3")
    ws.close()
    liquidations = [o for o in sim.orders() if o["endpoint"] == "liquidateposition"]
    assert len(liquidations) == 1
    assert res.status == "acked" and res.reconciled and res.order_id == liquidations[0]["orderId"]
