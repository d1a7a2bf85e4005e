"""Issue 31 against the simulator, on its clock (the guard's clock is the simulator's, frozen and
moved by the test): the README's recorders-file example with a per-account loss limit sees open
P&L; an operator's unlock is not undone by the same figures; flatten at close retries a failed
liquidation until the account is flat."""
from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import re
from zoneinfo import ZoneInfo

from phantom_scraper import events
from phantom_scraper.config import RiskSettings
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import wait_for

CT = ZoneInfo("America/Chicago")
TUESDAY_10 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=CT).timestamp()
HOURS = "Mon-Fri 08:30-15:00 America/Chicago"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def manual(app, body):
    r = app.test_client().post("/api/manual-trade", data=json.dumps(body), content_type="application/json",
                               headers=AUTH)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def positions(sim):
    return {k: v for k, v in sim.positions().items() if v}


def risk_status(app, name):
    status = app.test_client().get("/api/websocket-status", headers=AUTH).get_json()["risk"]
    return next(a for a in status["accounts"] if a["account_name"] == name)


def holds(guard, sim, name, symbol, qty):
    """Wait until the guard's broker state shows the position."""
    acct = sim.account_id(name)
    cid = sim.get_price(symbol)["contractId"]
    wait_for(lambda: guard.broker.positions(acct).get(cid, (0, None))[0] == qty)


def readme_risk_example() -> dict:
    """The ``"risk"`` example of README.md, read from the README itself (so the two cannot part)."""
    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    found = re.search(r'e\.g\. `("risk": \{.*?\}\}\})`', text, re.DOTALL)
    assert found, "README.md no longer shows a recorders-file risk example"
    return json.loads("{" + found.group(1) + "}")


def start(make_server_app, sim, at=TUESDAY_10, settings=None, **risk):
    """An app on ``sim`` with the guard on the simulator clock (frozen at ``at``)."""
    sim.clock.freeze(at)
    app = make_server_app(boot=False, md_url=sim.md_url, risk=RiskSettings(check_interval_s=0.05, **risk),
                          **(settings or {}))
    runtime = app.extensions["runtime"]
    runtime.service.risk_clock = sim.clock
    runtime.boot(wait=True)
    assert runtime.service.state == "ready", runtime.service.start_error
    guard = runtime.service.risk
    wait_for(lambda: all(guard.broker.fresh(a) for a in guard._accounts))  # the sync stream is loaded
    return app, guard


def test_the_readmes_recorders_file_example_with_a_per_account_loss_limit_sees_open_pnl(
        make_server_app, sim, tmp_path, monkeypatch, caplog):
    """#1 (and #3's inheritance): a daily loss limit set only per account, in the recorders file of
    the README (its login names no URL: it inherits the service's), never saw open P&L: buy 2 NQ at
    21000, price to 20950, the broker shows -2,000 open, the guard showed 0.0 complete, no lock."""
    monkeypatch.setenv("NQ_SCALPER_TOKEN", SECRET)
    monkeypatch.setenv("MAIN_USER", "demo")
    monkeypatch.setenv("MAIN_PASS", "demo")
    doc = {  # README.md: the recorders file, with its "risk" example
        "logins": {"main": {"env": "sim", "username_env": "MAIN_USER", "password_env": "MAIN_PASS"}},
        "recorders": [{"name": "nq-scalper", "webhook_token_env": "NQ_SCALPER_TOKEN",
                       "accounts": [{"login": "main", "account": "DEMO0001"}, {"login": "main", "account": "DEMO0002"}]}],
        **readme_risk_example(),
    }
    assert doc["risk"]["accounts"]["DEMO0001"]["daily_loss_limit"] == 500  # a limit set only per account
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(doc))
    sim.set_price("NQZ6", 21000.0)
    caplog.set_level(logging.INFO)
    app, guard = start(make_server_app, sim, settings={"recorders_file": str(path)})
    assert f"Login main (sim): REST {sim.rest_url}, socket {sim.ws_url}, market data {sim.md_url}" in caplog.text
    connections = app.test_client().get("/api/websocket-status", headers=AUTH).get_json()["connection_pool"]["connections"]
    wait_for(lambda: all(c["ws_connected"] for c in app.test_client().get(
        "/api/websocket-status", headers=AUTH).get_json()["connection_pool"]["connections"].values()))
    assert connections  # the login's socket is the simulator's (not derived from the REST host)
    assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "account": "DEMO0001"})["status"] == "acked"
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    nq = sim.get_price("NQZ6")["contractId"]
    wait_for(lambda: nq in guard.feed.status()["subscribed"])
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["pnl_complete"], timeout_s=20.0)
    assert risk_status(app, "DEMO0001")["open_pnl"] == 0.0
    sim.set_price("NQZ6", 20950.0)  # 2 x -50 x $20 = -2,000
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["lock"] is not None, timeout_s=20.0)
    locked = risk_status(app, "DEMO0001")
    assert locked["lock"]["reason"] == "daily_loss_limit" and "-2000.00" in locked["lock"]["message"]
    wait_for(lambda: positions(sim) == {})
    status = app.test_client().get("/api/websocket-status", headers=AUTH).get_json()["risk"]
    assert status["market_data"] is not None and status["market_data"]["connected"]


