"""Strategy bracket units: no Tradovate text says whether ``profitTarget``/``stopLoss`` are points or
ticks.  The read-back (``strategies.readback``) checks the legs against the plan after the entry
fills, both ways against the simulator (``strategy_bracket_unit``)."""
from __future__ import annotations

import json
import uuid

import pytest

from phantom_scraper.config import Credentials, Settings
from phantom_scraper.journal.journal import Journal
from phantom_scraper.signals import AccountTarget, Contract, parse_signal, plan_orders
from phantom_scraper.strategies.readback import ReadBack, UnitMemory, params_for_broker
from phantom_scraper.strategies.store import StrategyStore
from phantom_scraper.tradovate_integration import TradovateIntegration
from phantom_scraper.tradovate_sim import UserSpec

SYMBOL = "NQZ6"
SETTINGS = Settings(order_ack_timeout_s=2.0, rest_timeout_s=3.0, reconcile_window_s=1.0,
                    reconcile_poll_interval_s=0.05)


@pytest.fixture
def setup(make_multi_sim, tmp_path):
    made = []

    def _make(unit):
        sim = make_multi_sim([UserSpec()], strategy_bracket_unit=unit)
        ti = TradovateIntegration(Credentials("demo", "demo"), sim.rest_url, sim.ws_url, is_demo=True,
                                  settings=SETTINGS)
        journal = Journal(str(tmp_path / f"j-{unit}.sqlite"))
        made.append((ti, journal))
        return sim, ti, StrategyStore(journal)

    yield _make
    for ti, journal in made:
        journal.close()
        ti.close()


def contract(sim):
    c = sim.exchange.catalog.find(SYMBOL)
    return Contract(id=c.id, name=c.name, root="NQ", tick_size=c.product.tick_size,
                    point_value=c.product.value_per_point)


def start(sim, ti, store, message, units):
    """Plan ``message``, send it the way the server does (offsets in the learned unit), record it."""
    name = "DEMO0001"
    acct = AccountTarget(id=sim.account_id(name), name=name, multiplier=1)
    base = sim.get_price(SYMBOL)["price"]
    [step] = plan_orders(parse_signal(json.dumps({"ticker": "NQ1!", "price": base, **message})), contract(sim), acct, 0)
    intent = f"ps-{uuid.uuid4().hex[:12]}"
    params, unit = params_for_broker(step.body["params"], SYMBOL, step.meta["tick"], units)
    meta = dict(step.meta, sent_unit=unit)
    store.record(intent, "sig", acct.id, name, contract(sim).id, SYMBOL, meta["direction"], params, meta)
    answer = ti._rest_call("POST", "orderStrategy/startorderstrategy", body=dict(step.body, params=params, uuid=intent))
    store.acked(intent, answer["orderStrategy"]["id"])
    return intent, base


def exits(sim):
    """The live exit orders' prices at the simulator: {orderType: [price or stopPrice]}."""
    out = {}
    for (oid, info) in sim.exchange._info.items():
        order = sim.exchange._entities["order"][oid]
        if order["ordStatus"] in ("Working", "Suspended") and info.action == "Sell":
            out.setdefault(info.order_type, []).append(info.price if info.order_type == "Limit" else info.stop_price)
    return {k: sorted(v) for k, v in out.items()}


BRACKET = {"action": "buy", "quantity": 2, "takeProfit": [{"points": 10}, {"points": 20}], "stopLoss": {"points": 8}}


def test_points_as_sent_the_read_back_changes_nothing(setup):
    sim, ti, store = setup("points")
    units = UnitMemory()
    intent, base = start(sim, ti, store, BRACKET, units)
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert store.get(intent)["meta"]["readback"]["state"] == "ok" and rb.results == []
    assert exits(sim) == {"Limit": [base + 10, base + 20], "Stop": [base - 8] * 2} and units.get("NQ") == "points"


def test_a_broker_reading_ticks_is_found_fixed_with_modify_and_learned_for_the_product(setup):
    sim, ti, store = setup("ticks")
    units = UnitMemory()
    intent, base = start(sim, ti, store, BRACKET, units)
    assert exits(sim) == {"Limit": [base + 2.5, base + 5], "Stop": [base - 2] * 2}  # 4x closer than asked on NQ
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert exits(sim) == {"Limit": [base + 10, base + 20], "Stop": [base - 8] * 2}
    assert store.get(intent)["meta"]["readback"]["state"] == "fixed" and units.get("NQ") == "ticks"
    assert len(rb.results) == 1 and "ticks" in rb.results[0][2]  # reported once
    # the next strategy on the product is sent in ticks: right at once, nothing to fix
    sim.set_price(SYMBOL, base + 20)  # the first one's targets fill: flat again
    base2 = sim.get_price(SYMBOL)["price"]
    second, _ = start(sim, ti, store, BRACKET, units)
    assert json.loads(store.get(second)["params"])["brackets"][0]["profitTarget"] == 40
    assert rb.run_once(force=True) == [second]
    assert store.get(second)["meta"]["readback"]["state"] == "ok"
    assert exits(sim) == {"Limit": [base2 + 10, base2 + 20], "Stop": [base2 - 8] * 2}


