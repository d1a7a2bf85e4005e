"""Drop-in for the peers' users (issue 27): the peers' own messages, as their pages publish them.

* TradersPost's "Order Behavior" cases in ``side`` mode (buy = be long: cancel the ticker's open
  orders, exit a short and wait, enter unless already long), their ``add``;
* PickMyTrade's published alert template, unchanged (only TradingView's placeholders filled);
* CrossTrade's ``key=value;`` commands;
* copies in step across accounts with multipliers 1, 1.5 and 2 and ``max_qty_mode``.

TradersPost's page uses a stock (``TSLA``); this server trades futures, so the ticker is ``MNQ1!``
and nothing else in their message changes.
"""
import json
import logging

import pytest

from phantom_scraper.app import recorders as recorders_mod
from phantom_scraper.config import ConfigError, Settings
from phantom_scraper.signals import (AccountTarget, Contract, PlanError, SignalError, parse_signal, plan_orders,
                                     with_mode)
from tests.helpers import SERVER_WEBHOOK_SECRET, post, wait_for, ws_ready

NQ = Contract(id=101, name="NQZ6", root="NQ", tick_size=0.25, point_value=20.0)
ACCT = AccountTarget(id=7, name="DEMO0001")

# pickmytrade.trade/pages/alert.html, "Alert Format Explanation": the template as published
# ({{ticker}}, {{timenow}} and {{close}} filled the way TradingView fills them).
PICKMYTRADE_TEMPLATE = """{
   "symbol": "NQ1!",
   "date": "2026-11-25T14:30:00Z",
   "data": "buy",
   "quantity": "1",
   "risk_percentage": "0",
   "price": "21000.25",
   "tp": "0",
   "percentage_tp": "0",
   "dollar_tp": "2",
   "sl": "0",
   "dollar_sl": "0",
   "percentage_sl": "0",
   "trail": "0",
   "trail_stop": "0",
   "trail_trigger": "0",
   "trail_freq": "0",
   "update_tp": "false",
   "update_sl": "false",
   "token": "Ct8tPtD345345t3fty2EtYtCtVtVtUtL",
   "duplicate_position_allow": "true",
   "reverse_order_close": "true",
   "multiple_accounts": [
   {
    "token":  "Ct8tPtD345345t3fty2EtYtCtVtVtUtL",
    "account_id": "2",
    "risk_percentage": 2,
    "quantity_multiplier": 0
    }
  ]
}"""

# docs.traderspost.io, "Order Behavior" (ticker changed from TSLA to a futures symbol)
TP_BUY = '{\n    "ticker": "MNQ1!",\n    "action": "buy"\n}'
TP_SELL = '{\n    "ticker": "MNQ1!",\n    "action": "sell"\n}'
TP_LIMIT_BUY = ('{\n    "ticker": "MNQ1!",\n    "action": "buy",\n    "orderType": "limit",\n'
                '    "limitPrice": %s\n}')


def side(raw, **kw):
    return with_mode(parse_signal(raw), "side")


def kinds(plan):
    return [(s.kind, s.body.get("action"), s.body.get("orderQty")) for s in plan]


