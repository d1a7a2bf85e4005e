"""TradersPost's and PickMyTrade's documented messages, each mapped to the orders it must produce.

The bodies follow the examples in TradersPost's webhook reference (docs.traderspost.io, "JSON
Message Reference", strategy-field pages for take profit / stop loss / quantity type) and
PickMyTrade's Tradovate alert format (pickmytrade "Alert Format Explanation" and the field rules
of its MIT ``pickmytrade-validation`` package), with futures symbols and prices.  Each row: the
message, the account's position, and the expected steps (or the refusal with the field named).
"""
import json

import pytest

from phantom_scraper.signals import AccountTarget, Contract, PlanError, SignalError, parse_signal, plan_orders

NQ = Contract(id=101, name="NQZ6", root="NQ", tick_size=0.25, point_value=20.0)
ACCT = AccountTarget(id=7, name="DEMO0001")
ACCT3 = AccountTarget(id=8, name="DEMO0002", multiplier=3)


def order(action, qty, order_type="Market", **extra):
    return {"accountSpec": "DEMO0001", "accountId": 7, "action": action, "symbol": "NQZ6",
            "orderQty": qty, "orderType": order_type, "isAutomated": True, **extra}


def oso(action, qty, order_type="Market", tp=None, sl=None, **extra):
    exit_action = "Sell" if action == "Buy" else "Buy"
    legs = []
    if tp is not None:
        legs.append({"action": exit_action, "orderType": "Limit", "price": tp})
    if sl is not None:
        legs.append({"action": exit_action, "orderType": "Stop", "stopPrice": sl})
    body = order(action, qty, order_type, **extra)
    body["bracket1"] = legs[0]
    if len(legs) > 1:
        body["bracket2"] = legs[1]
    return ("placeoso", body)


def strategy(action, qty, brackets, order_type="Market", breakeven=None, **entry):
    version = {"orderQty": qty, "orderType": order_type, "timeInForce": "Day", **entry}
    return ("startorderstrategy", {"action": action, "orderQty": qty, "entryVersion": version,
                                   "brackets": brackets, "breakeven": breakeven})


LIQ = ("liquidateposition", {"accountId": 7, "contractId": 101, "admin": False, "isAutomated": True})
WAIT = ("wait_flat", {"accountId": 7, "contractId": 101, "symbol": "NQZ6"})
CANCEL = ("cancel_working", {"accountId": 7, "contractId": 101, "symbol": "NQZ6"})


def trim(cover):
    return ("trim_legs", {"accountId": 7, "contractId": 101, "symbol": "NQZ6", "cover": cover})


def run(message, pos=0, account=ACCT):
    signal = parse_signal(json.dumps(message))
    out = []
    for step in plan_orders(signal, NQ, account, pos):
        if step.kind == "startorderstrategy":
            params = json.loads(step.body["params"])
            assert step.body["orderStrategyTypeId"] == 2 and step.body["symbol"] == "NQZ6"
            out.append((step.kind, {"action": step.body["action"], "orderQty": params["entryVersion"]["orderQty"],
                                    "entryVersion": params["entryVersion"], "brackets": params["brackets"],
                                    "breakeven": step.meta.get("breakeven")}))
        else:
            out.append((step.kind, step.body))
    return out


def refused(code, field):
    return ("refused", code, field)


def check(message, pos, expected, account=ACCT):
    if isinstance(expected, tuple) and expected and expected[0] == "refused":
        with pytest.raises((SignalError, PlanError)) as info:
            run(message, pos, account)
        err = info.value
        assert err.code == expected[1]
        if isinstance(err, SignalError):
            assert err.field == expected[2], err.message
            assert expected[2] in err.message
        return
    assert run(message, pos, account) == expected


