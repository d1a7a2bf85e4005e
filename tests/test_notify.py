"""Notifications (phantom_scraper/ops/notify.py) through real Apprise to a local HTTP receiver on
127.0.0.1: delivery, coalescing of a fan-out, rate limit per destination, disconnect alarms,
no secret in a message, and a dead receiver that costs the order path nothing."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from phantom_scraper import events, redact
from phantom_scraper.execution.model import AccountOutcome
from phantom_scraper.ops.notify import Notifier, parse_events, split_urls
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import ADMIN_HEADERS, BUY, post, wait_for, ws_ready


class Receiver:
    """An HTTP server on 127.0.0.1 that records every JSON POST (Apprise's ``json://``)."""

    def __init__(self):
        self.posts = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-receiver", daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Blackhole:
    """Accepts connections and never answers (a hung notification service)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-blackhole", daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def notifiers():
    made = []

    def make(urls, **kw):
        kw.setdefault("coalesce_s", 0.1)
        kw.setdefault("min_interval_s", 0.1)
        kw.setdefault("send_timeout_s", 2.0)
        n = Notifier(urls, **kw).start()
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


def rejected(n):
    return AccountOutcome(10000 + n, f"ACCT{n:02d}", "rejected", error="OrderRejectedError: MaxOrderQtyLimitReached",
                          planned=[{"kind": "placeorder", "body": {"action": "Buy", "orderQty": 3}}])


def test_a_13_account_fan_out_is_one_message(receiver, notifiers):
    n = notifiers([receiver.url])
    events.emit("signal", signal_id="s1", status="failed", contract=None, outcomes=[rejected(i) for i in range(13)])
    wait_for(lambda: receiver.posts)
    n.stop()  # flushes anything still waiting
    assert len(receiver.posts) == 1
    message = receiver.posts[0]["message"]
    for i in range(13):
        assert f"ACCT{i:02d}: Buy 3 REJECTED — OrderRejectedError: MaxOrderQtyLimitReached" in message
    assert "rejected" in receiver.posts[0]["title"] and "(13)" in receiver.posts[0]["title"]
    assert n.status()["sent"] == 1 and n.status()["failed"] == 0


def test_rate_limited_per_destination_and_later_lines_join_the_next_message(receiver, notifiers):
    n = notifiers([receiver.url], min_interval_s=60.0)
    events.emit("duplicate", cl_ord_id="ps-a-1-0", order_ids=[1, 2])
    wait_for(lambda: receiver.posts)
    events.emit("duplicate", cl_ord_id="ps-b-1-0", order_ids=[3, 4])
    events.emit("settled", cl_ord_id="ps-c-1-0", order_id=9, state="reconciled")
    wait_for(lambda: n.status()["waiting"] == 2)
    assert len(receiver.posts) == 1  # held back by the per-destination interval
    n.stop()
    assert len(receiver.posts) == 2
    assert "ps-b-1-0" in receiver.posts[1]["message"] and "ps-c-1-0" in receiver.posts[1]["message"]


def test_only_enabled_events_are_sent(receiver, notifiers):
    n = notifiers([receiver.url], enabled=("fill",))
    events.emit("signal", signal_id="s1", status="failed", contract=None, outcomes=[rejected(1)])
    events.emit("fill", account="DEMO0001", contract="MNQZ6", side="Buy", qty=1, price=21000.25, latency_ms=12.3)
    wait_for(lambda: receiver.posts)
    n.stop()
    assert len(receiver.posts) == 1
    assert receiver.posts[0]["message"] == "fill DEMO0001: Buy 1 MNQZ6 @ 21000.25 in 12 ms"


def test_socket_down_longer_than_the_threshold_and_back(receiver, notifiers):
    n = notifiers([receiver.url], disconnect_after_s=0.2)
    events.emit("socket_up", login="user@demo", reconnect=False)  # connected once, then dropped
    events.emit("socket_down", login="quick@demo", reason="closed")
    events.emit("socket_up", login="quick@demo", reconnect=True)  # back before the threshold: silent
    events.emit("socket_down", login="user@demo", reason="closed")
    wait_for(lambda: receiver.posts)
    assert "WebSocket of user@demo DOWN" in receiver.posts[0]["message"]
    events.emit("socket_up", login="user@demo", reconnect=True)
    wait_for(lambda: len(receiver.posts) == 2)
    assert "WebSocket of user@demo back up" in receiver.posts[1]["message"]
    n.stop()
    assert all("quick@demo" not in p["message"] for p in receiver.posts)


def test_no_secret_in_a_message_or_a_log_line(receiver, notifiers, caplog):
    redact.install()
    token_url = receiver.url + "?token=Sup3rSecretNotifyToken"
    n = notifiers([token_url])
    redact.register_secret(SECRET)
    events.emit("auth", login="demo", error=f"refused for password {SECRET}")
    wait_for(lambda: receiver.posts)
    n.stop()
    text = json.dumps(receiver.posts)
    assert SECRET not in text and "***" in text
    assert "Sup3rSecretNotifyToken" not in caplog.text
    assert redact.redact(token_url).count("Sup3rSecretNotifyToken") == 0


def test_a_failed_send_is_counted_and_not_retried(notifiers):
    calls = []

    def failing_factory(_url):
        def send(title, body, _type="info"):
            calls.append(body)
            raise ConnectionError("down")
        return send

    n = Notifier(["json://127.0.0.1:9/x"], coalesce_s=0.01, min_interval_s=0.01, sender_factory=failing_factory).start()
    events.emit("startup", environment="sim", accounts=2)
    wait_for(lambda: n.status()["failed"] == 1)
    n.stop()
    assert len(calls) == 1 and n.status()["sent"] == 0


def test_a_full_queue_drops_instead_of_blocking():
    gate = threading.Event()

    def stuck_factory(_url):
        def send(title, body, _type="info"):
            gate.wait(10)
            return True
        return send

    n = Notifier(["json://127.0.0.1:9/x"], coalesce_s=0.0, min_interval_s=0.0, queue_size=5,
                 sender_factory=stuck_factory).start()
    try:
        for i in range(200):  # the notifier thread is stuck in a send: every emit still returns
            events.emit("duplicate", cl_ord_id=f"ps-{i}", order_ids=[1, 2])
        assert n.status()["dropped"] >= 150
    finally:
        gate.set()
        n.stop()


def test_server_sends_startup_and_rejections(tmp_path, receiver):
    from phantom_scraper.tradovate_sim import SimConfig, Simulator, UserSpec
    from tests.helpers import SIM_TEST_CONFIG, server_settings
    from ultra_simple_server import create_app

    config = SimConfig(**{**SIM_TEST_CONFIG.__dict__, "risk_reject_async": False, "users": (UserSpec(max_order_qty=2),)})
    with Simulator(config) as sim:
        app = create_app(server_settings(sim, tmp_path, notify_urls=(receiver.url,), notify_coalesce_s=0.2,
                                         notify_min_interval_s=0.0))
        runtime = app.extensions["runtime"]
        runtime.boot(wait=True)
        try:
            wait_for(lambda: any("server started" in p["message"] for p in receiver.posts))
            r = post(app.test_client(), '{"action":"buy","ticker":"MNQ1!","quantity":5}')
            assert r.status_code == 200
            wait_for(lambda: any("REJECTED" in p["message"] for p in receiver.posts))
        finally:
            runtime.shutdown(5)
    rejected_posts = [p for p in receiver.posts if "REJECTED" in p["message"]]
    assert len(rejected_posts) == 1  # both accounts in one message
    assert "DEMO0001: Buy 5 MNQZ6 REJECTED" in rejected_posts[0]["message"]
    assert "DEMO0002: Buy 5 MNQZ6 REJECTED" in rejected_posts[0]["message"]
    assert "MaxOrderQty" in rejected_posts[0]["message"]
    text = json.dumps(receiver.posts)
    assert SECRET not in text and ADMIN not in text


def test_dead_receiver_costs_the_order_path_nothing(make_server_app, sim):
    hole = Blackhole()
    try:
        app = make_server_app(notify_urls=(hole.url,), notify_coalesce_s=0.0, notify_min_interval_s=0.0,
                              notify_events=("rejected", "startup", "duplicate"), rest_timeout_s=2.0)
        runtime = app.extensions["runtime"]
        wait_for(lambda: hole.accepted)  # the notifier is now stuck sending "server started"
        client = app.test_client()
        for i in range(5):
            r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"id":"sig-%d"}' % i)
            assert r.status_code == 200 and r.get_json()["status"] == "acked", r.get_data(as_text=True)
            assert post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"id":"sig-%d"}' % i).get_json()["duplicate"]
        assert len(sim.orders()) == 10  # 5 signals x 2 accounts, every one placed
        assert hole.accepted and runtime.notifier.status()["sent"] == 0
        runtime.shutdown(5)
        assert runtime.notifier.status()["failed"] >= 1
    finally:
        hole.close()


def test_config_parsing():
    assert split_urls("json://a/x, tgram://b/c  mailto://u:p@h?to=a,b") == ("json://a/x", "tgram://b/c",
                                                                              "mailto://u:p@h?to=a,b")
    assert "fill" not in parse_events(None) and parse_events("fill,risk") == ("fill", "risk")
    with pytest.raises(ValueError):
        parse_events("rejected,nonsense")


def test_a_fill_is_notified_and_counted(make_server_app, sim):
    from prometheus_client.parser import text_string_to_metric_families

    receiver = Receiver()
    try:
        app = make_server_app(notify_urls=(receiver.url,), notify_events=("fill",), notify_coalesce_s=0.05,
                              notify_min_interval_s=0.0)
        ws_ready(app)
        client = app.test_client()
        sim.set_price("MNQZ6", 21000.0)
        assert post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1}').get_json()["status"] == "acked"
        wait_for(lambda: sum(p["message"].count("fill ") for p in receiver.posts) >= 2)
        text = "\n".join(p["message"] for p in receiver.posts)
        assert "fill DEMO0001: Buy 1 MNQZ6 @ 21000.0" in text and "fill DEMO0002: Buy 1 MNQZ6 @ 21000.0" in text
        body = client.get("/metrics", headers=ADMIN_HEADERS).get_data(as_text=True)
        fills = {s.labels["account"]: s.value for f in text_string_to_metric_families(body) for s in f.samples
                 if s.name == "phantom_fills_total"}
        assert fills == {"DEMO0001": 1.0, "DEMO0002": 1.0}
    finally:
        receiver.close()


def test_apprise_type_by_severity_and_titles(receiver, notifiers):
    """failure for rejections, unknown outcomes and locks; warning for disconnects; success for
    fills; a shutdown is titled "stopping", not "startup"."""
    n = notifiers([receiver.url], enabled=("rejected", "unknown", "risk", "startup", "fill", "disconnected"),
                  min_interval_s=0.0, coalesce_s=0.0, disconnect_after_s=0.05)

    def one(emit):
        before = len(receiver.posts)
        emit()
        wait_for(lambda: len(receiver.posts) > before)
        return receiver.posts[-1]

    post_ = one(lambda: events.emit("shutdown", environment="sim"))
    assert post_["type"] == "info" and post_["title"] == "phantom-scraper: stopping", post_
    assert "startup" not in post_["title"] and "server stopping" in post_["message"]
    post_ = one(lambda: events.emit("startup", environment="sim", accounts=2))
    assert post_["title"] == "phantom-scraper: started" and post_["type"] == "info"
    post_ = one(lambda: events.emit("signal", signal_id="s1", status="failed", contract=None, outcomes=[rejected(1)]))
    assert post_["type"] == "failure" and "rejected" in post_["title"]
    post_ = one(lambda: events.emit("risk", account="DEMO0001", locked=True, reason="daily_loss: -500"))
    assert post_["type"] == "failure" and post_["title"] == "phantom-scraper: locked"
    assert "risk: DEMO0001 LOCKED — daily_loss: -500" in post_["message"]
    post_ = one(lambda: events.emit("kill_switch", account="DEMO0001", locked=False, reason="kill_switch"))
    assert post_["type"] == "info" and post_["title"] == "phantom-scraper: unlocked"
    post_ = one(lambda: events.emit("socket_down", login="u@demo", reason="closed"))
    assert post_["type"] == "warning" and "disconnected" in post_["title"]
    post_ = one(lambda: events.emit("fill", account="DEMO0001", contract="MNQZ6", side="Buy", qty=1, price=1.0))
    assert post_["type"] == "success" and post_["title"] == "phantom-scraper: fill"


def test_a_lock_kept_from_before_a_restart_is_not_announced_again(receiver, notifiers):
    n = notifiers([receiver.url], enabled=("risk", "startup"), coalesce_s=0.0, min_interval_s=0.0)
    events.emit("risk", account="DEMO0001", locked=True, restored=True, reason="daily_loss: -500")
    events.emit("startup", environment="sim", accounts=2)
    wait_for(lambda: receiver.posts)
    n.stop()
    assert len(receiver.posts) == 1 and "LOCKED" not in json.dumps(receiver.posts)


def test_a_socket_that_never_connected_is_reported_within_the_threshold_of_the_start(receiver, notifiers):
    n = notifiers([receiver.url], enabled=("disconnected",), disconnect_after_s=0.5, coalesce_s=0.0)
    started = time.monotonic()
    time.sleep(0.3)  # the first connect attempt fails late (a slow broker)
    events.emit("socket_down", login="late@demo", reason="HTTP 404")
    wait_for(lambda: receiver.posts)
    elapsed = time.monotonic() - started
    assert "WebSocket of late@demo has NOT CONNECTED since the start" in receiver.posts[0]["message"]
    assert receiver.posts[0]["type"] == "warning"
    assert elapsed < 0.3 + 0.5  # counted from the start, not from the late failure
    n.stop()


def test_an_exit_fill_names_the_contract_and_role_and_its_realized_pnl(receiver, notifiers):
    asked = []

    def contract_info(contract_id):
        asked.append(contract_id)
        return ("NQZ6", 20.0) if contract_id == 3000777 else (str(contract_id), None)

    n = notifiers([receiver.url], enabled=("fill",), contract_info=contract_info, coalesce_s=0.0, min_interval_s=0.0)
    events.emit("fill", account="DEMO0001", contract=3000777, side="Buy", qty=2, price=21000.0, role="entry",
                closes=False, net_before=0, avg_before=None)
    events.emit("fill", account="DEMO0001", contract=3000777, side="Sell", qty=1, price=21012.5, role="take_profit",
                closes=True, net_before=2, avg_before=21000.0)
    events.emit("fill", account="DEMO0001", contract=3000777, side="Sell", qty=1, price=20990.0, role="stop",
                closes=True, net_before=1, avg_before=21000.0)
    wait_for(lambda: sum(p["message"].count("fill ") for p in receiver.posts) == 3)
    n.stop()
    text = "\n".join(p["message"] for p in receiver.posts)
    assert "fill DEMO0001: Buy 2 NQZ6 @ 21000.0 (entry)" in text and "realized" not in text.splitlines()[0]
    assert "fill DEMO0001: Sell 1 NQZ6 @ 21012.5 (take-profit), realized +250.00 USD" in text
    assert "fill DEMO0001: Sell 1 NQZ6 @ 20990.0 (stop-loss), realized -200.00 USD" in text
    assert "3000777" not in text


def test_server_fills_say_contract_role_and_pnl(make_server_app, sim):
    """A bracket's take-profit fills: the exit's message names the contract, its role and P&L."""
    receiver = Receiver()
    try:
        app = make_server_app(notify_urls=(receiver.url,), notify_events=("fill",), notify_coalesce_s=0.05,
                              notify_min_interval_s=0.0)
        ws_ready(app)
        client = app.test_client()
        sim.set_price("MNQZ6", 21000.0)
        r = post(client, '{"action":"buy","ticker":"MNQ1!","quantity":1,"price":21000,'
                         '"takeProfit":{"ticks":40},"stopLoss":{"ticks":40}}')
        assert r.get_json()["status"] == "acked", r.get_data(as_text=True)
        wait_for(lambda: sum(p["message"].count("(entry)") for p in receiver.posts) >= 2)
        sim.set_price("MNQZ6", 21012.0)  # through the take-profit at 21010
        wait_for(lambda: sum(p["message"].count("(take-profit)") for p in receiver.posts) >= 2)
        text = "\n".join(p["message"] for p in receiver.posts)
        # (the simulator fills the resting limit at the price that crossed it: 21012 x $2 a point)
        assert "fill DEMO0001: Sell 1 MNQZ6 @ 21012.0 (take-profit), realized +24.00 USD" in text, text
        assert all(p["type"] == "success" for p in receiver.posts)
    finally:
        receiver.close()
