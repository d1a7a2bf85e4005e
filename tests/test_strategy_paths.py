"""Scripted price paths: a webhook body is parsed and planned, the planned order strategy is started
at the simulator, the price moves, and the broker's legs are checked; breakeven is this server's
(``BreakevenManager`` over the journal's ``StrategyStore``)."""
from __future__ import annotations

import json
import uuid

import pytest

from phantom_scraper.strategies.breakeven import BreakevenManager
from phantom_scraper.config import Credentials, Settings
from phantom_scraper.journal.journal import Journal
from phantom_scraper.signals import AccountTarget, Contract, parse_signal, plan_orders
from phantom_scraper.strategies.store import StrategyStore
from phantom_scraper.tradovate_integration import TradovateIntegration

SYMBOL = "NQZ6"
SETTINGS = Settings(order_ack_timeout_s=2.0, rest_timeout_s=3.0, reconcile_window_s=1.0,
                    reconcile_poll_interval_s=0.05)


@pytest.fixture
def ti(sim):
    integration = TradovateIntegration(Credentials("demo", "demo"), sim.rest_url, sim.ws_url, is_demo=True,
                                       settings=SETTINGS)
    yield integration
    integration.close()


def contract(sim):
    c = sim.exchange.catalog.find(SYMBOL)
    return Contract(id=c.id, name=c.name, root="NQ", tick_size=c.product.tick_size,
                    point_value=c.product.value_per_point)


def account(sim, name="DEMO0001", multiplier=1):
    return AccountTarget(id=sim.account_id(name), name=name, multiplier=multiplier)


def start(sim, ti, message, store=None, acct=None):
    """Plan ``message`` for one account and send its startorderstrategy step; returns (answer, step)."""
    acct = acct or account(sim)
    base = sim.get_price(SYMBOL)["price"]
    signal = parse_signal(json.dumps({"ticker": "NQ1!", "price": base, **message}))
    [step] = plan_orders(signal, contract(sim), acct, 0)
    assert step.kind == "startorderstrategy"
    intent = f"ps-{uuid.uuid4().hex[:12]}"
    body = dict(step.body, uuid=intent)
    if store is not None:
        store.record(intent, "sig", acct.id, acct.name, contract(sim).id, SYMBOL, step.meta["direction"],
                     step.body["params"], step.meta)
    answer = ti._rest_call("POST", "orderStrategy/startorderstrategy", body=body)
    if store is not None:
        store.acked(intent, answer["orderStrategy"]["id"])
    return answer, step, intent


def legs(ti, strategy_id):
    out = {}
    for link in ti.list_deps("orderStrategyLink", strategy_id):
        order = ti.get_order(link["orderId"])
        version = max(ti.list_deps("orderVersion", link["orderId"]), key=lambda v: v["id"])
        out[link["label"]] = {"status": order["ordStatus"], **version}
    return out


def net(sim, name="DEMO0001"):
    return sim.positions().get((sim.account_id(name), SYMBOL), 0)


def working_stops(ti, sid):
    return sum(l["orderQty"] for k, l in legs(ti, sid).items() if k.startswith("sl") and l["status"] == "Working")


def test_three_targets_fill_one_by_one_as_the_price_rises_and_the_stop_shrinks(sim, ti):
    base = sim.get_price(SYMBOL)["price"]
    answer, step, _ = start(sim, ti, {"action": "buy", "quantity": 3,
                                      "takeProfit": [{"points": 5}, {"points": 10}, {"points": 15}],
                                      "stopLoss": {"points": 10}})
    sid = answer["orderStrategy"]["id"]
    assert [b["qty"] for b in step.meta["brackets"]] == [1, 1, 1]
    assert net(sim) == 3 and working_stops(ti, sid) == 3
    path = [(base + 2, 3), (base + 5, 2), (base + 7, 2), (base + 10, 1), (base + 12, 1), (base + 15, 0)]
    for price, pos in path:
        sim.set_price(SYMBOL, price)
        assert net(sim) == pos, price
        assert working_stops(ti, sid) == pos, price  # exit legs never exceed the position
    assert {k: v["status"] for k, v in legs(ti, sid).items()} == {
        "entry": "Filled", "tp1": "Filled", "tp2": "Filled", "tp3": "Filled",
        "sl1": "Canceled", "sl2": "Canceled", "sl3": "Canceled"}
    assert ti.get_order_strategy(sid)["status"] == "ExecutionFinished"


