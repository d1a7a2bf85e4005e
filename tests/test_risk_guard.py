"""The risk guard against the simulator: loss limits from live prices, locks that survive a restart,
trading hours, flatten at close, signal rates, the kill switch and the position cap.

Every app here runs the guard on the simulator's clock (``service.risk_clock = sim.clock``), frozen
at a chosen instant and moved by the test: the trading day, trading windows and lock expiry are
decided on it, and the simulator stamps quotes and orders with it.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from zoneinfo import ZoneInfo

import pytest

from phantom_scraper.config import RiskSettings
from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET

CT = ZoneInfo("America/Chicago")
TUESDAY_10 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=CT).timestamp()
HOURS = "Mon-Fri 08:30-15:00 America/Chicago"


def wait_for(predicate, timeout_s=10.0, interval_s=0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def start(make_server_app, sim, at=TUESDAY_10, **risk):
    """An app on ``sim`` with the guard on the simulator clock (frozen at ``at``)."""
    sim.clock.freeze(at)
    database = risk.pop("database_path", None)
    extra = {"database_path": database} if database else {}
    app = make_server_app(boot=False, md_url=sim.md_url, risk=RiskSettings(check_interval_s=0.05, **risk), **extra)
    runtime = app.extensions["runtime"]
    runtime.service.risk_clock = sim.clock
    runtime.boot(wait=True)
    assert runtime.service.state == "ready", runtime.service.start_error
    guard = runtime.service.risk
    wait_for(lambda: all(guard.broker.fresh(a) for a in guard._accounts))  # the sync stream is loaded
    return app, guard


def webhook(app, body):
    r = app.test_client().post(f"/webhook/{SECRET}", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def manual(app, body):
    r = app.test_client().post("/api/manual-trade", data=json.dumps(body), content_type="application/json",
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def account(body, name):
    return next(a for a in body["accounts"] if a["account_name"] == name)


def positions(sim):
    return {k: v for k, v in sim.positions().items() if v}


def risk_status(app, name):
    status = app.test_client().get("/api/websocket-status").get_json()["risk"]
    return next(a for a in status["accounts"] if a["account_name"] == name)


def holds(guard, sim, name, symbol, qty):
    """Wait until the guard's broker state shows the position and prices it."""
    acct = sim.account_id(name)
    cid = sim.get_price(symbol)["contractId"]
    wait_for(lambda: guard.broker.positions(acct).get(cid, (0, None))[0] == qty)


# -- loss limit from a price move ---------------------------------------------------------------------

