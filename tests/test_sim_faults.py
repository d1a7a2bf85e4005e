"""Fault switches (Python API and /control endpoint) and the simulator's CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from phantom_scraper.tradovate_sim import SimConfig, Simulator

from tests.helpers import assert_closed_within, next_message, open_ws, order, request, token_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rest(sim):
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token_of(sim)
    session.url = lambda endpoint: f"{sim.rest_url}/{endpoint}"
    yield session
    session.close()


def place_rest(rest, timeout=2.0, **extra):
    return rest.post(rest.url("order/placeorder"), json=order(**extra), timeout=timeout)


# ---- latency ------------------------------------------------------------------------------------
def test_response_latency_rest_and_ws(sim, rest):
    ws = open_ws(sim)
    sim.faults.response_latency_ms = 120
    start = time.monotonic()
    assert rest.get(rest.url("account/list")).status_code == 200
    assert time.monotonic() - start >= 0.12
    start = time.monotonic()
    assert request(ws, "account/list", 1)["s"] == 200
    assert time.monotonic() - start >= 0.12
    ws.close()


def test_connect_latency_once_per_connection(sim, rest):
    sim.faults.connect_latency_ms = 150
    start = time.monotonic()
    rest.get(rest.url("account/list"))
    first = time.monotonic() - start
    start = time.monotonic()
    rest.get(rest.url("account/list"))  # same keep-alive connection
    second = time.monotonic() - start
    assert first >= 0.15 and second < 0.1
    start = time.monotonic()
    connect(sim.ws_url, close_timeout=0.2).close()
    assert time.monotonic() - start >= 0.15


def test_refuse_ws_connects(sim):
    sim.faults.refuse_ws_connects = True
    with pytest.raises(InvalidStatus) as exc:
        connect(sim.ws_url, open_timeout=2)
    assert exc.value.response.status_code == 503
    sim.faults.refuse_ws_connects = False
    open_ws(sim).close()


# ---- order faults ---------------------------------------------------------------------------------
def test_no_answer_next_orders_ws(sim):
    ws = open_ws(sim)
    sim.faults.no_answer_next_orders = 1
    ws.send(f"order/placeorder\n1\n\n{json.dumps(order(clOrdId='lost'))}")
    with pytest.raises(TimeoutError):
        next_message(ws, lambda m: m.get("i") == 1, timeout=0.4)
    assert [o["clOrdId"] for o in sim.orders()] == ["lost"]  # executed
    assert request(ws, "account/list", 2)["s"] == 200  # non-order requests unaffected
    assert request(ws, "order/placeorder", 3, "", order())["s"] == 200  # only the next one
    ws.close()


def test_no_answer_next_orders_rest(sim, rest):
    sim.faults.no_answer_next_orders = 1
    with pytest.raises(requests.exceptions.ReadTimeout):
        place_rest(rest, timeout=0.3, clOrdId="lost")
    assert [o["clOrdId"] for o in sim.orders()] == ["lost"]
    assert sim.faults.no_answer_next_orders == 0


def test_close_after_next_orders_ws(sim):
    ws = open_ws(sim)
    sim.faults.close_after_next_orders = 1
    ws.send(f"order/placeorder\n1\n\n{json.dumps(order(clOrdId='c-1'))}")
    with pytest.raises(ConnectionClosed):
        next_message(ws, lambda m: m.get("i") == 1, timeout=1)
    assert [(o["clOrdId"], o["ordStatus"]) for o in sim.orders()] == [("c-1", "Filled")]


def test_close_after_next_orders_rest(sim, rest):
    sim.faults.close_after_next_orders = 1
    with pytest.raises(requests.exceptions.ConnectionError):
        place_rest(rest, clOrdId="c-2")
    assert [o["clOrdId"] for o in sim.orders()] == ["c-2"]


def test_blackhole_next_responses(sim, rest):
    ws = open_ws(sim)
    sim.faults.blackhole_next_responses = 1
    ws.send("account/list\n1\n\n")
    with pytest.raises(TimeoutError):
        next_message(ws, lambda m: m.get("i") == 1, timeout=0.3)
    assert request(ws, "account/list", 2)["s"] == 200
    sim.faults.blackhole_next_responses = 1
    with pytest.raises(requests.exceptions.ReadTimeout):
        rest.get(rest.url("account/list"), timeout=0.3)
    ws.close()


# ---- connection-level faults -----------------------------------------------------------------------
def test_close_all_sockets(sim, rest):
    rest.get(rest.url("account/list"))
    ws1, ws2 = open_ws(sim), open_ws(sim)
    assert sim.faults.close_all_sockets() >= 3  # two sockets and the keep-alive REST connection
    for ws in (ws1, ws2):
        with pytest.raises(ConnectionClosed):
            next_message(ws, timeout=1)  # no shutdown event: a plain drop
    open_ws(sim).close()


def test_expire_all_tokens_closes_sockets_and_rejects_rest(sim, rest):
    ws = open_ws(sim)
    assert sim.faults.expire_all_tokens() >= 1
    assert rest.get(rest.url("account/list")).status_code == 401
    assert_closed_within(ws, 1)


def test_http_429_next(sim, rest):
    ws = open_ws(sim)
    sim.faults.http_429_next = 2
    r = place_rest(rest)
    assert r.status_code == 429 and r.content == b"" and r.headers["Content-Length"] == "0"
    assert request(ws, "order/placeorder", 1, "", order()) == {"s": 429, "i": 1}
    assert sim.orders() == []  # not executed
    assert place_rest(rest).status_code == 200
    ws.close()


def test_request_faults_aimed_at_some_endpoints(sim, rest):
    """``request_faults_only``: the one-shot 429 / 500 / penalty wait for a request they name (a
    prefix ends in "/"), so a test's background requests cannot take them."""
    sim.faults.update({"request_faults_only": "contract/,order/cancelorder", "http_429_next": 1})
    assert place_rest(rest).status_code == 200  # not aimed at: executed, the fault still armed
    assert rest.get(rest.url("account/list"), timeout=2).status_code == 200
    assert rest.get(rest.url("contract/find"), params={"name": "NQZ6"}, timeout=2).status_code == 429
    assert rest.get(rest.url("contract/find"), params={"name": "NQZ6"}, timeout=2).status_code == 200
    assert len(sim.orders()) == 1
    sim.faults.reset()
    assert sim.faults.request_faults_only == ""