def test_trailing_stop_follows_a_rise_and_exits_on_the_pullback_at_the_right_price(sim, ti):
    base = sim.get_price(SYMBOL)["price"]
    answer, step, _ = start(sim, ti, {"action": "buy", "quantity": 1,
                                      "stopLoss": {"type": "trailing_stop", "trailAmount": 4}})
    sid = answer["orderStrategy"]["id"]
    assert step.meta["brackets"] == [{"qty": 1, "stopLoss": -4.0, "trailingStop": True}]
    for price in (base + 1, base + 3, base + 8.5, base + 6, base + 9):
        sim.set_price(SYMBOL, price)
    assert legs(ti, sid)["sl1"]["stopPrice"] == base + 5  # highest price 9 - 4; the dip to 6 left it there
    assert net(sim) == 1
    sim.set_price(SYMBOL, base + 7)
    sim.set_price(SYMBOL, base + 5)
    assert net(sim) == 0
    [fill] = ti.list_deps("fill", legs(ti, sid)["sl1"]["orderId"])
    assert fill["price"] == base + 5 and fill["action"] == "Sell"


def test_short_trailing_stop_after_a_trigger_in_steps(sim, ti):
    base = sim.get_price(SYMBOL)["price"]
    answer, step, _ = start(sim, ti, {"action": "sell", "quantity": 1, "takeProfit": {"points": 50},
                                      "stopLoss": {"type": "trailing", "points": 10, "trailAmount": 3,
                                                   "trigger": 20, "step": 4}})
    sid = answer["orderStrategy"]["id"]
    assert step.meta["brackets"][0]["autoTrail"] == {"stopLoss": 3.0, "trigger": 5.0, "freq": 1.0}
    sim.set_price(SYMBOL, base - 4.75)
    assert legs(ti, sid)["sl1"]["stopPrice"] == base + 10
    sim.set_price(SYMBOL, base - 5)  # trigger: 20 ticks in profit; the stop goes to -5 + 3 in whole steps
    assert legs(ti, sid)["sl1"]["stopPrice"] == base - 2
    sim.set_price(SYMBOL, base - 2)
    assert net(sim) == 0


def test_breakeven_moves_the_stop_to_entry_plus_offset_once_after_the_trigger(sim, ti, tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    manager = BreakevenManager(store, lambda account_id: ti)
    base = sim.get_price(SYMBOL)["price"]
    answer, step, intent = start(sim, ti, {"action": "buy", "quantity": 2,
                                           "takeProfit": [{"points": 10}, {"points": 20}],
                                           "stopLoss": {"points": 8, "breakeven": {"trigger": 16, "offset": 2}}},
                                 store=store)
    sid = answer["orderStrategy"]["id"]
    assert step.meta["breakeven"] == {"trigger": 4.0, "offset": 0.5}
    for price in (base + 1, base + 3.75):
        sim.set_price(SYMBOL, price)
        assert manager.check(contract(sim).id, price) == []
    assert {legs(ti, sid)[k]["stopPrice"] for k in ("sl1", "sl2")} == {base - 8}
    sim.set_price(SYMBOL, base + 4)
    assert manager.check(contract(sim).id, base + 4) == [intent]
    assert {legs(ti, sid)[k]["stopPrice"] for k in ("sl1", "sl2")} == {base + 0.5}
    rec = store.get(intent)
    assert rec["be_state"] == "done" and rec["be_stop"] == base + 0.5 and rec["entry_price"] == base
    versions_before = len(ti.list_deps("orderVersion", legs(ti, sid)["sl1"]["orderId"]))
    sim.set_price(SYMBOL, base + 6)
    assert manager.check(contract(sim).id, base + 6) == []  # exactly once
    assert len(ti.list_deps("orderVersion", legs(ti, sid)["sl1"]["orderId"])) == versions_before
    sim.set_price(SYMBOL, base + 10)  # the first target fills; the second leg keeps its breakeven stop
    sim.set_price(SYMBOL, base + 0.5)
    assert net(sim) == 0
    journal.close()


def test_breakeven_while_down_moves_when_back_only_if_the_trigger_still_holds(sim, ti, tmp_path):
    path = str(tmp_path / "j.sqlite")
    journal = Journal(path)
    store = StrategyStore(journal)
    base = sim.get_price(SYMBOL)["price"]
    _, _, held = start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": {"points": 30},
                                 "stopLoss": {"points": 8, "breakeven": {"triggerPoints": 4}}}, store=store)
    journal.close()
    sim.set_price(SYMBOL, base + 5)  # the trigger trades while this process is down: nothing moves
    sim.set_price(SYMBOL, base + 3)
    journal = Journal(path)  # back
    store = StrategyStore(journal)
    manager = BreakevenManager(store, lambda account_id: ti)
    rec = store.get(held)
    sid = rec["strategy_id"]
    assert legs(ti, sid)["sl1"]["stopPrice"] == base - 8
    assert manager.check(contract(sim).id, base + 3) == []  # the trigger no longer holds
    assert legs(ti, sid)["sl1"]["stopPrice"] == base - 8 and store.get(held)["be_state"] == "armed"
    sim.set_price(SYMBOL, base + 4.5)
    assert manager.check(contract(sim).id, base + 4.5) == [held]
    assert legs(ti, sid)["sl1"]["stopPrice"] == base
    journal.close()


