"""Order strategies end to end: webhook -> server -> simulator, restart, close, refusals."""
from __future__ import annotations

import json

import pytest

from phantom_scraper.strategies import lifecycle as strategy_exec
from tests.helpers import ADMIN_HEADERS, SERVER_WEBHOOK_SECRET, post, wait_for, ws_ready

SYMBOL = "MNQZ6"


def legs_at_broker(sim):
    """{account name: {order id: (type, status, qty)}} of the strategies' legs in the book."""
    out = {}
    for row in sim.orders():
        if row["endpoint"] == "strategy":
            out.setdefault(row["accountSpec"], {})[row["orderId"]] = (row["orderType"], row["ordStatus"],
                                                                      row["orderQty"])
    return out


def strategies(sim):
    ex = sim.exchange
    with ex._lock:
        return {sid: dict(e) for sid, e in ex._entities["orderStrategy"].items()}


def scale_out(base, **extra):
    return json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 2, "price": base,
                       "takeProfit": [{"points": 5}, {"points": 10}], "stopLoss": {"points": 8}, **extra})


def test_two_targets_start_one_strategy_per_account_and_survive_a_restart(make_server_app, sim, tmp_path):
    db = str(tmp_path / "restart.sqlite3")
    app = make_server_app(database_path=db)
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    r = post(app.test_client(), scale_out(base))
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert data["status"] == "acked"
    by_strategy = strategies(sim)
    assert len(by_strategy) == 2 and {s["status"] for s in by_strategy.values()} == {"ActiveStrategy"}
    legs = legs_at_broker(sim)
    for account in data["accounts"]:
        assert account["status"] == "acked" and account["order_id"] in by_strategy
        # every broker order the request made is reported: the entry first, then the four legs
        entry, *reported_legs = account["order_ids"]
        assert entry not in by_strategy and entry not in legs[account["account_name"]]
        assert sorted(reported_legs) == sorted(legs[account["account_name"]])
    assert {name: sorted(v.values()) for name, v in legs.items()} == {
        name: [("Limit", "Working", 1), ("Limit", "Working", 1), ("Stop", "Working", 1), ("Stop", "Working", 1)]
        for name in ("DEMO0001", "DEMO0002")}
    status = app.test_client().get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()
    assert {n: len(v) for n, v in status["order_strategies"].items()} == {"DEMO0001": 1, "DEMO0002": 1}
    assert "Open order strategies" in app.test_client().get("/", headers=ADMIN_HEADERS).get_data(as_text=True)

    app.extensions["runtime"].shutdown(timeout_s=5.0)  # this process goes away ...
    assert legs_at_broker(sim) == legs  # ... the legs stay at the broker
    sim.set_price(SYMBOL, base + 5)  # and keep working while it is down
    assert {p: n for (a, p), n in sim.positions().items()} == {SYMBOL: 1}

    app2 = make_server_app(database_path=db)  # back, on the same journal
    ws_ready(app2)
    status = app2.test_client().get("/api/websocket-status", headers=ADMIN_HEADERS).get_json()
    assert {n: len(v) for n, v in status["order_strategies"].items()} == {"DEMO0001": 1, "DEMO0002": 1}
    sim.set_price(SYMBOL, base + 10)
    assert all(n == 0 for n in sim.positions().values())
    assert {s["status"] for s in strategies(sim).values()} == {"ExecutionFinished"}