def test_an_operators_unlock_holds_until_a_new_breach_from_the_pnl_at_unlock(make_server_app, sim, caplog):
    """#8: DELETE /api/kill-switch said the daily lock was lifted; 0.3 s later it was back (the
    watcher re-evaluated the same day's P&L and relocked, with a flatten)."""
    caplog.set_level(logging.WARNING)
    sim.set_price("NQZ6", 21000.0)
    app, guard = start(make_server_app, sim, daily_loss_limit=500.0)
    assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "account": "DEMO0001"})["status"] == "acked"
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    nq = sim.get_price("NQZ6")["contractId"]
    wait_for(lambda: nq in guard.feed.status()["subscribed"])
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["pnl_complete"], timeout_s=20.0)
    sim.set_price("NQZ6", 20985.0)  # -600: locked and flattened (realized -600)
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["lock"] is not None, timeout_s=20.0)
    wait_for(lambda: positions(sim) == {})
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["realized_pnl"] == -600.0)
    liquidations = len([o for o in sim.orders() if o["endpoint"] == "liquidateposition"])

    r = app.test_client().delete("/api/kill-switch", json={"accounts": ["DEMO0001"]}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["unlocked"] == ["DEMO0001"]
    (answer,) = r.get_json()["accounts"]  # the answer says what the unlock means
    assert "relocks only on a new breach" in answer["relock"] and "-1100.00" in answer["relock"]
    for _ in range(5):  # the watcher re-evaluates the same figures: no relock
        sim.clock.advance(0.3)
        assert guard.wait_idle(tick=True)
    assert risk_status(app, "DEMO0001")["lock"] is None
    assert risk_status(app, "DEMO0001")["unlocked_at_pnl"] == -600.0
    assert len([o for o in sim.orders() if o["endpoint"] == "liquidateposition"]) == liquidations
    assert any("relocks only on a new breach" in r.getMessage() and "-1100.00" in r.getMessage()
               for r in caplog.records)
    answer = manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "account": "DEMO0001"})
    assert answer["status"] == "acked"  # entries pass again
    holds(guard, sim, "DEMO0001", "NQZ6", 1)
    sim.set_price("NQZ6", 20965.0)  # -20 x $20 = -400 open: -1,000, not yet 500 below -600
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["total_pnl"] == -1000.0, timeout_s=20.0)
    assert risk_status(app, "DEMO0001")["lock"] is None
    sim.set_price("NQZ6", 20960.0)  # -1,100: a new breach
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["lock"] is not None, timeout_s=20.0)
    assert "below the P&L when the lock was lifted (-600.00)" in risk_status(app, "DEMO0001")["lock"]["message"]
    wait_for(lambda: positions(sim) == {})