# ---- side mode: TradersPost's order behaviour, pure ---------------------------------------------
@pytest.mark.parametrize("raw,pos,working,expected", [
    (TP_BUY, 0, False, [("placeorder", "Buy", 1)]),
    (TP_BUY, 0, True, [("cancel_working", None, None), ("placeorder", "Buy", 1)]),  # cancel, then enter
    (TP_BUY, -3, False, [("liquidateposition", None, None), ("wait_flat", None, None), ("placeorder", "Buy", 1)]),
    (TP_BUY, 2, False, "nothing_to_do"),  # already long: nothing (unless adding)
    (TP_BUY, 2, True, "nothing_to_do"),  # ... and the long's exit legs are left working
    (TP_SELL, 0, False, [("placeorder", "Sell", 1)]),
    (TP_SELL, 1, True, [("liquidateposition", None, None), ("wait_flat", None, None), ("placeorder", "Sell", 1)]),
    (TP_SELL, -1, False, "nothing_to_do"),
    ('{"ticker": "MNQ1!", "action": "add", "sentiment": "long", "quantity": 2}', 2, False, [("placeorder", "Buy", 2)]),
    ('{"ticker": "MNQ1!", "action": "buy", "quantity": 2, "allowAdd": true}', 2, False, [("placeorder", "Buy", 2)]),
    # a same-side sentiment changes nothing in side mode: the quantity is the entry (no exit subtracted)
    ('{"ticker": "MNQ1!", "action": "buy", "sentiment": "long", "quantity": 2}', -2, False,
     [("liquidateposition", None, None), ("wait_flat", None, None), ("placeorder", "Buy", 2)]),
])
def test_side_mode_is_traderspost_order_behaviour(raw, pos, working, expected):
    if expected == "nothing_to_do":
        with pytest.raises(PlanError) as info:
            plan_orders(side(raw), NQ, ACCT, pos, working)
        assert info.value.code == "nothing_to_do"
    else:
        assert kinds(plan_orders(side(raw), NQ, ACCT, pos, working)) == expected


def test_orders_mode_is_unchanged_buy_while_short_nets():
    plan = plan_orders(parse_signal(TP_BUY), NQ, ACCT, -1)
    assert kinds(plan) == [("placeorder", "Buy", 1)]


def test_side_mode_needs_the_position_and_the_working_orders_when_flat():
    from phantom_scraper.signals import needs_position, reads_working_orders
    assert not needs_position(parse_signal(TP_BUY)) and needs_position(side(TP_BUY))
    assert not reads_working_orders(parse_signal(TP_BUY)) and reads_working_orders(side(TP_BUY))


# ---- PickMyTrade's published template -----------------------------------------------------------
def test_pickmytrade_template_is_accepted_unchanged():
    s = parse_signal(PICKMYTRADE_TEMPLATE)
    assert s.action == "buy" and s.quantity == 1 and s.flatten_first and s.add
    assert any("multiple_accounts" in w for w in s.warnings)
    assert "Ct8tPtD345345t3fty2EtYtCtVtVtUtL" not in json.dumps(s.payload)  # its token is not stored
    # "dollar_tp": "2" on NQ ($5 a tick) is below one tick: raised to one tick, with a warning
    [step] = plan_orders(s, NQ, ACCT, 0)
    assert step.kind == "placeoso" and step.body["bracket1"] == {"action": "Sell", "orderType": "Limit",
                                                                   "price": 21000.5}
    assert any("less than one tick" in n for n in step.meta["notes"])


def test_dollar_stop_below_a_tick_in_a_strategy_is_one_tick_too():
    raw = PICKMYTRADE_TEMPLATE.replace('"dollar_sl": "0"', '"dollar_sl": "1", "breakeven": "2"')
    [step] = plan_orders(parse_signal(raw), NQ, ACCT, 0)
    params = json.loads(step.body["params"])
    assert params["brackets"][0]["profitTarget"] == 0.25 and params["brackets"][0]["stopLoss"] == -0.25
    assert len(step.meta["notes"]) == 2


# ---- sizing across accounts ----------------------------------------------------------------------
COPIES = [AccountTarget(id=1, name="A1", multiplier=1), AccountTarget(id=2, name="A15", multiplier=1.5),
          AccountTarget(id=3, name="A2", multiplier=2)]


@pytest.mark.parametrize("qty,expected", [(1, [1, 2, 2]), (2, [2, 3, 4]), (3, [3, 5, 6]), (4, [4, 6, 8])])
def test_fractional_multipliers_round_to_the_nearest_contract_at_least_one(qty, expected):
    s = parse_signal(json.dumps({"ticker": "NQ1!", "action": "buy", "quantity": qty}))
    assert [plan_orders(s, NQ, a, 0)[0].body["orderQty"] for a in COPIES] == expected


