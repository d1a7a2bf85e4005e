"""ultra_simple_server through Flask's test client, against the simulator (tests/conftest.py).

Every route and every bad input: a bad request is a 4xx with a code, a field and a message, and
leaves the simulator's order book (the book of record) empty.
"""
from __future__ import annotations

import logging

import json
import time

import pytest

from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready

@pytest.fixture
def app(make_server_app):
    return make_server_app()


@pytest.fixture
def client(app):
    return app.test_client()


# -- start-up ----------------------------------------------------------------------------------

def test_create_app_opens_no_socket_and_starts_no_thread(make_server_app, monkeypatch):
    import socket
    import threading

    opened = []
    real_socket = socket.socket.__init__

    def spy(self, *a, **kw):
        opened.append(a)
        real_socket(self, *a, **kw)

    before = set(threading.enumerate())
    monkeypatch.setattr(socket.socket, "__init__", spy)
    app = make_server_app(boot=False)
    monkeypatch.setattr(socket.socket, "__init__", real_socket)
    assert opened == []
    assert set(threading.enumerate()) == before
    runtime = app.extensions["runtime"]
    assert runtime.service.state == "new" and runtime.simulator is None


def test_not_ready_is_503_and_health_says_live_not_ready(make_server_app, sim):
    app = make_server_app(boot=False)
    c = app.test_client()
    r = c.get("/health")
    assert r.status_code == 503
    body = r.get_json()
    assert body["live"] is True and body["ready"] is False
    r = post(c, BUY)
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "not_ready"
    assert sim.orders() == []


def test_health_ready(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.get_json()
    assert body["ready"] is True and body["live"] is True
    assert body["checks"] == {"service": "ready", "journal": True, "daemon_alive": True, "broker_reachable": True}


# -- authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body", [
    ("/webhook/wrong-secret", BUY),
    ("/webhook/" + SECRET[:-1], BUY),
    ("/webhook/" + SECRET + "x", BUY),
    ("/webhook", BUY),  # no secret at all
    ("/webhook", '{"action":"buy","ticker":"MNQ1!","quantity":1,"secret":"nope"}'),
    ("/webhook", '{"action":"buy","ticker":"MNQ1!","quantity":1,"secret":""}'),
    ("/webhook", '{"action":"buy","ticker":"MNQ1!","quantity":1,"secret":' + json.dumps(ADMIN) + '}'),
])
def test_wrong_or_missing_secret_is_401_and_places_nothing(client, sim, path, body):
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 401
    err = r.get_json()["error"]
    assert err["code"] == "unauthorized" and err["message"]
    assert sim.orders() == []


def test_secret_in_body(client, sim, app):
    ws_ready(app)
    body = '{"secret": "%s", "action": "buy", "ticker": "MNQ1!", "quantity": 2}' % SECRET
    r = client.post("/webhook", data=body, content_type="text/plain")
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert data["status"] == "acked"
    assert len(sim.orders()) == 2 and all(o["orderQty"] == 2 for o in sim.orders())
    # the secret is not stored with the signal
    stored = client.get("/api/signals", headers=ADMIN_HEADERS).get_data(as_text=True)
    assert SECRET not in stored


def test_an_entry_with_a_take_profit_reports_every_order_it_made(client, sim, app):
    """An OSO makes an entry and a bracket order per account: the answer lists both (found by the
    hostile-input fuzzer: the bracket legs were placed but not reported)."""
    ws_ready(app)
    body = '{"secret": "%s", "action": "buy", "ticker": "MNQ1!", "takeProfit": 3.0}' % SECRET
    r = client.post("/webhook", data=body, content_type="text/plain")
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    reported = [i for account in data["accounts"] for i in account["order_ids"]]
    placed = [o["orderId"] for o in sim.orders() if o["orderId"] is not None]
    assert len(placed) == 4 and sorted(reported) == sorted(placed)
    for account in data["accounts"]:  # the entry first
        assert account["order_ids"][0] == account["order_id"]


