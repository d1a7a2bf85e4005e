"""Issue 29: bounded memory and journal retention.

* A finished order leaves ``BrokerState`` only after it is journaled (its fills in the fill ledger),
  after the position event that follows its fill, after ``keep_s``, and when no working order
  refers to it; the readers still answer for it (final status, settled).
* Retention deletes signals (with their intents), fills and risk events older than the window, in
  batches; an explicit id stays a duplicate; a signal with an unknown intent is kept; the history of
  the retained window is unchanged; the status page / history / health queries use indexes on
  PostgreSQL (EXPLAIN).
"""
from __future__ import annotations

import json
import time

import pytest

from phantom_scraper import events
from phantom_scraper.app.housekeeping import Housekeeping
from phantom_scraper.config import Settings
from phantom_scraper.journal import retention
from phantom_scraper.journal.fills import FillLedger
from phantom_scraper.journal.journal import Journal, make_cl_ord_id
from phantom_scraper.ops import fill_events
from phantom_scraper.tradovate import budget
from phantom_scraper.tradovate.broker_state import BrokerState
from tests.helpers import bytes_kept

ACCT, CONTRACT = 10, 7
DAY = 86400.0


def _state_with_snapshot():
    state = BrokerState("t")
    gen = state.begin(object())
    assert state.load_snapshot(gen, {"positions": [{"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 0}]})
    return state


def _order(oid, status, **extra):
    return {"id": oid, "accountId": ACCT, "contractId": CONTRACT, "ordStatus": status, **extra}


def _fill_order(state, oid, fill_id, net):
    state.apply_event({"entityType": "order", "eventType": "Created", "entity": _order(oid, "Working")})
    state.apply_event({"entityType": "orderVersion", "eventType": "Created",
                       "entity": {"id": oid * 10, "orderId": oid, "orderQty": 1, "orderType": "Market"}})
    state.apply_event({"entityType": "order", "eventType": "Updated", "entity": _order(oid, "Filled")})
    state.apply_event({"entityType": "fill", "eventType": "Created",
                       "entity": {"id": fill_id, "orderId": oid, "contractId": CONTRACT, "action": "Buy", "qty": 1,
                                  "price": 100.0, "timestamp": "2026-12-07T14:30:00Z"}})


def test_a_finished_order_leaves_only_when_settled_journaled_and_past_its_keep_time():
    state = _state_with_snapshot()
    _fill_order(state, 5, 50, 1)
    later = time.monotonic() + 1000
    journaled = set()
    may_drop = lambda o: o["id"] in journaled  # noqa: E731
    # the fill's position event has not arrived: a lane still waits on order_settled
    assert not state.order_settled(5)
    assert state.prune_finished(60, lambda o: True, now=later) == 0
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}})
    assert state.order_settled(5)
    # settled, but not journaled yet
    assert state.prune_finished(60, may_drop, now=later) == 0
    assert state.entity("order", 5) is not None
    # journaled, but finished less than keep_s ago
    journaled.add(5)
    assert state.prune_finished(3600, may_drop) == 0
    # now it goes, with its version and its fill; the readers still answer for it
    assert state.prune_finished(60, may_drop, now=later) == 1
    assert state.entity("order", 5) is None
    assert state.entities("fill") == [] and state.entities("orderVersion") == []
    assert state.order_status(5) == "Filled" and state.order_settled(5)
    assert state.net_pos(ACCT, CONTRACT) == 1
    assert state.status()["orders_pruned"] == 1


def test_a_filled_entry_stays_while_its_bracket_legs_work():
    state = _state_with_snapshot()
    _fill_order(state, 5, 50, 1)
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}})
    state.apply_event({"entityType": "order", "eventType": "Created",
                       "entity": _order(6, "Working", parentId=5, ocoId=7)})
    state.apply_event({"entityType": "order", "eventType": "Created",
                       "entity": _order(7, "Working", parentId=5, ocoId=6)})
    later = time.monotonic() + 1000
    assert state.prune_finished(60, lambda o: True, now=later) == 0  # the legs refer to it
    # the target fills: its OCO partner (7) still works, so 6 stays too (upkeep reads it)
    state.apply_event({"entityType": "order", "eventType": "Updated", "entity": _order(6, "Filled", parentId=5, ocoId=7)})
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 0}})
    assert state.prune_finished(60, lambda o: True, now=later + 1000) == 0
    state.apply_event({"entityType": "order", "eventType": "Updated", "entity": _order(7, "Canceled", parentId=5, ocoId=6)})
    assert state.prune_finished(60, lambda o: True, now=later + 2000) == 3
    assert state.entities("order") == []
    assert [state.order_status(i) for i in (5, 6, 7)] == ["Filled", "Filled", "Canceled"]