# ---- TradersPost ---------------------------------------------------------------------------------
TRADERSPOST = [
    ("minimal buy", {"ticker": "MNQ", "action": "buy"}, 0, [("placeorder", order("Buy", 1))]),
    ("reference example: percent take profit and stop",
     {"ticker": "NQ1!", "action": "buy", "signalPrice": 21000, "quantity": 1,
      "takeProfit": {"percent": 1}, "stopLoss": {"type": "stop", "percent": 0.5}}, 0,
     [oso("Buy", 1, tp=21210.0, sl=20895.0)]),
    ("take profit amount on a limit entry",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "takeProfit": {"amount": 10}}, 0,
     [oso("Buy", 1, "Limit", tp=110.0, price=100.0)]),
    ("take profit percent on a limit entry",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "takeProfit": {"percent": 10}}, 0,
     [oso("Buy", 1, "Limit", tp=110.0, price=100.0)]),
    ("take profit limit price",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "takeProfit": {"limitPrice": 110}}, 0,
     [oso("Buy", 1, "Limit", tp=110.0, price=100.0)]),
    ("stop loss amount",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100,
      "stopLoss": {"type": "stop", "amount": 10}}, 0,
     [oso("Buy", 1, "Limit", sl=90.0, price=100.0)]),
    ("stop loss percent",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100,
      "stopLoss": {"type": "stop", "percent": 10}}, 0,
     [oso("Buy", 1, "Limit", sl=90.0, price=100.0)]),
    ("stop loss stop price",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "stopLoss": {"stopPrice": 90}}, 0,
     [oso("Buy", 1, "Limit", sl=90.0, price=100.0)]),
    ("trailing stop loss, dollar trail amount",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 21000,
      "stopLoss": {"type": "trailing_stop", "trailAmount": 2}}, 0,
     [strategy("Buy", 1, [{"qty": 1, "stopLoss": -2.0, "trailingStop": True}], "Limit", price=21000.0)]),
    ("trailing stop loss, trail percent",
     {"ticker": "NQ1!", "action": "sell", "orderType": "limit", "limitPrice": 20000,
      "stopLoss": {"type": "trailing_stop", "trailPercent": 0.1}}, 0,
     [strategy("Sell", 1, [{"qty": 1, "stopLoss": 20.0, "trailingStop": True}], "Limit", price=20000.0)]),
    ("exit", {"ticker": "NQ1!", "action": "exit"}, 2, [LIQ]),
    ("exit when flat", {"ticker": "NQ1!", "action": "exit"}, 0, refused("nothing_to_do", None)),
    ("strategy template, sell reverses a long",
     {"ticker": "NQ1!", "action": "sell", "sentiment": "short", "quantity": "4", "price": "21000"}, 2,
     [LIQ, WAIT, ("placeorder", order("Sell", 2))]),  # {{strategy.order.contracts}} = close 2 + open 2
    ("strategy template, reversal to flat", {"ticker": "NQ1!", "action": "sell", "sentiment": "short",
                                              "quantity": "2"}, 2, [LIQ]),
    ("sell with sentiment flat exits the long", {"ticker": "NQ1!", "action": "sell", "sentiment": "flat"}, 3, [LIQ]),
    ("sell with sentiment long trims the long", {"ticker": "NQ1!", "action": "sell", "sentiment": "long",
                                                 "quantity": 1}, 3, [trim(2), ("placeorder", order("Sell", 1))]),
    ("add", {"ticker": "NQ1!", "action": "add", "sentiment": "long", "quantity": 1}, 1,
     [("placeorder", order("Buy", 1))]),
    ("cancel", {"ticker": "NQ1!", "action": "cancel"}, 0, [CANCEL]),
    ("percent of position exit",
     {"ticker": "NQ1!", "action": "exit", "quantityType": "percent_of_position", "quantity": 50}, 4,
     [trim(2), ("placeorder", order("Sell", 2))]),
    ("percent of position exit of everything",
     {"ticker": "NQ1!", "action": "exit", "quantityType": "percent_of_position", "quantity": 100}, -4, [LIQ]),
    ("dollar amount sizing is refused",
     {"ticker": "NQ1!", "action": "buy", "quantityType": "dollar_amount", "quantity": 1000}, 0,
     refused("unsupported", "quantityType")),
    ("percent of position on an entry is refused",
     {"ticker": "NQ1!", "action": "buy", "quantityType": "percent_of_position", "quantity": 50}, 0,
     refused("unsupported", "quantity")),
    ("pnl take profit: dollars over the quantity and point value",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "quantity": 2,
      "takeProfit": {"pnlAmount": 200}}, 0,
     [oso("Buy", 2, "Limit", tp=105.0, price=100.0)]),
    ("pnl stop loss", {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100,
                       "stopLoss": {"type": "stop", "pnlAmount": 100}}, 0,
     [oso("Buy", 1, "Limit", sl=95.0, price=100.0)]),
    ("stop-limit stop loss", {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100,
                              "stopLoss": {"type": "stop_limit", "stopPrice": 90, "limitPrice": 89}}, 0,
     [("placeoso", dict(order("Buy", 1, "Limit", price=100.0),
                        bracket1={"action": "Sell", "orderType": "StopLimit", "stopPrice": 90.0, "price": 89.0}))]),
    ("stop-limit stop loss with several targets is refused",
     {"ticker": "NQ1!", "action": "buy", "orderType": "limit", "limitPrice": 100, "quantity": 2,
      "takeProfit": [{"amount": 5}, {"amount": 10}],
      "stopLoss": {"type": "stop_limit", "stopPrice": 90, "limitPrice": 89}}, 0,
     refused("unsupported", "stopLoss.type")),
    ("trailing stop entry order is refused",
     {"ticker": "NQ1!", "action": "sell", "orderType": "trailing_stop", "trailAmount": "2"}, 0,
     refused("unsupported", "orderType")),
]


