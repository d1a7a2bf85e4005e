"""Exactly-once for real: the four ways a signal used to make two orders (or record an executed
order as failed), each reproduced against the simulator, plus the DUPLICATE alarm and the owner
lease.  Time constants are scaled down (a broker "12 s late" is 1.5 s late here, with an ack
timeout and a drain far shorter than that).
"""
from __future__ import annotations

import collections
import json
import socket
import threading
import time

import pytest
import requests

import recorder_service
from phantom_scraper.errors import OutcomeUnknownError
from phantom_scraper.journal.journal import Journal
from phantom_scraper.tradovate.search import recent_duplicates
from phantom_scraper.tradovate.outcome import Outcome, attempt_of
from phantom_scraper.tradovate.rest import RestClient
from phantom_scraper.tradovate_sim import Simulator, UserSpec
from phantom_scraper.tradovate_sim.handlers import Reply
from tests.helpers import SIM_TEST_CONFIG, book_orders, post_webhook, server_settings, settle

THREE = ("DEMO0001", "DEMO0002", "DEMO0003")
PLACE = ("order/placeorder", "order/placeoso", "order/liquidateposition")


class OrderSpy:
    """Wraps the simulator's dispatcher: every order request that reached the broker, by intent id
    and transport, with the status it was answered with."""

    def __init__(self, sim, rest_answer=None):
        self.calls = collections.defaultdict(list)  # intent id -> [(transport, status)]
        self._lock = threading.Lock()  # serialises appends from the simulator's threads
        self._dispatch = sim.api.dispatch
        self._rest_answer = rest_answer
        sim.api.dispatch = self

    def __call__(self, req):
        name = req.endpoint.strip().lstrip("/").lower()
        name = name[3:] if name.startswith("v1/") else name
        if name not in PLACE:
            return self._dispatch(req)
        try:
            body = json.loads(req.body or "{}")
        except ValueError:
            body = {}
        intent = body.get("clOrdId") or body.get("customTag50")
        if req.transport == "rest" and self._rest_answer is not None:
            reply = self._rest_answer(req)
        else:
            reply = self._dispatch(req)
        with self._lock:
            self.calls[intent].append((req.transport, reply.status))
        return reply


@pytest.fixture
def sim3():
    simulator = Simulator(SIM_TEST_CONFIG.replace(users=(UserSpec(accounts=THREE),))).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def apps():
    made = []
    yield made
    for app in reversed(made):
        app.extensions["runtime"].shutdown(timeout_s=2.0)


def boot(sim, tmp_path, apps, **overrides):
    from ultra_simple_server import create_app

    overrides.setdefault("database_path", str(tmp_path / "journal.sqlite3"))
    app = create_app(server_settings(sim, tmp_path, **overrides), boot_on_first_request=False)
    apps.append(app)
    runtime = app.extensions["runtime"]
    runtime.boot(wait=True)
    assert runtime.service.state == "ready", runtime.service.start_error
    assert settle(lambda: all(c.live_client() is not None for c in recorder_service.logins_snapshot()), 5.0)
    return app


def intents_of(journal, signal_id):
    return {i["account_name"]: i for i in journal.intents_for_signal(signal_id)}


# -- break 1: shutdown turned the search into an immediate resend ----------------------------------

def test_sigterm_with_three_accounts_frames_held_gives_exactly_one_order_each_after_restart(sim3, tmp_path, apps):
    app = boot(sim3, tmp_path, apps, order_ack_timeout_s=0.4, reconcile_window_s=2.0, webhook_budget_s=0.2)
    spy = OrderSpy(sim3)
    sim3.faults.hold_orders_ms = 1500  # the broker holds the three frames far past ack timeout and drain
    sim3.faults.hold_next_orders = 3
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "held-3"})
    assert status in (200, 202), body
    signal_id = body["signal_id"]
    assert settle(lambda: sim3.faults.hold_next_orders == 0, 2.0)  # all three frames reached the broker
    app.extensions["runtime"].shutdown(timeout_s=0.3)  # SIGTERM's path: a drain shorter than the hold
    # the broker executes the held frames after the process has stopped
    assert settle(lambda: len(book_orders(sim3)) >= 3, 5.0)
    time.sleep(0.3)  # give a wrong resend every chance to show up
    with Journal(str(tmp_path / "journal.sqlite3")) as j:
        states = {name: i["state"] for name, i in intents_of(j, signal_id).items()}
    assert set(states.values()) <= {"unknown", "sending"}, states  # never 'rejected', never resent
    app2 = boot(sim3, tmp_path, apps)  # the next start reconciles, without resending
    journal = app2.extensions["runtime"].service.journal
    intents = intents_of(journal, signal_id)
    assert sorted(intents) == list(THREE)
    per_account = collections.Counter(o["accountId"] for o in book_orders(sim3))
    assert sorted(per_account.values()) == [1, 1, 1], book_orders(sim3)
    for name, intent in intents.items():
        assert intent["state"] == "reconciled", intent
        [order] = [o for o in book_orders(sim3) if o.get("clOrdId") == intent["cl_ord_id"]]
        assert intent["broker_order_id"] == order["orderId"]
        assert len(spy.calls[intent["cl_ord_id"]]) == 1, spy.calls[intent["cl_ord_id"]]


