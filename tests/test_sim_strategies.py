"""The simulator's order strategies and trailing stops (PROTOCOL §4.7, §4.7a), driven over REST."""
from __future__ import annotations

import json

import pytest
import requests



@pytest.fixture
def api(sim):
    """A logged-in requests session against ``sim``; ``api.url(endpoint)`` builds the URL."""
    session = requests.Session()
    r = requests.post(f"{sim.rest_url}/auth/accesstokenrequest",
                      json={"name": "demo", "password": "demo", "appId": "x", "cid": 0, "sec": ""}, timeout=5)
    session.headers["Authorization"] = "Bearer " + r.json()["accessToken"]
    session.url = lambda endpoint: f"{sim.rest_url}/{endpoint}"
    session.acct = {a["name"]: a["id"] for a in session.get(session.url("account/list"), timeout=5).json()}
    yield session
    session.close()


def post(api, endpoint, body):
    r = api.post(api.url(endpoint), json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def get(api, endpoint, **params):
    r = api.get(api.url(endpoint), params=params, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()

SYMBOL = "NQZ6"


def strategy_body(api, action="Buy", qty=1, brackets=None, entry=None, **extra):
    entry_version = {"orderId": 0, "orderQty": qty, "orderType": "Market", "timeInForce": "Day"}
    entry_version.update(entry or {})
    params = {"entryVersion": entry_version,
              "brackets": brackets or [{"qty": qty, "profitTarget": 5, "stopLoss": -5, "trailingStop": False}]}
    body = {"accountId": api.acct["DEMO0001"], "accountSpec": "DEMO0001", "symbol": SYMBOL,
            "action": action, "orderStrategyTypeId": 2, "params": json.dumps(params), "isAutomated": True}
    body.update(extra)
    return body


def start(api, **kw):
    return post(api, "orderStrategy/startorderstrategy", strategy_body(api, **kw))


def legs(api, strategy_id):
    """{label: (order, version)} of one strategy, read back through the entity endpoints."""
    out = {}
    for link in get(api, "orderStrategyLink/deps", masterid=strategy_id):
        order = get(api, "order/item", id=link["orderId"])
        versions = get(api, "orderVersion/deps", masterid=link["orderId"])
        out[link["label"]] = (order, versions[0])
    return out


def working_stop_qty(api, strategy_id):
    return sum(v["orderQty"] for o, v in legs(api, strategy_id).values()
               if o["ordStatus"] == "Working" and v["orderType"] in ("Stop", "TrailingStop"))


def net(sim):
    return sim.positions().get((sim.account_id("DEMO0001"), SYMBOL), 0)


def test_start_answers_the_order_strategy_entity(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    answer = start(api, uuid="u-1", customTag50="tag")
    strat = answer["orderStrategy"]
    assert strat["orderStrategyTypeId"] == 2 and strat["status"] == "ActiveStrategy"
    assert strat["accountId"] == api.acct["DEMO0001"] and strat["uuid"] == "u-1" and strat["action"] == "Buy"
    assert json.loads(strat["params"])["brackets"][0]["qty"] == 1
    assert get(api, "orderStrategy/item", id=strat["id"])["status"] == "ActiveStrategy"
    found = legs(api, strat["id"])
    assert set(found) == {"entry", "tp1", "sl1"}
    assert found["entry"][0]["ordStatus"] == "Filled"
    tp, sl = found["tp1"], found["sl1"]
    assert tp[0]["ordStatus"] == sl[0]["ordStatus"] == "Working"
    assert tp[1]["orderType"] == "Limit" and tp[1]["price"] == base + 5
    assert sl[1]["orderType"] == "Stop" and sl[1]["stopPrice"] == base - 5
    assert tp[0]["ocoId"] == sl[0]["id"] and sl[0]["ocoId"] == tp[0]["id"]
    assert tp[0]["parentId"] == found["entry"][0]["id"]
    assert net(sim) == 1


def test_legs_suspended_until_the_entry_fills_then_priced_from_the_fill(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    strat = start(api, entry={"orderType": "Limit", "price": base - 10})["orderStrategy"]
    found = legs(api, strat["id"])
    assert found["entry"][0]["ordStatus"] == "Working"
    assert found["tp1"][0]["ordStatus"] == found["sl1"][0]["ordStatus"] == "Suspended"
    sim.set_price(SYMBOL, base - 10.5)  # the limit fills at the market price (better than the limit)
    found = legs(api, strat["id"])
    assert found["entry"][0]["ordStatus"] == "Filled"
    assert found["tp1"][0]["ordStatus"] == found["sl1"][0]["ordStatus"] == "Working"
    assert found["tp1"][1]["price"] == base - 5.5 and found["sl1"][1]["stopPrice"] == base - 15.5


def test_three_targets_fill_one_by_one_and_the_stop_shrinks(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    brackets = [{"qty": 1, "profitTarget": t, "stopLoss": -10, "trailingStop": False} for t in (5, 10, 15)]
    sid = start(api, qty=3, brackets=brackets)["orderStrategy"]["id"]
    assert net(sim) == 3 and working_stop_qty(api, sid) == 3
    for step, (price, pos) in enumerate(((base + 5, 2), (base + 10, 1))):
        sim.set_price(SYMBOL, price)
        assert net(sim) == pos
        assert working_stop_qty(api, sid) == pos
        assert legs(api, sid)[f"sl{step + 1}"][0]["ordStatus"] == "Canceled"  # OCO with its target
    assert get(api, "orderStrategy/item", id=sid)["status"] == "ActiveStrategy"
    sim.set_price(SYMBOL, base + 15)
    assert net(sim) == 0 and working_stop_qty(api, sid) == 0
    assert get(api, "orderStrategy/item", id=sid)["status"] == "ExecutionFinished"


def test_short_strategy_mirrors_the_offsets(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    sid = start(api, action="Sell", brackets=[{"qty": 1, "profitTarget": -5, "stopLoss": 3}])["orderStrategy"]["id"]
    found = legs(api, sid)
    assert found["tp1"][1]["price"] == base - 5 and found["sl1"][1]["stopPrice"] == base + 3
    sim.set_price(SYMBOL, base + 3)
    assert net(sim) == 0 and legs(api, sid)["tp1"][0]["ordStatus"] == "Canceled"


def test_trailing_stop_follows_a_rise_never_loosens_and_exits_on_the_pullback(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    sid = start(api, brackets=[{"qty": 1, "profitTarget": 50, "stopLoss": -4, "trailingStop": True}])[
        "orderStrategy"]["id"]
    assert legs(api, sid)["sl1"][1]["orderType"] == "TrailingStop"
    for p in (base + 2, base + 6, base + 10):
        sim.set_price(SYMBOL, p)
    assert legs(api, sid)["sl1"][1]["stopPrice"] == base + 6
    sim.set_price(SYMBOL, base + 7)  # a dip that does not reach the stop leaves it where it is
    assert legs(api, sid)["sl1"][1]["stopPrice"] == base + 6 and net(sim) == 1
    sim.set_price(SYMBOL, base + 6)
    assert net(sim) == 0
    fills = get(api, "fill/deps", masterid=legs(api, sid)["sl1"][0]["id"])
    assert [f["price"] for f in fills] == [base + 6]
    assert legs(api, sid)["tp1"][0]["ordStatus"] == "Canceled"


def test_auto_trail_starts_after_the_trigger_and_moves_in_steps(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    sid = start(api, brackets=[{"qty": 1, "profitTarget": 50, "stopLoss": -10, "trailingStop": False,
                                "autoTrail": {"stopLoss": 3, "trigger": 5, "freq": 1}}])["orderStrategy"]["id"]

    def stop():
        return legs(api, sid)["sl1"][1]["stopPrice"]

    assert legs(api, sid)["sl1"][1]["orderType"] == "Stop"
    sim.set_price(SYMBOL, base + 4.75)
    assert stop() == base - 10  # not triggered yet
    sim.set_price(SYMBOL, base + 5)
    assert stop() == base + 2
    sim.set_price(SYMBOL, base + 5.5)
    assert stop() == base + 2  # half a point is less than one step
    sim.set_price(SYMBOL, base + 7.25)
    assert stop() == base + 4
    sim.set_price(SYMBOL, base + 4.5)
    assert stop() == base + 4 and net(sim) == 1
    sim.set_price(SYMBOL, base + 4)
    assert net(sim) == 0


def test_standalone_trailing_stop_with_peg_difference(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    post(api, "order/placeorder", {"accountId": api.acct["DEMO0001"], "action": "Buy", "symbol": SYMBOL,
                                   "orderQty": 1, "orderType": "Market", "isAutomated": True})
    oid = post(api, "order/placeorder", {"accountId": api.acct["DEMO0001"], "action": "Sell", "symbol": SYMBOL,
                                         "orderQty": 1, "orderType": "TrailingStop", "stopPrice": base - 2,
                                         "pegDifference": 2, "isAutomated": True})["orderId"]
    sim.set_price(SYMBOL, base + 3)
    assert get(api, "orderVersion/deps", masterid=oid)[0]["stopPrice"] == base + 1
    sim.set_price(SYMBOL, base + 1)
    assert get(api, "order/item", id=oid)["ordStatus"] == "Filled" and net(sim) == 0


def test_breakeven_inside_the_params_is_refused(sim, api):
    bracket = {"qty": 1, "profitTarget": 5, "stopLoss": -5, "trailingStop": False,
               "breakeven": {"trigger": 2, "plus": 0.25}}
    answer = start(api, brackets=[bracket])
    assert answer == {"errorText": "Stop and Stop/Limit breakeven supported only"}
    assert get(api, "orderStrategy/list") == [] and sim.orders() == []


@pytest.mark.parametrize("change", [
    {"extra_top": 1},  # unknown params key
    {"bracket": {"qty": 1, "profitTarget": 5, "stopLoss": -5, "unknownKey": True}},
    {"bracket": {"qty": 1, "profitTarget": -5, "stopLoss": -5}},  # target on the wrong side
    {"bracket": {"qty": 1, "profitTarget": 5, "stopLoss": 5}},  # stop on the wrong side
    {"bracket": {"qty": 2, "profitTarget": 5, "stopLoss": -5}},  # legs do not sum to the entry
    {"bracket": {"qty": 1, "profitTarget": 5.1, "stopLoss": -5}},  # not a multiple of the tick
    {"bracket": {"qty": 1, "stopLoss": -5, "trailingStop": True, "autoTrail": {"stopLoss": 2, "trigger": 1, "freq": 1}}},
    {"type": 1},
])
def test_invalid_params_get_the_failure_answer(sim, api, change):
    body = strategy_body(api, brackets=[change["bracket"]] if "bracket" in change else None)
    if "extra_top" in change:
        params = json.loads(body["params"])
        params["somethingElse"] = 1
        body["params"] = json.dumps(params)
    if "type" in change:
        body["orderStrategyTypeId"] = change["type"]
    assert post(api, "orderStrategy/startorderstrategy", body) == {"errorText": "Invalid or missed parameters"}
    assert sim.orders() == []


def test_params_must_be_a_json_string(sim, api):
    body = strategy_body(api)
    body["params"] = json.loads(body["params"])
    assert post(api, "orderStrategy/startorderstrategy", body) == {"errorText": "Invalid or missed parameters"}


def test_interrupt_cancels_the_legs_and_keeps_the_position(sim, api):
    brackets = [{"qty": 1, "profitTarget": t, "stopLoss": -10} for t in (5, 10)]
    sid = start(api, qty=2, brackets=brackets)["orderStrategy"]["id"]
    answer = post(api, "orderStrategy/interruptorderstrategy", {"orderStrategyId": sid})
    assert answer["orderStrategy"]["status"] == "ExecutionInterrupted"
    statuses = {label: o["ordStatus"] for label, (o, _v) in legs(api, sid).items()}
    assert statuses == {"entry": "Filled", "tp1": "Canceled", "sl1": "Canceled", "tp2": "Canceled",
                        "sl2": "Canceled"}
    assert net(sim) == 2
    again = post(api, "orderStrategy/interruptorderstrategy", {"orderStrategyId": sid})
    assert "errorText" in again


def test_interrupt_before_the_entry_fills_cancels_everything(sim, api):
    base = sim.get_price(SYMBOL)["price"]
    sid = start(api, entry={"orderType": "Limit", "price": base - 20})["orderStrategy"]["id"]
    post(api, "orderStrategy/interruptorderstrategy", {"orderStrategyId": sid})
    assert {o["ordStatus"] for o, _v in legs(api, sid).values()} == {"Canceled"}
    sim.set_price(SYMBOL, base - 30)
    assert net(sim) == 0


def test_other_users_strategy_is_access_denied(sim, api):
    sid = start(api)["orderStrategy"]["id"]
    assert post(api, "orderStrategy/interruptorderstrategy", {"orderStrategyId": sid + 10_000}) == {
        "failureReason": "UnknownReason", "failureText": "Access is denied"}


def test_modify_order_strategy_checks_its_fields(sim, api):
    sid = start(api)["orderStrategy"]["id"]
    assert post(api, "orderStrategy/modifyorderstrategy", {"orderStrategyId": sid}) == {
        "errorText": "Invalid or missed parameters"}
    ok = post(api, "orderStrategy/modifyorderstrategy", {"orderStrategyId": sid, "command": "{}"})
    assert ok["orderStrategy"]["id"] == sid


def test_liquidate_ends_the_strategy(sim, api):
    sid = start(api)["orderStrategy"]["id"]
    contract_id = sim.get_price(SYMBOL)["contractId"]
    post(api, "order/liquidateposition", {"accountId": api.acct["DEMO0001"], "contractId": contract_id,
                                          "admin": False})
    assert net(sim) == 0
    assert get(api, "orderStrategy/item", id=sid)["status"] == "ExecutionFinished"


def test_strategy_props_events_reach_listeners(sim, api):
    seen = []
    sim.exchange.add_listener(lambda events: seen.extend((e[1], e[2]) for e in events))
    start(api)
    assert ("orderStrategy", "Created") in seen and ("orderStrategyLink", "Created") in seen
    assert ("fill", "Created") in seen and ("order", "Updated") in seen
    sim.set_price(SYMBOL, sim.get_price(SYMBOL)["price"] + 5)
    assert ("orderStrategy", "Updated") in seen


def test_endpoint_names_are_case_insensitive(sim, api):
    r = api.post(api.url("orderStrategy/startOrderStrategy"), json=strategy_body(api), timeout=5)
    assert r.status_code == 200 and r.json()["orderStrategy"]["status"] == "ActiveStrategy"
    assert requests.post(f"{sim.rest_url}/orderStrategy/startorderstrategy", json={}, timeout=5).status_code == 401