def test_loss_limit_breach_flattens_and_locks_that_account_only_within_2s_of_the_price(make_server_app, sim, caplog):
    caplog.set_level(logging.WARNING)
    sim.set_price("NQZ6", 21000.0)
    sim.set_price("ESZ6", 6000.0)
    app, guard = start(make_server_app, sim, daily_loss_limit=500.0)
    assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "account": "DEMO0001"})["status"] == "acked"
    assert manual(app, {"action": "buy", "ticker": "ESZ6", "quantity": 1, "account": "DEMO0001"})["status"] == "acked"
    assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "account": "DEMO0002"})["status"] == "acked"
    stop = manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "account": "DEMO0001",
                        "order_type": "limit", "limit_price": 20000})  # a working order to be cancelled
    assert stop["status"] == "acked"
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    holds(guard, sim, "DEMO0001", "ESZ6", 1)
    holds(guard, sim, "DEMO0002", "NQZ6", 1)
    nq, es = sim.get_price("NQZ6")["contractId"], sim.get_price("ESZ6")["contractId"]
    wait_for(lambda: guard.feed.status()["subscribed"] == sorted({nq, es}))  # quotes for open positions only
    wait_for(lambda: guard.wait_idle(tick=True) and risk_status(app, "DEMO0001")["pnl_complete"])
    assert risk_status(app, "DEMO0001")["total_pnl"] == 0.0

    moved_at = sim.clock.now()
    sim.set_price("NQZ6", 20985.0)  # DEMO0001: 2 x -15 x $20 = -600 (limit 500); DEMO0002: -300
    # the quote reaches the guard over the market-data socket: wait for it in real time with the
    # simulated clock standing still (on a loaded machine the loop below could otherwise spend its
    # 2 simulated seconds before the price arrived); DEMO0002, untouched, shows it arrived
    wait_for(lambda: guard.wait_idle() and risk_status(app, "DEMO0002")["total_pnl"] == -300.0,
             timeout_s=20.0)
    acted_at = None
    for _ in range(9):  # the simulated clock moves 0.25 s at a time, only once the guard is idle
        guard.wait_idle()
        liquidations = [o for o in sim.orders() if o["endpoint"] == "liquidateposition"]
        if {o["symbol"] for o in liquidations} >= {"NQZ6", "ESZ6"}:
            acted_at = max(o["time"] for o in liquidations)
            break
        sim.clock.advance(0.25)
    assert acted_at is not None and acted_at - moved_at <= 2.0, "breach not acted on within 2 s (simulated)"

    wait_for(lambda: positions(sim) == {(sim.account_id("DEMO0002"), "NQZ6"): 1})  # DEMO0001 flat, DEMO0002 untouched
    assert all(o["accountSpec"] == "DEMO0001" for o in sim.orders() if o["endpoint"] == "liquidateposition")
    working = [o for o in sim.orders() if o["orderId"] == stop["accounts"][0]["order_id"]]
    assert working[0]["ordStatus"] == "Canceled"
    guard.wait_idle(tick=True)
    locked = risk_status(app, "DEMO0001")
    assert locked["lock"]["reason"] == "daily_loss_limit" and "-600.00" in locked["lock"]["message"]
    assert risk_status(app, "DEMO0002")["lock"] is None
    assert risk_status(app, "DEMO0002")["total_pnl"] == -300.0
    assert any("Risk LOCK DEMO0001" in r.getMessage() for r in caplog.records)
    events = app.test_client().get("/api/websocket-status").get_json()["risk"]["recent_events"]
    assert any(e["kind"] == "lock" and e["account_name"] == "DEMO0001" for e in events)
    assert any(e["kind"] == "flatten" and e["account_name"] == "DEMO0001" for e in events)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "daily_loss_limit" in page and "DEMO0001" in page
    assert "id='locks'" in page  # the lock is on the event bus too (metrics, notifications, the page's lock list)
    # the liquidations are journaled like signals (recorder "risk")
    signals = app.test_client().get("/api/signals", headers={"Authorization": f"Bearer {ADMIN}"}).get_json()["signals"]
    assert sum(1 for s in signals if s["recorder"] == "risk") == 2


# -- locks: entries refused, exits pass, restart, session start ---------------------------------------------

def test_locked_account_refuses_an_entry_and_accepts_an_exit(make_server_app, sim):
    app, guard = start(make_server_app, sim)
    assert manual(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "account": "DEMO0001"})["status"] == "acked"
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    r = app.test_client().post("/api/kill-switch", json={"accounts": ["DEMO0001"], "flatten": False},
                               headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.get_json()["locked"] == ["DEMO0001"]
    answer = webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "entry-1"})
    refused = account(answer, "DEMO0001")
    assert refused["status"] == "rejected" and refused["risk"][0]["code"] == "locked"
    assert account(answer, "DEMO0002")["status"] == "acked"  # the other account trades on
    exit_answer = webhook(app, {"action": "sell", "ticker": "NQZ6", "quantity": 1, "id": "exit-1"})
    assert account(exit_answer, "DEMO0001")["status"] == "acked"
    wait_for(lambda: sim.positions().get((sim.account_id("DEMO0001"), "NQZ6")) == 1)
    assert [o["orderQty"] for o in sim.orders() if o["accountSpec"] == "DEMO0001"] == [2, 1]