# -- break 2: the resend after the search duplicated ------------------------------------------------

def test_broker_executing_late_gives_exactly_one_order_and_the_intent_settles_reconciled(sim, tmp_path, apps):
    app = boot(sim, tmp_path, apps, order_ack_timeout_s=0.3, reconcile_window_s=0.3, keepalive_interval_s=0.2,
               webhook_budget_s=3.0)
    spy = OrderSpy(sim)
    sim.faults.hold_orders_ms = 1500  # executes after ack timeout + search window ("20 s late")
    sim.faults.hold_next_orders = 2
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "late"})
    assert status == 200, body
    # the webhook answer says what is known: the outcome is unknown, neither success nor failure
    assert body["status"] == "unknown" and {a["status"] for a in body["accounts"]} == {"unknown"}, body
    assert body["success"] is None, body
    journal = app.extensions["runtime"].service.journal
    attention = app.extensions["runtime"].service.status()["orders_needing_attention"]
    assert len(attention["unknown"]) == 2
    assert settle(lambda: {i["state"] for i in intents_of(journal, body["signal_id"]).values()} == {"reconciled"}, 6.0)
    assert len(book_orders(sim)) == 2
    for intent in intents_of(journal, body["signal_id"]).values():
        assert spy.calls[intent["cl_ord_id"]] == [("websocket", 200)]
        [order] = [o for o in book_orders(sim) if o.get("clOrdId") == intent["cl_ord_id"]]
        assert intent["broker_order_id"] == order["orderId"]
    assert app.extensions["runtime"].service.status()["orders_needing_attention"]["unknown"] == []


# -- break 3: a 429 on the resend journaled an executed order as final 'rejected' --------------------

def test_429_after_an_unknown_outcome_never_journals_rejected(sim, tmp_path, apps):
    app = boot(sim, tmp_path, apps, order_ack_timeout_s=0.3, reconcile_window_s=0.3, keepalive_interval_s=0.2,
               webhook_budget_s=3.0)
    spy = OrderSpy(sim, rest_answer=lambda req: Reply(429))  # any REST order attempt: rate limited
    sim.faults.hold_orders_ms = 1200
    sim.faults.hold_next_orders = 2
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1,
                                                    "id": "late-429"})
    assert status == 200, body
    journal = app.extensions["runtime"].service.journal
    states = {i["state"] for i in intents_of(journal, body["signal_id"]).values()}
    assert "rejected" not in states, states
    assert settle(lambda: {i["state"] for i in intents_of(journal, body["signal_id"]).values()} == {"reconciled"}, 6.0)
    for intent in intents_of(journal, body["signal_id"]).values():
        assert [t for t, _ in spy.calls[intent["cl_ord_id"]]] == ["websocket"]  # nothing over REST


# -- break 4: an answer cut mid-body after execution was "not sent" ---------------------------------

