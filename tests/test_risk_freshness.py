"""Issue 31: unknown is not zero.  The guard's P&L carries its sources and ages; a rule never acts on
a figure it cannot vouch for (``pnl_unknown``); a login whose broker state is not fresh is unknown,
never flat; the broker's snapshot counts only when it is newer than the positions it covers.

Fake broker state and actions, the guard's clock injected (the simulator-driven cases are in
test_risk_guard31.py)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from phantom_scraper import events
from phantom_scraper.config import RiskSettings, Settings
from phantom_scraper.journal.journal import Journal
from phantom_scraper.risk.guard import RiskGuard
from phantom_scraper.risk.store import RiskStore

CT = ZoneInfo("America/Chicago")
NOON = dt.datetime(2026, 11, 24, 12, 0, tzinfo=CT).timestamp()
TODAY = {"year": 2026, "month": 11, "day": 24}
NQ, ES = 3000201, 3000301


class Broker:
    """A login's broker state as the guard sees it: positions, cash balance, sync freshness."""

    def __init__(self):
        self.pos, self.cash, self.is_fresh = {}, {}, {1: True, 2: True}

    def positions(self, account_id):
        return dict(self.pos.get(account_id, {}))

    def working_orders(self, account_id):
        return []

    def cash_balance(self, account_id):
        return self.cash.get(account_id)

    def fresh(self, account_id):
        return self.is_fresh.get(account_id, True)


class Actions:
    def __init__(self, broker):
        self.broker, self.calls, self.snapshots = broker, [], {}

    def flatten(self, account_id, contract_id, reason):
        self.calls.append(("flatten", account_id, contract_id))
        self.broker.pos[account_id].pop(contract_id, None)
        return "acked"

    def cancel(self, account_id, order_id):
        self.calls.append(("cancel", account_id, order_id))

    def value_per_point(self, contract_id):
        return {NQ: 20.0, ES: 50.0}[contract_id]

    def cash_snapshot(self, account_id):
        self.calls.append(("snapshot", account_id))
        return dict(self.snapshots[account_id])


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


@pytest.fixture
def make(tmp_path):
    made = []

    def _make(**risk):
        clock = Clock(NOON)
        g = RiskGuard(Settings(database_path=str(tmp_path / "j.sqlite3"), risk=RiskSettings(**risk)), clock=clock)
        broker = Broker()
        actions = Actions(broker)
        journal = Journal(str(tmp_path / "j.sqlite3"))
        g.attach(store=RiskStore(journal), accounts={1: "A", 2: "B"}, broker=broker, actions=actions)
        g.unknown.report_after_s = 0.0
        made.append((g, journal))
        return g, broker, actions, clock

    yield _make
    for g, journal in made:
        g.stop()
        journal.close()


def status(g, name="A"):
    return next(a for a in g.status()["accounts"] if a["account_name"] == name)


def test_a_start_up_snapshot_taken_before_the_positions_never_replaces_their_open_pnl(make):
    """#2: long NQ +20 points (peak +400), back to +10 (+200), then buy ES: the start-up snapshot
    (open 0, taken before the sync delivered a cash balance) replaced the whole open P&L and
    'daily P&L 0.00 is 400.00 below the peak' liquidated both positions and locked the day."""
    g, broker, actions, clock = make(trailing_drawdown=300.0)
    actions.snapshots[1] = {"accountId": 1, "realizedPnL": 0.0, "openPnL": 0.0, "tradeDate": TODAY}
    actions.snapshots[2] = actions.snapshots[1]
    g._tick(clock())  # the first check: no cash balance yet, so a snapshot is taken (open 0)
    assert ("snapshot", 1) in actions.calls
    broker.cash[1] = {"accountId": 1, "realizedPnL": 0.0, "tradeDate": TODAY}  # the sync delivers it
    broker.pos[1] = {NQ: (1, 21000.0)}
    clock.at += 5
    g._tick(clock())
    g.on_quote(NQ, 21020.0, clock())
    g._evaluate(1, clock())
    assert status(g)["total_pnl"] == 400.0 and status(g)["peak_pnl"] == 400.0
    g.on_quote(NQ, 21010.0, clock())
    g._evaluate(1, clock())
    assert status(g)["total_pnl"] == 200.0
    broker.pos[1] = {NQ: (1, 21000.0), ES: (1, 6000.0)}  # buy 1 ES: no quote for it yet
    g._evaluate(1, clock())
    a = status(g)
    assert not g._locks and [c for c in actions.calls if c[0] == "flatten"] == []
    assert a["total_pnl"] is None and a["pnl_complete"] is False and a["pnl_status"] == "pnl_unknown"
    assert "older than a position change" in a["pnl_unknown"]
    assert a["pnl_freshness"]["contracts"][str(ES)]["source"] is None
    assert a["pnl_freshness"]["contracts"][str(NQ)]["source"] == "quote"
    g._tick(clock())
    g.on_quote(ES, 5999.0, clock())  # ES priced: -50; the whole day is known again, +150
    g._evaluate(1, clock())
    assert status(g)["total_pnl"] == 150.0 and status(g)["pnl_status"] == "known" and not g._locks