def test_lock_survives_a_restart_and_clears_at_the_session_start(make_server_app, sim, tmp_path):
    database = str(tmp_path / "shared.sqlite3")
    app, guard = start(make_server_app, sim, database_path=database, daily_loss_limit=500.0)
    acct = sim.account_id("DEMO0001")
    from phantom_scraper.hours import next_session_start

    guard.lock(acct, "daily_loss_limit", "daily P&L -600.00 USD", until=next_session_start(sim.clock.now()), flatten=True)
    app.extensions["runtime"].shutdown(timeout_s=5.0)

    app2, guard2 = start(make_server_app, sim, at=sim.clock.now() + 60, database_path=database, daily_loss_limit=500.0)
    assert risk_status(app2, "DEMO0001")["lock"]["reason"] == "daily_loss_limit"
    answer = webhook(app2, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "after-restart"})
    assert account(answer, "DEMO0001")["risk"][0]["code"] == "locked"
    sim.clock.freeze(dt.datetime(2026, 11, 24, 17, 0, 1, tzinfo=CT).timestamp())  # CME session start
    assert guard2.wait_idle(tick=True)
    assert risk_status(app2, "DEMO0001")["lock"] is None
    answer = webhook(app2, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "next-day"})
    assert account(answer, "DEMO0001")["status"] == "acked"


# -- trading hours and flatten at close ---------------------------------------------------------------------

def test_entries_outside_trading_hours_are_refused_and_exits_pass(make_server_app, sim):
    app, guard = start(make_server_app, sim, trading_hours=HOURS)
    assert account(webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 2, "id": "in"}), "DEMO0001")["status"] == "acked"
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    sim.clock.freeze(dt.datetime(2026, 11, 24, 15, 30, tzinfo=CT).timestamp())
    answer = webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "late-entry"})
    assert {a["risk"][0]["code"] for a in answer["accounts"]} == {"outside_trading_hours"}
    assert all(a["status"] == "rejected" for a in answer["accounts"])
    exits = webhook(app, {"action": "sell", "ticker": "NQZ6", "quantity": 1, "id": "late-exit"})
    assert all(a["status"] == "acked" for a in exits["accounts"])
    closes = webhook(app, {"action": "close", "ticker": "NQZ6", "id": "late-close"})
    assert all(a["status"] == "acked" for a in closes["accounts"])
    wait_for(lambda: positions(sim) == {})


def test_flatten_at_the_end_of_the_window(make_server_app, sim):
    app, guard = start(make_server_app, sim, at=dt.datetime(2026, 11, 24, 14, 59, tzinfo=CT).timestamp(),
                       trading_hours=HOURS, flatten_at_close=True)
    webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "before-close"})
    holds(guard, sim, "DEMO0002", "NQZ6", 1)
    guard.wait_idle(tick=True)
    assert not [o for o in sim.orders() if o["endpoint"] == "liquidateposition"]
    sim.clock.freeze(dt.datetime(2026, 11, 24, 15, 0, 1, tzinfo=CT).timestamp())
    guard.wait_idle(tick=True)
    wait_for(lambda: positions(sim) == {})
    assert {o["accountSpec"] for o in sim.orders() if o["endpoint"] == "liquidateposition"} == {"DEMO0001", "DEMO0002"}
    events = app.test_client().get("/api/websocket-status").get_json()["risk"]["recent_events"]
    assert any(e["kind"] == "flatten_at_close" and "FLATTEN_AT_CLOSE" in e["message"] for e in events)