def test_fractional_multiplier_strategy_position_and_reversal():
    a15 = COPIES[1]
    target = parse_signal('{"ticker": "NQ1!", "position": "long", "position_size": 3}')
    assert kinds(plan_orders(target, NQ, a15, 2)) == [("placeorder", "Buy", 3)]  # 3 x 1.5 = 4.5 -> 5
    flip = parse_signal('{"ticker": "NQ1!", "action": "sell", "sentiment": "short", "quantity": 2}')
    # long 2 contracts = 2 / 1.5 -> 2 units (rounded up); 2 - 2 = 0 left to open: flatten only
    assert kinds(plan_orders(flip, NQ, a15, 2)) == [("liquidateposition", None, None)]


def test_max_qty_clip_keeps_copies_in_step_and_says_so():
    s = parse_signal('{"ticker": "NQ1!", "action": "buy", "quantity": 4}')
    clip = AccountTarget(id=2, name="DEMO0002", multiplier=1, max_qty=2)
    [step] = plan_orders(s, NQ, clip, 0)
    assert step.body["orderQty"] == 2 and "clipped" in step.meta["notes"][0]
    reject = AccountTarget(id=2, name="DEMO0002", multiplier=1, max_qty=2, max_qty_mode="reject")
    with pytest.raises(PlanError) as info:
        plan_orders(s, NQ, reject, 0)
    assert info.value.code == "exceeds_max_qty"


def test_recorders_file_reads_fractions_modes_and_refuses_nonsense(tmp_path):
    doc = {"logins": {"main": {"env": "sim", "username": "demo"}},
           "recorders": [{"name": "copy", "webhook_token_env": "T", "signal_mode": "side",
                          "accounts": [{"login": "main", "account": "DEMO0001", "multiplier": 1.5},
                                       {"login": "main", "account": "DEMO0002", "max_qty": 2,
                                        "max_qty_mode": "reject"}]}]}
    logins, (rec,) = recorders_mod._parse(doc, Settings(), {"T": "tok"})
    assert rec.signal_mode == "side"
    assert [(a.multiplier, a.max_qty_mode) for a in rec.accounts] == [(1.5, "clip"), (1, "reject")]
    for bad in ({"multiplier": 0}, {"multiplier": "2"}, {"max_qty_mode": "drop"}):
        broken = json.loads(json.dumps(doc))
        broken["recorders"][0]["accounts"][0].update(bad)
        with pytest.raises(ConfigError):
            recorders_mod._parse(broken, Settings(), {"T": "tok"})
    broken = json.loads(json.dumps(doc))
    broken["recorders"][0]["signal_mode"] = "position"
    with pytest.raises(ConfigError):
        recorders_mod._parse(broken, Settings(), {"T": "tok"})


# ---- an explicit account list before trading several accounts in demo/live ----------------------
def test_demo_with_several_accounts_needs_tradovate_accounts():
    accounts = {"default": ["DEMO0001", "EVAL0001", "EVAL0002"]}
    [rec] = recorders_mod.load(Settings(tradovate_env="demo", webhook_secret="x"))[1]
    with pytest.raises(ConfigError) as info:
        recorders_mod.check_accounts([rec], accounts, "demo")
    assert "TRADOVATE_ACCOUNTS" in str(info.value) and "EVAL0002" in str(info.value)
    [rec] = recorders_mod.load(Settings(tradovate_env="live", webhook_secret="x",
                                        accounts_filter=("DEMO0001",)))[1]
    assert recorders_mod.check_accounts([rec], accounts, "live") == [
        "recorder default (orders mode) trades: DEMO0001"]
    [rec] = recorders_mod.load(Settings(tradovate_env="demo", webhook_secret="x", accounts_filter=("NOPE",)))[1]
    with pytest.raises(ConfigError):
        recorders_mod.check_accounts([rec], accounts, "demo")
    # one account, or the simulator: no list needed
    [rec] = recorders_mod.load(Settings(webhook_secret="x"))[1]
    assert recorders_mod.check_accounts([rec], {"default": ["DEMO0001"]}, "demo")
    assert recorders_mod.check_accounts([rec], accounts, "sim")


