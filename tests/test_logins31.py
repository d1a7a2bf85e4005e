"""Issue 31 #5: logins are independent.

Two logins on two simulators.  Login b cannot be opened at start (a wrong password; its broker
answering 500): the service must still be ready with login a, say which login is not (status,
``/health`` detail, a notification), trade login a's accounts, refuse login b's accounts
``login_unavailable`` with the reason, and answer the kill switch for every reachable login.  A login
whose trouble is transient opens again on its own and then trades.  On the old code login b's failure
stopped every login (``503 not_ready``, or ``failed`` for good with a wrong password)."""
from __future__ import annotations

import json

import pytest

from phantom_scraper import events
from phantom_scraper.tradovate_sim import Simulator, UserSpec
from tests.helpers import ADMIN_HEADERS, SIM_TEST_CONFIG, book_orders, post_webhook, wait_for


@pytest.fixture
def sim_b():
    """Login b's own simulator (its first user pads the id sequence: no id is shared with ``sim``'s)."""
    cfg = SIM_TEST_CONFIG.replace(users=(
        UserSpec(name="pad", password="pad-pw", accounts=tuple(f"PAD{i:04d}" for i in range(1, 40))),
        UserSpec(name="alice", password="alice-pw", accounts=("ALICE001",))))
    simulator = Simulator(cfg).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def notified():
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind in ("login_down", "login_up") else None)
    yield seen
    unsubscribe()


def two_logins(sim, sim_b, tmp_path, monkeypatch, password_b: str) -> str:
    monkeypatch.setenv("L31_PASS_A", "demo")
    monkeypatch.setenv("L31_PASS_B", password_b)
    monkeypatch.setenv("L31_BOTH", "both-token-l31")
    monkeypatch.setenv("L31_A", "a-only-token-l31")
    monkeypatch.setenv("L31_B", "b-only-token-l31")
    doc = {
        "logins": {
            "a": {"env": "sim", "username": "demo", "password_env": "L31_PASS_A",
                  "rest_url": sim.rest_url, "ws_url": sim.ws_url},
            "b": {"env": "sim", "username": "alice", "password_env": "L31_PASS_B",
                  "rest_url": sim_b.rest_url, "ws_url": sim_b.ws_url},
        },
        "recorders": [
            {"name": "both", "webhook_token_env": "L31_BOTH",
             "accounts": [{"login": "a", "account": "DEMO0001"}, {"login": "b", "account": "ALICE001"}]},
            {"name": "a-only", "webhook_token_env": "L31_A", "accounts": [{"login": "a", "account": "DEMO0001"}]},
            {"name": "b-only", "webhook_token_env": "L31_B", "accounts": [{"login": "b", "account": "ALICE001"}]},
        ],
        "risk": {"accounts": {"ALICE001": {"daily_loss_limit": 500}}},  # b's account: known only once b opens
    }
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(doc))
    return str(path)


def buy(app, token, signal_id):
    return post_webhook(app.test_client(), {"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": signal_id},
                        secret=token)


def test_a_login_with_a_wrong_password_leaves_the_others_trading(sim, sim_b, make_server_app, tmp_path,
                                                                  monkeypatch, notified):
    app = make_server_app(recorders_file=two_logins(sim, sim_b, tmp_path, monkeypatch, "wrong-password"))
    service = app.extensions["runtime"].service
    assert service.state == "ready"
    logins = service.status()["logins"]
    assert logins["a"]["state"] == "open"
    assert logins["b"]["state"] == "failed" and logins["b"]["retrying"] is False and logins["b"]["error"]
    assert [(e.fields["login"], e.fields["retrying"]) for e in notified if e.kind == "login_down"] == [("b", False)]
    health = app.test_client().get("/health")
    assert health.status_code == 200 and set(health.get_json()["checks"]["logins_down"]) == {"b"}

    status, body = buy(app, "a-only-token-l31", "a-only-l31")
    assert status == 200 and [a["status"] for a in body["accounts"]] == ["acked"], body
    status, body = buy(app, "both-token-l31", "both-l31")
    assert status == 200, body
    by_name = {a["account_name"]: a for a in body["accounts"]}
    assert by_name["DEMO0001"]["status"] == "acked"
    assert by_name["ALICE001"]["status"] == "rejected"
    assert by_name["ALICE001"]["error"].startswith("login_unavailable") and "b" in by_name["ALICE001"]["error"]
    status, body = buy(app, "b-only-token-l31", "b-only-l31")
    assert status == 200 and body["success"] is False, body
    assert [a["error"].split(":")[0] for a in body["accounts"]] == ["login_unavailable"]
    assert not book_orders(sim_b)

    r = app.test_client().post("/api/kill-switch", json={"accounts": "all", "flatten": True}, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.get_json()
    assert sorted(r.get_json()["locked"]) == ["DEMO0001", "DEMO0002"]  # every account of login a
    assert set(r.get_json()["unavailable_logins"]) == {"b"}
    wait_for(lambda: not any(sim.positions().values()), what="login a flattened")
    r = app.test_client().delete("/api/kill-switch", json={"accounts": "all"}, headers=ADMIN_HEADERS)
    assert r.status_code == 200 and sorted(r.get_json()["unlocked"]) == ["DEMO0001", "DEMO0002"]


def test_a_login_whose_broker_fails_at_start_opens_on_its_own_and_then_trades(sim, sim_b, make_server_app, tmp_path,
                                                                              monkeypatch, notified):
    sim_b.faults.http_500_next = 10 ** 6  # login b's broker answers 500 until told otherwise
    app = make_server_app(recorders_file=two_logins(sim, sim_b, tmp_path, monkeypatch, "alice-pw"))
    service = app.extensions["runtime"].service
    assert service.status()["logins"]["b"]["state"] == "down"
    assert service.status()["logins"]["b"]["retrying"] is True
    status, body = buy(app, "b-only-token-l31", "b-before-l31")
    assert status == 200 and body["accounts"][0]["error"].startswith("login_unavailable"), body
    status, body = buy(app, "a-only-token-l31", "a-before-l31")
    assert status == 200 and body["accounts"][0]["status"] == "acked", body

    sim_b.faults.http_500_next = 0
    wait_for(lambda: service.status()["logins"]["b"]["state"] == "open", timeout_s=30.0, what="login b open again")
    assert [e.fields["login"] for e in notified if e.kind == "login_up"] == ["b"]
    assert "logins_down" not in app.test_client().get("/health").get_json()["checks"]
    status, body = buy(app, "b-only-token-l31", "b-after-l31")
    assert status == 200 and [a["status"] for a in body["accounts"]] == ["acked"], body
    assert len(book_orders(sim_b)) == 1
    # the risk guard covers login b's account now, with its own limit
    risk = service.status()["risk"]
    assert "ALICE001" in json.dumps(risk) and "DEMO0001" in json.dumps(risk)
    assert service.risk.limits_for(sim_b.account_id("ALICE001")).daily_loss_limit == 500