@pytest.mark.parametrize("message,pos,expected", [r[1:] for r in TRADERSPOST], ids=[r[0] for r in TRADERSPOST])
def test_traderspost(message, pos, expected):
    check(message, pos, expected)


# ---- PickMyTrade ----------------------------------------------------------------------------------
def pmt(**fields):
    """PickMyTrade's generated template (every field, "0" for unset), with ``fields`` changed."""
    body = {"symbol": "NQ1!", "date": "2026-11-25T14:30:00Z", "data": "buy", "quantity": "1",
            "risk_percentage": "0", "price": "21000", "tp": "0", "percentage_tp": "0", "dollar_tp": "0",
            "sl": "0", "dollar_sl": "0", "percentage_sl": "0", "trail": "0", "trail_stop": "0",
            "trail_trigger": "0", "trail_freq": "0", "update_tp": "false", "update_sl": "false",
            "token": "Ct8tPtD345345t3fty2EtYtCtVtVtUtL", "duplicate_position_allow": "true",
            "reverse_order_close": "false"}
    body.update(fields)
    return body


PICKMYTRADE = [
    ("template, dollar take profit", pmt(dollar_tp="200"), 0, [oso("Buy", 1, tp=21010.0)]),
    ("template with multiple_accounts: ignored (with a warning, tests/test_dropin.py)",
     pmt(multiple_accounts=[{"token": "x", "account_id": "2", "risk_percentage": 2, "quantity_multiplier": 0}]), 0,
     [("placeorder", order("Buy", 1))]),
    ("close", pmt(data="close", quantity="0"), 3, [LIQ]),
    ("flat", pmt(data="flat", quantity="0"), -2, [LIQ]),
    ("close part of the position", pmt(data="close", quantity="1"), 3, [trim(2), ("placeorder", order("Sell", 1))]),
    ("limit sell with tp and sl prices",
     pmt(data="sell", order_type="LMT", quantity="2", tp="20950", sl="21020"), 0,
     [oso("Sell", 2, "Limit", tp=20950.0, sl=21020.0, price=21000.0)]),
    ("stop entry", pmt(order_type="STP", price="21050", sl="21030"), 0,
     [oso("Buy", 1, "Stop", sl=21030.0, stopPrice=21050.0)]),
    ("percentage tp and sl", pmt(price="20000", percentage_tp="1", percentage_sl="0.5"), 0,
     [oso("Buy", 1, tp=20200.0, sl=19900.0)]),
    ("dollar stop on two contracts", pmt(quantity="2", dollar_sl="100"), 0, [oso("Buy", 2, sl=20997.5)]),
    ("trail after a trigger, in steps",
     pmt(sl="20990", trail="1", trail_stop="5", trail_trigger="3", trail_freq="1"), 0,
     [strategy("Buy", 1, [{"qty": 1, "stopLoss": -10.0, "trailingStop": False,
                           "autoTrail": {"stopLoss": 5.0, "trigger": 3.0, "freq": 1.0}}])]),
    ("trail from the start", pmt(trail="1", trail_stop="4", tp="21020"), 0,
     [strategy("Buy", 1, [{"qty": 1, "profitTarget": 20.0, "stopLoss": -4.0, "trailingStop": True}])]),
    ("breakeven", pmt(tp="21020", sl="20990", breakeven="5"), 0,
     [strategy("Buy", 1, [{"qty": 1, "profitTarget": 20.0, "stopLoss": -10.0, "trailingStop": False}],
               breakeven={"trigger": 5.0, "offset": 0.0})]),
    ("multiple targets (advance_tp_sl)",
     pmt(quantity="3", advance_tp_sl=[
         {"quantity": 1, "tp": 21005, "sl": 20990},
         {"quantity": 1, "tp": 21010, "sl": 20990},
         {"quantity": 1, "tp": 21015, "sl": 20990, "trail": 1, "trail_stop": 4}]), 0,
     [strategy("Buy", 3, [{"qty": 1, "profitTarget": 5.0, "stopLoss": -10.0, "trailingStop": False},
                          {"qty": 1, "profitTarget": 10.0, "stopLoss": -10.0, "trailingStop": False},
                          {"qty": 1, "profitTarget": 15.0, "stopLoss": -10.0, "trailingStop": False,
                           "autoTrail": {"stopLoss": 4.0, "trigger": 0.0, "freq": 0.25}}])]),
    ("reverse_order_close without pyramid flattens first", pmt(reverse_order_close="true", tp="21010"), 1,
     [LIQ, WAIT, oso("Buy", 1, tp=21010.0)]),
    ("reverse_order_close with pyramid closes only the other side",
     pmt(reverse_order_close="true", pyramid=True), -2, [LIQ, WAIT, ("placeorder", order("Buy", 1))]),
    ("reverse_order_close with pyramid adds to the same side",
     pmt(reverse_order_close="true", pyramid=True), 2, [("placeorder", order("Buy", 1))]),
    ("no reverse_order_close nets against a short", pmt(), -2, [("placeorder", order("Buy", 1))]),
    ("risk sizing is refused", pmt(risk_percentage="2", sl="20990"), 0, refused("unsupported", "risk_percentage")),
    ("updating brackets is refused", pmt(update_sl="true"), 0, refused("unsupported", "update_sl")),
    ("another broker is refused", pmt(platform="RITHMIC"), 0, refused("unsupported", "platform")),
    ("trail_stop without trail", pmt(trail_stop="5"), 0, refused("invalid_field", "trail_stop")),
    ("breakeven differing per target is refused",
     pmt(quantity="2", advance_tp_sl=[{"quantity": 1, "tp": 21005, "sl": 20990, "breakeven": 2},
                                      {"quantity": 1, "tp": 21010, "sl": 20990, "breakeven": 3}]), 0,
     refused("unsupported", "advance_tp_sl.breakeven")),
]