# ---- CrossTrade ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,action,extra", [
    # crosstrade.io payload reference, "a minimal market-buy payload"
    ("key=your-secret-key;\ncommand=PLACE;\naccount=sim101;\ninstrument=MNQ 06-25;\naction=BUY;\nqty=1;\n"
     "order_type=MARKET;\ntif=DAY;", "buy", {"symbol": "MNQM25", "quantity": 1, "time_in_force": "Day"}),
    # docs.crosstrade.io, "Flatten First"
    ("key=your-secret-key; command=PLACE; account=sim101; instrument=NQ 12-24; action=BUY; qty=1; "
     "order_type=MARKET; TIF=DAY; flatten_first=true;", "buy", {"symbol": "NQZ24", "flatten_first": True}),
    # docs.crosstrade.io, "Reverse"
    ("key=your-secret-key;\ncommand=REVERSE;\naccount=sim101;\ninstrument=ES 03-25;", "reverse", {"symbol": "ESH25"}),
    ("key=k; command=FLATTEN; account=sim101; instrument=NQ1!;", "close", {"symbol": "NQ1!"}),
    ("key=k; command=CLOSEPOSITION; account=sim101; instrument=NQ1!; qty=1;", "close", {"quantity": 1}),
    ("key=k; command=CANCELORDERS; account=sim101; instrument=NQ1!;", "cancel", {}),
    ("key=k; command=PLACE; account=sim101; instrument=NQ1!; action=SELL; qty=2; order_type=LIMIT; "
     "limit_price=21000.25; tif=GTC;", "sell", {"order_type": "Limit", "limit_price": 21000.25}),
])
def test_crosstrade_commands_that_map(text, action, extra):
    s = parse_signal(text.encode())
    assert s.action == action
    for key, value in extra.items():
        assert getattr(s, key) == value, key
    assert "your-secret-key" not in json.dumps(s.payload) and any("account" in w for w in s.warnings)


@pytest.mark.parametrize("text,field", [
    ("key=k; command=CHANGE; account=sim101; order_id=abc; limit_price=1;", "command"),
    ("key=k; command=FLATTENEVERYTHING;", "command"),
    ("key=k; command=PLACE; account=sim101; instrument=NQ1!; action=BUY; qty=1; order_type=MARKET; tif=DAY; "
     "strategy=MyAtm;", "strategy"),
    ("key=k; command=PLACE; account=sim101; instrument=NQ1!; action=BUY; qty=1; order_type=MARKET; tif=DAY; "
     "take_profit=21100;", "take_profit"),
    ("key=k; account=sim101; instrument=NQ1!;", "command"),
])
def test_crosstrade_commands_that_do_not_map_are_unsupported_format(text, field):
    with pytest.raises(SignalError) as info:
        parse_signal(text)
    assert info.value.code == "unsupported_format" and info.value.field == field


def test_plain_text_that_is_not_key_value_stays_invalid_json():
    with pytest.raises(SignalError) as info:
        parse_signal("buy NQ 1")
    assert info.value.code == "invalid_json"


def test_trailing_stop_entry_points_at_stop_loss_type():
    with pytest.raises(SignalError) as info:
        parse_signal('{"ticker": "NQ1!", "action": "buy", "orderType": "trailing_stop", "trailAmount": 2}')
    assert info.value.code == "unsupported" and '"type": "trailing"' in info.value.message


# ---- through the server, against the simulator ---------------------------------------------------
def _positions(sim, symbol="MNQZ6"):
    return {acct: qty for (acct, sym), qty in sim.positions().items() if sym == symbol and qty}