def test_housekeeping_prunes_after_the_fill_ledger_journaled_the_fill(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite3"))
    ledger = FillLedger(journal, batch_interval_s=3600)  # not started: flushed by hand below
    unsubscribe = events.subscribe(ledger.on_event)
    state = _state_with_snapshot()
    state.add_listener(fill_events.listener(state), entity_types=("fill",))
    try:
        _fill_order(state, 5, 50, 1)
        state.apply_event({"entityType": "position", "eventType": "Updated",
                           "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}})
        keeper = Housekeeping(Settings(broker_state_keep_s=0.0, journal_retention_days=90), journal, ledger,
                              lambda: [state])
        assert not ledger.journaled(5)
        assert keeper.run_once()["orders_pruned"] == 0  # its fill is not in the journal yet
        assert state.entity("order", 5) is not None
        assert ledger.flush() == 1
        assert ledger.journaled(5)
        assert keeper.run_once()["orders_pruned"] == 1
        assert state.entity("order", 5) is None
        [row] = ledger.between(None, None)
        assert (row["fill_id"], row["order_id"], row["account_id"], row["qty"], row["price"]) == (50, 5, ACCT, 1, 100.0)
        assert row["trade_date"] == "2026-12-07"
    finally:
        unsubscribe()
        journal.close()


def test_fills_in_a_snapshot_reach_the_journal_before_their_orders_can_leave(tmp_path):
    """Fills made while the socket was down arrive only in the next snapshot: the ledger keeps them
    (once each), so pruning their orders never takes them out of the history."""
    journal = Journal(str(tmp_path / "j.sqlite3"))
    ledger = FillLedger(journal, batch_interval_s=3600)
    unsubscribe = events.subscribe(ledger.on_event)
    state = BrokerState("t")
    state.add_listener(fill_events.listener(state), entity_types=("fill", "sync"))
    try:
        snapshot = {"orders": [_order(5, "Filled")],
                    "fills": [{"id": 50, "orderId": 5, "contractId": CONTRACT, "action": "Sell", "qty": 2, "price": 99.5,
                               "timestamp": "2026-12-07T15:00:00Z",
                               "tradeDate": {"year": 2026, "month": 12, "day": 7}}],
                    "positions": [{"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": -2}]}
        for _ in range(2):  # a resync brings the same fill again: kept once
            assert state.load_snapshot(state.begin(object()), snapshot)
        assert not ledger.journaled(5)
        assert Housekeeping(Settings(broker_state_keep_s=0.0), journal, ledger, lambda: [state]).run_once()[
            "orders_pruned"] == 0
        ledger.flush()
        assert [(r["fill_id"], r["account_id"], r["qty"], r["action"]) for r in ledger.between(None, None)] == [
            (50, ACCT, 2, "Sell")]
        assert ledger.journaled(5)
    finally:
        unsubscribe()
        journal.close()


def _signal(journal, recorder, sid, at, *, state="acked"):
    signal_id, dup, _ = journal.record_signal(recorder, {"action": "buy", "id": sid}, sid, None, 5.0, now=at)
    assert not dup
    cl = make_cl_ord_id(signal_id, ACCT, 0)
    journal.create_intents(signal_id, [(ACCT, "A", 0, "placeorder", {"x": 1}, cl)], now=at, state="sending")
    journal.set_intent_state(cl, state, broker_order_id=1 if state == "acked" else None, now=at)
    return signal_id


def test_retention_deletes_old_signals_intents_fills_in_batches_and_keeps_explicit_ids(journal_target):
    journal = Journal(journal_target)
    try:
        now = time.time()
        old = [_signal(journal, "r", f"old-{i}", now - 100 * DAY + i) for i in range(7)]
        stuck = _signal(journal, "r", "old-unknown", now - 100 * DAY, state="unknown")
        recent = [_signal(journal, "r", f"new-{i}", now - 10 * DAY + i) for i in range(3)]
        ledger = FillLedger(journal)
        ledger.tables.ensure()
        for fill_id, at in ((1, now - 100 * DAY), (2, now - 1 * DAY)):
            ledger.on_event(events.Event("fill", {"fill_id": fill_id, "account_id": ACCT, "account": "A",
                                                  "contract": CONTRACT, "order_id": fill_id, "side": "Buy", "qty": 1,
                                                  "price": 1.0, "timestamp": at}))
        assert ledger.flush() == 2
        before = journal.signals_between(now - 90 * DAY, None)

        deleted = retention.prune(journal, 90, now=now, batch=3, pause_s=0)

        assert deleted["signals"] == 7 and deleted["intents"] == 7 and deleted["keys_kept"] == 7
        assert deleted["fills"] == 1
        assert all(journal.get_signal(s) is None for s in old)
        assert journal.get_signal(stuck) is not None  # its unknown intent needs attention
        assert all(journal.get_signal(s) is not None for s in recent)
        assert journal.signals_between(now - 90 * DAY, None) == before  # the retained window is untouched
        assert [r["fill_id"] for r in ledger.between(None, None)] == [2]
        # an explicit id is still a duplicate after its signal was deleted
        _sid, dup, existing = journal.record_signal("r", {"action": "buy"}, "old-3", None, 5.0, now=now)
        assert dup and existing == old[3]
        assert not journal.record_signal("other", {"action": "buy"}, "old-3", None, 5.0, now=now)[1]
        assert retention.prune(journal, 90, now=now, batch=3, pause_s=0)["signals"] == 0
    finally:
        journal.close()


def test_explain_uses_indexes_for_status_history_and_health_queries_on_postgres(journal_target):
    if not str(journal_target).startswith("postgres"):
        pytest.skip("EXPLAIN plans checked on PostgreSQL")
    journal = Journal(journal_target)
    try:
        FillLedger(journal).tables.ensure()
        queries = {
            "history": ("SELECT * FROM signals WHERE received_at >= ? AND received_at < ? ORDER BY received_at "
                        "LIMIT 2000", (0.0, 1.0), "signals_received_at"),
            "history intents": ("SELECT * FROM order_intents WHERE signal_id IN (?, ?) ORDER BY step",
                                ("a", "b"), "order_intents_signal"),
            "status unsettled": ("SELECT * FROM order_intents WHERE state = ? ORDER BY id", ("unknown",),
                                 "order_intents_state"),
            "dedupe": ("SELECT id FROM signals WHERE recorder = ? AND dedupe_key = ? AND duplicate_of IS NULL",
                       ("r", "k"), "signals_recorder_dedupe_key"),
            "dedupe kept": ("SELECT signal_id FROM signal_keys WHERE recorder = ? AND dedupe_key = ?", ("r", "k"),
                            "signal_keys_pkey"),
            "fills": ("SELECT * FROM broker_fills WHERE at >= ? AND at < ? ORDER BY at", (0.0, 1.0), "broker_fills_at"),
            "health": ("SELECT status, COUNT(*) FROM signals GROUP BY status", (), "signals_status"),
        }

        def plans(conn):
            conn.execute("SET LOCAL enable_seqscan = off")  # which index would serve it (tables are empty here)
            out = {}
            for name, (sql, params, _index) in queries.items():
                out[name] = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
            return out
        found = journal.write(plans)
        for name, (_sql, _params, index) in queries.items():
            assert index in found[name], (name, found[name])
    finally:
        journal.close()


def test_the_request_budget_counts_per_minute_and_hour_and_warns_at_80_percent(caplog):
    now = [1000.0]
    b = budget.RequestBudget("u@h", per_minute=10, per_hour=100, clock=lambda: now[0])
    seen = []
    unsubscribe = events.subscribe(lambda e: seen.append(e) if e.kind == "budget" else None)
    try:
        for _ in range(7):
            b.note()
        assert b.status()["last_minute"] == 7 and not b.status()["warning"] and not seen
        b.note()
        assert b.status()["warning"] and len(seen) == 1
        b.note()
        assert len(seen) == 1  # once per episode
        now[0] += 61
        st = b.status()
        assert (st["last_minute"], st["last_hour"], st["peak_minute"]) == (0, 9, 9)
        now[0] += 3600
        assert b.status()["last_hour"] == 0
    finally:
        unsubscribe()


def test_metrics_show_each_logins_request_budget():
    from phantom_scraper.ops.metrics import Metrics
    b = budget.RequestBudget("u@h", per_minute=80, per_hour=5000)
    for _ in range(70):
        b.note()
    text = Metrics(status=lambda: {"request_budget": {"u@h": b.status()}}).render().decode()
    assert 'phantom_broker_requests_last_minute{login="u@h"} 70.0' in text
    assert 'phantom_broker_requests_last_hour{login="u@h"} 70.0' in text
    assert 'phantom_broker_budget_used{login="u@h"} 0.875' in text


def test_the_status_and_metrics_of_a_running_server_show_the_request_budget_and_housekeeping(make_server_app):
    from tests.helpers import ADMIN_HEADERS, post
    budget.reset()
    app = make_server_app()
    client = app.test_client()
    assert post(client, json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1})).status_code == 200
    status = client.get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()
    [(login, figures)] = status["request_budget"].items()
    assert figures["total"] >= 2 and figures["last_hour"] == figures["total"]  # at least the auth and the order
    assert status["housekeeping"]["passes"] == 0 and status["gc"]["collections"] >= 0
    assert f'phantom_broker_requests_last_hour{{login="{login}"}}' in client.get("/metrics", headers=ADMIN_HEADERS).get_data(
        as_text=True)


def test_a_pruned_orders_fills_still_count_for_the_drift_monitors_filled_since():
    """The drift monitor sums the fills of a lane's own orders (and the legs they made) after its
    mark: pruning a filled leg must not change that sum (no false drift)."""
    state = _state_with_snapshot()
    mark = state.fill_mark()
    _fill_order(state, 5, 50, 1)
    state.apply_event({"entityType": "order", "eventType": "Created", "entity": _order(6, "Working", parentId=5)})
    state.apply_event({"entityType": "order", "eventType": "Updated", "entity": _order(6, "Filled", parentId=5)})
    state.apply_event({"entityType": "fill", "eventType": "Created",
                       "entity": {"id": 60, "orderId": 6, "contractId": CONTRACT, "action": "Sell", "qty": 1,
                                  "price": 101.0, "timestamp": "2026-12-07T14:31:00Z"}})
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 0}})
    before = (state.filled_since([5], mark), state.filled_since([5], 50), state.filled_since([6], mark))
    assert before == (0, -1, -1)
    assert state.prune_finished(60, lambda o: True, now=time.monotonic() + 1000) == 2
    assert state.entities("fill") == []
    assert (state.filled_since([5], mark), state.filled_since([5], 50), state.filled_since([6], mark)) == before
    # a resync brings the same fills back: counted once
    gen = state.begin(object())
    assert state.load_snapshot(gen, {"orders": [_order(5, "Filled"), _order(6, "Filled", parentId=5)],
                                     "fills": [{"id": 50, "orderId": 5, "action": "Buy", "qty": 1},
                                               {"id": 60, "orderId": 6, "action": "Sell", "qty": 1}]})
    assert (state.filled_since([5], mark), state.filled_since([5], 50), state.filled_since([6], mark)) == before