@pytest.mark.parametrize("message,pos,expected", [r[1:] for r in PICKMYTRADE], ids=[r[0] for r in PICKMYTRADE])
def test_pickmytrade(message, pos, expected):
    check(message, pos, expected)


def test_pickmytrade_token_is_the_secret_and_never_echoed():
    signal = parse_signal(json.dumps(pmt()))
    assert signal.secret == "Ct8tPtD345345t3fty2EtYtCtVtVtUtL"
    assert "token" not in json.dumps(signal.payload)
    with pytest.raises(SignalError) as info:
        parse_signal(json.dumps(pmt(data="Ct8tPtD345345t3fty2EtYtCtVtVtUtL")))
    assert info.value.field == "data" and "Ct8tPtD" not in info.value.message


# ---- this project's own format: scale-out targets, sizes, runner, trailing, breakeven ------------
OWN = [
    ("three targets on a 3-lot", {"action": "buy", "quantity": 3, "takeProfit": [{"ticks": 8}, {"ticks": 16},
                                                                                 {"ticks": 24}],
                                  "stopLoss": {"ticks": 20}}, 0,
     [strategy("Buy", 3, [{"qty": 1, "profitTarget": 2.0, "stopLoss": -5.0, "trailingStop": False},
                          {"qty": 1, "profitTarget": 4.0, "stopLoss": -5.0, "trailingStop": False},
                          {"qty": 1, "profitTarget": 6.0, "stopLoss": -5.0, "trailingStop": False}])]),
    ("a 1-lot with three targets gets the first one",
     {"action": "sell", "takeProfit": [{"points": 5}, {"points": 10}, {"points": 15}], "stopLoss": {"points": 4}}, 0,
     [strategy("Sell", 1, [{"qty": 1, "profitTarget": -5.0, "stopLoss": 4.0, "trailingStop": False}])]),
    ("percent sizes round down, leftovers to the earliest",
     {"action": "buy", "quantity": 5, "takeProfit": [{"points": 5, "quantityPercent": 50},
                                                     {"points": 10, "quantityPercent": 50}],
      "stopLoss": {"points": 4}}, 0,
     [strategy("Buy", 5, [{"qty": 3, "profitTarget": 5.0, "stopLoss": -4.0, "trailingStop": False},
                          {"qty": 2, "profitTarget": 10.0, "stopLoss": -4.0, "trailingStop": False}])]),
    ("sized targets leave a trailing runner",
     {"action": "buy", "quantity": 3, "takeProfit": [{"points": 5, "quantity": 1}],
      "stopLoss": {"type": "trailing", "points": 6, "trigger": 8, "step": 4}}, 0,
     [strategy("Buy", 3, [{"qty": 1, "profitTarget": 5.0, "stopLoss": -6.0, "trailingStop": False,
                           "autoTrail": {"stopLoss": 6.0, "trigger": 2.0, "freq": 1.0}},
                          {"qty": 2, "stopLoss": -6.0, "trailingStop": False,
                           "autoTrail": {"stopLoss": 6.0, "trigger": 2.0, "freq": 1.0}}])]),
    ("quantities multiply per account", {"action": "buy", "quantity": 2,
                                         "takeProfit": [{"points": 5, "quantity": 1}, {"points": 9, "quantity": 1}],
                                         "stopLoss": {"points": 4}}, 0, "ACCT3"),
    ("breakeven trigger and offset in ticks",
     {"action": "buy", "quantity": 2, "takeProfit": [{"points": 10}, {"points": 20}],
      "stopLoss": {"points": 8, "breakeven": {"trigger": 16, "offset": 2}}}, 0,
     [strategy("Buy", 2, [{"qty": 1, "profitTarget": 10.0, "stopLoss": -8.0, "trailingStop": False},
                          {"qty": 1, "profitTarget": 20.0, "stopLoss": -8.0, "trailingStop": False}],
               breakeven={"trigger": 4.0, "offset": 0.5})]),
    ("breakeven without a stop", {"action": "buy", "takeProfit": {"points": 5}, "breakeven": {"trigger": 4}}, 0,
     refused("missing_field", "stopLoss")),
    ("targets over the quantity", {"action": "buy", "quantity": 1,
                                   "takeProfit": [{"points": 5, "quantity": 1}, {"points": 9, "quantity": 1}]}, 0,
     refused("invalid_quantity", None)),
    ("mixed sizes", {"action": "buy", "takeProfit": [{"points": 5, "quantity": 1}, {"points": 9, "quantityPercent": 50}]},
     0, refused("invalid_field", "takeProfit")),
    ("trigger without trailing", {"action": "buy", "stopLoss": {"points": 5, "trigger": 4}}, 0,
     refused("invalid_field", "stopLoss.trigger")),
    ("percent targets need a reference on a market order",
     {"action": "buy", "takeProfit": [{"percent": 1}, {"percent": 2}], "stopLoss": {"points": 5}}, 0,
     refused("missing_field", "price")),
]


