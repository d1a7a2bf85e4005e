"""The risk guard's watcher and limits with fake broker state and actions (no simulator)."""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from phantom_scraper.config import ConfigError, RiskSettings, Settings
from phantom_scraper.journal.journal import Journal
from phantom_scraper.risk.guard import RiskGuard
from phantom_scraper.risk.limits import load_limits
from phantom_scraper.risk.store import RiskStore
from phantom_scraper.signals import AccountTarget, Contract, OrderStep, PlanError

CT = ZoneInfo("America/Chicago")
NOON = dt.datetime(2026, 11, 24, 12, 0, tzinfo=CT).timestamp()
NQ = 3000201


class FakeBroker:
    def __init__(self):
        self.pos = {}
        self.cash = {}
        self.orders = {}

    def positions(self, account_id):
        return dict(self.pos.get(account_id, {}))

    def working_orders(self, account_id):
        return list(self.orders.get(account_id, []))

    def cash_balance(self, account_id):
        return self.cash.get(account_id)


class FakeActions:
    def __init__(self, broker):
        self.broker = broker
        self.calls = []

    def flatten(self, account_id, contract_id, reason):
        self.calls.append(("flatten", account_id, contract_id))
        self.broker.pos[account_id].pop(contract_id, None)
        return "acked"

    def cancel(self, account_id, order_id):
        self.calls.append(("cancel", account_id, order_id))

    def value_per_point(self, contract_id):
        return 20.0

    def cash_snapshot(self, account_id):
        raise AssertionError("the sync stream has the cash balance: no snapshot poll")


@pytest.fixture
def guard(tmp_path):
    made = []

    def make(clock=lambda: NOON, recorders=None, **risk):
        settings = Settings(database_path=str(tmp_path / "j.sqlite3"), risk=RiskSettings(**risk))
        if recorders is not None:
            path = tmp_path / "recorders.json"
            path.write_text(json.dumps(recorders))
            settings = settings.replace(recorders_file=str(path))
        g = RiskGuard(settings, clock=clock)
        broker = FakeBroker()
        broker.cash = {1: {"accountId": 1, "realizedPnL": 0.0, "tradeDate": {"year": 2026, "month": 11, "day": 24}},
                       2: {"accountId": 2, "realizedPnL": 0.0, "tradeDate": {"year": 2026, "month": 11, "day": 24}}}
        journal = Journal(str(tmp_path / "j.sqlite3"))
        g.attach(store=RiskStore(journal), accounts={1: "A", 2: "B"}, broker=broker, actions=FakeActions(broker))
        made.append((g, journal))
        return g, broker

    yield make
    for g, journal in made:
        g.stop()
        journal.close()


def test_profit_target_and_trailing_drawdown_lock_and_flatten(guard):
    g, broker = guard(daily_profit_target=1000.0, trailing_drawdown=300.0)
    broker.pos = {1: {NQ: (2, 21000.0)}, 2: {NQ: (1, 21000.0)}}
    g._tick(NOON)
    g.on_quote(NQ, 21020.0)  # A: +800, B: +400
    g._evaluate(1, NOON), g._evaluate(2, NOON)
    assert g.status()["accounts"][0]["peak_pnl"] == 800.0 and not g._locks
    g.on_quote(NQ, 21012.0)  # A: +480 = 320 below its peak of 800; B: +240, 160 below 400
    g._evaluate(1, NOON), g._evaluate(2, NOON)
    assert g._locks[1]["reason"] == "trailing_drawdown" and 2 not in g._locks
    g.on_quote(NQ, 21030.0)  # B: +600 ... and A is locked already
    broker.cash[2]["realizedPnL"] = 500.0  # B: 500 realized + 600 open >= 1000
    g._evaluate(2, NOON)
    assert g._locks[2]["reason"] == "daily_profit_target"


def test_yesterdays_realized_pnl_counts_as_zero_and_an_unpriced_position_is_not_judged(guard):
    g, broker = guard(daily_loss_limit=100.0)
    broker.cash[1] = {"accountId": 1, "realizedPnL": -5000.0, "tradeDate": {"year": 2026, "month": 11, "day": 23}}
    broker.pos = {1: {NQ: (1, 21000.0)}}
    g._evaluate(1, NOON)
    assert not g._locks and g._last_values[1]["complete"] is False  # no price yet: nothing decided
    g._tick(NOON)
    g.on_quote(NQ, 20996.0)  # -80: under the limit
    g._evaluate(1, NOON)
    assert g._last_values[1]["realized_pnl"] == 0.0 and g._last_values[1]["total_pnl"] == -80.0 and not g._locks


def test_peak_survives_a_new_guard(guard):
    g, broker = guard(trailing_drawdown=300.0)
    broker.pos = {1: {NQ: (1, 21000.0)}}
    g._tick(NOON)
    g.on_quote(NQ, 21025.0)  # +500
    g._evaluate(1, NOON)
    g2, broker2 = guard(trailing_drawdown=300.0)
    broker2.pos = {1: {NQ: (1, 21000.0)}}
    g2._tick(NOON)
    g2.on_quote(NQ, 21010.0)  # +200: 300 below the journaled peak of 500
    g2._evaluate(1, NOON)
    assert g2._locks[1]["reason"] == "trailing_drawdown"