def test_breakeven_never_modifies_a_trailing_leg_and_says_so_once(sim, ti, tmp_path, monkeypatch):
    """Tradovate refuses to reprice a trailing stop (TrailingStopNonOrderQtyModify): breakeven sends
    no modify for it, leaves it trailing, and reports that once (final state ``skipped``)."""
    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    manager = BreakevenManager(store, lambda account_id: ti)
    base = sim.get_price(SYMBOL)["price"]
    answer, _, intent = start(sim, ti, {"action": "buy", "quantity": 1,
                                        "stopLoss": {"type": "trailing", "points": 2,
                                                     "breakeven": {"triggerPoints": 4, "offsetPoints": 1}}},
                              store=store)
    sid = answer["orderStrategy"]["id"]
    modifies = []
    monkeypatch.setattr(ti, "modify_order_rest", lambda body: modifies.append(body))
    sim.set_price(SYMBOL, base + 6)  # trailed to +4
    assert manager.check(contract(sim).id, base + 6) == [intent]
    assert modifies == [] and legs(ti, sid)["sl1"]["stopPrice"] == base + 4
    assert store.get(intent)["be_state"] == "skipped" and len(manager.alerts) == 1
    assert manager.check(contract(sim).id, base + 7) == [] and len(manager.alerts) == 1  # reported once
    journal.close()


def test_the_simulator_refuses_to_reprice_a_trailing_stop(sim, ti):
    from phantom_scraper.errors import OrderRejectedError
    base = sim.get_price(SYMBOL)["price"]
    answer, _, _ = start(sim, ti, {"action": "buy", "quantity": 1, "stopLoss": {"type": "trailing", "points": 2}})
    sl = legs(ti, answer["orderStrategy"]["id"])["sl1"]
    with pytest.raises(OrderRejectedError) as refused:
        ti.modify_order_rest({"orderId": sl["orderId"], "orderQty": 1, "orderType": "TrailingStop",
                              "stopPrice": base, "isAutomated": True})
    assert refused.value.failure_reason == "TrailingStopNonOrderQtyModify"


def test_breakeven_finds_the_stop_by_what_it_is_when_labels_say_nothing(make_multi_sim, tmp_path):
    """Tradovate documents orderStrategyLink.label as free text: with labels unlike ours the stop
    leg is still found (opposite side, orderType Stop) and moved."""
    from phantom_scraper.tradovate_sim import UserSpec
    sim = make_multi_sim([UserSpec()], strategy_link_labels="opaque")
    ti = TradovateIntegration(Credentials("demo", "demo"), sim.rest_url, sim.ws_url, is_demo=True, settings=SETTINGS)
    journal = Journal(str(tmp_path / "j.sqlite"))
    try:
        store = StrategyStore(journal)
        manager = BreakevenManager(store, lambda account_id: ti)
        base = sim.get_price(SYMBOL)["price"]
        answer, _, intent = start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": {"points": 30},
                                            "stopLoss": {"points": 8, "breakeven": {"triggerPoints": 4}}},
                                  store=store)
        labels = {l["label"] for l in ti.list_deps("orderStrategyLink", answer["orderStrategy"]["id"])}
        assert not labels & {"entry", "sl1", "tp1"}
        sim.set_price(SYMBOL, base + 4)
        assert manager.check(contract(sim).id, base + 4) == [intent]
        stops = [o for o in sim.orders() if o.get("orderType") == "Stop"]
        assert store.get(intent)["be_state"] == "done" and manager.moves == 1
        sl_id = stops[0]["orderId"]
        assert max(ti.list_deps("orderVersion", sl_id), key=lambda v: v["id"])["stopPrice"] == base
    finally:
        journal.close()
        ti.close()


