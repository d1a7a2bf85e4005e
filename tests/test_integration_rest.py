"""REST boundary: library errors and broker answers translated into errors.py (no simulator)."""
from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone

import pytest
import responses

from phantom_scraper.config import Credentials, Settings
from phantom_scraper.errors import (
    AuthError,
    BrokerError,
    NotSentError,
    OrderRejectedError,
    OutcomeUnknownError,
    PenaltyError,
    RateLimitedError,
)
from phantom_scraper.tradovate.auth import Token, parse_expiration
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate.rest import RestClient
from phantom_scraper.tradovate.wire import check_order_result

BASE = "http://broker.invalid/v1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """Accepts TCP connections, reads, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_connection_refused_is_not_sent():
    rest = RestClient(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1)
    with pytest.raises(NotSentError):
        rest.send("POST", "order/placeorder", body={})


def test_read_timeout_after_sending():
    srv = SilentServer()
    try:
        rest = RestClient(f"http://127.0.0.1:{srv.port}/v1", timeout_s=0.2)
        with pytest.raises(OutcomeUnknownError):
            rest.send("POST", "order/placeorder", body={})
        with pytest.raises(BrokerError):
            rest.send("GET", "order/list")
    finally:
        srv.close()


@responses.activate
def test_status_translation():
    rest = RestClient(BASE)
    responses.add(responses.POST, f"{BASE}/order/placeorder", status=500, body="Internal Server Error")
    with pytest.raises(OutcomeUnknownError):
        rest.send("POST", "order/placeorder", body={})
    responses.add(responses.GET, f"{BASE}/order/list", status=500)
    with pytest.raises(BrokerError):
        rest.send("GET", "order/list")
    responses.add(responses.POST, f"{BASE}/order/cancelorder", status=429, body="")
    with pytest.raises(RateLimitedError):
        rest.send("POST", "order/cancelorder", body={})
    responses.add(responses.GET, f"{BASE}/account/list", status=401)
    with pytest.raises(BrokerError) as info:
        rest.send("GET", "account/list")
    assert info.value.status == 401
    responses.add(responses.POST, f"{BASE}/order/placeoso", json={"p-ticket": "PT", "p-time": 3})
    with pytest.raises(PenaltyError) as pen:
        rest.send("POST", "order/placeoso", body={})
    assert pen.value.p_ticket == "PT" and pen.value.retry_after_s == 3


def test_order_result_shapes():
    assert check_order_result("order/placeorder", {"orderId": 5}) == {"orderId": 5}
    assert check_order_result("order/placeorder", {"orderId": 5, "failureReason": "Success"})["orderId"] == 5
    with pytest.raises(OrderRejectedError) as info:
        check_order_result("order/placeorder", {"failureReason": "InvalidContract", "failureText": "nope"})
    assert info.value.failure_reason == "InvalidContract"
    with pytest.raises(OrderRejectedError):
        check_order_result("order/placeorder", {"violations": [{"constraint": "x"}]})
    with pytest.raises(OutcomeUnknownError):
        check_order_result("order/placeorder", {})


def test_expiration_parsing_and_renew_margin():
    assert parse_expiration("2024-01-15T09:30:00Z") == 1705311000.0
    assert parse_expiration("2024-01-15T09:30:00.1234567Z") == pytest.approx(1705311000.1234567, abs=1e-5)
    assert parse_expiration(None) is None and parse_expiration("garbage") is None
    tok = Token("t", expires_at=1000.0 + 4800, issued_at=1000.0)
    assert tok.renew_at(900) == 1000.0 + 4800 - 900
    short = Token("t", expires_at=1003.0, issued_at=1000.0)
    assert short.renew_at(900) == 1002.0  # a third of a short lifetime


@responses.activate
def test_login_error_text_names_cause_never_password():
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest",
                  json={"errorText": "Incorrect username or password."})
    ti = TradovateIntegration(Credentials("alice", "s3cret-pw"), BASE, settings=Settings())
    with pytest.raises(AuthError) as info:
        ti.authenticate()
    assert "Incorrect username" in str(info.value) and "s3cret" not in str(info.value)


@responses.activate
def test_login_penalty_waited_then_resent_with_ticket():
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest", json={"p-ticket": "PT1", "p-time": 0.1})
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest",
                  json={"accessToken": "AT", "expirationTime": "2099-01-01T00:00:00Z", "userId": 1})
    ti = TradovateIntegration(Credentials("alice", "pw"), BASE, settings=Settings(penalty_max_wait_s=1))
    started = time.monotonic()
    assert ti.authenticate() == "AT"
    assert time.monotonic() - started >= 0.1
    import json
    assert json.loads(responses.calls[1].request.body)["p-ticket"] == "PT1"


@responses.activate
def test_renew_failure_falls_back_to_login():
    soon = datetime.fromtimestamp(time.time() + 1.5, timezone.utc).isoformat().replace("+00:00", "Z")
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest",
                  json={"accessToken": "A1", "expirationTime": soon})
    responses.add(responses.GET, f"{BASE}/auth/renewaccesstoken", status=401)
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest",
                  json={"accessToken": "A2", "expirationTime": "2099-01-01T00:00:00Z"})
    ti = TradovateIntegration(Credentials("alice", "pw"), BASE, settings=Settings())
    assert ti.authenticate() == "A1"
    seen = []
    ti.add_token_listener(seen.append)
    assert ti.ensure_token() == "A1"  # not due yet
    time.sleep(1.05)  # within a third of the 1.5 s lifetime before expiry
    assert ti.ensure_token() == "A2" and seen == ["A2"]


@responses.activate
def test_a_second_401_fails_cleanly_after_one_relogin():
    ok = {"accessToken": "A", "expirationTime": "2099-01-01T00:00:00Z"}
    responses.add(responses.POST, f"{BASE}/auth/accesstokenrequest", json=ok)
    responses.add(responses.GET, f"{BASE}/account/list", status=401)
    ti = TradovateIntegration(Credentials("alice", "pw"), BASE, settings=Settings())
    with pytest.raises(AuthError):
        ti.list_accounts()
    logins = [c for c in responses.calls if c.request.url.endswith("accesstokenrequest")]
    lists = [c for c in responses.calls if "account/list" in c.request.url]
    assert len(logins) == 2 and len(lists) == 2


def test_concurrent_ensure_token_renews_once():
    renewals = []
    soon = datetime.fromtimestamp(time.time() + 0.9, timezone.utc).isoformat().replace("+00:00", "Z")

    def renew(request):
        renewals.append(1)
        time.sleep(0.1)  # slow broker: every other caller must wait for this one renewal
        return 200, {}, '{"accessToken": "R", "expirationTime": "2099-01-01T00:00:00Z"}'

    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{BASE}/auth/accesstokenrequest", json={"accessToken": "A", "expirationTime": soon})
        rsps.add_callback(responses.GET, f"{BASE}/auth/renewaccesstoken", callback=renew)
        ti = TradovateIntegration(Credentials("alice", "pw"), BASE, settings=Settings())
        ti.authenticate()
        time.sleep(0.65)  # within a third of the 0.9 s lifetime
        got = []
        threads = [threading.Thread(target=lambda: got.append(ti.ensure_token())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    assert got == ["R"] * 8 and len(renewals) == 1