def test_a_trailing_leg_in_ticks_is_interrupted_and_replaced_by_plain_exits(setup):
    sim, ti, store = setup("ticks")
    units = UnitMemory()
    intent, base = start(sim, ti, store, {"action": "buy", "quantity": 1, "takeProfit": {"points": 10},
                                          "stopLoss": {"type": "trailing", "points": 8}}, units)
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    rec = store.get(intent)
    assert rec["meta"]["readback"]["state"] == "replaced"
    status = ti.get_order_strategy(rec["strategy_id"])["status"]
    assert status == "ExecutionInterrupted"
    assert exits(sim) == {"Limit": [base + 10], "TrailingStop": [base - 8]}
    replacement = [o for o in sim.orders() if o["endpoint"] == "placeoco"]
    assert [o["clOrdId"] for o in replacement] == [f"{intent}-x1", None]  # the OCO: target, then its stop
    assert sim.positions().get((sim.account_id("DEMO0001"), SYMBOL)) == 1


def test_nothing_is_read_back_before_the_entry_fills(setup):
    sim, ti, store = setup("ticks")
    units = UnitMemory()
    base = sim.get_price(SYMBOL)["price"]
    intent, _ = start(sim, ti, store, dict(BRACKET, orderType="limit", limitPrice=base - 20), units)
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == []
    assert "readback" not in store.get(intent)["meta"]


def live_exit(sim, order_type):
    """(order id, price or stop price, qty) of each live exit leg of ``order_type`` at the simulator."""
    out = []
    for (oid, info) in sim.exchange._info.items():
        order = sim.exchange._entities["order"][oid]
        if order["ordStatus"] in ("Working", "Suspended") and info.action == "Sell" and info.order_type == order_type:
            out.append((oid, info.price if order_type == "Limit" else info.stop_price, info.qty))
    return sorted(out)


def test_a_stop_leg_sized_unlike_the_position_is_resized_to_what_is_held(setup):
    """One bracket of 2: the broker's stop leg covers 1 contract only (as if it had sized the leg
    differently): the read-back resizes it to the 2 held, prices untouched."""
    sim, ti, store = setup("points")
    units = UnitMemory()
    intent, base = start(sim, ti, store, {"action": "buy", "quantity": 2, "takeProfit": [{"points": 10, "quantity": 2}],
                                          "stopLoss": {"points": 8}}, units)
    [(stop_id, stop_price, qty)] = live_exit(sim, "Stop")
    assert qty == 2 and stop_price == base - 8
    ti.modify_order_rest({"orderId": stop_id, "orderQty": 1, "orderType": "Stop", "stopPrice": stop_price})
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert live_exit(sim, "Stop") == [(stop_id, base - 8, 2)]
    assert live_exit(sim, "Limit")[0][1:] == (base + 10, 2)
    assert store.get(intent)["meta"]["readback"]["state"] == "fixed"
    assert len(rb.results) == 1 and "resized from 1 to 2" in rb.results[0][2]


def test_stop_legs_that_would_reverse_the_position_are_an_alert_and_nothing_changes(setup):
    """Two brackets of 1: one stop leg for 2 contracts -- 3 stop contracts on 2 held would turn the
    position short when they trigger.  Which leg is wrong is not knowable: an alert, nothing sent."""
    sim, ti, store = setup("points")
    units = UnitMemory()
    intent, base = start(sim, ti, store, BRACKET, units)
    stops = live_exit(sim, "Stop")
    assert [q for _, _, q in stops] == [1, 1]
    ti.modify_order_rest({"orderId": stops[0][0], "orderQty": 2, "orderType": "Stop", "stopPrice": stops[0][1]})
    modifies = len([o for o in sim.orders() if o["endpoint"] == "modifyorder"])
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert store.get(intent)["meta"]["readback"]["state"] == "alert"
    assert "stop legs for 3 contract(s), 2 held" in rb.results[0][2]
    assert len([o for o in sim.orders() if o["endpoint"] == "modifyorder"]) == modifies
    assert sorted(q for _, _, q in live_exit(sim, "Stop")) == [1, 2]


def test_a_trailing_leg_sized_wrong_is_resized_by_quantity_only(setup):
    sim, ti, store = setup("points")
    units = UnitMemory()
    intent, base = start(sim, ti, store, {"action": "buy", "quantity": 2, "takeProfit": {"points": 10},
                                          "stopLoss": {"type": "trailing", "points": 8}}, units)
    [(trail_id, trail_price, qty)] = live_exit(sim, "TrailingStop")
    assert qty == 2
    ti.modify_order_rest({"orderId": trail_id, "orderQty": 1, "orderType": "TrailingStop"})
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert store.get(intent)["meta"]["readback"]["state"] == "fixed"
    assert live_exit(sim, "TrailingStop") == [(trail_id, trail_price, 2)]  # still trailing from where it was