def test_an_armed_breakeven_with_no_stop_is_an_alert_not_done(sim, ti, tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    manager = BreakevenManager(store, lambda account_id: ti)
    base = sim.get_price(SYMBOL)["price"]
    answer, _, intent = start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": {"points": 30},
                                        "stopLoss": {"points": 8, "breakeven": {"triggerPoints": 4}}}, store=store)
    sl = legs(ti, answer["orderStrategy"]["id"])["sl1"]
    ti.cancel_order_rest({"orderId": sl["orderId"], "isAutomated": True})  # someone cancelled the stop
    sim.set_price(SYMBOL, base + 4)
    assert manager.check(contract(sim).id, base + 4) == [intent]
    assert store.get(intent)["be_state"] == "no_stop"
    assert [a[1] for a in manager.alerts] == ["no_stop"]
    journal.close()


def test_a_refusal_a_retry_cannot_change_is_final_and_reported_once(sim, ti, tmp_path, monkeypatch):
    from phantom_scraper.errors import OrderRejectedError
    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    manager = BreakevenManager(store, lambda account_id: ti)
    base = sim.get_price(SYMBOL)["price"]
    _, _, intent = start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": {"points": 30},
                                   "stopLoss": {"points": 8, "breakeven": {"triggerPoints": 4}}}, store=store)
    calls = []

    def refuse(body):
        calls.append(body)
        raise OrderRejectedError("InvalidPrice", "stop price on the wrong side of the market")
    monkeypatch.setattr(ti, "modify_order_rest", refuse)
    for price in (base + 4, base + 5, base + 6):
        sim.set_price(SYMBOL, price)
        manager.check(contract(sim).id, price)
    assert len(calls) == 1  # not retried on every quote
    rec = store.get(intent)
    assert rec["be_state"] == "refused" and len(manager.alerts) == 1 and "InvalidPrice" in manager.alerts[0][2]
    journal.close()


def test_a_moving_state_left_by_a_crash_is_finished_without_a_second_modify(sim, ti, tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    base = sim.get_price(SYMBOL)["price"]
    answer, _, intent = start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": {"points": 30},
                                        "stopLoss": {"points": 8, "breakeven": {"triggerPoints": 4}}}, store=store)
    sid = answer["orderStrategy"]["id"]
    sl = legs(ti, sid)["sl1"]
    # a crash after the modify left the journal at 'moving'
    store.breakeven(intent, "moving", stop=base)
    ti.modify_order_rest({"orderId": sl["orderId"], "orderQty": 1, "orderType": "Stop", "stopPrice": base,
                          "isAutomated": True})
    versions = len(ti.list_deps("orderVersion", sl["orderId"]))
    sim.set_price(SYMBOL, base + 5)
    assert BreakevenManager(store, lambda a: ti).check(contract(sim).id, base + 5) == [intent]
    assert len(ti.list_deps("orderVersion", sl["orderId"])) == versions
    assert store.get(intent)["be_state"] == "done"
    journal.close()


def test_housekeeping_closes_records_of_strategies_the_broker_finished(sim, ti, tmp_path):
    from phantom_scraper.strategies import lifecycle as strategy_exec
    from tests.helpers import wait_for

    journal = Journal(str(tmp_path / "j.sqlite"))
    store = StrategyStore(journal)
    base = sim.get_price(SYMBOL)["price"]
    start(sim, ti, {"action": "buy", "quantity": 1, "takeProfit": [{"points": 5}, {"points": 6}],
                    "stopLoss": {"points": 5}}, store=store)
    assert len(store.open()) == 1
    sim.set_price(SYMBOL, base + 5)  # the target fills: the strategy is finished at the broker
    manager = BreakevenManager(store, lambda a: ti, housekeeping_s=0.05, refresh_s=0.02,
                               housekeeping=lambda: strategy_exec.refresh(journal, lambda a: ti))
    manager.start()
    try:
        wait_for(lambda: store.open() == [], what="the finished strategy closed in the journal")
    finally:
        manager.stop()
    journal.close()