def test_flatten_at_close_retries_a_failed_liquidation_until_the_account_is_flat(make_server_app, sim, caplog):
    """#4: a 429 on the liquidation at the window's end left the position open overnight: no retry,
    no notification, the log said '1 position(s) closed' and the close mark was set anyway."""
    caplog.set_level(logging.WARNING)
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind == "risk_flatten" else None)
    try:
        app, guard = start(make_server_app, sim, at=dt.datetime(2026, 11, 24, 14, 59, tzinfo=CT).timestamp(),
                           settings={"order_ack_timeout_s": 1.0}, trading_hours=HOURS, flatten_at_close=True)
        assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "account": "DEMO0001"})["status"] == "acked"
        holds(guard, sim, "DEMO0001", "NQZ6", 1)
        guard.wait_idle(tick=True)
        # the broker refuses every request (429) until the test lifts it: the first flatten (its
        # bounded rounds, the lock barrier's) ends with the account still long
        sim.faults.http_429_next = 1_000_000
        sim.clock.freeze(dt.datetime(2026, 11, 24, 15, 0, 1, tzinfo=CT).timestamp())
        wait_for(lambda: guard.wait_idle(tick=True) and seen, timeout_s=20.0)
        wait_for(lambda: guard.wait_idle() and any("NOT done (attempt 1)" in r.getMessage() for r in caplog.records),
                 timeout_s=30.0)
        assert positions(sim) == {(sim.account_id("DEMO0001"), "NQZ6"): 1}  # still long
        sim.faults.http_429_next = 0  # the 429 period is over
        assert seen[0].fields["account"] == "DEMO0001" and seen[0].fields["still_open"]
        assert any("FAILED" in r.getMessage() and "still open" in r.getMessage() for r in caplog.records)
        assert not any("1 liquidation(s) accepted, 0 FAILED" in r.getMessage() for r in caplog.records)
        for _ in range(40):  # simulated seconds: the retry comes after its back-off, not at once
            if not positions(sim):
                break
            sim.clock.advance(1.0)
            guard.wait_idle(tick=True)
        assert positions(sim) == {}
        wait_for(lambda: guard.wait_idle(tick=True) and any(
            "flatten at close for DEMO0001 done" in r.getMessage() for r in caplog.records))
        events_ = app.test_client().get("/api/websocket-status", headers=AUTH).get_json()["risk"]["recent_events"]
        assert any(e["kind"] == "error" and e["code"] == "flatten_failed" for e in events_)
    finally:
        unsubscribe()


def test_a_login_whose_socket_never_synced_is_unknown_never_flat(make_server_app, sim):
    """#3 on the simulator: the login's socket refused, positions open over REST (-2,000 open at the
    broker).  The guard's copy of the positions is empty; it counted that as flat, complete, P&L 0.
    Now the account's P&L is unknown (its rules do not act on a guess), and known once the socket syncs."""
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind == "risk_pnl" else None)
    try:
        sim.set_price("NQZ6", 21000.0)
        sim.faults.refuse_ws_connects = True
        sim.clock.freeze(TUESDAY_10)
        app = make_server_app(boot=False, md_url=sim.md_url,
                              risk=RiskSettings(check_interval_s=0.05, daily_loss_limit=500.0))
        runtime = app.extensions["runtime"]
        runtime.service.risk_clock = sim.clock
        runtime.boot(wait=True)
        guard = runtime.service.risk
        guard.unknown.report_after_s = 0.2  # (10 s in production) scaled down
        answer = manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "account": "DEMO0001"})
        assert answer["status"] == "acked" and answer["accounts"][0]["transport"] == "rest", answer
        sim.set_price("NQZ6", 20950.0)  # the broker: 2 x -50 x $20 = -2,000 open
        wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["open_pnl"] is None
                 and risk_status(app, "DEMO0001")["pnl_complete"] is False, timeout_s=20.0,
                 what="the P&L of a login whose socket never synced shown unknown (it was 0.0, complete)")
        unknown = risk_status(app, "DEMO0001")
        assert unknown["pnl_status"] == "pnl_unknown" and "not synced" in unknown["pnl_unknown"]
        assert unknown["open_pnl"] is None and unknown["total_pnl"] is None and unknown["lock"] is None
        wait_for(lambda: guard.wait_idle(tick=True) and ("DEMO0001", True) in [
            (e.fields["account"], e.fields["unknown"]) for e in seen], what="the unknown P&L reported")
        assert positions(sim)  # nothing was flattened on a guess
        sim.faults.refuse_ws_connects = False  # the socket connects and syncs: the loss is seen and acted on
        wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["lock"] is not None,
                 timeout_s=30.0)
        assert risk_status(app, "DEMO0001")["lock"]["reason"] == "daily_loss_limit"
        wait_for(lambda: positions(sim) == {}, timeout_s=20.0)
    finally:
        unsubscribe()