def test_side_mode_through_the_server_ends_long_where_orders_mode_ended_flat(make_server_app, sim, caplog):
    app = make_server_app(signal_mode="side", dedupe_window_s=0.0)  # the same message twice on purpose
    ws_ready(app)
    client = app.test_client()
    a1, a2 = sim.account_id("DEMO0001"), sim.account_id("DEMO0002")
    assert post(client, TP_SELL).get_json()["status"] == "acked"
    wait_for(lambda: _positions(sim) == {a1: -1, a2: -1}, what="short 1")
    with caplog.at_level(logging.INFO, logger="phantom_scraper.app.signal_run"):
        r = post(client, TP_BUY)
        body = r.get_json()
        assert body["status"] == "acked", body
        wait_for(lambda: _positions(sim) == {a1: 1, a2: 1}, what="long 1 (exit the short, wait, buy)")
        app.extensions["runtime"].service.settle_writes()
        wait_for(lambda: any("via WebSocket" in r.getMessage() and body["signal_id"] in r.getMessage()
                             for r in caplog.records), what="the INFO line says via WebSocket")
    second = post(client, TP_BUY).get_json()  # already long: nothing, reported as skipped
    assert second["status"] == "skipped" and _positions(sim) == {a1: 1, a2: 1}
    # a working limit buy far below, then sell: the order is cancelled and the account goes short
    assert post(client, '{"ticker": "MNQ1!", "action": "close"}').get_json()["status"] == "acked"
    wait_for(lambda: _positions(sim) == {}, what="flat")
    price = sim.get_price("MNQZ6")["price"]
    assert post(client, TP_LIMIT_BUY % (price - 50)).get_json()["status"] == "acked"

    def working():
        return [o for o in sim.orders() if o.get("ordStatus") == "Working"]
    wait_for(lambda: len(working()) == 2, what="two working limits")
    assert post(client, TP_SELL).get_json()["status"] == "acked"
    wait_for(lambda: _positions(sim) == {a1: -1, a2: -1} and not working(), what="limits cancelled, short 1")