def test_http_500_next(sim, rest):
    ws = open_ws(sim)
    sim.faults.http_500_next = 2
    r = place_rest(rest)
    assert r.status_code == 500 and r.text.startswith("Internal Server Error, error id: ")
    msg = request(ws, "order/placeorder", 1, "", order())
    assert msg["s"] == 500 and msg["d"].startswith("Internal Server Error")
    assert sim.orders() == []
    ws.close()


def test_http_500_after_execute_when_configured():
    with Simulator(SimConfig(http_500_after_execute=True)) as sim:
        headers = {"Authorization": f"Bearer {token_of(sim)}"}
        sim.faults.http_500_next = 1
        r = requests.post(f"{sim.rest_url}/order/placeorder", json=order(), headers=headers)
        assert r.status_code == 500 and len(sim.orders()) == 1


def test_penalty_ticket_rest(sim, rest):
    sim.faults.update({"penalty_next": 1, "penalty_time_s": 0.2})
    penalty = place_rest(rest, clOrdId="p1").json()
    assert set(penalty) == {"p-ticket", "p-time"} and penalty["p-time"] == 0.2
    assert sim.orders() == []  # not executed
    early = rest.post(rest.url("order/placeorder"), json={**order(clOrdId="p1"), "p-ticket": penalty["p-ticket"]}).json()
    assert "p-ticket" in early and early["p-ticket"] != penalty["p-ticket"]
    time.sleep(0.25)
    done = rest.post(rest.url("order/placeorder"), json={**order(clOrdId="p1"), "p-ticket": early["p-ticket"]}).json()
    assert "orderId" in done and [o["clOrdId"] for o in sim.orders()] == ["p1"]


def test_penalty_ticket_ws_and_captcha(sim):
    ws = open_ws(sim)
    sim.faults.update({"penalty_next": 1, "penalty_time_s": 0.0, "penalty_captcha": True})
    msg = request(ws, "order/placeorder", 1, "", order())
    assert msg["s"] == 200 and msg["d"]["p-captcha"] is True and "p-ticket" in msg["d"]
    resend = request(ws, "order/placeorder", 2, "", {**order(), "p-ticket": msg["d"]["p-ticket"]})
    assert "orderId" in resend["d"]  # a captcha ticket is not redeemed; no penalty left
    ws.close()