def test_the_unit_a_read_back_learned_survives_a_restart(setup):
    """A broker reading ticks, found once: a new process (a fresh UnitMemory seeded from the journal)
    sends the next strategy in ticks at once instead of exposing it with stops 4x too close."""
    sim, ti, store = setup("ticks")
    intent, _ = start(sim, ti, store, BRACKET, UnitMemory())
    assert ReadBack(store, lambda a: ti, UnitMemory()).run_once(force=True) == [intent]
    assert store.get(intent)["meta"]["readback"]["unit"] == "ticks"
    restarted = UnitMemory()
    assert restarted.get("NQ") is None
    assert restarted.seed(store) == 1 and restarted.get("NQ") == "ticks"
    assert params_for_broker(store.get(intent)["params"], SYMBOL, 0.25, restarted)[1] == "ticks"


def test_a_fill_on_the_account_makes_its_strategy_due_at_once(setup):
    """A resting limit entry is read back on a growing back-off; its fill (the socket's ``fill``
    event, through the breakeven manager's subscriber) makes it due on the next turn."""
    from phantom_scraper import events
    from phantom_scraper.strategies.breakeven import BreakevenManager
    sim, ti, store = setup("ticks")
    units = UnitMemory()
    base = sim.get_price(SYMBOL)["price"]
    intent, _ = start(sim, ti, store, dict(BRACKET, orderType="limit", limitPrice=base - 20), units)
    manager = BreakevenManager(store, lambda a: ti)
    rb = manager.readback = ReadBack(store, lambda a: ti, units, clock=lambda: 100.0)
    assert rb.run_once() == []  # not filled: next turn in 2 s (the clock stands still)
    sim.set_price(SYMBOL, base - 20)  # the entry fills
    assert rb.run_once() == []  # not due yet
    manager._on_event(events.Event("fill", {"account_id": store.get(intent)["account_id"]}))
    assert rb.run_once() == [intent]
    assert store.get(intent)["meta"]["readback"]["state"] == "fixed"


def test_a_fill_wakes_the_read_back_only_for_an_account_that_may_have_a_strategy(setup):
    """A burst of plain orders must not cost journal reads on every fill: a fill on an account with
    no open strategy at the last turn wakes nothing, unless a strategy was recorded since."""
    from phantom_scraper import events
    from phantom_scraper.strategies.breakeven import BreakevenManager
    sim, ti, store = setup("ticks")
    manager = BreakevenManager(store, lambda a: ti)
    rb = manager.readback
    account, other = sim.account_id("DEMO0001"), sim.account_id("DEMO0001") + 1000

    def woken_by_fill_on(acct):
        manager._wake.clear()
        manager._on_event(events.Event("fill", {"account_id": acct}))
        return manager._wake.is_set() and acct in rb._poked

    assert woken_by_fill_on(account)  # nothing read yet: every fill may matter
    rb.run_once()  # no strategy open
    assert not woken_by_fill_on(account) and not woken_by_fill_on(other)
    intent, _ = start(sim, ti, store, BRACKET, UnitMemory())  # recorded (and acked) since that turn
    assert woken_by_fill_on(other)
    rb.run_once(force=True)  # read back and fixed (written: the store changed again)
    assert woken_by_fill_on(other)
    rb.run_once()  # nothing due; the store unchanged since this turn read it
    assert store.get(intent)["account_id"] == account and store.get(intent)["status"] == "open"
    assert woken_by_fill_on(account) and not woken_by_fill_on(other)


def test_a_stop_breakeven_moved_before_the_read_back_is_left_where_breakeven_put_it(setup):
    """The market reaches the breakeven trigger before the read-back: the stop is at entry + offset,
    not at the plan's offset.  The read-back judges the unit by the targets alone, fixes them, and
    leaves the stop (moving it back to the plan would undo breakeven; comparing it would alert)."""
    from phantom_scraper.strategies.breakeven import BreakevenManager
    sim, ti, store = setup("ticks")
    units = UnitMemory()
    intent, base = start(sim, ti, store, dict(BRACKET, stopLoss={"points": 8, "breakeven": {"trigger": 8, "offset": 2}}),
                         units)
    assert exits(sim) == {"Limit": [base + 2.5, base + 5], "Stop": [base - 2] * 2}  # read as ticks
    sim.set_price(SYMBOL, base + 2)  # the trigger (8 ticks), below the misread first target
    assert BreakevenManager(store, lambda a: ti).check(contract(sim).id, base + 2) == [intent]
    assert exits(sim)["Stop"] == [base + 0.5] * 2
    rb = ReadBack(store, lambda a: ti, units)
    assert rb.run_once(force=True) == [intent]
    assert store.get(intent)["meta"]["readback"]["state"] == "fixed" and units.get("NQ") == "ticks"
    assert exits(sim) == {"Limit": [base + 10, base + 20], "Stop": [base + 0.5] * 2}