class CutAnswerServer:
    """Answers every request with a chunked 200 cut in the middle of its body (after 'executing')."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="cut-answer")
        self._thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests += 1  # the broker has the order now
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"40\r\n{\"orderId\": 12")  # 0x40 bytes announced, 13 sent, then the line drops

    def close(self):
        self.sock.close()


def test_answer_cut_mid_body_after_execution_is_unknown_not_not_sent():
    server = CutAnswerServer()
    client = RestClient(f"http://127.0.0.1:{server.port}/v1", timeout_s=2.0)
    try:
        with pytest.raises(OutcomeUnknownError):
            client.send("POST", "order/placeorder", token="t", body={"clOrdId": "cut-1"})
        attempt = attempt_of("rest", lambda: client.send("POST", "order/placeorder", token="t",
                                                         body={"clOrdId": "cut-2"}))
        assert attempt.outcome is Outcome.UNKNOWN
        assert server.requests == 2
        with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the library error underneath
            requests.post(f"http://127.0.0.1:{server.port}/v1/order/placeorder", json={}, timeout=2.0)
    finally:
        client.close()
        server.close()


# -- DUPLICATE alarm ------------------------------------------------------------------------------

def test_a_second_broker_order_for_one_intent_raises_the_duplicate_alarm(sim, tmp_path, apps, caplog):
    app = boot(sim, tmp_path, apps, keepalive_interval_s=0.2)
    service = app.extensions["runtime"].service
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "dup"})
    assert status == 200 and body["status"] == "acked", body
    # (the final state is journaled just after the answer: phantom_scraper/execution/final_writes.py)
    assert settle(lambda: service.journal.intents_for_signal(body["signal_id"])[0]["state"] == "acked", 5.0)
    intent = service.journal.intents_for_signal(body["signal_id"])[0]
    # someone (never this server) places a second order carrying the same clOrdId
    ti = service.integration_for_account(intent["account_id"])
    ti.place_order_rest(dict(intent["request"], clOrdId=intent["cl_ord_id"]))
    # the alarm fires on the next search: an unknown intent of the same login makes one happen
    other = service.journal.record_signal("t", {"x": 1}, "dup-probe", "h", 0)[0]
    service.journal.create_intent(other, intent["account_id"], "DEMO0001", 0, "placeorder", {}, "ps-probe-1-0",
                                  state="sending")
    service.journal.set_intent_state("ps-probe-1-0", "unknown", error="test")
    assert settle(lambda: any(d["intent_id"] == intent["cl_ord_id"] for d in recent_duplicates()), 5.0)
    assert any("DUPLICATE" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    dups = service.status()["orders_needing_attention"]["duplicates"]
    assert any(d["intent_id"] == intent["cl_ord_id"] and intent["broker_order_id"] in d["order_ids"] for d in dups)


# -- owner lease ----------------------------------------------------------------------------------

def test_start_up_reconciliation_touches_only_intents_whose_owner_is_gone(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    live, gone = Journal(path), Journal(path)
    sid = live.record_signal("t", {"a": 1}, "lease", "h", 0)[0]
    live.create_intent(sid, 1, "A", 0, "placeorder", {}, "ps-live-1-0", state="sending")
    gone.create_intent(sid, 2, "B", 0, "placeorder", {}, "ps-gone-2-0", state="sending")
    gone.close()  # its lease is released
    newcomer = Journal(path)
    try:
        assert [i["cl_ord_id"] for i in newcomer.pending_intents(orphaned_only=True)] == ["ps-gone-2-0"]
        live.close()
        assert [i["cl_ord_id"] for i in newcomer.pending_intents(orphaned_only=True)] == ["ps-live-1-0", "ps-gone-2-0"]
    finally:
        newcomer.close()


def test_an_expired_lease_counts_as_gone(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    stale = Journal(path, lease_ttl_s=0.2)
    sid = stale.record_signal("t", {"a": 1}, "lease2", "h", 0)[0]
    stale.create_intent(sid, 1, "A", 0, "placeorder", {}, "ps-stale-1-0", state="sending")
    stale._stop_lease.set()  # its heartbeat stops, as in a frozen process
    stale._lease_thread.join(2.0)
    observer = Journal(path, lease_ttl_s=0.2)
    try:
        assert settle(lambda: [i["cl_ord_id"] for i in observer.pending_intents(orphaned_only=True)]
                      == ["ps-stale-1-0"], 3.0)
    finally:
        observer.close()
        stale.close()


def test_the_lease_is_written_outside_its_lock_once_for_concurrent_first_callers(tmp_path):
    """Taking the lease is a database write (network I/O on Postgres): never under ``_lease_lock``.
    Threads asking for it together all get the one lease the first of them took."""
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    real_write, under_lock, writes = journal._write, [], []
    entered, go = threading.Event(), threading.Event()

    def watched_write(fn, *args, **kwargs):
        under_lock.append(journal._lease_lock.locked())
        writes.append(1)
        entered.set()
        go.wait(5.0)  # the other callers arrive while the first write is in flight
        return real_write(fn, *args, **kwargs)

    journal._write = watched_write
    ids, lock = [], threading.Lock()  # lock: serialises appends to ids

    def ask():
        owner = journal.owner_id
        with lock:
            ids.append(owner)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    try:
        threads[0].start()
        assert entered.wait(5.0)
        for t in threads[1:]:
            t.start()
        assert journal._lease_lock.acquire(timeout=5.0)  # free while the write is in flight
        journal._lease_lock.release()
        go.set()
        for t in threads:
            t.join(5.0)
        assert under_lock == [False] and len(writes) == 1
        assert len(ids) == 4 and len(set(ids)) == 1 and ids[0] == journal.owner_id
    finally:
        go.set()
        journal._write = real_write
        journal.close()


# -- health checks never create unknowns ----------------------------------------------------------

def _order_in_flight(app, sim, hold_ms):
    """Start one order over the pooled socket whose frame the broker holds ``hold_ms``; returns
    (connection, thread, result holder)."""
    service = app.extensions["runtime"].service
    conn = recorder_service.logins_snapshot()[0]
    ti = conn.integration
    acct = next(iter(service.logins.values())).accounts["DEMO0001"]
    body = {"accountSpec": "DEMO0001", "accountId": acct["id"], "action": "Buy",
            "symbol": ti.suggest_contracts("MNQ")[0]["name"], "orderQty": 1, "orderType": "Market"}
    sim.faults.hold_orders_ms = hold_ms
    sim.faults.hold_next_orders = 1
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=ti.place_order_smart(body, ws=conn.live_client(),
                                                                                  cl_ord_id="ps-health-1-0")))
    thread.start()
    assert settle(lambda: sim.faults.hold_next_orders == 0, 2.0)
    return conn, thread, result


@pytest.mark.parametrize("fault", ["http_429_next", "penalty_next", "http_500_next"])
def test_a_health_check_answered_with_an_error_keeps_the_socket_and_the_order(sim, tmp_path, apps, fault):
    app = boot(sim, tmp_path, apps, keepalive_interval_s=30.0, order_ack_timeout_s=3.0)
    conn, thread, result = _order_in_flight(app, sim, 600)
    client = conn.live_client()
    setattr(sim.faults, fault, 1)  # the probe's account/list is answered 429 / penalty / 500
    assert conn.check(1.0) is True
    assert client.is_open and conn.live_client() is client
    thread.join(5.0)
    assert (result["r"].status, result["r"].transport, result["r"].reconciled) == ("acked", "websocket", False)


def test_a_health_check_that_times_out_waits_for_orders_in_flight_before_closing(sim, tmp_path, apps):
    app = boot(sim, tmp_path, apps, keepalive_interval_s=30.0, order_ack_timeout_s=3.0)
    conn, thread, result = _order_in_flight(app, sim, 800)
    client = conn.live_client()
    sim.faults.blackhole_next_responses = 1  # the probe goes unanswered
    assert conn.check(0.2) is False
    assert client.is_open  # the order's answer is still on its way
    assert conn.live_client() is not client  # but new orders no longer use the failed socket
    thread.join(5.0)
    assert (result["r"].status, result["r"].transport, result["r"].reconciled) == ("acked", "websocket", False)
    assert settle(lambda: not client.is_open, 3.0)  # then the failed socket is replaced


# -- token expiry on the server's clock -----------------------------------------------------------

class _SkewedTime:
    """The ``time`` module as seen by a machine whose clock is ``skew_s`` ahead."""

    def __init__(self, skew_s):
        self.skew_s = skew_s

    def time(self):
        return time.time() + self.skew_s

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.mark.parametrize("skew_s", [600.0, -600.0])
def test_a_skewed_local_clock_neither_renews_on_every_call_nor_after_expiry(monkeypatch, skew_s):
    from phantom_scraper.tradovate import auth as tradovate_auth
    from phantom_scraper.tradovate import rest as tradovate_rest
    from phantom_scraper.config import Credentials, Settings
    from phantom_scraper.tradovate_integration import TradovateIntegration

    simulator = Simulator(SIM_TEST_CONFIG.replace(token_lifetime_s=1200.0)).start()
    try:
        calls = collections.Counter()
        dispatch = simulator.api.dispatch

        def counting(req):
            calls[req.endpoint.strip("/").lower()] += 1
            return dispatch(req)

        simulator.api.dispatch = counting
        monkeypatch.setattr(tradovate_auth, "time", _SkewedTime(skew_s))
        monkeypatch.setattr(tradovate_rest, "time", _SkewedTime(skew_s))
        ti = TradovateIntegration(Credentials("demo", "demo"), simulator.rest_url, simulator.ws_url,
                                  settings=Settings(token_renew_margin_s=300.0))
        try:
            ti.authenticate()
            for _ in range(3):
                ti.ensure_token()
            assert calls["auth/accesstokenrequest"] == 1
            assert calls["auth/renewaccesstoken"] == 0
            lifetime_left = ti.token_expires_at - (time.time() + skew_s)  # on the local (skewed) clock
            assert 1100 < lifetime_left <= 1201, lifetime_left
        finally:
            ti.close()
    finally:
        simulator.stop()


# -- a captcha penalty at start-up is waited out, not final ------------------------------------------

def test_a_captcha_penalty_at_start_up_is_retried_with_back_off(sim, tmp_path, apps):
    from ultra_simple_server import create_app

    sim.faults.penalty_time_s = 0.2
    sim.faults.penalty_captcha = True
    sim.faults.penalty_next = 1  # the first login answers a captcha penalty
    app = create_app(server_settings(sim, tmp_path, database_path=str(tmp_path / "j.sqlite3")),
                     boot_on_first_request=False)
    apps.append(app)
    runtime = app.extensions["runtime"]
    runtime.boot(wait=False)
    seen_error = []

    def ready():
        service = runtime.service
        if service.start_error:
            seen_error.append(service.status()["start_error"])
        return service.state == "ready"

    assert settle(ready, 5.0), runtime.service.start_error
    assert any("captcha" in e for e in seen_error), seen_error  # shown while retrying
