"""Tradovate's official example clients' market-data flows, re-enacted against the simulator.

The official clients (the `example-api-js` WebSocket tutorials EX-07a..EX-11a, the
`example-api-faq` large-chart sample, the `example-api-trading-strategy` robot) are browser bundles
or an interactive terminal program, and their source is not part of this project.  Each test below
replays one client's exact sequence on the wire -- its request frames byte for byte as the client
builds them (endpoint case, ids, the literal ``undefined`` query/body some of them send, JSON-quoted
tokens) -- and applies the client's own filters and reads (which message it keeps, which fields it
destructures) to what comes back.  A read that would throw in the client (a missing object) fails
the test.  ``tests/test_sim_official_clients_node.py`` runs the unchanged clients themselves under
Node where their source is available.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest
import requests

from phantom_scraper.tradovate_sim import SimConfig, Simulator
from tests.sim_md_client import Socket

CT = ZoneInfo("America/Chicago")
QUOTE_FIELDS = ("Bid", "HighPrice", "LowPrice", "Offer", "OpenInterest", "OpeningPrice", "SettlementPrice",
                "TotalTradeVolume", "Trade")  # EX-08a renderQuote destructures each as {price, size}
PRODUCT_FIELDS = ("allowProviderContractInfo", "contractGroupId", "currencyId", "description", "exchangeChannelId",
                  "exchangeId", "id", "isMicro", "name", "priceFormat", "priceFormatType", "productType", "status",
                  "tickSize", "valuePerPoint")  # EX-07a renderETH (marketDataSource aside: rendered, optional)
BAR_FIELDS = ("timestamp", "open", "high", "low", "close", "upVolume", "downVolume", "upTicks", "downTicks",
              "bidVolume", "offerVolume")


def _sim(today: dt.date, at: dt.datetime, **cfg) -> Simulator:
    # The tutorials listen for chart packets only after a REST round trip that follows the getChart
    # answer; the simulator's pause before the history (0.25 s by default) is made generous here so a
    # loaded machine's slow round trip cannot make the history pass the listener by.
    cfg.setdefault("md_chart_history_delay_s", 1.0)
    sim = Simulator(SimConfig(today=today, **cfg)).start()
    sim.clock.freeze(at.timestamp())
    return sim


@pytest.fixture
def sim():
    simulator = _sim(dt.date(2026, 11, 24), dt.datetime(2026, 11, 24, 9, 30, tzinfo=CT))
    try:
        yield simulator
    finally:
        simulator.stop()


def _tutorial_connect(sim) -> dict:
    """EX-*a connect(credentials): POST /auth/accesstokenrequest without a token, then GET /account/list."""
    auth = requests.post(f"{sim.rest_url}/auth/accesstokenrequest", timeout=10,
                         headers={"Accept": "application/json", "Content-Type": "application/json"},
                         data=json.dumps({"name": "demo", "password": "demo", "appId": "Sample App",
                                          "appVersion": "1.0", "cid": 0, "sec": ""})).json()
    assert "errorText" not in auth and "p-ticket" not in auth
    accounts = _tv_get(sim, auth["accessToken"], "/account/list")
    assert accounts and all("id" in a and "name" in a for a in accounts)
    return auth


def _tv_get(sim, token, endpoint, query=None):
    """EX services.js tvGet: the query object joined as ?k=v&k=v (no encoding), bearer token."""
    q = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return requests.get(sim.rest_url + endpoint + q, timeout=10,
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                 "Content-Type": "application/json"}).json()


class TutorialSocket:
    """EX-07..EX-12 TradovateSocket: ids from 0 (authorize), ``url\\nid\\nquery||''\\nJSON.stringify(body)``
    (so an absent body is the text ``undefined`` and the token is JSON-quoted), and listeners that
    read ``data.d.quotes`` / ``doms`` / ``charts`` of every message after a subscription starts."""

    def __init__(self, url, token):
        self.sock = Socket(url, token, raw_token_body=json.dumps(token))
        self.counter = 1  # 0 went to authorize
        self.listening_from = None  # where the first listener started

    def send(self, url, query=None, body=None):
        req_id, self.counter = self.counter, self.counter + 1
        self.sock.send(url, req_id, "undefined" if body is None else json.dumps(body), query or "")
        response = self.sock.wait(lambda m: m.get("i") == req_id and "e" not in m)
        assert response["s"] == 200, response  # else the client rejects
        return response

    def subscribe(self, sim, token, url, body):
        """subscribe(): send, p-ticket check, realtimeId, contract/find for a dated symbol, and only
        then the listener: returns (realtimeId, contractId, index of the first message it hears)."""
        response = self.send(url, body=body)
        assert "p-ticket" not in response["d"]  # response.d['p-ticket'] is read: d must be an object
        realtime_id = response["d"].get("realtimeId") or response["d"].get("subscriptionId")
        contract_id = None
        if body.get("symbol") and not str(body["symbol"]).startswith("@"):
            contract_id = (_tv_get(sim, token, "/contract/find", {"name": body["symbol"]}) or {}).get("id")
            assert contract_id, "the tutorial falls back to contract/suggest(...)[0].id, which throws"
        start = self.sock.mark()
        if self.listening_from is None:
            self.listening_from = start
        return realtime_id, contract_id, start

    def items(self, start):
        """The messages a listener added at ``start`` hears; every message after the first listener
        must carry ``d`` (each listener reads data.d.<kind> of every message)."""
        assert all(isinstance(m.get("d"), (dict, list, str)) for m in self.sock.seen[self.listening_from:])
        return self.sock.seen[start:]


def _quotes(items, contract_id):
    return [q for m in items if isinstance(m["d"], dict) for q in m["d"].get("quotes") or []
            if q["contractId"] == contract_id]


def test_ex07a_product_find_eth_over_the_user_socket(sim):
    auth = _tutorial_connect(sim)
    sock = TutorialSocket(sim.ws_url, auth["accessToken"])
    try:
        sync = sock.send("user/syncrequest", body={"users": [auth["userId"]]})
        assert sync["d"]["users"]
        found = sock.send("product/find", query="name=ETH")  # body: JSON.stringify(undefined)
        assert found["d"]["name"] == "ETH" and found["d"]["tickSize"] == 0.5
        assert all(field in found["d"] for field in PRODUCT_FIELDS)
    finally:
        sock.sock.close()


def test_ex08a_ex09a_quote_and_dom_render(sim):
    auth = _tutorial_connect(sim)
    token = auth["accessToken"]
    sock = TutorialSocket(sim.md_url, token)
    try:
        _, quote_cid, quote_start = sock.subscribe(sim, token, "md/subscribequote", {"symbol": "MESZ6"})
        _, dom_cid, dom_start = sock.subscribe(sim, token, "md/subscribedom", {"symbol": "MESZ6"})
        for price in (6002.25, 6001.75):
            sim.clock.advance(2)
            sim.set_price("MESZ6", price)
        sock.sock.wait(lambda m: m.get("e") == "md" and "doms" in m["d"] and
                       m["d"]["doms"][0]["bids"][0]["price"] == 6001.5)
        # (the current quote and book came with the answers, before the listeners: missed)
        quotes = _quotes(sock.items(quote_start), quote_cid)
        assert len(quotes) >= 2
        for quote in quotes:  # renderQuote(symbol, data.entries)
            for field in QUOTE_FIELDS:
                entry = quote["entries"][field]
                assert isinstance(entry, dict) and ("price" in entry or "size" in entry)
        assert quotes[-1]["entries"]["Trade"]["price"] == 6001.75
        doms = [d for m in sock.items(dom_start) if isinstance(m["d"], dict) for d in m["d"].get("doms") or []
                if d["contractId"] == dom_cid]
        assert len(doms) >= 2
        for dom in doms:  # renderDOM(symbol, {contractId, timestamp, bids, offers}); bids.map(renderPriceSize)
            assert dt.datetime.strptime(dom["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
            assert all({"price", "size"} <= set(level) for level in dom["bids"] + dom["offers"])
            assert dom["bids"] and dom["offers"]
        # Unwatch: the listener goes, then md/unsubscribequote / md/unsubscribedom {symbol}
        assert sock.send("md/unsubscribequote", body={"symbol": "MESZ6"})["d"] == {}
        assert sock.send("md/unsubscribedom", body={"symbol": "MESZ6"})["d"] == {}
    finally:
        sock.sock.close()


@pytest.mark.parametrize("kind, size", [("MinuteBar", 30), ("DailyBar", 1)])
def test_ex10a_chart_bars(sim, kind, size):
    auth = _tutorial_connect(sim)
    token = auth["accessToken"]
    sock = TutorialSocket(sim.md_url, token)
    try:
        realtime_id, _, start = sock.subscribe(sim, token, "md/getchart", {
            "symbol": "NQZ6",
            "chartDescription": {"underlyingType": kind, "elementSize": size, "elementSizeUnit": "UnderlyingUnits",
                                 "withHistogram": False},
            "timeRange": {"asMuchAsElements": 100}})
        assert realtime_id
        sock.sock.wait(lambda m: m.get("e") == "chart" and any(c.get("eoh") for c in m["d"]["charts"]))
        all_bars, eoh = [], False
        for m in sock.items(start):
            for chart in (m["d"].get("charts") or []) if isinstance(m["d"], dict) else []:
                if chart["id"] != realtime_id:  # the tutorial keeps only its realtimeId's packets
                    continue
                if chart.get("eoh"):
                    eoh = True
                    continue
                assert not eoh, "history after the end-of-history marker"
                for bar in chart["bars"]:  # const { high, low, open, close, timestamp } = bar
                    assert all(field in bar for field in BAR_FIELDS)
                    all_bars.append((bar["timestamp"], [bar["open"], bar["high"], bar["low"], bar["close"]]))
        assert eoh and len(all_bars) == 100
        sim.clock.advance(10)
        sim.set_price("NQZ6", 21000.75)
        live = sock.sock.wait(lambda m: m.get("e") == "chart")["d"]["charts"][0]
        assert live["id"] == realtime_id and live["bars"][0]["close"] == 21000.75
        # unsubscribe(): md/cancelChart {subscriptionId: realtimeId}
        assert sock.send("md/cancelChart", body={"subscriptionId": realtime_id})["s"] == 200
    finally:
        sock.sock.close()


def test_ex11a_tick_chart(sim):
    auth = _tutorial_connect(sim)
    token = auth["accessToken"]
    sock = TutorialSocket(sim.md_url, token)
    try:
        realtime_id, _, start = sock.subscribe(sim, token, "md/getchart", {
            "symbol": "NQZ6",
            "chartDescription": {"underlyingType": "Tick", "elementSize": 1, "elementSizeUnit": "UnderlyingUnits"},
            "timeRange": {"asMuchAsElements": 100, "asFarAsTimeStamp": "2020-05-01T19:45:00.000Z"}})
        sock.sock.wait(lambda m: m.get("e") == "chart" and any(c.get("eoh") for c in m["d"]["charts"]))
        sim.clock.advance(5)
        sim.set_price("NQZ6", 20999.5)
        sock.sock.wait(lambda m: m.get("e") == "chart" and not any(c.get("eoh") for c in m["d"]["charts"]))
        points = []
        for m in sock.items(start):
            for chart in (m["d"].get("charts") or []) if isinstance(m["d"], dict) else []:
                if chart["id"] != realtime_id or chart.get("eoh"):
                    continue
                timestamp, tick_size, base_price = chart["bt"], chart["ts"], chart["bp"]
                for tick in chart["tks"]:  # ({t, p: price, s, b, a, bs, as}) => (basePrice + price) * tickSize
                    points.append((timestamp + tick["t"], (base_price + tick["p"]) * tick_size))
        assert len(points) == 101
        assert points[-1] == ((sim.clock.now()) * 1000, 20999.5)
        assert all(isinstance(x, int) and y > 0 for x, y in points)
    finally:
        sock.sock.close()


def test_faq_large_chart_request_pages_back_to_its_target_date():
    """example-api-faq large-chart-requests: getAllBars() on '@NQ' hourly bars back to 2019-10-07,
    one md/getChart per page, closestTimestamp = the oldest bar so far, until the oldest bar is the
    target (or a page brings nothing older)."""
    sim = _sim(dt.date(2019, 10, 18), dt.datetime(2019, 10, 18, 14, 0, tzinfo=CT), md_max_chart_elements=60)
    try:
        auth = requests.post(f"{sim.rest_url}/auth/accesstokenrequest", timeout=10,
                             headers={"Accept": "application/json", "Content-Type": "application/json"},
                             data=json.dumps({"name": "demo", "password": "demo", "appId": "Sample App",
                                              "appVersion": "1.0", "cid": 0, "sec": ""})).json()
        sock = TutorialSocket(sim.md_url, auth["mdAccessToken"])
        target = "2019-10-07T00:00:00.000Z"
        closest = _to_json(time.time())  # new Date().toJSON(): the browser's clock
        chart_body = {"symbol": "@NQ", "chartDescription": {"underlyingType": "MinuteBar", "elementSize": 60,
                                                             "elementSizeUnit": "UnderlyingUnits",
                                                             "withHistogram": False}}
        result, pages = [], 0
        while True:
            pages += 1
            assert pages < 20, "the sample would page forever"
            realtime_id, _, start = sock.subscribe(sim, auth["mdAccessToken"], "md/getChart",
                                            {**chart_body, "timeRange": {"closestTimestamp": closest,
                                                                         "asFarAsTimestamp": target}})
            sock.sock.wait(lambda m: m.get("e") == "chart" and
                           any(c.get("id") == realtime_id and c.get("eoh") for c in m["d"]["charts"]))
            for m in sock.sock.seen[start:]:
                for chart in (m.get("d") or {}).get("charts") or [] if m.get("e") == "chart" else []:
                    if chart["id"] == realtime_id and not chart.get("eoh"):
                        result += [(_epoch(b["timestamp"]), b) for b in chart["bars"]]
            sock.send("md/cancelChart", body={"subscriptionId": realtime_id})  # await unsubscribe()
            result.sort(key=lambda r: r[0], reverse=True)
            oldest = _to_json(result[-1][0])
            if oldest != target and oldest != closest:
                closest = oldest
                continue
            break
        assert oldest == target and pages >= 4
        stamps = sorted({stamp for stamp, _ in result})
        # every session hour between the target and now, once each (pages overlap by one bar)
        sessions_hours = [s for s in range(int(_epoch(target)), int(sim.clock.now()) + 1, 3600)
                          if dt.datetime.fromtimestamp(s, CT).weekday() != 5
                          and dt.datetime.fromtimestamp(s, CT).hour != 16
                          and not (dt.datetime.fromtimestamp(s, CT).weekday() == 6
                                   and dt.datetime.fromtimestamp(s, CT).hour < 17)
                          and not (dt.datetime.fromtimestamp(s, CT).weekday() == 4
                                   and dt.datetime.fromtimestamp(s, CT).hour > 16)]
        assert stamps == sessions_hours
        sock.sock.close()
    finally:
        sim.stop()


def test_trading_strategy_robot_market_data(sim):
    """example-api-trading-strategy: login, account/list, contract/suggest, both sockets (raw tokens,
    md socket with mdAccessToken), syncrequest by account, then subscribeDOM, subscribeQuote and
    getChart sent back to back with the literal query ``undefined``; callbacks filter by contractId
    and chart id; the disposers unsubscribe and cancel the chart by ``historicalId``."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    auth = requests.post(f"{sim.rest_url}/auth/accessTokenRequest", timeout=10, headers=headers,
                         json={"name": "demo", "password": "demo", "appId": "AutoTrade", "appVersion": "1.0",
                               "deviceId": "0" * 64, "cid": 0, "sec": ""}).json()
    bearer = {**headers, "Authorization": f"Bearer {auth['accessToken']}"}
    account = requests.get(f"{sim.rest_url}/account/list", headers=bearer, timeout=10).json()[0]
    contracts = requests.get(f"{sim.rest_url}/contract/suggest?t=NQ&l=10", headers=bearer, timeout=10).json()
    contract = contracts[0]
    assert contract["name"] == "NQZ6"
    user = Socket(sim.ws_url, auth["accessToken"])
    md = Socket(sim.md_url, auth["mdAccessToken"])
    try:
        user.send("user/syncrequest", 1, json.dumps({"accounts": [account["id"]]}), "undefined")
        assert user.wait(lambda m: m.get("i") == 1)["d"]["users"]
        symbol = contract["name"]
        md.send("md/subscribeDOM", 1, json.dumps({"symbol": symbol}), "undefined")
        md.send("md/subscribeQuote", 2, json.dumps({"symbol": symbol}), "undefined")
        md.send("md/getChart", 3, json.dumps({
            "symbol": symbol,
            "chartDescription": {"underlyingType": "Tick", "elementSize": 1, "elementSizeUnit": "UnderlyingUnits",
                                 "withHistogram": False},  # histogram === 'true'
            "timeRange": {"asMuchAsElements": 20}}), "undefined")
        response = md.wait(lambda m: m.get("i") == 3)
        realtime_id, historical_id = response["d"]["realtimeId"], response["d"]["historicalId"]
        md.wait(lambda m: m.get("e") == "chart" and any(c.get("eoh") for c in m["d"]["charts"]))
        sim.clock.advance(4)
        sim.set_price(symbol, 21001.25)
        md.wait(lambda m: m.get("e") == "chart" and m["d"]["charts"][0].get("tks")
                and m["d"]["charts"][0]["bt"] == sim.clock.now() * 1000)
        doms = [d for m in md.seen if m.get("e") == "md" for d in m["d"].get("doms") or []
                if d["contractId"] == contract["id"]]
        quotes = [q for m in md.seen if m.get("e") == "md" for q in m["d"].get("quotes") or []
                  if q["contractId"] == contract["id"]]
        assert len(doms) >= 2 and len(quotes) >= 2
        ticks = []  # DataBuffer(TicksTransformer).push(chart) for each chart packet of its ids
        for m in md.seen:
            if m.get("e") != "chart":
                continue
            for chart in m["d"]["charts"]:
                if chart["id"] not in (realtime_id, historical_id):
                    continue
                for t in chart.get("tks") or []:
                    ticks.append({"subscriptionId": chart["id"], "id": t["id"], "timestamp": chart["bt"] + t["t"],
                                  "price": (chart["bp"] + t["p"]) * chart["ts"], "volume": t["s"],
                                  "bidPrice": (chart["bp"] + t["b"]) * chart["ts"], "bidSize": t["bs"],
                                  "askPrice": (chart["bp"] + t["a"]) * chart["ts"], "askSize": t["as"]})
        assert len(ticks) == 21 and ticks[-1]["price"] == 21001.25
        assert all(t["bidPrice"] < t["price"] < t["askPrice"] for t in ticks)
        # disposers
        md.send("md/unsubscribeDOM", 4, json.dumps({"symbol": symbol}), "undefined")
        md.send("md/unsubscribeQuote", 5, json.dumps({"symbol": symbol}), "undefined")
        md.send("md/cancelChart", 6, json.dumps({"subscriptionId": historical_id}), "undefined")
        for req_id in (4, 5, 6):
            assert md.wait(lambda m, i=req_id: m.get("i") == i)["s"] == 200
        after = len(md.seen)
        sim.set_price(symbol, 21002.0)
        md.barrier(99)
        assert not [m for m in md.seen[after:] if "e" in m]
    finally:
        user.close()
        md.close()


def _to_json(epoch: float) -> str:
    stamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _epoch(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()