def test_locked_flatten_cancels_orders_elsewhere(guard):
    g, broker = guard()
    broker.pos = {1: {NQ: (1, 21000.0)}}
    broker.orders = {1: [{"id": 77, "contractId": 999, "ordStatus": "Working"},
                         {"id": 78, "contractId": NQ, "ordStatus": "Working"}]}
    g.lock(1, "kill_switch", "test", until=None, flatten=False)  # (the barrier is tested below)
    result = g._flatten(1, "test")
    assert g.actions.calls == [("flatten", 1, NQ), ("cancel", 1, 77)]  # NQ's order goes with the liquidation
    assert result["cancelled"] == [77]


def test_the_lock_barrier_repeats_until_flat_and_reports_what_is_left(guard):
    g, broker = guard()
    g.settings = g.settings.replace(order_ack_timeout_s=0.05)  # each round waits for the broker this long
    broker.pos = {1: {NQ: (1, 21000.0)}}
    broker.orders = {1: [{"id": 77, "contractId": 999, "ordStatus": "Working"}]}  # never goes (a fake cancel)
    row = g.lock(1, "kill_switch", "test", until=None, flatten=True)
    done, result = row["flatten_wait"]
    assert done.wait(30)
    assert result["flat"] is False and result["rounds"] == 4  # bounded
    assert result["pending"] == {"positions": [], "working_orders": [77]}
    assert [c for c in g.actions.calls if c[0] == "flatten"] == [("flatten", 1, NQ)]  # flattened once: then flat
    broker.orders = {1: []}
    done, result = g.request_flatten(1, "again")
    assert done.wait(30) and result["flat"] is True and result["rounds"] == 0


def test_entry_check_uses_the_broker_state_not_a_read(guard):
    g, broker = guard(max_position=2)
    broker.pos = {1: {NQ: (2, 21000.0)}}
    target, contract = AccountTarget(1, "A"), Contract(NQ, "NQZ6", "NQ", 0.25)
    step = OrderStep("placeorder", {"action": "Buy", "orderQty": 1, "symbol": "NQZ6", "orderType": "Market"})
    with pytest.raises(PlanError) as exc:
        g.check_steps("rec", "sig", contract, target, [step], net_pos=0)
    assert exc.value.code == "max_position"
    sell = OrderStep("placeorder", {"action": "Sell", "orderQty": 1, "symbol": "NQZ6", "orderType": "Market"})
    assert g.check_steps("rec", "sig2", contract, target, [sell], net_pos=0) == [sell]
    assert g.take_notes("sig") == {1: [{"code": "max_position", "message": exc.value.message}]}


def test_per_account_overrides_and_recorder_rates_from_the_recorders_file(guard, tmp_path):
    g, _ = guard(daily_loss_limit=500.0, max_position=3, recorders={
        "logins": {}, "recorders": [{"name": "fast", "max_signals_per_minute": 2}],
        "risk": {"accounts": {"A": {"daily_loss_limit": None, "max_position": 1,
                                    "trading_hours": "Mon-Fri 08:30-15:00 America/Chicago"}}}})
    assert g.limits_for(1).daily_loss_limit is None and g.limits_for(1).max_position == 1
    assert g.limits_for(1).trading_hours.is_open(NOON)
    assert g.limits_for(2).daily_loss_limit == 500.0 and g.limits_for(2).max_position == 3
    assert g.rate_for("fast") == 2 and g.rate_for("other") is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"risk": {"accounts": {"A": {"trading_hours": "Someday 9-5"}}}}))
    with pytest.raises(ConfigError):
        load_limits(Settings(recorders_file=str(bad)))


def test_trading_hours_variable_is_validated_at_start():
    with pytest.raises(ConfigError, match="TRADING_HOURS"):
        Settings.from_env({"TRADING_HOURS": "Mon-Fri 08:30-15:00 Nowhere/City"})
    risk = Settings.from_env({"RISK_MAX_POSITION": "2", "RISK_DAILY_LOSS_LIMIT": "500", "FLATTEN_AT_CLOSE": "1",
                              "RISK_MAX_SIGNALS_PER_MINUTE": "5", "TRADOVATE_MD_URL": "ws://x/v1/websocket"})
    assert (risk.risk.max_position, risk.risk.daily_loss_limit, risk.risk.flatten_at_close,
            risk.risk.max_signals_per_minute) == (2, 500.0, True, 5)
    assert risk.resolved_md_url() == "ws://x/v1/websocket"
    assert Settings.from_env({"TRADOVATE_ENV": "live", "TRADOVATE_USERNAME": "u", "TRADOVATE_PASSWORD": "p"}) \
        .resolved_md_url() == "wss://md.tradovateapi.com/v1/websocket"
