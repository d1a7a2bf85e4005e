"""The simulator's cash balances, P&L, cash-balance snapshot and market-data socket (PROTOCOL §3.7, §4.8)."""
from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import requests
from websockets.sync.client import connect

from tests.helpers import next_message, request, token_of

CT = ZoneInfo("America/Chicago")


def _post(sim, token, endpoint, body):
    return requests.post(f"{sim.rest_url}/{endpoint}", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).json()


def _market(sim, token, account, action, qty, symbol="NQZ6"):
    result = _post(sim, token, "order/placeorder", {"accountSpec": account, "accountId": sim.account_id(account),
                                                    "action": action, "symbol": symbol, "orderQty": qty,
                                                    "orderType": "Market", "isAutomated": True})
    assert "orderId" in result, result


def _snapshot(sim, token, account):
    return _post(sim, token, "cashBalance/getcashbalancesnapshot", {"accountId": sim.account_id(account)})


def _messages(ws, count, timeout=2.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count:
        raw = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if raw[0] == "a":
            out.extend(json.loads(raw[1:]))
    return out


def test_realized_and_open_pnl_per_account(sim):
    token = token_of(sim)
    sim.set_price("NQZ6", 21000.0)
    _market(sim, token, "DEMO0001", "Buy", 2)
    sim.set_price("NQZ6", 21010.0)  # +10 points x 2 x $20
    snap = _snapshot(sim, token, "DEMO0001")
    assert snap["openPnL"] == 400.0 and snap["realizedPnL"] == 0.0
    assert snap["netLiq"] == 50_400.0
    _market(sim, token, "DEMO0001", "Sell", 1)  # closes one at +10: realized 200
    snap = _snapshot(sim, token, "DEMO0001")
    assert snap["realizedPnL"] == 200.0 and snap["openPnL"] == 200.0 and snap["totalPnL"] == 400.0
    rows = {r["accountSpec"]: r for r in sim.cash_balances()}
    assert rows["DEMO0001"]["amount"] == 50_200.0
    assert rows["DEMO0002"]["realizedPnL"] == 0.0 and rows["DEMO0002"]["amount"] == 50_000.0
    # a flip realizes the closed part only, the rest opens at the fill price
    sim.set_price("NQZ6", 20990.0)
    _market(sim, token, "DEMO0001", "Sell", 3)  # closes 1 at -10 (-200), opens 2 short at 20990
    snap = _snapshot(sim, token, "DEMO0001")
    assert snap["realizedPnL"] == 0.0 and snap["openPnL"] == 0.0
    sim.set_price("NQZ6", 20980.0)
    assert _snapshot(sim, token, "DEMO0001")["openPnL"] == 400.0


def test_cash_balance_props_event_on_the_sync_stream(sim):
    token = token_of(sim)
    with connect(sim.ws_url, open_timeout=5, close_timeout=0.2) as ws:
        assert ws.recv(timeout=2) == "o"
        ws.send(f"authorize\n0\n\n{token}")
        assert next_message(ws) == {"s": 200, "i": 0}
        snap = request(ws, "user/syncrequest", 1, body={"accounts": [sim.account_id("DEMO0001")],
                                                        "entityTypes": ["cashBalance", "position"]})
        assert snap["d"]["cashBalances"][0]["amount"] == 50_000.0
        sim.set_price("MNQZ6", 21000.0)
        _market(sim, token, "DEMO0001", "Buy", 1, "MNQZ6")
        sim.set_price("MNQZ6", 20995.0)
        _market(sim, token, "DEMO0001", "Sell", 1, "MNQZ6")  # -5 points x $2
        event = next_message(ws, lambda m: m.get("e") == "props" and m["d"]["entityType"] == "cashBalance"
                             and m["d"]["entity"]["realizedPnL"] != 0.0, timeout=3)
        assert event["d"]["eventType"] == "Updated"
        assert event["d"]["entity"]["realizedPnL"] == -10.0 and event["d"]["entity"]["amount"] == 49_990.0
        for key in ("id", "accountId", "timestamp", "tradeDate", "currencyId", "weekRealizedPnL", "amountSOD"):
            assert key in event["d"]["entity"]


def test_realized_pnl_is_per_trading_day(sim):
    token = token_of(sim)
    monday_4pm = dt.datetime(2026, 11, 23, 16, 0, tzinfo=CT).timestamp()
    sim.clock.freeze(monday_4pm)
    sim.set_price("NQZ6", 21000.0)
    _market(sim, token, "DEMO0001", "Buy", 1)
    sim.set_price("NQZ6", 20990.0)
    _market(sim, token, "DEMO0001", "Sell", 1)
    snap = _snapshot(sim, token, "DEMO0001")
    assert snap["realizedPnL"] == -200.0 and snap["tradeDate"] == {"year": 2026, "month": 11, "day": 23}
    sim.clock.advance(3600 + 60)  # 17:01 CT: Tuesday's trading day
    snap = _snapshot(sim, token, "DEMO0001")
    assert snap["realizedPnL"] == 0.0 and snap["tradeDate"] == {"year": 2026, "month": 11, "day": 24}
    assert snap["amount"] == 49_800.0 and snap["weekRealizedPnL"] == -200.0


def test_value_per_point_from_product_find(sim):
    token = token_of(sim)
    product = requests.get(f"{sim.rest_url}/product/find", params={"name": "MNQ"}, timeout=5,
                           headers={"Authorization": f"Bearer {token}"}).json()
    assert product["valuePerPoint"] == 2.0 and product["tickSize"] == 0.25


def test_market_data_socket_quotes_follow_the_price_control(sim):
    token = token_of(sim)
    at = dt.datetime(2026, 11, 24, 9, 0, tzinfo=CT).timestamp()
    sim.clock.freeze(at)
    with connect(sim.md_url, open_timeout=5, close_timeout=0.2) as ws:
        assert ws.recv(timeout=2) == "o"
        ws.send(f"authorize\n0\n\n{token}")
        assert next_message(ws) == {"s": 200, "i": 0}
        assert request(ws, "account/list", 1)["s"] == 404  # the md host serves market data only
        ws.send('md/subscribeQuote\n2\n\n{"symbol":"NQZ6"}')
        answer, first = _messages(ws, 2)  # the answer, then the current quote (here in one frame)
        assert answer == {"s": 200, "i": 2, "d": {}}
        quote = first["d"]["quotes"][0]
        contract_id = quote["contractId"]
        assert quote["entries"]["Trade"]["price"] == sim.get_price("NQZ6")["price"]
        sim.clock.advance(1.5)
        requests.post(f"{sim.control_url}/price", json={"symbol": "NQZ6", "price": 21012.5}, timeout=5)
        moved = next_message(ws, lambda m: m.get("e") == "md")["d"]["quotes"][0]
        assert moved["contractId"] == contract_id and moved["entries"]["Trade"]["price"] == 21012.5
        assert moved["entries"]["Bid"]["price"] < 21012.5 < moved["entries"]["Offer"]["price"]
        stamp = dt.datetime.strptime(moved["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assert stamp.timestamp() == at + 1.5  # the simulator clock, not the wall clock
        ws.send(f'md/unsubscribeQuote\n3\n\n{{"symbol":{contract_id}}}')
        assert next_message(ws, lambda m: m.get("i") == 3)["s"] == 200
        sim.set_price("NQZ6", 21020.0)
        sim.set_price("ESZ6", 6001.0)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # nothing more arrives for the unsubscribed contract
            ws.send("[]")
            try:
                raw = ws.recv(timeout=0.1)
            except TimeoutError:
                continue
            assert '"e":"md"' not in raw


def test_control_clock_and_cash_balances(sim):
    r = requests.post(f"{sim.control_url}/clock", json={"time": 1_800_000_000.0}, timeout=5).json()
    assert r == {"time": 1_800_000_000.0, "frozen": True}
    r = requests.post(f"{sim.control_url}/clock", json={"advance_s": 2}, timeout=5).json()
    assert r["time"] == 1_800_000_002.0
    rows = requests.get(f"{sim.control_url}/cash-balances", timeout=5).json()
    assert {r["accountSpec"] for r in rows} == {"DEMO0001", "DEMO0002"}
    json.dumps(rows)
