"""Issue 31 #6: a slow broker on one login delays only that login's accounts.

Login b's broker (its own simulator) takes 4 s over each order.  A fan-out across logins a and b, then,
while b's answer is outstanding, a signal for login a only: its account must be free -- the fan-out
finishes each socket's accounts (and releases their lanes) as soon as that socket's answers are in.
It waited for every socket's answers before finishing any account, so the second signal queued
behind login b's timeout."""
from __future__ import annotations

import json
import threading

import pytest

from phantom_scraper.tradovate_sim import Simulator, UserSpec
from tests.helpers import SIM_TEST_CONFIG, book_orders, post_webhook, wait_for


@pytest.fixture
def sim_b():
    """Login b's own simulator (its first user only pads the id sequence: no id is shared with
    the ``sim`` fixture's accounts)."""
    cfg = SIM_TEST_CONFIG.replace(users=(
        UserSpec(name="pad", password="pad-pw", accounts=tuple(f"PAD{i:04d}" for i in range(1, 40))),
        UserSpec(name="alice", password="alice-pw", accounts=("ALICE001",))))
    simulator = Simulator(cfg).start()
    yield simulator
    simulator.stop()


def test_a_slow_login_delays_only_its_own_accounts(sim, sim_b, make_server_app, tmp_path, monkeypatch):
    monkeypatch.setenv("F31_PASS_A", "demo")
    monkeypatch.setenv("F31_PASS_B", "alice-pw")
    monkeypatch.setenv("F31_BOTH", "both-token-31")
    monkeypatch.setenv("F31_A", "a-only-token-31")
    doc = {
        "logins": {
            "a": {"env": "sim", "username": "demo", "password_env": "F31_PASS_A",
                  "rest_url": sim.rest_url, "ws_url": sim.ws_url},
            "b": {"env": "sim", "username": "alice", "password_env": "F31_PASS_B",
                  "rest_url": sim_b.rest_url, "ws_url": sim_b.ws_url},
        },
        "recorders": [
            {"name": "both", "webhook_token_env": "F31_BOTH",
             "accounts": [{"login": "a", "account": "DEMO0001"}, {"login": "b", "account": "ALICE001"}]},
            {"name": "a-only", "webhook_token_env": "F31_A", "accounts": [{"login": "a", "account": "DEMO0001"}]},
        ],
    }
    assert sim.account_id("DEMO0001") != sim_b.account_id("ALICE001")
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(doc))
    app = make_server_app(recorders_file=str(path), keepalive_interval_s=30.0, order_ack_timeout_s=8.0,
                          webhook_budget_s=5.0)
    acct_a = sim.account_id("DEMO0001")
    sim_b.faults.order_delay_ms = 4000.0  # login b's broker takes 4 s over each order
    fan_out = {}

    def send_fan_out():
        fan_out["answer"] = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1,
                                                             "id": "fan-out-31"}, secret="both-token-31")

    thread = threading.Thread(target=send_fan_out, name="test-fan-out")
    thread.start()
    wait_for(lambda: [o for o in book_orders(sim) if o["accountId"] == acct_a], timeout_s=20.0,
             what="the fan-out's order for login a at the broker")
    status, body = post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1,
                                                    "id": "a-only-31"}, secret="a-only-token-31")
    b_executed = bool(book_orders(sim_b))  # login b's order is still on its 4 s way
    assert status == 200, body
    (outcome,) = body["accounts"]
    assert outcome["status"] == "acked" and outcome["transport"] == "websocket", body
    assert not b_executed, "the signal for login a waited until login b's broker had executed the fan-out's order"
    assert len([o for o in book_orders(sim) if o["accountId"] == acct_a]) == 2
    thread.join(30)
    status, answer = fan_out["answer"]
    by_account = {a["account_name"]: a for a in answer["accounts"]}
    assert by_account["DEMO0001"]["status"] == "acked"