def test_secret_in_broken_json_body_still_authenticates_then_400(client, sim):
    body = '{"Secret": "%s", "action": "buy", "ticker": "MNQ1!", "contracts": , }' % SECRET
    r = client.post("/webhook", data=body, content_type="text/plain")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] in ("invalid_json", "empty_field")
    assert sim.orders() == []


# -- bad input -------------------------------------------------------------------------------------

BAD_INPUTS = [
    # (body, code, field)
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": 1', "invalid_json", None),
    ('{"action": "buy", "ticker": "MNQ1!", "contracts": , "price": 21000}', None, None),  # TradingView, empty placeholder
    ("not json at all", "invalid_json", None),
    ("", "invalid_json", None),
    ("[1, 2, 3]", "invalid_json", None),
    ('{"ticker": "MNQ1!", "quantity": 1}', "missing_field", "action"),
    ('{"action": "buy", "quantity": 1}', "missing_field", "ticker"),
    ('{"action": "", "ticker": "MNQ1!"}', "empty_field", "action"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": "abc"}', "invalid_quantity", "quantity"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": [1]}', "invalid_field", "quantity"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": 1.5}', "invalid_field", "quantity"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": 0}', "invalid_field", "quantity"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": -2}', "invalid_field", "quantity"),
    ('{"action": 7, "ticker": "MNQ1!", "quantity": 1}', "invalid_field", "action"),
    ('{"action": "yolo", "ticker": "MNQ1!", "quantity": 1}', "invalid_field", "action"),
    ('{"action": "buy", "ticker": "MNQ1!", "quantity": 1, "orderType": "limit"}', None, None),
    ('{"action": "buy", "ticker": "ZZZ1!", "quantity": 1}', "unknown_symbol", "ticker"),
    ('{"action": "buy", "ticker": "NQX9", "quantity": 1}', "unknown_symbol", "ticker"),
]


@pytest.mark.parametrize("body,code,field", BAD_INPUTS)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_bad_input_is_400_with_code_field_message_and_places_nothing(client, sim, body, code, field, content_type):
    r = post(client, body, content_type=content_type)
    assert r.status_code == 400, r.get_data(as_text=True)
    data = r.get_json()
    assert data["success"] is False
    err = data["error"]
    assert err["code"] and err["message"] and "field" in err
    if code is not None:
        assert err["code"] == code
    if field is not None:
        assert err["field"] == field
    assert sim.orders() == []


@pytest.mark.parametrize("content_type,body", [
    ("application/octet-stream", BUY.encode()),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n" + BUY.encode() + b"\r\n--xyz--\r\n"),
    ("image/png", BUY.encode()),
    ("text/plain", b'{"action":"buy","ticker":"MNQ1!","quantity":1,"x":"\xff\xfe"}'),
    ("application/json", b"\x80\x81\x82"),
])
def test_not_text_is_415_and_places_nothing(client, sim, content_type, body):
    r = client.post(f"/webhook/{SECRET}", data=body, headers={"Content-Type": content_type})
    assert r.status_code == 415
    err = r.get_json()["error"]
    assert err["code"] == "unsupported_media_type" and err["message"]
    assert sim.orders() == []


def test_oversize_body_is_413_and_places_nothing(client, sim):
    body = '{"action":"buy","ticker":"MNQ1!","quantity":1,"pad":"' + "x" * (64 * 1024) + '"}'
    r = post(client, body)
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "body_too_large"
    assert sim.orders() == []  # chunked (no Content-Length): tests/test_server_http.py


def test_exactly_64_kib_is_accepted(client, sim, app):
    ws_ready(app)
    head = '{"action":"buy","ticker":"MNQ1!","quantity":1,"pad":"'
    body = head + "x" * (64 * 1024 - len(head) - 2) + '"}'
    assert len(body) == 64 * 1024
    r = post(client, body)
    assert r.status_code == 200 and r.get_json()["status"] == "acked"