def test_pickmytrade_template_through_the_server_with_fractional_copies(make_server_app, sim, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("DROPIN_TOKEN", SERVER_WEBHOOK_SECRET)
    monkeypatch.setenv("DROPIN_PASS", "demo")
    doc = {"logins": {"main": {"env": "sim", "username": "demo", "password_env": "DROPIN_PASS", "rest_url": sim.rest_url,
                               "ws_url": sim.ws_url}},
           "recorders": [{"name": "pmt", "webhook_token_env": "DROPIN_TOKEN", "signal_mode": "side",
                          "accounts": [{"login": "main", "account": "DEMO0001", "multiplier": 1.5},
                                       {"login": "main", "account": "DEMO0002", "multiplier": 2, "max_qty": 3}]}]}
    path = tmp_path / "recorders.json"
    path.write_text(json.dumps(doc))
    app = make_server_app(recorders_file=str(path))
    ws_ready(app)
    price = sim.get_price("MNQZ6")["price"]
    raw = PICKMYTRADE_TEMPLATE.replace('"NQ1!"', '"MNQ1!"') \
        .replace('"quantity": "1"', '"quantity": "2"').replace("21000.25", str(price))
    r = post(app.test_client(), raw)
    body = r.get_json()
    assert r.status_code == 200 and body["status"] == "acked", body
    assert any("multiple_accounts" in w for w in body["warnings"])
    by_name = {a["account_name"]: a for a in body["accounts"]}
    assert any("clipped" in w for w in by_name["DEMO0002"]["warnings"])
    a1, a2 = sim.account_id("DEMO0001"), sim.account_id("DEMO0002")
    wait_for(lambda: _positions(sim) == {a1: 3, a2: 3}, what="2 x 1.5 = 3; 2 x 2 = 4 clipped to 3")


# ---- dated symbols that expired; a failed maturity lookup falls back ------------------------------
class MaturityClient:
    """contract/find, contract/suggest and the product's maturities; ``maturities_fail`` makes
    ``contractMaturity`` answer like an HTTP 404."""

    CONTRACTS = {"NQZ6": {"id": 101, "name": "NQZ6"}, "NQH7": {"id": 102, "name": "NQH7"},
                 "NQM7": {"id": 103, "name": "NQM7"}}

    def __init__(self):
        self.maturities_fail = False
        self.maturities_error = None  # raised instead of the 404 when set
        self.calls = []

    def find_contract(self, name):
        self.calls.append(("find", name))
        return self.CONTRACTS.get(name)

    def suggest_contracts(self, root, limit):
        self.calls.append(("suggest", root))
        return [self.CONTRACTS[n] for n in ("NQH7", "NQM7", "NQZ6")]  # by relevance, not by date

    def find_product(self, root):
        self.calls.append(("product", root))
        return {"id": 7, "name": root}

    def list_maturities(self, product_id):
        from phantom_scraper.errors import BrokerError
        self.calls.append(("maturities", product_id))
        if self.maturities_fail and self.maturities_error is not None:
            raise self.maturities_error
        if self.maturities_fail:
            raise BrokerError("contractMaturity/deps: HTTP 404", status=404)
        return [{"expirationMonth": 202612, "expirationDate": "2026-12-18T14:30:00Z"},
                {"expirationMonth": 202703, "expirationDate": "2027-03-19T13:30:00Z"},
                {"expirationMonth": 202706, "expirationDate": "2027-06-18T13:30:00Z"}]


@pytest.mark.parametrize("today,front", [("2026-11-25", "NQZ6"), ("2026-12-11", "NQH7")])
def test_a_failed_maturity_lookup_chooses_the_front_from_suggest(today, front, caplog):
    from phantom_scraper.signals import SymbolResolver

    client = MaturityClient()
    client.maturities_fail = True
    resolver = SymbolResolver(client, trading_date=today)
    with caplog.at_level(logging.WARNING, logger="phantom_scraper.signals.symbols"):
        assert resolver.resolve("NQ1!").name == front
    assert any("contractMaturity lookup for NQ failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [
    lambda e: e.TooManyRequestsError(e.TooManyRequestsError.TEXT),
    lambda e: e.PenaltyError("contractMaturity/deps: penalty", "ticket", 2.0),
    lambda e: e.AuthError("access token expired"),
], ids=["429", "penalty", "auth"])
def test_a_maturity_lookup_refused_for_the_login_is_reported_not_fallen_back(error):
    """A 429 (an hour's lock-out that each further request restarts), a penalty or an auth refusal
    is the login's, not the lookup's: no suggest call, the error reaches the signal."""
    from phantom_scraper import errors
    from phantom_scraper.signals import SymbolResolver

    client = MaturityClient()
    client.maturities_fail = True
    client.maturities_error = error(errors)
    resolver = SymbolResolver(client, trading_date="2026-11-25")
    with pytest.raises(type(client.maturities_error)):
        resolver.resolve("NQ1!")
    assert not [c for c in client.calls if c[0] == "suggest"]


def test_a_failed_maturity_lookup_keeps_the_cached_front_and_asks_again_soon():
    from phantom_scraper.signals import SymbolResolver
    from phantom_scraper.signals.symbols import FALLBACK_CACHE_S

    now = [1000.0]
    client = MaturityClient()
    resolver = SymbolResolver(client, clock=lambda: now[0], refresh_s=600, trading_date="2026-11-25")
    assert resolver.resolve("NQ1!").name == "NQZ6"
    client.maturities_fail = True
    now[0] += 601  # the daily-style refresh is due; the roll (2026-12-10) is not
    assert resolver.resolve("NQ1!").name == "NQZ6"
    client.maturities_fail = False
    client.calls.clear()
    now[0] += FALLBACK_CACHE_S + 1
    assert resolver.resolve("NQ1!").name == "NQZ6"
    assert ("maturities", 7) in client.calls, "the fallback is trusted only for a while"