def test_a_snapshot_requested_after_the_last_position_change_stands_for_the_open_pnl(make):
    """The broker's own figure is used when it is newer than the positions it covers (no quote)."""
    g, broker, actions, clock = make(daily_loss_limit=500.0)
    broker.pos[1] = {NQ: (2, 21000.0)}
    g._evaluate(1, clock())  # the position is seen ...
    actions.snapshots[1] = {"accountId": 1, "realizedPnL": -100.0, "openPnL": -2000.0, "tradeDate": TODAY}
    actions.snapshots[2] = {"accountId": 2, "realizedPnL": 0.0, "openPnL": 0.0, "tradeDate": TODAY}
    g._tick(clock())  # ... then the snapshot is requested (no cash balance from the sync stream)
    a = status(g)
    assert a["pnl_freshness"]["open_from"] == "snapshot" and a["pnl_freshness"]["realized_from"] == "snapshot"
    assert g._locks[1]["reason"] == "daily_loss_limit" and "-2100.00" in g._locks[1]["message"]
    clock.at += 2 * 300 + 1  # older than twice RISK_SNAPSHOT_POLL_S: no longer vouched for
    g.unlock([1])
    g._evaluate(1, clock())
    assert status(g)["pnl_status"] == "pnl_unknown" and "s old" in status(g)["pnl_unknown"]


def test_a_failed_snapshot_is_unknown_not_zero(make):
    g, broker, actions, clock = make(daily_loss_limit=500.0)
    actions.snapshots[1] = {}  # e.g. an errorText answer or a timeout
    actions.snapshots[2] = {}
    g._tick(clock())
    a = status(g)
    assert a["realized_pnl"] is None and a["total_pnl"] is None and a["pnl_status"] == "pnl_unknown"
    assert "snapshot failed" in a["pnl_unknown"]


def test_a_login_whose_broker_state_is_not_fresh_is_unknown_never_flat(make):
    """#3: the socket never synced (or dropped): the empty position copy counted as flat, complete,
    P&L 0, while the broker carried -4,000 open."""
    g, broker, actions, clock = make(daily_loss_limit=500.0)
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind == "risk_pnl" else None)
    try:
        broker.cash[1] = {"accountId": 1, "realizedPnL": 0.0, "tradeDate": TODAY}
        broker.cash[2] = dict(broker.cash[1], accountId=2)
        broker.is_fresh[1] = False  # positions open at the broker; none in the (unsynced) copy
        g._tick(clock())
        a = status(g)
        assert a["pnl_complete"] is False and a["total_pnl"] is None and a["open_pnl"] is None
        assert a["pnl_status"] == "pnl_unknown" and "not synced" in a["pnl_unknown"]
        assert a["pnl_freshness"]["sync"] == "not_synced"
        assert status(g, "B")["pnl_status"] == "known" and status(g, "B")["total_pnl"] == 0.0  # the other login
        assert [(e.fields["account"], e.fields["unknown"]) for e in seen] == [("A", True)]
        recent = g.status()["recent_events"]
        assert any(e["kind"] == "pnl_unknown" and e["account_name"] == "A" for e in recent)
        broker.is_fresh[1] = True  # synced again
        g._tick(clock())
        assert status(g)["pnl_status"] == "known"
        assert [(e.fields["account"], e.fields["unknown"]) for e in seen] == [("A", True), ("A", False)]
    finally:
        unsubscribe()


def test_a_quote_from_a_feed_that_is_down_is_not_live(make):
    g, broker, actions, clock = make(daily_loss_limit=500.0)

    class Feed:
        up = True

        def live(self):
            return {NQ} if self.up else set()

        def want(self, _contracts):
            pass

        def status(self):
            return {}

        def stop(self):
            pass

        requests_sent = 0

    g.feed = Feed()
    broker.cash[1] = {"accountId": 1, "realizedPnL": 0.0, "tradeDate": TODAY}
    broker.cash[2] = dict(broker.cash[1], accountId=2)
    broker.pos[1] = {NQ: (1, 21000.0)}
    g._tick(clock())
    g.on_quote(NQ, 21001.0, clock() - 3)
    g._evaluate(1, clock())
    a = status(g)
    assert a["total_pnl"] == 20.0 and a["pnl_freshness"]["contracts"][str(NQ)]["quote_age_s"] == 3.0
    g.feed.up = False
    g._evaluate(1, clock())
    assert status(g)["pnl_status"] == "pnl_unknown" and status(g)["total_pnl"] is None