@pytest.mark.parametrize("message,pos,expected", [r[1:] for r in OWN], ids=[r[0] for r in OWN])
def test_own_format(message, pos, expected):
    message = {"ticker": "NQ1!", **message}
    if expected == "ACCT3":
        steps = run(message, pos, ACCT3)
        assert [b["qty"] for b in steps[0][1]["brackets"]] == [3, 3] and steps[0][1]["orderQty"] == 6
        return
    check(message, pos, expected)


def test_close_percent_field():
    assert run({"ticker": "NQ1!", "action": "close", "percent": 25}, 8) == [trim(6), ("placeorder", order("Sell", 2))]
    assert run({"ticker": "NQ1!", "action": "close", "percent": 10}, 3) == [trim(2), ("placeorder", order("Sell", 1))]


def test_open_strategies_are_interrupted_before_liquidating():
    signal = parse_signal(json.dumps({"ticker": "NQ1!", "action": "close"}))
    kinds = [s.kind for s in plan_orders(signal, NQ, ACCT, 2, open_strategies=True)]
    assert kinds == ["interrupt_strategies", "liquidateposition"]
    signal = parse_signal(json.dumps({"ticker": "NQ1!", "action": "sell", "sentiment": "short"}))
    kinds = [s.kind for s in plan_orders(signal, NQ, ACCT, 2, open_strategies=True)]
    assert kinds == ["interrupt_strategies", "liquidateposition", "wait_flat", "placeorder"]