def test_penalty_on_access_token_request_has_captcha(sim):
    sim.faults.penalty_next = 1
    body = requests.post(f"{sim.rest_url}/auth/accesstokenrequest", json={"name": "demo", "password": "demo"}).json()
    assert body["p-captcha"] is True and "accessToken" not in body


def test_send_shutdown_reason_code(sim):
    ws = open_ws(sim)
    sim.faults.send_shutdown("IPQuotaReached")
    assert next_message(ws, lambda m: m.get("e") == "shutdown")["d"]["reasonCode"] == "IPQuotaReached"


def test_fault_switch_names_checked(sim):
    with pytest.raises(AttributeError):
        sim.faults.no_such_switch = 1


# ---- control endpoint ------------------------------------------------------------------------------
CONTROL_SCRIPT = r"""
import json, sys, requests
base = sys.argv[1]
print(json.dumps(requests.post(base + "/faults", json={"http_429_next": 1, "response_latency_ms": 5}).json()))
"""


def test_control_endpoint_from_another_process(sim, rest):
    out = subprocess.run([sys.executable, "-c", CONTROL_SCRIPT, sim.control_url], capture_output=True,
                         text=True, timeout=30, check=True)
    assert json.loads(out.stdout)["http_429_next"] == 1
    assert sim.faults.http_429_next == 1 and sim.faults.response_latency_ms == 5
    assert place_rest(rest).status_code == 429
    control = sim.control_url
    assert requests.get(f"{control}/faults").json()["http_429_next"] == 0
    assert requests.post(f"{control}/faults", json={"bogus": 1}).status_code == 400
    place_rest(rest, clOrdId="k")
    book = requests.get(f"{control}/orders").json()
    assert [(o["clOrdId"], o["transport"]) for o in book] == [("k", "rest")]
    positions = requests.get(f"{control}/positions").json()
    assert positions[0]["symbol"] == "NQZ6" and positions[0]["netPos"] == 1
    assert requests.get(f"{control}/price", params={"symbol": "NQZ6"}).json()["price"] == 21000.0
    ws = open_ws(sim)
    assert requests.post(f"{control}/shutdown", json={"reasonCode": "Maintenance"}).json() == {"sent": 1}
    assert next_message(ws, lambda m: m.get("e") == "shutdown")
    ws = open_ws(sim)
    assert requests.post(f"{control}/close-all-sockets").json()["closed"] >= 1
    with pytest.raises(ConnectionClosed):
        next_message(ws, timeout=1)
    assert requests.post(f"{control}/expire-tokens").json()["expired"] >= 1
    assert rest.get(rest.url("account/list")).status_code == 401
    assert requests.post(f"{control}/reset").json() == {"ok": True}
    assert sim.orders() == [] and sim.faults.response_latency_ms == 0
    assert requests.get(f"{control}/nothing").status_code == 404


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_prints_urls_and_serves_until_terminated():
    proc = subprocess.Popen([sys.executable, "-m", "phantom_scraper.tradovate_sim", "--port", "0",
                             "--latency-ms", "1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        rest_line, ws_line = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert rest_line.startswith("REST http://127.0.0.1:") and rest_line.endswith("/v1")
        assert ws_line.startswith("WS ws://127.0.0.1:") and ws_line.endswith("/v1/websocket")
        md_line = proc.stdout.readline().strip()
        assert md_line.startswith("MD ws://127.0.0.1:") and md_line.endswith("/v1/websocket") and md_line[3:] != ws_line[3:]
        rest_url, ws_url = rest_line.split(" ", 1)[1], ws_line.split(" ", 1)[1]
        token = requests.post(f"{rest_url}/auth/accesstokenrequest", json={"name": "demo", "password": "demo"},
                              timeout=5).json()["accessToken"]
        with connect(ws_url, open_timeout=5) as ws:
            assert ws.recv(timeout=2) == "o"
            ws.send(f"authorize\n0\n\n{token}")
            assert json.loads(ws.recv(timeout=2)[1:]) == [{"s": 200, "i": 0}]
        faults = requests.get(rest_url.replace("/v1", "/control/faults"), timeout=5).json()
        assert faults["response_latency_ms"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