# -- valid signals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body,content_type", [
    (BUY, "application/json"),
    (BUY, "text/plain"),  # TradingView sends text/plain whenever the message is not exact JSON
    (BUY + "\n", "text/plain"),  # a trailing newline
    (BUY + "\r\n", "application/json"),
    ("\ufeff" + BUY, "text/plain; charset=utf-8"),
    (BUY, None),  # no Content-Type at all
])
def test_valid_signal_200_with_each_accounts_outcome(client, sim, app, body, content_type):
    ws_ready(app)
    started = time.perf_counter()
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(f"/webhook/{SECRET}", data=body.encode("utf-8"), headers=headers)
    assert time.perf_counter() - started < 2.0
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert data["success"] is True and data["status"] == "acked" and data["test"] is False
    assert data["contract"].startswith("MNQ")
    accounts = {a["account_name"]: a for a in data["accounts"]}
    assert set(accounts) == {"DEMO0001", "DEMO0002"}
    book = sim.orders()
    assert len(book) == 2
    for a in accounts.values():
        assert a["status"] == "acked" and a["transport"] == "websocket"
        assert isinstance(a["latency_ms"], (int, float)) and a["latency_ms"] >= 0
        assert len(a["order_ids"]) == 1 and len(a["cl_ord_ids"]) == 1
        entry = next(o for o in book if o["orderId"] == a["order_ids"][0])
        assert entry["clOrdId"] == a["cl_ord_ids"][0] and entry["transport"] == "websocket"
        assert entry["accountSpec"] == a["account_name"] and entry["action"] == "Buy"


def test_duplicate_is_200_and_places_nothing(client, sim, app):
    ws_ready(app)
    assert post(client, BUY).status_code == 200
    assert len(sim.orders()) == 2
    r = post(client, BUY + "\n")  # same payload, different bytes
    assert r.status_code == 200
    data = r.get_json()
    assert data["duplicate"] is True and data["signal_id"]
    # explicit ids: the id wins, even with a different payload
    assert post(client, '{"id":"alert-7","action":"sell","ticker":"MNQ1!","quantity":1}').status_code == 200
    r = post(client, '{"id":"alert-7","action":"sell","ticker":"MNQ1!","quantity":3}')
    assert r.status_code == 200 and r.get_json()["duplicate"] is True
    assert len(sim.orders()) == 4


def test_test_mode_places_nothing(client, sim):
    r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"test":true}')
    assert r.status_code == 200
    data = r.get_json()
    assert data["test"] is True and data["status"] == "validated"
    assert all(a["status"] == "validated" and a["planned"] for a in data["accounts"])
    assert sim.orders() == []


def test_nothing_to_do_is_200_skipped(client, sim):
    r = post(client, '{"action":"close","ticker":"MNQ1!"}')
    assert r.status_code == 200
    data = r.get_json()
    assert data["status"] == "skipped"
    assert all(a["status"] == "skipped" and "nothing_to_do" in a["error"] for a in data["accounts"])
    assert sim.orders() == []


def test_broker_rejection_is_200_with_the_reason(tmp_path):
    from phantom_scraper.tradovate_sim import SimConfig, Simulator, UserSpec
    from tests.helpers import SIM_TEST_CONFIG, server_settings
    from ultra_simple_server import create_app

    config = SimConfig(**{**SIM_TEST_CONFIG.__dict__, "risk_reject_async": False,
                          "users": (UserSpec(max_order_qty=2),)})
    with Simulator(config) as sim:
        app = create_app(server_settings(sim, tmp_path))
        runtime = app.extensions["runtime"]
        runtime.boot(wait=True)
        try:
            r = post(app.test_client(), '{"action":"buy","ticker":"MNQ1!","quantity":5}')
            assert r.status_code == 200, r.get_data(as_text=True)
            data = r.get_json()
            assert data["success"] is False and data["status"] == "failed"
            for a in data["accounts"]:
                assert a["status"] == "rejected" and "MaxOrderQty" in a["error"]
            assert all(o["orderId"] is None and o["ordStatus"] == "Rejected" for o in sim.orders())
        finally:
            runtime.shutdown(5)