def test_flatten_at_start_when_the_window_ended_while_the_process_was_down(make_server_app, sim, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    database = str(tmp_path / "shared.sqlite3")
    app, guard = start(make_server_app, sim, database_path=database, trading_hours=HOURS, flatten_at_close=True)
    webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "morning"})
    holds(guard, sim, "DEMO0001", "NQZ6", 1)
    app.extensions["runtime"].shutdown(timeout_s=5.0)
    evening = dt.datetime(2026, 11, 24, 18, 0, tzinfo=CT).timestamp()  # the 15:00 end passed while down
    app2, guard2 = start(make_server_app, sim, at=evening, database_path=database, trading_hours=HOURS,
                         flatten_at_close=True)
    guard2.wait_idle(tick=True)
    wait_for(lambda: positions(sim) == {})
    assert any("while the process was down" in r.getMessage() for r in caplog.records)
    # the next start does not flatten again for the same window end
    count = len([o for o in sim.orders() if o["endpoint"] == "liquidateposition"])
    app2.extensions["runtime"].shutdown(timeout_s=5.0)
    app3, guard3 = start(make_server_app, sim, at=evening + 60, database_path=database, trading_hours=HOURS,
                         flatten_at_close=True)
    guard3.wait_idle(tick=True)
    assert len([o for o in sim.orders() if o["endpoint"] == "liquidateposition"]) == count


# -- signal rate, position cap, kill switch ---------------------------------------------------------------------

def test_a_burst_of_20_signals_with_a_limit_of_5_places_5_entries(make_server_app, sim):
    app, guard = start(make_server_app, sim, max_signals_per_minute=5)
    answers = [webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": f"burst-{i}"}) for i in range(20)]
    placed = [a for a in answers if a["status"] == "acked"]
    assert len(placed) == 5
    limited = [a for a in answers if a["status"] != "acked"]
    assert all(acc["risk"][0]["code"] == "rate_limited" for a in limited for acc in a["accounts"])
    assert len([o for o in sim.orders() if o["accountSpec"] == "DEMO0001"]) == 5
    exits = webhook(app, {"action": "sell", "ticker": "NQZ6", "quantity": 1, "id": "exit"})  # exits pass
    assert exits["status"] == "acked"


def test_max_position_2_clips_an_entry_of_3_on_a_flat_account_to_2(make_server_app, sim):
    app, guard = start(make_server_app, sim, max_position=2)
    answer = webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 3, "id": "three"})
    first = account(answer, "DEMO0001")
    assert first["status"] == "acked" and first["risk"][0]["code"] == "clipped"
    assert [o["orderQty"] for o in sim.orders() if o["accountSpec"] == "DEMO0001"] == [2]
    holds(guard, sim, "DEMO0001", "NQZ6", 2)
    more = account(webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "four"}), "DEMO0001")
    assert more["status"] == "rejected" and more["risk"][0]["code"] == "max_position"


def test_kill_switch_locks_and_flattens_all_accounts_in_one_call_and_unlocks(make_server_app, sim):
    app, guard = start(make_server_app, sim)
    webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "open"})
    manual(app, {"action": "sell", "ticker": "ESZ6", "quantity": 2, "account": "DEMO0002"})
    holds(guard, sim, "DEMO0002", "ESZ6", -2)
    holds(guard, sim, "DEMO0001", "NQZ6", 1)
    c = app.test_client()
    assert c.post("/api/kill-switch", json={"accounts": "all"}).status_code == 401
    r = c.post("/api/kill-switch", json={"accounts": "all", "flatten": True}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and sorted(r.get_json()["locked"]) == ["DEMO0001", "DEMO0002"]
    wait_for(lambda: positions(sim) == {})
    answer = webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "while-killed"})
    assert {a["risk"][0]["code"] for a in answer["accounts"]} == {"locked"}
    assert c.delete("/api/kill-switch", json={"accounts": ["NOPE"]},
                    headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 400
    r = c.delete("/api/kill-switch", json={"accounts": "all"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and sorted(r.get_json()["unlocked"]) == ["DEMO0001", "DEMO0002"]
    answer = webhook(app, {"action": "buy", "ticker": "NQZ6", "quantity": 1, "id": "after-unlock"})
    assert answer["status"] == "acked"