def test_close_interrupts_the_strategies_before_liquidating(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    assert post(app.test_client(), scale_out(base)).get_json()["status"] == "acked"
    r = post(app.test_client(), json.dumps({"action": "close", "ticker": "MNQ1!"}))
    assert r.status_code == 200 and r.get_json()["status"] == "acked", r.get_data(as_text=True)
    assert {s["status"] for s in strategies(sim).values()} == {"ExecutionInterrupted"}
    assert all(n == 0 for n in sim.positions().values())
    assert all(status != "Working" for v in legs_at_broker(sim).values() for _t, status, _q in v.values())
    journal = app.extensions["runtime"].service.journal
    assert strategy_exec.store_for(journal).open() == []
    book = [row["endpoint"] for row in sim.orders()]
    assert book.count("liquidateposition") == 2


@pytest.mark.parametrize("body,field", [
    ({"takeProfit": [{"points": 5}, {"points": 9}],
      "stopLoss": {"type": "stop_limit", "stopPrice": 90, "limitPrice": 89}}, "stopLoss.type"),
    ({"orderType": "trailing_stop", "trailAmount": 2}, "orderType"),
    ({"quantityType": "percent_of_equity"}, "quantityType"),
])
def test_unsupported_combination_is_refused_naming_the_field(make_server_app, sim, body, field):
    app = make_server_app()
    r = post(app.test_client(), json.dumps({"action": "buy", "ticker": "MNQ1!", "price": 100, **body}))
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "unsupported" and error["field"] == field and field in error["message"]
    assert sim.orders() == []


def test_pickmytrade_message_through_the_server(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    body = {"symbol": "MNQ1!", "data": "buy", "quantity": "2", "price": str(base), "order_type": "MKT",
            "token": SERVER_WEBHOOK_SECRET, "reverse_order_close": "true",
            "advance_tp_sl": [{"quantity": 1, "tp": base + 5, "sl": base - 5},
                              {"quantity": 1, "tp": base + 10, "sl": base - 5, "trail": 1, "trail_stop": 3}]}
    r = app.test_client().post("/webhook", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 200 and r.get_json()["status"] == "acked", r.get_data(as_text=True)
    params = [json.loads(s["params"]) for s in strategies(sim).values()]
    assert [b["qty"] for b in params[0]["brackets"]] == [1, 1]
    assert params[0]["brackets"][1]["autoTrail"] == {"stopLoss": 3.0, "trigger": 0.0, "freq": 0.25}


def test_breakeven_through_the_service_on_quotes(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    service = app.extensions["runtime"].service
    base = sim.get_price(SYMBOL)["price"]
    r = post(app.test_client(), json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 1, "price": base,
                                            "takeProfit": {"points": 20},
                                            "stopLoss": {"points": 8, "breakeven": {"trigger": 12, "offset": 1}}}))
    assert r.get_json()["status"] == "acked", r.get_data(as_text=True)
    contract_id = sim.get_price(SYMBOL)["contractId"]

    def stops():
        ex = sim.exchange
        with ex._lock:
            return sorted(i.stop_price for i in ex._info.values()
                          if i.order_type == "Stop" and ex._entities["order"][i.order_id]["ordStatus"] == "Working")

    wait_for(lambda: stops() == [base - 8, base - 8], what="both stops working")
    service.on_quote(contract_id, base + 2.75)
    sim.set_price(SYMBOL, base + 3)
    service.on_quote(contract_id, base + 3)
    wait_for(lambda: stops() == [base + 0.25, base + 0.25], what="stops at breakeven")
    store = strategy_exec.store_for(service.journal)
    # journaled after the broker answered the modify: the stops can move before it is written
    wait_for(lambda: {r["be_state"] for r in store.open()} == {"done"}, what="breakeven journaled done")


def test_partial_close_shrinks_the_exit_legs_to_the_position(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    r = post(app.test_client(), json.dumps({"action": "buy", "ticker": "MNQ1!", "quantity": 3, "price": base,
                                            "takeProfit": [{"points": 5}, {"points": 10}, {"points": 15}],
                                            "stopLoss": {"points": 8}}))
    assert r.get_json()["status"] == "acked"
    r = post(app.test_client(), json.dumps({"action": "close", "ticker": "MNQ1!", "quantity": 2}))
    assert r.get_json()["status"] == "acked", r.get_data(as_text=True)
    assert set(sim.positions().values()) == {1}
    for name, legs in legs_at_broker(sim).items():
        working = sorted((t, q) for t, status, q in legs.values() if status == "Working")
        assert working == [("Limit", 1), ("Stop", 1)], name  # the first target and its stop
    sim.set_price(SYMBOL, base + 15)  # all targets' prices trade: no flip to short
    assert set(sim.positions().values()) == {0}


def test_an_opposite_plain_order_shrinks_the_exit_legs(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    assert post(app.test_client(), scale_out(base)).get_json()["status"] == "acked"
    r = post(app.test_client(), json.dumps({"action": "sell", "ticker": "MNQ1!", "quantity": 1}))
    assert r.get_json()["status"] == "acked", r.get_data(as_text=True)
    assert set(sim.positions().values()) == {1}

    def working_qty():
        ex = sim.exchange
        with ex._lock:
            out = {}
            for i in ex._info.values():
                if ex._entities["order"][i.order_id]["ordStatus"] == "Working":
                    key = (i.account_id, i.order_type)
                    out[key] = out.get(key, 0) + i.qty
            return out
    # the legs follow the position after the fill (exit_legs.sync, on the lane)
    wait_for(lambda: set(working_qty().values()) == {1} and len(working_qty()) == 4)
    sim.set_price(SYMBOL, base + 10)
    assert set(sim.positions().values()) == {0}


def test_unanswered_start_is_found_by_its_uuid_not_sent_twice(make_server_app, sim):
    app = make_server_app(use_websocket_orders=False)  # one account at a time over REST
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    sim.faults.no_answer_next_orders = 1  # executed at the broker, never answered
    r = post(app.test_client(), scale_out(base))
    assert r.status_code in (200, 202), r.get_data(as_text=True)
    journal = app.extensions["runtime"].service.journal
    signal_id = r.get_json()["signal_id"]
    intents = wait_for(lambda: [i for i in journal.intents_for_signal(signal_id)
                                if i["state"] in ("acked", "reconciled")] if len(
        [i for i in journal.intents_for_signal(signal_id) if i["state"] in ("acked", "reconciled")]) == 2 else None)
    by_strategy = strategies(sim)
    assert len(by_strategy) == 2  # one per account: nothing was started twice
    assert {i["broker_order_id"] for i in intents} == set(by_strategy)
    assert sum(bool(i["reconciled"]) for i in intents) == 1
    store = strategy_exec.store_for(app.extensions["runtime"].service.journal)
    assert {rec["strategy_id"] for rec in store.open()} == set(by_strategy)


def test_breakeven_on_the_market_data_socket(make_server_app, sim):
    app = make_server_app(md_url=sim.md_url)
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    r = post(app.test_client(), json.dumps({"action": "sell", "ticker": "MNQ1!", "quantity": 1, "price": base,
                                            "takeProfit": {"points": 20},
                                            "stopLoss": {"points": 8, "breakeven": {"trigger": 12, "offset": 2}}}))
    assert r.get_json()["status"] == "acked", r.get_data(as_text=True)

    def stops():
        ex = sim.exchange
        with ex._lock:
            return sorted(i.stop_price for i in ex._info.values()
                          if i.order_type == "Stop" and ex._entities["order"][i.order_id]["ordStatus"] == "Working")

    service = app.extensions["runtime"].service
    wait_for(lambda: service.breakeven.feed.status()["subscribed"], what="quote subscription")
    sim.set_price(SYMBOL, base - 2)
    sim.set_price(SYMBOL, base - 3)  # 12 ticks in profit on the short: the quote moves the stops
    wait_for(lambda: stops() == [base - 0.5, base - 0.5], what="stops at breakeven")
    wait_for(lambda: {r["be_state"] for r in strategy_exec.store_for(service.journal).open()} == {"done"},
             what="breakeven journaled done")


def test_the_breakeven_quote_socket_reconnects_with_a_renewed_token(make_server_app, sim):
    """The breakeven feed's market-data socket follows the login's token: after a renewal it
    reconnects with the new token and subscribes again (it used to keep the old one until the
    broker dropped it), and the breakeven still moves on the new socket's quotes."""
    app = make_server_app(md_url=sim.md_url)
    ws_ready(app)
    base = sim.get_price(SYMBOL)["price"]
    r = post(app.test_client(), json.dumps({"action": "sell", "ticker": "MNQ1!", "quantity": 1, "price": base,
                                            "takeProfit": {"points": 20},
                                            "stopLoss": {"points": 8, "breakeven": {"trigger": 12, "offset": 2}}}))
    assert r.get_json()["status"] == "acked", r.get_data(as_text=True)
    service = app.extensions["runtime"].service
    feed = service.breakeven.feed
    wait_for(lambda: feed.status()["subscribed"], what="quote subscription")
    before = feed.requests_sent
    next(iter(service.logins.values())).integration.authenticate()  # a new token for the login
    wait_for(lambda: feed.requests_sent > before and feed.status()["connected"] and feed.status()["subscribed"],
             what="the quote socket reconnected and subscribed again")
    sim.set_price(SYMBOL, base - 2)
    sim.set_price(SYMBOL, base - 3)
    wait_for(lambda: {r["be_state"] for r in strategy_exec.store_for(service.journal).open()} == {"done"},
             what="breakeven done on the new socket's quotes")