def test_slow_broker_gets_202_inside_the_budget_then_completes(make_server_app, sim):
    app = make_server_app(webhook_budget_s=0.2)
    c = app.test_client()
    ws_ready(app)
    sim.faults.response_latency_ms = 600
    started = time.perf_counter()
    r = post(c, '{"action":"buy","ticker":"MES1!","quantity":1}')
    elapsed = time.perf_counter() - started
    assert r.status_code == 202, r.get_data(as_text=True)
    assert elapsed < 1.0
    data = r.get_json()
    assert data["status"] == "executing" and data["signal_id"]

    def done():
        signals = c.get("/api/signals", headers=ADMIN_HEADERS).get_json()["signals"]
        mine = [s for s in signals if s["id"] == data["signal_id"]]
        return mine and mine[0]["status"] == "acked" and mine[0]

    signal = wait_for(done, timeout_s=10)
    assert {i["state"] for i in signal["intents"]} == {"acked"}
    assert len(sim.orders()) == 2


def test_default_budget_answers_inside_3s_even_when_the_broker_hangs(make_server_app, sim):
    app = make_server_app()  # default webhook_budget_s = 2 s
    assert app.extensions["runtime"].settings.webhook_budget_s == 2.0
    ws_ready(app)
    sim.faults.response_latency_ms = 2600
    started = time.perf_counter()
    r = post(app.test_client(), '{"action":"buy","ticker":"M2K1!","quantity":1}')
    assert time.perf_counter() - started < 2.5
    assert r.status_code == 202
    sim.faults.response_latency_ms = 0


# -- allow-list ------------------------------------------------------------------------------------

TV_IP = "52.89.214.238"


def test_allow_list(make_server_app, sim):
    app = make_server_app(ip_allowlist_enabled=True)
    c = app.test_client()
    r = post(c, BUY)  # from 127.0.0.1
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden_source"
    # proxy headers are not trusted unless configured
    r = post(c, BUY, headers={"X-Forwarded-For": TV_IP})
    assert r.status_code == 403
    assert sim.orders() == []
    r = post(c, '{"action":"buy","ticker":"MNQ1!","quantity":1,"test":true}', environ_base={"REMOTE_ADDR": TV_IP})
    assert r.status_code == 200 and r.get_json()["status"] == "validated"
    r = post(c, BUY, token=None, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert r.status_code == 403


def test_allow_list_behind_a_trusted_proxy(make_server_app, sim):
    app = make_server_app(ip_allowlist_enabled=True, trust_proxy_headers=True)
    c = app.test_client()
    test_buy = '{"action":"buy","ticker":"MNQ1!","quantity":1,"test":true}'
    assert post(c, test_buy, headers={"X-Forwarded-For": TV_IP}).status_code == 200
    assert post(c, test_buy, headers={"X-Forwarded-For": f"1.2.3.4, {TV_IP}"}).status_code == 200
    # the left-most entry comes from the client: forging it does not help
    assert post(c, test_buy, headers={"X-Forwarded-For": f"{TV_IP}, 1.2.3.4"}).status_code == 403
    assert post(c, test_buy).status_code == 403
    assert sim.orders() == []


# -- /api/websocket-status -----------------------------------------------------------------------

def test_websocket_status_shape(client, app, sim):
    ws_ready(app)
    assert post(client, BUY).status_code == 200
    r = client.get("/api/websocket-status")
    assert r.status_code == 200 and r.mimetype == "application/json"
    text = r.get_data(as_text=True)
    assert "\n  " in text  # indented for a browser
    body = json.loads(text)
    assert body["success"] is True and body["websocket_orders_enabled"] is True
    pool = body["connection_pool"]
    assert pool["size"] == 2 and set(pool["connections"]) == {"10001", "10002"}
    for c in pool["connections"].values():
        assert c["ws_connected"] is True and c["has_websocket"] is True and c["is_demo"] is True
        assert c["state"] == "open"
        assert c["connected_since"] <= time.time()
        assert isinstance(c["seconds_since_heartbeat"], (int, float)) and 0 <= c["seconds_since_heartbeat"] < 5
        assert c["reconnect_count"] == 0
        assert c["orders_via_websocket"] >= 1 and c["orders_via_rest"] == 0
        assert c["last_order_latency_ms"] is not None and c["last_order_latency_ms"] >= 0
        assert 0 < c["token_expires_in_s"] <= sim.config.token_lifetime_s
    daemon = body["keepalive_daemon"]
    assert daemon["running"] is True and daemon["interval_s"] == 0.5
    # a real heartbeat gets recorded (heartbeat_interval_s = 0.2 in tests)
    time.sleep(0.3)
    c = client.get("/api/websocket-status").get_json()["connection_pool"]["connections"]["10001"]
    assert c["seconds_since_heartbeat"] < 0.3


def test_websocket_status_counts_a_reconnect(client, app, sim):
    ws_ready(app)
    sim.close_all_sockets()

    def reconnected():
        c = client.get("/api/websocket-status").get_json()["connection_pool"]["connections"]["10001"]
        return c["ws_connected"] and c["reconnect_count"] >= 1
    wait_for(reconnected, timeout_s=5)


# -- /api/manual-trade and /api/signals ----------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"X-Admin-Token": "nope"},
                                     {"Authorization": f"Basic {ADMIN}"}, {"Authorization": f"Bearer {SECRET}"}])