@pytest.mark.parametrize("symbol", ["NQH2022", "NQH22", "CME_MINI:NQZ2025"])
def test_an_expired_dated_symbol_names_the_front_month(symbol):
    from phantom_scraper.signals import SymbolResolver

    resolver = SymbolResolver(MaturityClient(), trading_date="2026-11-25")
    with pytest.raises(SignalError) as info:
        resolver.resolve(symbol)
    assert info.value.code == "expired_contract" and info.value.field == "symbol"
    assert "the front month is NQZ6" in info.value.message and "NQ1!" in info.value.message


def test_current_and_one_digit_dated_symbols_go_to_the_broker():
    from phantom_scraper.signals import SymbolResolver

    resolver = SymbolResolver(MaturityClient(), trading_date="2026-11-25")
    assert resolver.resolve("NQZ2026").name == "NQZ6" and resolver.resolve("NQH7").name == "NQH7"


def test_expired_contract_and_maturity_fallback_through_the_server(make_server_app, sim, caplog):
    from phantom_scraper.errors import BrokerError

    app = make_server_app()
    ws_ready(app)
    client = app.test_client()
    r = post(client, '{"ticker": "NQH2022", "action": "buy", "quantity": 1}')  # TradersPost's dated example
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "expired_contract" and "NQZ6" in error["message"] and sim.orders() == []

    resolver = app.extensions["runtime"].service.resolver
    resolver.clear()

    def not_found(*_a, **_k):
        raise BrokerError("contractMaturity/deps: HTTP 404", status=404)

    resolver._client.list_maturities = not_found  # (the instance attribute shadows the method)
    with caplog.at_level(logging.WARNING, logger="phantom_scraper.signals.symbols"):
        body = post(client, '{"ticker": "NQ1!", "action": "buy", "quantity": 1}').get_json()
    assert body["status"] == "acked" and body["contract"] == "NQZ6", body
    assert any("contractMaturity lookup for NQ failed" in rec.getMessage() for rec in caplog.records)


def test_a_start_up_that_cannot_reach_the_broker_names_the_host(tmp_path, caplog, clean_pool):
    import socket

    from phantom_scraper.app.service import TradingService
    from tests.helpers import rs, server_settings

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connections are refused

    class Nowhere:
        rest_url, ws_url = f"http://127.0.0.1:{port}/v1", f"ws://127.0.0.1:{port}/v1/websocket"

    settings = server_settings(Nowhere, tmp_path, rest_timeout_s=1.0)
    svc = TradingService(settings, pool=rs.WebSocketPool())
    with caplog.at_level(logging.WARNING, logger="phantom_scraper.app.service"):
        svc.start_in_background()
        try:
            wait_for(lambda: any("retrying" in r.getMessage() and f"broker http://127.0.0.1:{port}" in r.getMessage()
                                 for r in caplog.records), what="the retry warning naming the broker")
        finally:
            svc.stop(timeout_s=5.0)


def test_crosstrade_text_through_the_server(make_server_app, sim):
    app = make_server_app()
    ws_ready(app)
    client = app.test_client()
    text = ("key=your-secret-key; command=PLACE; account=sim101; instrument=MNQ1!; action=BUY; qty=1; "
            "order_type=MARKET; tif=DAY;")
    body = post(client, text, content_type="text/plain").get_json()
    assert body["status"] == "acked" and any("account" in w for w in body["warnings"]), body
    a1, a2 = sim.account_id("DEMO0001"), sim.account_id("DEMO0002")
    wait_for(lambda: _positions(sim) == {a1: 1, a2: 1}, what="long 1")
    body = post(client, "key=your-secret-key; command=FLATTEN; account=sim101; instrument=MNQ1!;",
                content_type="text/plain").get_json()
    assert body["status"] == "acked", body
    wait_for(lambda: _positions(sim) == {}, what="flat")
    r = post(client, "key=k; command=CHANGE; account=sim101; order_id=1; limit_price=1;", content_type="text/plain")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "unsupported_format"
