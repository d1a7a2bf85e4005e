"""plan_orders: every action against flat / long / short accounts, multipliers, max order size,
brackets and tick rounding.  Pure: signals are built with parse_signal from the JSON traders send."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phantom_scraper.signals import (AccountTarget, Bracket, Contract, OrderStep, PlanError, Signal,
                                     SignalError, needs_position, parse_signal, plan_orders, round_to_tick)

NQ = Contract(id=101, name="NQZ6", root="NQ", tick_size=0.25, point_value=20.0)
CL = Contract(id=501, name="CLF7", root="CL", tick_size=0.01)
ACCT = AccountTarget(id=7, name="DEMO0001")


def sig(**fields):
    return parse_signal(json.dumps({"ticker": "NQ1!", **fields}))


def order(action, qty, order_type="Market", account=ACCT, contract=NQ, **extra):
    return {"accountSpec": account.name, "accountId": account.id, "action": action, "symbol": contract.name,
            "orderQty": qty, "orderType": order_type, "isAutomated": True, **extra}


LIQ = ("liquidateposition", {"accountId": 7, "contractId": 101, "admin": False, "isAutomated": True})
WAIT = ("wait_flat", {"accountId": 7, "contractId": 101, "symbol": "NQZ6"})
CANCEL = ("cancel_working", {"accountId": 7, "contractId": 101, "symbol": "NQZ6"})


def TRIM(cover):
    return ("trim_legs", {"accountId": 7, "contractId": 101, "symbol": "NQZ6", "cover": cover})


def steps(plan):
    assert all(isinstance(s, OrderStep) for s in plan)
    for s in plan:
        assert "clOrdId" not in s.body
    return [(s.kind, s.body) for s in plan]


NOTHING = "nothing_to_do"

# (id, signal fields, net_pos, expected steps or an error code)
ROWS = [
    # plain buy / sell: position irrelevant, no reversal
    ("buy flat", dict(action="buy", qty=2), 0, [("placeorder", order("Buy", 2))]),
    ("buy long", dict(action="buy", qty=2), 3, [("placeorder", order("Buy", 2))]),
    ("buy short (netting)", dict(action="buy"), -3, [("placeorder", order("Buy", 1))]),
    ("sell flat", dict(action="sell", qty=1), 0, [("placeorder", order("Sell", 1))]),
    ("sell long (netting)", dict(action="sell", qty=1), 2, [("placeorder", order("Sell", 1))]),
    ("sell short", dict(action="short", qty=1), -2, [("placeorder", order("Sell", 1))]),
    # buy/sell with a same-side sentiment: reverse when on the other side
    ("buy+long flat", dict(action="buy", sentiment="long", qty=2), 0, [("placeorder", order("Buy", 2))]),
    ("buy+long long", dict(action="buy", sentiment="long", qty=2), 1, [("placeorder", order("Buy", 2))]),
    # ... sized by "subtract exit quantity": TradingView's contracts on a reversal are close + open
    ("buy+long short", dict(action="buy", sentiment="long", qty=5), -3,
     [LIQ, WAIT, ("placeorder", order("Buy", 2))]),
    ("sell+short long", dict(action="sell", sentiment="bearish", qty=3), 2,
     [LIQ, WAIT, ("placeorder", order("Sell", 1))]),
    ("tv reversal long 1 -> short 1", dict(action="sell", sentiment="short", qty=2), 1,
     [LIQ, WAIT, ("placeorder", order("Sell", 1))]),
    ("reversal qty only closes", dict(action="buy", sentiment="long", qty=2), -3, [LIQ]),
    ("reversal without qty enters 1", dict(action="sell", sentiment="short"), 2,
     [LIQ, WAIT, ("placeorder", order("Sell", 1))]),
    ("sell+short short", dict(action="sell", sentiment="short", qty=1), -2, [("placeorder", order("Sell", 1))]),
    # order types
    ("limit", dict(action="buy", orderType="limit", limitPrice=21450.3), 0,
     [("placeorder", order("Buy", 1, "Limit", price=21450.25))]),
    ("stop", dict(action="sell", orderType="stop", stopPrice=21400.13), 0,
     [("placeorder", order("Sell", 1, "Stop", stopPrice=21400.25))]),
    ("stop limit", dict(action="buy", orderType="stop_limit", stopPrice=21500, limitPrice=21501.1), 0,
     [("placeorder", order("Buy", 1, "StopLimit", price=21501.0, stopPrice=21500.0))]),
    ("tif", dict(action="buy", orderType="limit", limitPrice=1, tif="GTC"), 0,
     [("placeorder", order("Buy", 1, "Limit", price=1.0, timeInForce="GTC"))]),
    # close
    ("close flat", dict(action="close"), 0, NOTHING),
    ("close long", dict(action="close"), 3, [LIQ]),
    ("close short", dict(action="exit"), -3, [LIQ]),
    ("close partial long", dict(action="close", qty=1), 3, [TRIM(2), ("placeorder", order("Sell", 1))]),
    ("close partial short", dict(action="close", qty=2), -3, [TRIM(1), ("placeorder", order("Buy", 2))]),
    ("close qty covers", dict(action="close", qty=5), 3, [LIQ]),
    ("close_long flat", dict(action="close_long"), 0, NOTHING),
    ("close_long long", dict(action="exit_long"), 2, [LIQ]),
    ("close_long short", dict(action="closelong"), -2, NOTHING),
    ("close_long partial", dict(action="close_long", qty=1), 2, [TRIM(1), ("placeorder", order("Sell", 1))]),
    ("close_short flat", dict(action="close_short"), 0, NOTHING),
    ("close_short long", dict(action="closeshort"), 2, NOTHING),
    ("close_short short", dict(action="exit_short"), -2, [LIQ]),
    ("sell+flat long", dict(action="sell", sentiment="flat", qty=1), 4, [LIQ]),
    ("sell+long reduces", dict(action="sell", sentiment="long", qty=1), 4, [TRIM(3), ("placeorder", order("Sell", 1))]),
    ("sell+long flat", dict(action="sell", sentiment="long", qty=1), 0, NOTHING),
    ("buy+short short reduces", dict(action="buy", sentiment="short", qty=1), -2,
     [TRIM(1), ("placeorder", order("Buy", 1))]),
    # reverse
    ("reverse flat", dict(action="reverse"), 0, NOTHING),
    ("reverse long", dict(action="reverse"), 2, [LIQ, WAIT, ("placeorder", order("Sell", 2))]),
    ("reverse short", dict(action="reverse"), -3, [LIQ, WAIT, ("placeorder", order("Buy", 3))]),
    ("reverse long qty", dict(action="reverse", qty=1), 2, [LIQ, WAIT, ("placeorder", order("Sell", 1))]),
    ("reverse to long from flat", dict(action="reverse", sentiment="long"), 0, [("placeorder", order("Buy", 1))]),
    ("reverse to long from long", dict(action="reverse", sentiment="long"), 1, NOTHING),
    ("reverse to long from short", dict(action="reverse", sentiment="long", qty=2), -1,
     [LIQ, WAIT, ("placeorder", order("Buy", 2))]),
    # cancel
    ("cancel flat", dict(action="cancel"), 0, [CANCEL]),
    ("cancel long", dict(action="cancel"), 2, [CANCEL]),
    ("cancel short", dict(action="cancel"), -2, [CANCEL]),
    # strategy-position mode
    ("target entry long", dict(position="long", position_size=2), 0, [("placeorder", order("Buy", 2))]),
    ("target entry short", dict(position="short", position_size=2), 0, [("placeorder", order("Sell", 2))]),
    ("target add", dict(position="long", position_size=3), 1, [("placeorder", order("Buy", 2))]),
    ("target add short", dict(position="short", position_size=3), -1, [("placeorder", order("Sell", 2))]),
    ("target partial exit", dict(position="long", position_size=1), 3, [TRIM(1), ("placeorder", order("Sell", 2))]),
    ("target partial exit short", dict(position="short", position_size=1), -3,
     [TRIM(1), ("placeorder", order("Buy", 2))]),
    ("target exit", dict(position="flat", position_size=0), 3, [LIQ]),
    ("target exit short", dict(position="flat", position_size=0), -1, [LIQ]),
    ("target flat flat", dict(position="flat", position_size=0), 0, NOTHING),
    ("target same", dict(position="long", position_size=2), 2, NOTHING),
    ("target reversal", dict(action="sell", position="short", position_size=2), 3,
     [LIQ, WAIT, ("placeorder", order("Sell", 2))]),
    ("target reversal to long", dict(action="buy", position="long", position_size=1), -2,
     [LIQ, WAIT, ("placeorder", order("Buy", 1))]),
    ("target limit add", dict(position="long", position_size=2, orderType="limit", limitPrice=100), 1,
     [("placeorder", order("Buy", 1, "Limit", price=100.0))]),
    ("target reduce is market", dict(position="long", position_size=1, orderType="limit", limitPrice=100), 2,
     [TRIM(1), ("placeorder", order("Sell", 1))]),
]


@pytest.mark.parametrize("fields,net_pos,expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_plan(fields, net_pos, expected):
    s = sig(**fields)
    if expected == NOTHING:
        with pytest.raises(PlanError) as info:
            plan_orders(s, NQ, ACCT, net_pos)
        assert info.value.code == NOTHING and ACCT.name in info.value.message
    else:
        assert steps(plan_orders(s, NQ, ACCT, net_pos)) == expected
        # A plan that depends on the position is only produced for signals that ask for it.
        if not needs_position(s):
            assert steps(plan_orders(s, NQ, ACCT, 0)) == expected


def test_close_flat_with_working_orders_liquidates():
    assert steps(plan_orders(sig(action="close"), NQ, ACCT, 0, has_working_orders=True)) == [LIQ]
    assert steps(plan_orders(sig(position="flat", position_size=0), NQ, ACCT, 0, has_working_orders=True)) == [LIQ]
    with pytest.raises(PlanError):
        plan_orders(sig(action="close_long"), NQ, ACCT, 0, has_working_orders=True)


# -- multiplier and max order size -----------------------------------------------------------

BIG = AccountTarget(id=8, name="DEMO0002", multiplier=3, max_qty=6)
BIG_REJECT = AccountTarget(id=8, name="DEMO0002", multiplier=3, max_qty=6, max_qty_mode="reject")


@pytest.mark.parametrize("fields,net_pos,expected", [
    (dict(action="buy", qty=2), 0, [("placeorder", order("Buy", 6, account=BIG))]),
    (dict(action="sell"), 0, [("placeorder", order("Sell", 3, account=BIG))]),
    (dict(position="long", position_size=2), 3, [("placeorder", order("Buy", 3, account=BIG))]),
    (dict(position="long", position_size=1), 6,
     [("trim_legs", {"accountId": 8, "contractId": 101, "symbol": "NQZ6", "cover": 3}),
      ("placeorder", order("Sell", 3, account=BIG))]),
    (dict(action="close", qty=1), 6,
     [("trim_legs", {"accountId": 8, "contractId": 101, "symbol": "NQZ6", "cover": 3}),
      ("placeorder", order("Sell", 3, account=BIG))]),
    # subtract exit quantity in signal units: long 2 units (6) -> short 1 unit arrives as sell 3
    (dict(action="sell", sentiment="short", qty=3), 6,
     [LIQ[:1] + ({"accountId": 8, "contractId": 101, "admin": False, "isAutomated": True},),
      ("wait_flat", {"accountId": 8, "contractId": 101, "symbol": "NQZ6"}),
      ("placeorder", order("Sell", 3, account=BIG))]),
    (dict(action="reverse"), 6, "liq-wait-6"),
])
def test_multiplier(fields, net_pos, expected):
    got = steps(plan_orders(sig(**fields), NQ, BIG, net_pos))
    if expected == "liq-wait-6":
        assert [k for k, _ in got] == ["liquidateposition", "wait_flat", "placeorder"]
        assert got[2][1]["orderQty"] == 6 and got[2][1]["action"] == "Sell"
        assert got[0][1]["accountId"] == 8
    else:
        assert got == expected


@pytest.mark.parametrize("fields,net_pos", [
    (dict(action="buy", qty=3), 0),
    (dict(position="long", position_size=3), 0),
    (dict(action="sell", sentiment="short", qty=4), 2),  # reversal rejected whole, not half-done
    (dict(position="short", position_size=3), 3),
    (dict(action="reverse"), 9),
])
def test_exceeds_max_qty(fields, net_pos):
    with pytest.raises(PlanError) as info:
        plan_orders(sig(**fields), NQ, BIG_REJECT, net_pos)
    assert info.value.code == "exceeds_max_qty"
    assert "DEMO0002" in info.value.message and "6" in info.value.message


def test_liquidation_not_limited_by_max_qty():
    assert steps(plan_orders(sig(action="close"), NQ, BIG, 30))[0][0] == "liquidateposition"


@pytest.mark.parametrize("account,code", [
    (AccountTarget(1, "OFF", enabled=False), "account_disabled"),
    (AccountTarget(1, "BAD", multiplier=0), "invalid_account"),
    (AccountTarget(1, "BAD", multiplier=-2), "invalid_account"),
    (AccountTarget(1, "BAD", multiplier=True), "invalid_account"),
    (AccountTarget(1, "BAD", max_qty=3, max_qty_mode="drop"), "invalid_account"),
    (AccountTarget(1, "BAD", max_qty=0), "invalid_account"),
])
def test_bad_accounts(account, code):
    with pytest.raises(PlanError) as info:
        plan_orders(sig(action="buy"), NQ, account, 0)
    assert info.value.code == code


def test_zero_quantity_never_reaches_the_broker():
    s = Signal(action="buy", symbol="NQ1!", quantity=0)
    with pytest.raises(PlanError) as info:
        plan_orders(s, NQ, ACCT, 0)
    assert info.value.code == "invalid_quantity"
    with pytest.raises(PlanError):
        plan_orders(Signal(action="sell", symbol="NQ1!", quantity=-1), NQ, ACCT, 0)


# -- brackets --------------------------------------------------------------------------------

def oso(action, qty, tp=None, sl=None, order_type="Market", contract=NQ, **extra):
    body = order(action, qty, order_type, contract=contract, **extra)
    exit_action = "Sell" if action == "Buy" else "Buy"
    legs = []
    if tp is not None:
        legs.append({"action": exit_action, "orderType": "Limit", "price": tp})
    if sl is not None:
        legs.append({"action": exit_action, "orderType": "Stop", "stopPrice": sl})
    body["bracket1"] = legs[0]
    if len(legs) == 2:
        body["bracket2"] = legs[1]
    return [("placeoso", body)]


@pytest.mark.parametrize("fields,expected", [
    # ticks from the signal price of a market order
    (dict(action="buy", price=21450.25, takeProfit={"ticks": 8}, stopLoss={"ticks": 4}),
     oso("Buy", 1, tp=21452.25, sl=21449.25)),
    (dict(action="sell", price=21450.25, tp_ticks=8, sl_ticks=4), oso("Sell", 1, tp=21448.25, sl=21451.25)),
    # points, and a reference off the tick grid: reference rounded first, then results
    (dict(action="buy", price=21450.3, tp_points=10, sl_points=5.1), oso("Buy", 1, tp=21460.25, sl=21445.25)),
    # limit price is the reference
    (dict(action="buy", orderType="limit", limitPrice=21400, price=21450, takeProfit={"amount": 20}),
     oso("Buy", 1, tp=21420.0, order_type="Limit", price=21400.0)),
    # stop price is the reference of a stop entry
    (dict(action="sell", orderType="stop", stopPrice=21300, stopLoss={"ticks": 10}),
     oso("Sell", 1, sl=21302.5, order_type="Stop", stopPrice=21300.0)),
    # absolute prices, rounded to the nearest tick
    (dict(action="buy", takeProfit={"limitPrice": 21500.1}, stopLoss={"stopPrice": 21399.9}),
     oso("Buy", 1, tp=21500.0, sl=21400.0)),
    (dict(action="buy", tp=21500.13, sl=21400.12), oso("Buy", 1, tp=21500.25, sl=21400.0)),
    # a lone stop loss goes into bracket1
    (dict(action="buy", price=21450, stop_loss_ticks=4), oso("Buy", 1, sl=21449.0)),
])
def test_brackets(fields, expected):
    assert steps(plan_orders(sig(**fields), NQ, ACCT, 0)) == expected


def test_bracket_quantity_is_not_on_legs_and_follows_multiplier():
    plan = plan_orders(sig(action="buy", qty=2, price=100, tp_ticks=4), NQ, BIG, 0)
    body = plan[0].body
    assert body["orderQty"] == 6 and "orderQty" not in body["bracket1"] and "bracket2" not in body


def test_bracket_on_cl_uses_cl_tick():
    plan = plan_orders(sig(ticker="CL1!", action="buy", price=70.123, tp_ticks=10, sl_points=0.2), CL, ACCT, 0)
    assert steps(plan) == oso("Buy", 1, tp=70.22, sl=69.92, contract=CL)


def test_bracket_on_reversal_entry():
    plan = steps(plan_orders(sig(action="buy", sentiment="long", price=100, tp_ticks=4), NQ, ACCT, -1))
    assert [k for k, _ in plan] == ["liquidateposition", "wait_flat", "placeoso"]


def test_bracket_on_target_add_only():
    add = plan_orders(sig(position="long", position_size=2, price=100, tp_ticks=4), NQ, ACCT, 1)
    assert add[0].kind == "placeoso" and add[0].body["orderQty"] == 1
    reduce = plan_orders(sig(position="long", position_size=1, price=100, tp_ticks=4), NQ, ACCT, 2)
    assert [s.kind for s in reduce] == ["trim_legs", "placeorder"]


@pytest.mark.parametrize("fields", [
    dict(action="buy", orderType="limit", limitPrice=100, takeProfit={"limitPrice": 99}),  # tp below a long
    dict(action="buy", orderType="limit", limitPrice=100, stopLoss={"stopPrice": 101}),  # sl above a long
    dict(action="sell", price=100, takeProfit={"limitPrice": 101}),
    dict(action="buy", tp=100, sl=101),  # no reference, but tp/sl crossed
    dict(action="buy", price=100, tp=100.1),  # rounds onto the entry
])
def test_invalid_brackets(fields):
    with pytest.raises(PlanError) as info:
        plan_orders(sig(**fields), NQ, ACCT, 0)
    assert info.value.code == "invalid_bracket"


def test_missing_reference_price_when_built_directly():
    s = Signal(action="buy", symbol="NQ1!", take_profit=Bracket("ticks", 4))
    with pytest.raises(PlanError) as info:
        plan_orders(s, NQ, ACCT, 0)
    assert info.value.code == "missing_reference_price"


@pytest.mark.parametrize("price,tick,expected", [
    (21450.1, 0.25, 21450.0), (21450.125, 0.25, 21450.25), (21450.37, 0.25, 21450.25),
    (70.125, 0.01, 70.13), (70.124, 0.01, 70.12), (2050.05, 0.1, 2050.1), (39000.5, 1.0, 39001.0),
    (0.3, 0.1, 0.3),
])
def test_round_to_tick(price, tick, expected):
    assert round_to_tick(price, tick) == expected


def test_test_mode_still_plans():
    s = sig(action="buy", test=True)
    assert s.test is True
    assert steps(plan_orders(s, NQ, ACCT, 0)) == [("placeorder", order("Buy", 1))]


# -- properties over many signals and positions ----------------------------------------------

plan_payloads = st.fixed_dictionaries(
    {"ticker": st.just("NQ1!")},
    optional={
        "action": st.sampled_from(["buy", "sell", "close", "exit_long", "closeshort", "reverse", "cancel", "add"]),
        "qty": st.integers(-2, 12),
        "sentiment": st.sampled_from(["long", "short", "flat"]),
        "position_size": st.integers(0, 12),
        "orderType": st.sampled_from(["market", "limit", "stop", "stop_limit"]),
        "limitPrice": st.sampled_from([21400.1, 21500]),
        "stopPrice": st.sampled_from([21450.2, 21300]),
        "price": st.sampled_from([21450.25, 21449.9]),
        "tp_ticks": st.integers(1, 40),
        "sl_points": st.sampled_from([0.3, 5, 12.5]),
    },
)


@settings(max_examples=600, deadline=None)
@given(plan_payloads, st.integers(-15, 15), st.integers(1, 3), st.one_of(st.none(), st.integers(1, 10)),
       st.booleans())
def test_plan_properties(payload, net_pos, multiplier, max_qty, working):
    try:
        s = parse_signal(json.dumps(payload))
    except SignalError:
        return
    account = AccountTarget(id=7, name="DEMO0001", multiplier=multiplier, max_qty=max_qty)
    try:
        plan = plan_orders(s, NQ, account, net_pos, working)
    except PlanError as exc:
        assert exc.code in ("nothing_to_do", "exceeds_max_qty", "invalid_bracket")
        return
    assert plan, "a plan is never empty"
    kinds = [p.kind for p in plan]
    if "wait_flat" in kinds:  # a reversal: flatten, wait, then exactly one entry
        assert kinds[:2] == ["liquidateposition", "wait_flat"] and len(kinds) == 3
        assert kinds[2] in ("placeorder", "placeoso")
        entry = plan[2].body["action"]
        assert (entry == "Buy") == (net_pos < 0), "a reversal enters the other way"
    elif kinds[0] == "trim_legs":  # a reduction: the legs are cut first, then one Market order
        assert kinds == ["trim_legs", "placeorder"] and plan[1].body["orderType"] == "Market"
        assert plan[0].body["cover"] == abs(net_pos) - plan[1].body["orderQty"] >= 1
    else:
        assert len(plan) == 1
    for p in plan:
        assert "clOrdId" not in p.body
        if p.kind in ("placeorder", "placeoso"):
            b = p.body
            assert b["orderQty"] >= 1 and (max_qty is None or b["orderQty"] <= max_qty)
            assert b["isAutomated"] is True and b["accountId"] == 7 and b["symbol"] == "NQZ6"
            for price_key in ("price", "stopPrice"):
                if price_key in b:
                    assert round(b[price_key] / 0.25, 9) == int(round(b[price_key] / 0.25))
            for leg in ("bracket1", "bracket2"):
                if leg in b:
                    assert "orderQty" not in b[leg] and b[leg]["action"] != b["action"]
            # exits never cross zero: a reducing order is at most the position
            if s.action in ("close", "close_long", "close_short"):
                assert b["orderQty"] < abs(net_pos)
                assert (b["action"] == "Sell") == (net_pos > 0)
    if s.action == "target" and kinds[-1] != "liquidateposition":
        b = plan[-1].body
        signed = b["orderQty"] if b["action"] == "Buy" else -b["orderQty"]
        start = 0 if "wait_flat" in kinds else net_pos  # a reversal enters from flat
        if plan[-1].meta.get("notes"):  # max_qty_mode clip: the order was cut to max_qty
            assert abs(signed) == max_qty
        else:
            assert start + signed == s.target_position * multiplier