def test_admin_routes_refuse_without_the_admin_token(client, sim, headers):
    r = client.post("/api/manual-trade", data=BUY, content_type="application/json", headers=headers)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
    r = client.get("/api/signals", headers=headers)
    assert r.status_code == 401
    assert sim.orders() == []


def test_admin_routes_disabled_without_admin_token(make_server_app, sim):
    c = make_server_app(admin_token=None).test_client()
    r = c.post("/api/manual-trade", data=BUY, content_type="application/json", headers=ADMIN_HEADERS)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "admin_disabled"
    assert c.get("/api/signals", headers=ADMIN_HEADERS).status_code == 403
    assert sim.orders() == []


def test_manual_trade_takes_the_webhooks_fast_path_and_is_journaled(client, app, sim, caplog):
    """Manual trades use the pooled socket like webhooks (issue 18: one WebSocket switch, no REST-only
    wrapper, no false "REST fallback" WARNING); they used to go over REST."""
    ws_ready(app)
    with caplog.at_level(logging.WARNING):
        r = client.post("/api/manual-trade", data='{"action":"sell","ticker":"MES1!","quantity":2,"account":"DEMO0002"}',
                        content_type="application/json", headers={"X-Admin-Token": ADMIN})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert not [rec for rec in caplog.records if "REST fallback" in rec.getMessage()]
    data = r.get_json()
    assert data["status"] == "acked"
    (result,) = data["results"]
    assert result["account_name"] == "DEMO0002" and result["transport"] == "websocket"
    (order,) = sim.orders()
    assert order["transport"] == "websocket" and order["accountSpec"] == "DEMO0002" and order["orderQty"] == 2
    assert order["clOrdId"] == result["cl_ord_ids"][0]
    status = client.get("/api/websocket-status").get_json()["connection_pool"]["connections"]["10002"]
    assert status["orders_via_websocket"] == 1 and status["orders_via_rest"] == 0
    signals = client.get("/api/signals", headers=ADMIN_HEADERS).get_json()["signals"]
    assert signals[0]["recorder"] == "manual" and signals[0]["intents"][0]["state"] == "acked"
    # close it again, manually: the position is read (over REST) and flattened
    r = client.post("/api/manual-trade", data='{"action":"close","ticker":"MES1!","account":"DEMO0002"}',
                    content_type="application/json", headers=ADMIN_HEADERS)
    assert r.status_code == 200 and r.get_json()["status"] == "acked", r.get_data(as_text=True)
    assert all(n == 0 for n in sim.positions().values())