# -- a resync's snapshot carries the whole day: what it brings back is not kept -------------------

def _ts(minute):
    return f"2026-12-07T12:{minute:02d}:00.000Z"


def test_a_resync_does_not_bring_back_the_orders_pruned_before():
    state = _state_with_snapshot()
    _fill_order(state, 5, 50, 1)
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}})
    assert state.prune_finished(60, lambda o: True, now=time.monotonic() + 1000) == 1
    gen = state.begin(object())  # the socket dropped; the new one's snapshot lists the day again
    assert state.load_snapshot(gen, {
        "orders": [_order(5, "Filled"), _order(8, "Working")],
        "orderVersions": [{"id": 50, "orderId": 5, "orderQty": 1}, {"id": 80, "orderId": 8, "orderQty": 1}],
        "fills": [{"id": 50, "orderId": 5, "action": "Buy", "qty": 1}],
        "positions": [{"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}]})
    assert [o["id"] for o in state.entities("order")] == [8]
    assert [v["id"] for v in state.entities("orderVersion")] == [80] and state.entities("fill") == []
    assert state.order_status(5) == "Filled" and state.order_settled(5)
    assert [o["id"] for o in state.working_orders(ACCT, CONTRACT)] == [8]
    assert state.status()["orders_left_out_at_sync"] == 1
    assert state.fill_mark() == 50


def test_a_snapshot_leaves_out_old_finished_orders_and_hands_their_fills_to_the_ledger_once(tmp_path):
    """After a restart nothing was seen before: finished orders older than keep_s (on the broker's
    clock: against the snapshot's newest activity) are not kept, unless a working order refers to
    them; their fills reach the journal's fill ledger once, and the readers still answer."""
    journal = Journal(str(tmp_path / "j.sqlite3"))
    ledger = FillLedger(journal, batch_interval_s=3600)
    announced = []
    unsubscribe = events.subscribe(ledger.on_event)
    unsubscribe_too = events.subscribe(lambda e: announced.append(e) if e.kind == "fill_snapshot" else None)
    state = BrokerState("t", keep_s=60)
    state.add_listener(fill_events.listener(state), entity_types=("fill", "sync"))
    snapshot = {
        "orders": [_order(1, "Filled", timestamp=_ts(0)), _order(2, "Canceled", timestamp=_ts(0)),
                   _order(3, "Filled", timestamp=_ts(0)), _order(4, "Working", parentId=3, timestamp=_ts(0)),
                   _order(7, "Canceled", ocoId=99, timestamp=_ts(0)), _order(8, "Working", ocoId=99, timestamp=_ts(0)),
                   _order(5, "Filled", timestamp=_ts(30)), _order(6, "Working", timestamp=_ts(30))],
        "orderVersions": [{"id": 100 + i, "orderId": i, "orderQty": 1} for i in range(1, 9)],
        "fills": [{"id": 70, "orderId": 1, "contractId": CONTRACT, "action": "Buy", "qty": 1, "price": 100.0,
                   "timestamp": _ts(1)},
                  {"id": 30, "orderId": 3, "contractId": CONTRACT, "action": "Buy", "qty": 1, "price": 100.0,
                   "timestamp": _ts(0)},
                  {"id": 50, "orderId": 5, "contractId": CONTRACT, "action": "Sell", "qty": 1, "price": 101.0,
                   "timestamp": _ts(30)}],
        "positions": [{"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 1}]}
    try:
        assert state.load_snapshot(state.begin(object()), snapshot)
        # 1 and 2 finished half an hour before the newest activity: left out with their versions and fill
        assert sorted(o["id"] for o in state.entities("order")) == [3, 4, 5, 6, 7, 8]
        assert sorted(v["orderId"] for v in state.entities("orderVersion")) == [3, 4, 5, 6, 7, 8]
        assert sorted(f["id"] for f in state.entities("fill")) == [30, 50]
        assert (state.order_status(1), state.order_status(2)) == ("Filled", "Canceled")
        assert state.order_settled(1) and state.order_settled(2)
        assert state.fill_mark() == 70 and state.filled_since([1], 0) == 1
        ledger.flush()
        assert sorted(r["fill_id"] for r in ledger.between(None, None)) == [30, 50, 70]
        assert ledger.journaled(1)
        # a resync: the same day again; order 1's fill is not handed out a second time
        assert state.load_snapshot(state.begin(object()), snapshot)
        assert sorted(o["id"] for o in state.entities("order")) == [3, 4, 5, 6, 7, 8]
        assert [sorted(f["fill_id"] for f in e.fields["fills"]) for e in announced] == [[30, 50, 70], [30, 50]]
        ledger.flush()
        assert sorted(r["fill_id"] for r in ledger.between(None, None)) == [30, 50, 70]
        assert state.status()["orders_left_out_at_sync"] == 4
    finally:
        unsubscribe()
        unsubscribe_too()
        journal.close()


def test_what_stays_of_a_finished_order_is_compact():
    """A busy login finishes tens of thousands of orders a day and the state answers for each of
    them after it leaves (final status, fills' signed quantities, who made it): that record must
    stay small: flat arrays of ids, status codes and fills, folded every few thousand orders
    (tradovate/finished_record.py).  Measured with tracemalloc (3 x 4,096 orders, 2 in 3 filled):
    350 bytes an order as decoded dicts, 182 as one dict entry and a tuple each, 29 folded."""
    n = 3 * 4096
    orders = [_order(1000 + i, "Filled" if i % 3 else "Canceled", timestamp=_ts(0)) for i in range(n)]
    fills = [{"id": 50000 + i, "orderId": 1000 + i, "contractId": CONTRACT, "action": "Buy", "qty": 1,
              "price": 100.0, "timestamp": _ts(0)} for i in range(n) if i % 3]
    text = json.dumps({"orders": orders + [_order(9, "Working", timestamp=_ts(30))], "fills": fills})
    state = BrokerState("t", keep_s=60)

    def load():
        assert state.load_snapshot(state.begin(object()), json.loads(text))  # decoded as the socket does
        state.take_snapshot_fills()

    per_order = bytes_kept(load, __file__) / n
    assert [o["id"] for o in state.entities("order")] == [9]
    assert state.order_status(1001) == "Filled" and state.order_status(1000) == "Canceled"
    assert state.filled_since([1001], 0) == 1
    assert state.order_status(1001) is state.order_status(1002)  # one string for every "Filled"
    assert per_order < 60, f"{per_order:.0f} bytes kept per finished order"  # (CPython 3.11: about 29; 182, 350 before)
    # the same when orders leave through pruning, with the bracket legs their parent made
    state = _state_with_snapshot()
    for oid in (5, 6):
        _fill_order(state, oid, oid * 10, 1)
    state.apply_event({"entityType": "order", "eventType": "Created", "entity": _order(7, "Working", parentId=5)})
    state.apply_event({"entityType": "order", "eventType": "Updated", "entity": _order(7, "Canceled", parentId=5)})
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 2}})
    assert state.prune_finished(60, lambda o: True, now=time.monotonic() + 1000) == 3
    assert state.order_status(5) is state.order_status(6) == "Filled"
    assert state.filled_since([5], 0) == 1  # its own fill; its leg 7 (which it made) did not fill
    assert state._made_by == {5: (7,)}


def test_the_record_of_dropped_orders_is_bounded_oldest_first(monkeypatch):
    """Past FINISHED_KEPT dropped orders, the oldest are forgotten a whole segment (a tenth of the
    record) at a time until at most nine tenths are left, their fills and makers with them; the
    newest still answer."""
    from phantom_scraper.tradovate import broker_pruning

    monkeypatch.setattr(broker_pruning, "FINISHED_KEPT", 100)
    state = _state_with_snapshot()
    for oid in range(1, 102):
        _fill_order(state, oid, 1000 + oid, 1)
        state.apply_event({"entityType": "position", "eventType": "Updated",
                           "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": oid}})
        assert state.prune_finished(60, lambda o: True, now=time.monotonic() + 1000) == 1
    # 101 > 100: the two oldest segments of ten went, 81 are left
    assert len(state._finished) == 81 and min(state._finished.ids()) == 21
    assert state.order_status(20) is None and not state.order_settled(20) and state.filled_since([20], 0) == 0
    assert state.order_status(21) == "Filled" and state.filled_since([21, 101], 0) == 2


def test_the_drift_monitors_own_orders_stop_growing_once_dropped_and_counted():
    """The drift check sums, under the state's lock, the fills of every order the lane placed since
    the process started (up to 400 per lane): its time grew through the day.  An order that was
    dropped (final, settled) with no fill above the mark can never count again: it is reported
    spent and leaves the lane's list; one still held, one with a leg still working, or one with a
    fill above the mark stays."""
    from types import SimpleNamespace

    from phantom_scraper.execution.expectation import ExpectationBook

    state = _state_with_snapshot()
    mark0 = state.fill_mark()
    _fill_order(state, 5, 50, 1)  # entry 5 filled (fill 50); its leg 6 still works
    state.apply_event({"entityType": "order", "eventType": "Created", "entity": _order(6, "Working", parentId=5)})
    _fill_order(state, 7, 70, 2)  # 7 filled too (fill 70); dropped below
    state.apply_event({"entityType": "position", "eventType": "Updated",
                       "entity": {"id": 1, "accountId": ACCT, "contractId": CONTRACT, "netPos": 2}})
    spent = []
    assert state.filled_since([5, 7, ("strategy", 9)], mark0, spent) == 2
    assert spent == []  # all still held
    assert state.prune_finished(200, lambda o: True, now=time.monotonic() + 1000) >= 1
    spent = []
    state.filled_since([5, 7, ("strategy", 9)], mark0, spent)
    assert spent == []  # 5's leg still works; 7's fill is above mark0; a strategy is never spent
    spent = []
    assert state.filled_since([5, 7], 70, spent) == 0
    assert spent == [7]  # the mark moved past 7's fills: it can never count again

    book = ExpectationBook()
    target, contract = SimpleNamespace(id=ACCT, name="A", multiplier=1), SimpleNamespace(id=CONTRACT, root="NQ", name="NQZ6")
    run = SimpleNamespace(signal=SimpleNamespace(test=False), contract=contract, recorder="r", leader=None)
    outcome = SimpleNamespace(base_position=0, order_ids=[5, 7], planned=[], order_id=None, cl_ord_ids=[],
                              fill_mark=70, plan_seq=book.mark())
    book.job_done(run, target, None, outcome)
    exp = book.expected(ACCT, CONTRACT)
    assert list(exp.own_ids) == [5, 7]
    assert book.expected_now(exp, state) == 0
    assert list(exp.own_ids) == [5]  # 7 left the list; 5 stays while its leg works