@pytest.mark.parametrize("body,status,code", [
    ('{"action":"buy","ticker":"MNQ1!","quantity":0}', 400, "invalid_field"),
    ('{"action":"buy","ticker":"MNQ1!"', 400, "invalid_json"),
    ('{"action":"buy","ticker":"QQQ1!","quantity":1}', 400, "unknown_symbol"),
    ('{"action":"buy","ticker":"MNQ1!","quantity":1,"account":"NOPE"}', 400, "unknown_account"),
    ('{"action":"buy","ticker":"MNQ1!","quantity":1,"account":5}', 400, "invalid_field"),
])
def test_manual_trade_bad_input(client, sim, body, status, code):
    r = client.post("/api/manual-trade", data=body, content_type="application/json", headers=ADMIN_HEADERS)
    assert r.status_code == status, r.get_data(as_text=True)
    err = r.get_json()["error"]
    assert err["code"] == code and err["message"] and "field" in err
    assert sim.orders() == []


def test_manual_trade_test_mode_and_media_types(client, sim):
    r = client.post("/api/manual-trade", data='{"action":"buy","ticker":"MNQ1!","test":true}',
                    content_type="application/json", headers=ADMIN_HEADERS)
    assert r.status_code == 200 and r.get_json()["status"] == "validated"
    r = client.post("/api/manual-trade", data=b"\x00\xff", content_type="application/octet-stream",
                    headers=ADMIN_HEADERS)
    assert r.status_code == 415
    assert sim.orders() == []


def test_api_signals_lists_outcomes(client, app, sim):
    ws_ready(app)
    post(client, BUY)
    post(client, '{"action":"buy","ticker":"ZZZ1!","quantity":1}')  # unknown symbol, journaled as rejected
    # (final states and statuses are written just after each answer: phantom_scraper/execution/final_writes.py)
    r = wait_for(lambda: (lambda r: "received" not in [s["status"] for s in r.get_json()["signals"]] and r)(
        client.get("/api/signals?limit=5", headers=ADMIN_HEADERS)), what="final statuses")
    assert r.status_code == 200
    signals = r.get_json()["signals"]
    assert [s["status"] for s in signals] == ["rejected", "acked"]
    acked = signals[1]
    assert acked["payload"]["ticker"] == "MNQ1!"
    assert {i["account_name"] for i in acked["intents"]} == {"DEMO0001", "DEMO0002"}
    assert all(i["transport"] == "websocket" and i["state"] == "acked" for i in acked["intents"])
    assert client.get("/api/signals?limit=abc", headers=ADMIN_HEADERS).status_code == 200


# -- other routes ----------------------------------------------------------------------------------

def test_unknown_route_and_wrong_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.get(f"/webhook/{SECRET}")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    assert client.post("/api/websocket-status").status_code == 405


def test_status_page_before_and_after_a_trade(client, app):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "No signals yet" in page and SECRET not in page
    ws_ready(app)
    post(client, BUY)
    page = wait_for(lambda: (lambda p: "via websocket" in p and p)(client.get("/").get_data(as_text=True)),
                    what="the trade on the status page")
    assert "No signals yet" not in page
    assert "via websocket" in page and " ms" in page and "MNQ1!" in page


def test_stop_with_nothing_in_flight_is_quick(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    c = app.test_client()
    post(c, BUY)
    post(c, BUY)  # a duplicate must not leave a signal counted "in flight"
    post(c, '{"action":"buy","ticker":"ZZZ1!","quantity":1}')
    started = time.perf_counter()
    app.extensions["runtime"].shutdown(timeout_s=5)
    assert time.perf_counter() - started < 1.0
    assert sim.ws_session_count() == 0
    r = post(c, BUY)
    assert r.status_code == 503
